"""The embedded nats-server's log file: bounded on disk, private, and its warnings/errors forwarded at a bounded
rate."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from streamd.server import embedded
from streamd.server.embedded import ServerLog


def _line(level: str, text: str) -> str:
    return f"[123] 2026/12/02 13:24:56.302718 [{level}] {text}"


def test_the_file_is_rotated_at_its_limit_keeping_one_old_copy(tmp_path: Path) -> None:
    path = tmp_path / "nats-server.log"
    log = ServerLog(path, max_bytes=1000)
    log.open()
    for i in range(200):  # ~10 kB through a 1 kB limit
        log.write(_line("INF", f"line {i:04d} " + "x" * 20))
    log.close()
    old = path.with_name("nats-server.log.1")
    assert path.stat().st_size <= 1000 and old.stat().st_size <= 1000
    assert "line 0199" in path.read_text() and "line 0000" not in path.read_text() + old.read_text()
    assert {os.stat(p).st_mode & 0o777 for p in (path, old)} == {0o600}


def test_an_existing_file_is_appended_to_and_made_private(tmp_path: Path) -> None:
    path = tmp_path / "nats-server.log"
    path.write_text("before\n")
    path.chmod(0o644)
    log = ServerLog(path)
    log.open()
    log.write(_line("INF", "after"))
    log.close()
    assert path.read_text().splitlines()[0] == "before" and path.stat().st_mode & 0o777 == 0o600


def test_warnings_and_errors_are_forwarded_at_a_bounded_rate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = ServerLog(tmp_path / "nats-server.log")
    log.open()
    caplog.set_level(logging.INFO, logger="streamd.nats-server")
    log.write(_line("INF", "Server is ready"))
    log.write(_line("WRN", "a warning"))
    log.write(_line("ERR", "an error"))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "a warning"),
        (logging.ERROR, "an error"),
    ]
    caplog.clear()
    for i in range(3 * embedded.FORWARD_PER_WINDOW):  # a client flooding the server with bad input
        log.write(_line("ERR", f"parser error {i}"))
    assert len(caplog.records) == embedded.FORWARD_PER_WINDOW - 2
    log._window_start -= embedded.FORWARD_WINDOW  # the window has passed
    log.write(_line("ERR", "later"))
    messages = [r.getMessage() for r in caplog.records[-2:]]
    assert messages == [f"{2 * embedded.FORWARD_PER_WINDOW + 2} more warnings/errors in {log.path}", "later"]
    log.close()
    assert (tmp_path / "nats-server.log").read_text().count("parser error") == 3 * embedded.FORWARD_PER_WINDOW


def test_a_log_that_cannot_be_written_is_given_up_on_without_failing(tmp_path: Path) -> None:
    log = ServerLog(tmp_path / "missing-dir" / "nats-server.log")
    log.open()  # logged, not raised: the server runs without its file
    log.write(_line("ERR", "still forwarded"))
    log.close()
