"""`streamd serve` says what runs: its version, the absolute data path, and where each given setting came from."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from streamd import __version__
from tests.helpers import read_until, start_streamd_process
from tests.natsd import NatsServer


async def test_serve_logs_version_data_path_and_setting_sources(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "streamd.toml"
    conf.write_text('sync = "never"\n')
    monkeypatch.chdir(tmp_path)  # a relative --data is logged as the absolute path it is
    proc = await start_streamd_process(
        "--server", nats_server.url, "--leaf", nats_server.leaf_url, "--config", str(conf), "--data", "rel-data",
        env={"STREAMD_TOKEN": "not-for-logs", "STREAMD_LOG_LEVEL": "info"},
    )  # fmt: skip
    try:
        lines = "".join(await read_until(proc, "streamd serving"))
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
    assert f"streamd {__version__}, data directory {tmp_path / 'rel-data'}" in lines, lines
    assert f"sync=never (config file {conf})" in lines and "data=rel-data (--data)" in lines, lines
    assert "token=(hidden) ($STREAMD_TOKEN)" in lines and "not-for-logs" not in lines, lines
