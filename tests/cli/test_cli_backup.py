"""`streamd backup` and `streamd restore`: streamd → nats-server -js → streamd, with messages, headers and consumers."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats
import pytest

from streamd.cli import backup as cli_backup
from streamd.cli.app import app
from tests.cli import cli, ok, ok_json, one_line_error
from tests.natsd import NatsServer

cli_backup.register(app)  # a no-op once streamd.cli.streams registers the commands itself

COUNT = 1201  # more than two publish windows


def _message(i: int) -> tuple[str, bytes, dict[str, str] | None]:
    subject = f"orders.{'ab'[i % 2]}"
    data = b"" if i % 7 == 0 else (b"\x00\xff binary " if i % 11 == 0 else f"order {i}".encode())
    headers = {"Trace-Id": str(i), "Kind": "x y"} if i % 3 == 0 else None
    return subject, data, headers


async def _fill(url: str) -> None:
    nc = await nats.connect(url)
    try:
        for i in range(1, COUNT + 1):
            subject, data, headers = _message(i)
            reply = await nc.request(subject, data, timeout=5, headers=headers)
            assert json.loads(reply.data)["seq"] == i
    finally:
        await nc.close()


async def _messages(url: str, stream: str) -> list[tuple[str, str, dict[str, str]]]:
    viewed = await ok_json(url, "stream", "view", stream, "--limit", str(COUNT + 10))
    return [(m["subject"], m["data"], m["headers"]) for m in viewed]


async def _consumers(url: str, stream: str) -> dict[str, dict[str, Any]]:
    keys = ("durable_name", "filter_subject", "ack_policy", "ack_wait", "deliver_policy", "max_deliver", "description")
    listed = await ok_json(url, "consumer", "list", stream)
    return {c["name"]: {k: c["config"].get(k) for k in keys} for c in listed}


def _lines(file: Path) -> list[dict[str, Any]]:
    with gzip.open(file, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


async def test_backup_streamd_restore_jetstream_and_back(
    streamd: object, nats_server: NatsServer, jetstream_server: NatsServer, tmp_path: Path
) -> None:
    src, js = nats_server.url, jetstream_server.url
    await ok(src, "stream", "add", "ORDERS", "--subject", "orders.>", "--max-messages", "100000", "--description", "d")
    await _fill(src)
    await ok(src, "stream", "delete-message", "ORDERS", "5")
    await ok(src, "consumer", "add", "ORDERS", "A", "--pull", "--filter", "orders.a", "--ack-wait", "30s")
    await ok(src, "consumer", "add", "ORDERS", "ALL", "--pull", "--max-deliver", "3", "--description", "every one")
    expected = await _messages(src, "ORDERS")
    assert len(expected) == COUNT - 1 and expected[0] == ("orders.b", "order 1", {})
    assert expected[2] == ("orders.b", "order 3", {"Trace-Id": "3", "Kind": "x y"})
    consumers = await _consumers(src, "ORDERS")
    assert set(consumers) == {"A", "ALL"}

    # backup: the documented file format
    file = tmp_path / "orders.backup.gz"
    saved = await ok_json(src, "backup", "ORDERS", str(file), "--copy")
    assert saved["mode"] == "copy" and saved["messages"] == COUNT - 1 and sorted(saved["consumers"]) == ["A", "ALL"]
    lines = _lines(file)
    header, records, trailer = lines[0], lines[1:-1], lines[-1]
    assert header["format"] == "streamd-backup" and header["version"] == 1
    assert header["stream"]["name"] == "ORDERS" and header["stream"]["description"] == "d"
    assert header["state"]["messages"] == COUNT - 1 and len(header["consumers"]) == 2
    assert trailer == {"end": True, "messages": COUNT - 1}
    assert [r["seq"] for r in records] == [i for i in range(1, COUNT + 1) if i != 5]
    assert base64.b64decode(records[9]["data"]) == b"\x00\xff binary "  # seq 11 (5 is gone)
    assert "hdrs" not in records[0] and b"Trace-Id: 3" in base64.b64decode(records[2]["hdrs"])
    text = await cli(src, "backup", "ORDERS", str(tmp_path / "again.gz"), "--copy")
    assert (
        text.exit_code == 0
        and "Saved stream ORDERS" in text.stdout
        and "as a message copy: 1200 messages" in text.stdout
    )

    # restore into nats-server -js
    out = await ok(js, "restore", str(file))
    assert f"Restored stream ORDERS from {file} (message copy): {COUNT - 1} of {COUNT - 1} messages, 2 consumers" in out
    assert "Sequences and times were assigned anew: 1..1200 (were 1..1201)" in out
    assert await _messages(js, "ORDERS") == expected
    assert await _consumers(js, "ORDERS") == consumers
    info = await ok_json(js, "stream", "info", "ORDERS")
    assert info["config"]["description"] == "d" and info["config"]["max_msgs"] == 100000
    assert info["state"]["first_seq"] == 1 and info["state"]["last_seq"] == COUNT - 1
    line = one_line_error(await cli(js, "restore", str(file)))
    assert "stream ORDERS already exists" in line and "--stream" in line

    # and back: nats-server -js → streamd, renamed (its snapshots are its own format: backup copies messages)
    back = tmp_path / "from-js.gz"
    assert "as a message copy" in await ok(js, "backup", "ORDERS", str(back))
    await ok(src, "stream", "delete", "ORDERS", "--force")
    restored = await ok_json(src, "restore", str(back), "--stream", "COPY")
    assert restored["stream"] == "COPY" and restored["messages"] == COUNT - 1
    assert sorted(restored["consumers"]) == ["A", "ALL"] and restored["duplicates"] == 0
    assert await _messages(src, "COPY") == expected
    assert await _consumers(src, "COPY") == consumers
    cfg = (await ok_json(src, "stream", "info", "COPY"))["config"]
    assert cfg["subjects"] == ["orders.>"] and cfg["description"] == "d"


async def test_bad_files_and_interrupted_backup(
    streamd: object, nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = nats_server.url
    not_backup = tmp_path / "plain.txt"
    not_backup.write_text("hello")
    assert "cannot read" in one_line_error(await cli(url, "restore", str(not_backup)))
    assert "cannot read" in one_line_error(await cli(url, "restore", str(tmp_path / "missing.gz")))
    wrong = tmp_path / "wrong.gz"
    with gzip.open(wrong, "wt") as f:
        f.write(json.dumps({"format": "other"}) + "\n")
    assert "is not a streamd backup file" in one_line_error(await cli(url, "restore", str(wrong)))

    await ok(url, "stream", "add", "S", "--subject", "s.>")
    for n in range(3):
        await ok(url, "publish", f"s.{n}", f"m{n}")
    good = tmp_path / "s.gz"
    await ok(url, "backup", "S", str(good), "--copy")
    truncated = tmp_path / "truncated.gz"
    with gzip.open(truncated, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in _lines(good)[:-1])
    line = one_line_error(await cli(url, "restore", str(truncated), "--stream", "T"))
    assert "is truncated" in line
    assert "(404/10059)" in one_line_error(await cli(url, "stream", "info", "T"))  # nothing was created
    assert "(404/10059)" in one_line_error(await cli(url, "backup", "NOPE", str(tmp_path / "nope.gz")))

    # Ctrl-C during a backup (asyncio.run turns SIGINT into the cancellation of the command): no file left, one
    # line, exit 1; with a window of 2 requests in flight, the first window's 2 messages were written
    real = cli_backup._next_message

    async def interrupted(s: Any, name: str, seq: int) -> Any:
        if seq >= 3:
            raise asyncio.CancelledError
        return await real(s, name, seq)

    monkeypatch.setattr(cli_backup, "_next_message", interrupted)
    monkeypatch.setattr(cli_backup, "WINDOW", 2)
    target = tmp_path / "out" / "s.gz"
    target.parent.mkdir()
    line = one_line_error(await cli(url, "backup", "S", str(target), "--copy"))
    assert line == f"streamd: interrupted after 2 messages — no backup written to {target}"
    assert list(target.parent.iterdir()) == []


# ---- restore writes only into the stream it restores (issue 9) ------------------------------------------------


def _backup_file(path: Path, subjects: list[str], messages: list[dict[str, Any]]) -> Path:
    header = {"format": "streamd-backup", "version": 1, "created": "", "stream": {"name": "R", "subjects": subjects}}
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({**header, "consumers": [], "state": {}}) + "\n")
        f.writelines(json.dumps(m) + "\n" for m in messages)
        f.write(json.dumps({"end": True, "messages": len(messages)}) + "\n")
    return path


def _msg(subject: str, data: bytes = b"x") -> dict[str, Any]:
    return {"seq": 1, "subject": subject, "time": "", "data": base64.b64encode(data).decode()}


async def test_restore_refuses_subjects_outside_its_stream_before_publishing(
    streamd: object, nats_server: NatsServer, tmp_path: Path
) -> None:
    url = nats_server.url
    await ok(url, "stream", "add", "X", "--subject", "x.>")
    await ok(url, "stream", "add", "OTHER", "--subject", "other.>")
    await ok(url, "publish", "other.1", "kept")
    good = [_msg("r.1"), _msg("r.2")]

    # a line naming an API subject would have deleted stream X
    attack = _backup_file(tmp_path / "api.gz", ["r.>"], [*good, _msg("$JS.API.STREAM.DELETE.X", b"")])
    line = one_line_error(await cli(url, "restore", str(attack)))
    assert "line 4" in line and "$JS.API.STREAM.DELETE.X" in line and "API subject" in line
    # a line with another stream's subject would have been stored there
    attack = _backup_file(tmp_path / "other.gz", ["r.>"], [*good, _msg("other.2", b"injected")])
    line = one_line_error(await cli(url, "restore", str(attack)))
    assert "other.2" in line and "not one of stream R's subjects (r.>)" in line
    # even where the stream's own pattern would cover it, an API subject is refused
    attack = _backup_file(tmp_path / "wide.gz", ["$JS.>"], [_msg("$JS.API.STREAM.DELETE.X", b"")])
    assert "API subject" in one_line_error(await cli(url, "restore", str(attack)))
    attack = _backup_file(tmp_path / "wild.gz", ["r.>"], [_msg("r.*")])
    assert "no valid subject" in one_line_error(await cli(url, "restore", str(attack)))

    # nothing happened: X is there, OTHER holds only its own message, R was never created
    assert (await ok_json(url, "stream", "info", "X"))["config"]["name"] == "X"
    assert (await ok_json(url, "stream", "info", "OTHER"))["state"]["messages"] == 1
    assert "(404/10059)" in one_line_error(await cli(url, "stream", "info", "R"))
    # a clean file still restores
    out = await ok(url, "restore", str(_backup_file(tmp_path / "good.gz", ["r.>"], good)))
    assert "2 of 2 messages" in out


# Runs the command as its child and reports the child's peak. Measured from this small process because on Linux a
# process exec'd by a big one (a test worker) reports the big one's high-water mark as its own ru_maxrss.
_MEASURE = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)"
)


def _resident_peak_kib(args: list[str]) -> tuple[int, str, int]:
    """Run a command to its end; its exit code, stderr and peak resident memory (ru_maxrss, KiB on Linux)."""
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *args], capture_output=True, check=False)
    peak, code = (int(x) for x in proc.stdout.split())
    return code, proc.stderr.decode(errors="replace"), peak


async def test_restore_bounds_line_size_and_memory(streamd: object, nats_server: NatsServer, tmp_path: Path) -> None:
    url = nats_server.url
    bomb = tmp_path / "bomb.gz"  # ~0.2 MB compressed, one 200 MB line (the old restore peaked at 507 MiB on it)
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write(b'{"format": "streamd-backup", "version": 1, "stream": {"name": "B", "subjects": ["b"]}, "pad": "')
        chunk = b"A" * (1 << 20)
        for _ in range(200):
            f.write(chunk)
        f.write(b'"}\n')
    code, err, peak_kib = await asyncio.to_thread(
        _resident_peak_kib, [sys.executable, "-m", "streamd", "restore", str(bomb), "--server", url]
    )
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert "line 1 is longer than 16 MiB" in lines[0]
    assert peak_kib < 150 * 1024, f"restore peaked at {peak_kib // 1024} MiB reading a 200 MB line"
    assert "(404/10059)" in one_line_error(await cli(url, "stream", "info", "B"))


async def test_progress_is_shown_as_lines_when_piped(
    streamd: object, nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = nats_server.url
    await ok(url, "stream", "add", "P", "--subject", "p")
    await ok(url, "publish", "p", "m{n}", "--count", "3")
    monkeypatch.setattr(cli_backup._Progress, "EVERY_S", 0.0)
    result = await cli(url, "backup", "P", str(tmp_path / "p.gz"), "--copy")
    assert result.exit_code == 0, result.stderr
    assert "Saving: 3 of 3 messages" in result.stderr, result.stderr
    result = await cli(url, "backup", "P", str(tmp_path / "p.snap"))
    assert result.exit_code == 0 and "Saving: " in result.stderr and " bytes" in result.stderr, result.stderr
    await ok(url, "stream", "delete", "P", "--force")
    result = await cli(url, "restore", str(tmp_path / "p.gz"))
    assert result.exit_code == 0 and "Restoring: 3 of 3 messages" in result.stderr, result.stderr
    await ok(url, "stream", "delete", "P", "--force")
    result = await cli(url, "restore", str(tmp_path / "p.snap"))
    assert result.exit_code == 0 and "Restoring: " in result.stderr and " bytes" in result.stderr, result.stderr


async def test_snapshot_backup_keeps_sequences_times_and_consumer_state(
    streamd: object, nats_server: NatsServer, tmp_path: Path
) -> None:
    """The default mode against streamd: restore keeps everything, also beside the original (--stream --subject)."""
    url = nats_server.url
    await ok(url, "stream", "add", "O", "--subject", "o.>")
    await ok(url, "publish", "o.x", "m{n}", "--count", "20")
    await ok(url, "stream", "delete-message", "O", "4")
    await ok(url, "consumer", "add", "O", "C", "--pull")
    nc = await nats.connect(url)
    try:
        sub = await nc.jetstream().pull_subscribe("o.>", durable="C", stream="O")
        for m in await sub.fetch(5, timeout=5):
            await m.ack_sync()
    finally:
        await nc.close()
    file = tmp_path / "o.backup"
    saved = await ok_json(url, "backup", "O", str(file))
    assert saved["mode"] == "snapshot" and saved["messages"] == 19 and saved["consumers"] == 1
    assert "as a snapshot: 19 messages (sequences 1..20), 1 consumers" in await ok(url, "backup", "O", str(file))

    line = one_line_error(await cli(url, "restore", str(file), "--stream", "O2"))
    assert "(400/10065)" in line and "--subject" in line  # the subjects are the original's: they overlap
    out = await ok(url, "restore", str(file), "--stream", "O2", "--subject", "o2.>")
    assert "Restored stream O2 from snapshot" in out and "sequences 1..20 and times as they were" in out
    orig, copy = await ok_json(url, "stream", "info", "O"), await ok_json(url, "stream", "info", "O2")
    assert copy["config"]["subjects"] == ["o2.>"]
    for key in ("messages", "first_seq", "last_seq", "first_ts", "last_ts", "num_deleted"):
        assert copy["state"][key] == orig["state"][key], key
    consumer = await ok_json(url, "consumer", "info", "O2", "C")
    assert consumer["ack_floor"]["stream_seq"] == 6 and consumer["num_pending"] == 14
    line = one_line_error(await cli(url, "restore", str(file), "--stream", "O2", "--subject", "o3.>"))
    assert "stream O2 already exists" in line
    copy_file = tmp_path / "o.gz"
    await ok(url, "backup", "O", str(copy_file), "--copy")
    line = one_line_error(await cli(url, "restore", str(copy_file), "--stream", "O3", "--subject", "o3.>"))
    assert "--subject needs a snapshot backup" in line
