"""Tests of the admin command line, run with typer's CliRunner against a real streamd or nats-server -js."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from typer.testing import CliRunner, Result

from streamd.cli.app import app


async def cli(server: str, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run `streamd ARGS --server SERVER` in a worker thread, so the in-process streamd keeps serving."""
    runner = CliRunner(env={"STREAMD_SERVER": None, "STREAMD_CONFIG": None, **(env or {})})
    return await asyncio.to_thread(runner.invoke, app, [*args, "--server", server], input=input)


async def ok(server: str, *args: str, input: str | None = None) -> str:
    result = await cli(server, *args, input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


async def ok_json(server: str, *args: str, input: str | None = None) -> Any:
    return json.loads(await ok(server, *args, "--json", input=input))


def one_line_error(result: Result) -> str:
    """The single `streamd: …` line a user error prints; no traceback."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamd: "), result.stderr
    return lines[0]
