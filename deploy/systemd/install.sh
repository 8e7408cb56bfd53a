#!/usr/bin/env bash
# Install streamd and a core nats-server for it as systemd services. Run as root from a streamd checkout:
#
#   sudo deploy/systemd/install.sh
#
# What it does (each step is idempotent; nothing that exists is overwritten):
#   1. /opt/streamd/.venv: a venv with streamd (pip install of this checkout, or --source SPEC) and its nats-server
#   2. /etc/streamd/streamd.toml and /etc/streamd/nats-server.conf from deploy/ (an existing one is kept; the shipped
#      version is written beside it as *.new)
#   3. /etc/streamd/streamd.env, mode 0600: STREAMD_LEAF_PASSWORD generated here (letters and digits, random),
#      read by both units; kept if it exists
#   4. /etc/systemd/system/{nats-server,streamd}.service, then daemon-reload, enable --now
#
# Options:
#   --source SPEC      what pip installs (a checkout, a wheel or sdist path, a requirement); default: this checkout
#   --no-nats-server   streamd only (attach it to your own server: edit /etc/streamd/streamd.toml)
#   --no-start         install and reload, but do not enable or start anything
#   --skip-venv        leave /opt/streamd/.venv alone (configs and units only)
#   --destdir DIR      install under DIR instead of / (packaging, tests); implies --no-start
# Environment: PYTHON (default python3, must be 3.11 or newer).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
checkout="$(cd "$here/../.." && pwd)"
source_spec="$checkout"
with_nats=1
start=1
venv_step=1
destdir=""
python="${PYTHON:-python3}"

while [ $# -gt 0 ]; do
    case "$1" in
        --source) source_spec="${2:?--source needs a value}"; shift 2 ;;
        --no-nats-server) with_nats=0; shift ;;
        --no-start) start=0; shift ;;
        --skip-venv) venv_step=0; shift ;;
        --destdir) destdir="${2:?--destdir needs a directory}"; start=0; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (or with --destdir DIR to install under DIR)" >&2
    exit 1
fi

opt="$destdir/opt/streamd"
etc="$destdir/etc/streamd"
units="$destdir/etc/systemd/system"
say() { printf 'install.sh: %s\n' "$*"; }

# 1. the venv
if [ "$venv_step" -eq 1 ]; then
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "install.sh: $python is older than 3.11; set PYTHON=/path/to/python3.11" >&2; exit 1; }
    install -d -m 0755 "$opt"
    [ -x "$opt/.venv/bin/python" ] || "$python" -m venv "$opt/.venv"
    "$opt/.venv/bin/pip" install --quiet --upgrade pip
    "$opt/.venv/bin/pip" install --quiet --upgrade "$source_spec"
    say "installed $("$opt/.venv/bin/streamd" --version) in $opt/.venv"
else
    install -d -m 0755 "$opt"
fi
install -m 0644 "$here/../container/healthcheck.py" "$opt/healthcheck.py"
install -m 0644 "$checkout/README.md" "$opt/README.md"

# 2. settings
install -d -m 0755 "$etc"
for name in streamd.toml nats-server.conf; do
    if [ -e "$etc/$name" ]; then
        install -m 0644 "$here/../$name" "$etc/$name.new"
        say "kept $etc/$name; the shipped version is $etc/$name.new"
    else
        install -m 0644 "$here/../$name" "$etc/$name"
        say "wrote $etc/$name"
    fi
done

# 3. the secret: generated once, never printed
if [ -e "$etc/streamd.env" ]; then
    say "kept $etc/streamd.env"
else
    password="$("$python" -c 'import secrets; print("sd" + secrets.token_hex(24))')"
    (umask 077 && printf '# secrets for streamd.service and nats-server.service\nSTREAMD_LEAF_PASSWORD=%s\n' \
        "$password" > "$etc/streamd.env")
    say "wrote $etc/streamd.env (mode 0600) with a new random STREAMD_LEAF_PASSWORD"
fi
chmod 0600 "$etc/streamd.env"

# 4. the units
install -d -m 0755 "$units"
install -m 0644 "$here/streamd.service" "$units/streamd.service"
enable="streamd.service"
if [ "$with_nats" -eq 1 ]; then
    install -m 0644 "$here/nats-server.service" "$units/nats-server.service"
    enable="nats-server.service streamd.service"
fi
say "installed $enable in $units"

if [ "$start" -eq 1 ]; then
    systemctl daemon-reload
    # shellcheck disable=SC2086  # two unit names
    systemctl enable --now $enable
    say "started: systemctl status streamd; journalctl -u streamd -f"
    say "health: $opt/.venv/bin/python $opt/healthcheck.py"
else
    say "not started; when ready: systemctl daemon-reload && systemctl enable --now $enable"
fi
