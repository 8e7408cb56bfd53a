"""Usage errors and bad values: one `streamd: …` line naming the problem and the --help to read, exit 1, and
nothing sent to a server (these run against a port where nothing listens, so a request would fail differently)."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from streamd.cli.app import app
from tests.cli import cli, ok, ok_json, one_line_error
from tests.natsd import NatsServer


@pytest.fixture(scope="module")
def nowhere() -> str:
    """A server URL where nothing listens: any command that gets as far as connecting fails on that instead."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"nats://127.0.0.1:{port}"


def _run(*args: str, input: str | None = None) -> str:
    runner = CliRunner(env={"STREAMD_SERVER": None, "STREAMD_CONFIG": None, "STREAMD_LOG_LEVEL": None})
    return one_line_error(runner.invoke(app, list(args), input=input))


@pytest.mark.parametrize(
    ("args", "says", "help_of"),
    [
        (["strem"], "No such command 'strem'", "streamd"),
        (["stream", "add"], "Missing argument 'name'", "streamd stream add"),
        (["stream", "add", "S", "--max-bytes", "lots"], "Invalid value for '--max-bytes'", "streamd stream add"),
        (["jobs"], "Missing command", "streamd jobs"),
        (["serve", "--port", "x"], "Invalid value for '--port'", "streamd serve"),
        (["serve", "--log-level", "loud"], "'loud' is not a log level", "streamd serve"),
        (["consumer", "info", "S"], "Missing argument 'name'", "streamd consumer info"),
    ],
)
def test_usage_errors_are_one_line_with_the_help_to_read(args: list[str], says: str, help_of: str) -> None:
    line = _run(*args)
    assert says in line and line.endswith(f"see `{help_of} --help`"), line


@pytest.mark.parametrize("name", ["MY STREAM", "my.stream", "orders>", "a/b", "a\\b", "x" * 256, "é" * 128])
def test_names_jetstream_would_refuse_are_refused_before_connecting(nowhere: str, name: str) -> None:
    line = _run("stream", "add", name, "--subject", "s", "--server", nowhere)
    assert "not a valid name" in line or "longer than 255 bytes" in line, line
    assert "cannot connect" not in line


def test_consumer_names_are_checked_too(nowhere: str) -> None:
    line = _run("consumer", "info", "S", "c.1", "--server", nowhere)
    assert "'c.1' is not a valid name" in line, line


@pytest.mark.parametrize("subject", ["orders.>", "orders.*", "a b", "a..b", ""])
def test_publish_needs_one_literal_subject(nowhere: str, subject: str) -> None:
    line = _run("publish", subject, "hi", "--server", nowhere)
    assert "not a subject to publish on" in line, line


async def test_a_confirmation_with_no_answer_says_how_to_go_on(streamd: object, nats_server: NatsServer) -> None:
    """Without a terminal and with nothing piped in, a destructive command does not just abort: it says --force."""
    await ok(nats_server.url, "stream", "add", "KEEP", "--subject", "keep")
    await ok(nats_server.url, "publish", "keep", "x")
    line = one_line_error(await cli(nats_server.url, "stream", "purge", "KEEP", input=""))
    assert "add --force" in line, line
    info = await ok_json(nats_server.url, "stream", "info", "KEEP")
    assert info["state"]["messages"] == 1
