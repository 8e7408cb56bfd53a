"""Usage errors and bad values: one `streamd: …` line naming the problem and the --help to read, exit 1, and
nothing sent to a server (these run against a port where nothing listens, so a request would fail differently)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamd.cli.app import app
from tests.cli import cli, ok, ok_json, one_line_error
from tests.natsd import NatsServer, run_nats_server


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


async def test_wrong_credentials_and_missing_files_are_named(tmp_path: Path) -> None:
    auth = 'authorization { user: app, password: "right" }\n'
    async with run_nats_server(tmp_path / "auth", extra=auth) as server:
        wrong = one_line_error(await cli(server.url, "stream", "list", "--user", "app", "--password", "wrong"))
        assert "refused the credentials (authorization violation)" in wrong, wrong
        missing = one_line_error(await cli(server.url, "stream", "list", "--creds", str(tmp_path / "no.creds")))
        assert f"cannot read the credentials (.creds) file {tmp_path / 'no.creds'}" in missing, missing


@pytest.mark.parametrize("command", [["stream", "list"], ["serve"]])
def test_a_typo_in_the_config_file_is_refused(tmp_path: Path, nowhere: str, command: list[str]) -> None:
    conf = tmp_path / "streamd.toml"
    conf.write_text('sever = "nats://127.0.0.1:4222"\n')
    line = _run(*command, "--config", str(conf), "--data", str(tmp_path / "d")) if command == ["serve"] else None
    line = line or _run(*command, "--config", str(conf), "--server", nowhere)
    assert "unknown setting 'sever' — did you mean 'server'?" in line, line


@pytest.mark.parametrize(
    ("value", "stored"), [("1GB", 1 << 30), ("512KiB", 512 << 10), ("-1", -1), ("4096", 4096), ("2 MB", 2 << 20)]
)
def test_sizes_read_as_people_write_them(value: str, stored: int) -> None:
    from streamd.cli.values import parse_size

    assert parse_size(value, "--max-bytes") == stored


@pytest.mark.parametrize("value", ["lots", "1XB", "-2", "-1GB", "1.5GB", "99999999999TB"])
def test_bad_sizes_are_one_line(nowhere: str, value: str) -> None:
    line = _run("stream", "add", "S", "--subject", "s", "--max-bytes", value, "--server", nowhere)
    assert "Invalid value for '--max-bytes'" in line, line


def test_serve_refuses_an_open_embedded_server_without_insecure(tmp_path: Path) -> None:
    conf = tmp_path / "streamd.toml"
    conf.write_text('host = "0.0.0.0"\n')
    line = _run("serve", "--config", str(conf), "--data", str(tmp_path / "d"))
    assert "with no authentication" in line and "--insecure" in line, line
    assert not (tmp_path / "d").exists()  # refused before anything started
