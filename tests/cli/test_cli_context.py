from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from streamd.cli.app import app
from streamd.cli.values import format_duration, parse_duration
from tests.cli import cli, ok
from tests.natsd import NatsServer

_CLEAN = dict.fromkeys(("STREAMD_SERVER", "STREAMD_CONFIG", "STREAMD_DOMAIN", "STREAMD_USER", "STREAMD_TOKEN"))


def _context(*args: str, env: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    result = CliRunner(env={**_CLEAN, **(env or {})}).invoke(app, ["context", "--json", *args])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_defaults_and_sources(tmp_path: Path) -> None:
    ctx = _context()
    assert ctx["Server"] == {"value": "nats://127.0.0.1:4222", "from": "default"}
    assert ctx["API prefix"]["value"] == "$JS.API"
    assert ctx["Authentication"]["value"] == "none"

    conf = tmp_path / "streamd.toml"
    conf.write_text('server = "nats://file:4222"\ndomain = "edge"\nuser = "app"\npassword = "s3cret"\n')
    ctx = _context("--config", str(conf))
    assert ctx["Server"] == {"value": "nats://file:4222", "from": f"config file {conf}"}
    assert ctx["API prefix"] == {"value": "$JS.edge.API", "from": f"config file {conf}"}
    assert ctx["Password"]["value"] == "(hidden)" and ctx["User"]["value"] == "app"
    assert ctx["Config file"]["from"] == "--config flag"

    ctx = _context(env={"STREAMD_CONFIG": str(conf), "STREAMD_SERVER": "nats://env:4222"})
    assert ctx["Server"] == {"value": "nats://env:4222", "from": "STREAMD_SERVER variable"}
    assert ctx["Config file"]["from"] == "STREAMD_CONFIG variable"

    ctx = _context("--server", "nats://flag:4222", "--domain", "hub", env={"STREAMD_SERVER": "nats://env:4222"})
    assert ctx["Server"] == {"value": "nats://flag:4222", "from": "--server flag"}
    assert ctx["API prefix"] == {"value": "$JS.hub.API", "from": "--domain flag"}


def test_context_table_and_verbose(tmp_path: Path) -> None:
    result = CliRunner(env=_CLEAN).invoke(app, ["context", "--token", "abc"])
    assert result.exit_code == 0
    assert "nats://127.0.0.1:4222" in result.stdout and "--token flag" in result.stdout
    assert "abc" not in result.stdout
    bad = CliRunner(env=_CLEAN).invoke(app, ["context", "--config", str(tmp_path / "missing.toml")])
    assert bad.exit_code == 1 and bad.stderr.startswith("streamd: cannot read config file")


async def test_verbose_prints_settings_on_stderr(streamd: object, nats_server: NatsServer) -> None:
    result = await cli(nats_server.url, "stream", "list", "-v")
    assert result.exit_code == 0
    assert f"Server: {nats_server.url}  (from --server flag)" in result.stderr
    assert "API prefix: $JS.API" in result.stderr and "No streams" in result.stdout


async def test_wrong_domain_says_what_to_do(streamd: object, nats_server: NatsServer) -> None:
    result = await cli(nats_server.url, "stream", "list", "--domain", "nowhere")
    assert result.exit_code == 1
    assert "nobody answers the JetStream API $JS.nowhere.API" in result.stderr
    assert "check --server and --domain" in result.stderr
    assert "ORDERS" not in await ok(nats_server.url, "stream", "list")


def test_durations() -> None:
    assert parse_duration("30s") == 30 * 10**9
    assert parse_duration("1h30m") == 5400 * 10**9
    assert parse_duration("500ms") == 500 * 10**6
    assert parse_duration("1.5s") == 1_500_000_000
    assert parse_duration("0") == 0
    assert format_duration(5400 * 10**9) == "1h30m" and format_duration(120 * 10**9) == "2m"
