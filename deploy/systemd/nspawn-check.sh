#!/usr/bin/env bash
# The systemd deployment, checked under a real systemd: boot a throwaway container with systemd-nspawn (this
# machine's own root as a read-only lower layer under a tmpfs overlay, a private network) and in it run the
# documented install and operation:
#   install.sh (venv, configs, generated secret, units, enable --now), both units active and enabled, streamd running
#   as its dynamic user with its data in /var/lib/private/streamd, the health check, a stream round trip through the
#   streamd CLI, systemd-analyze security, a stop (clean and bounded), a restart (data kept), a nats-server reload.
# Nothing on this machine changes; the container powers itself off when done.
#
#   sudo deploy/systemd/nspawn-check.sh [--wheels DIR]
#
# Needs: root; systemd-nspawn (Debian: apt-get install systemd-container); /usr/bin/python3 3.11 or newer with venv;
# pip wheels of this checkout and its dependencies (made here with .venv/bin/pip wheel, which needs the package
# index, unless --wheels DIR has them: the container installs offline from them). Exit 0 and "nspawn-check: ok" on
# success; otherwise the container's log is printed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
checkout="$(cd "$here/../.." && pwd)"
wheels=""
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) wheels="$(cd "${2:?--wheels needs a directory}" && pwd)"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "nspawn-check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "nspawn-check.sh: run as root" >&2; exit 1; }
command -v systemd-nspawn > /dev/null || { echo "nspawn-check.sh: systemd-nspawn not found (systemd-container)" >&2; exit 1; }
/usr/bin/python3 -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' \
    || { echo "nspawn-check.sh: /usr/bin/python3 must be 3.11 or newer, with venv" >&2; exit 1; }

work="$(mktemp -d /var/tmp/streamd-nspawn.XXXXXX)"
mkdir -p "$work/root" "$work/check" "$work/out"
# shellcheck disable=SC2317  # called by the trap
cleanup() {
    # $work/root is this machine's root while mounted: never delete recursively through it
    if mountpoint -q "$work/root" && ! umount "$work/root"; then
        echo "nspawn-check.sh: could not unmount $work/root; left $work in place" >&2
        return
    fi
    rm -rf "$work/check" "$work/out" "$work/wheels" "$work"/*.log
    rmdir "$work/root" "$work"
}
trap cleanup EXIT

if [ -z "$wheels" ]; then
    wheels="$work/wheels"
    "${PIP:-$checkout/.venv/bin/pip}" wheel --quiet "$checkout" -w "$wheels" 2> "$work/pip-wheel.log" \
        || { cat "$work/pip-wheel.log" >&2; exit 1; }
fi
ls "$wheels"/streamd-*.whl > /dev/null

cat > "$work/check/check.sh" <<'CHECK'
#!/bin/bash
exec > /out/result.txt 2>&1
set -euxo pipefail
trap 'echo "CHECK-FAILED at line $LINENO"' ERR
PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels PYTHON=/usr/bin/python3 /src/deploy/systemd/install.sh \
    --source "$(ls /wheels/streamd-*.whl)"
export PATH=/opt/streamd/.venv/bin:$PATH
healthy() {
    for _ in $(seq 1 30); do python /opt/streamd/healthcheck.py && return 0; sleep 1; done
    return 1
}
healthy
[ "$(systemctl is-active nats-server.service streamd.service | sort -u)" = active ]
[ "$(systemctl is-enabled nats-server.service streamd.service | sort -u)" = enabled ]
[ "$(ps -o user= -p "$(systemctl show -p MainPID --value streamd.service)")" = streamd ]
[ -f /var/lib/private/streamd/data.mdb ]
[ "$(stat -c %a /etc/streamd/streamd.env)" = 600 ]
streamd stream add BOOT --subject 'boot.>'
streamd publish boot.x hello-from-systemd
streamd consumer add BOOT W
out="$(streamd consumer next BOOT W)"
[[ "$out" == *hello-from-systemd* ]]
systemd-analyze security --threshold=20 streamd.service nats-server.service | grep 'Overall exposure'
start=$(date +%s%N)
systemctl stop streamd.service
stop_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$stop_ms" -lt 20000 ]
[ "$(systemctl show -p Result --value streamd.service)" = success ]
systemctl start streamd.service
healthy
info="$(streamd stream info BOOT)"
[[ "$info" =~ Messages:\ 1$'\n' ]]
systemctl reload nats-server.service
sleep 1
healthy
journalctl -u streamd.service -u nats-server.service --no-pager | tail -40
echo "stop took ${stop_ms} ms"
echo CHECK-OK
CHECK
chmod 0755 "$work/check/check.sh"
cat > "$work/check/deploycheck.service" <<'UNIT'
[Unit]
Description=streamd deployment check
After=basic.target
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/check/check.sh
TimeoutStartSec=240
UNIT
cat > "$work/check/deploycheck.target" <<'UNIT'
[Unit]
Description=streamd deployment check (only basic.target and the check, nothing else of this machine's)
Requires=basic.target deploycheck.service
After=basic.target
AllowIsolate=yes
UNIT

mount --bind / "$work/root"
timeout 300 systemd-nspawn --quiet --directory="$work/root" --volatile=overlay --private-network \
    --machine="streamd-check-$$" --console=pipe --register=no --keep-unit --link-journal=no \
    --bind-ro="$checkout:/src" --bind-ro="$wheels:/wheels" --bind-ro="$work/check:/check" --bind="$work/out:/out" \
    --bind-ro="$work/check/deploycheck.service:/etc/systemd/system/deploycheck.service" \
    --bind-ro="$work/check/deploycheck.target:/etc/systemd/system/deploycheck.target" \
    --boot systemd.unit=deploycheck.target > "$work/nspawn.log" 2>&1 || true

if [ -f "$work/out/result.txt" ] && tail -1 "$work/out/result.txt" | grep -qx CHECK-OK; then
    grep -E '^stop took|Overall exposure' "$work/out/result.txt" | sed 's/^/nspawn-check: /'
    echo "nspawn-check: ok"
    exit 0
fi
echo "nspawn-check: FAILED" >&2
cat "$work/nspawn.log" "$work/out/result.txt" >&2 2> /dev/null || true
exit 1
