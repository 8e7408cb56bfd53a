"""The README is executable: its Python quick start and its command-line tour run, line by line, against a fresh
streamd, so the README and the product cannot drift apart."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from pathlib import Path

from tests.natsd import NatsServer

README = Path(__file__).resolve().parents[1] / "README.md"
TOUR_MARK = "<!-- tests/test_readme.py runs this block"


def _blocks(lang: str) -> list[tuple[int, str]]:
    """(line number, text) of each fenced block of `lang`."""
    text = README.read_text()
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(1))
        for m in re.finditer(rf"^```{lang}\n(.*?)^```$", text, flags=re.M | re.S)
    ]


def _tour() -> tuple[int, list[str]]:
    text = README.read_text()
    start = text.index(TOUR_MARK)
    first_line, block = next((n, b) for n, b in _blocks("sh") if n > text.count("\n", 0, start))
    return first_line, block.splitlines()


async def _run(line: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", line, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_the_command_line_tour_runs_line_by_line(
    streamd: object, nats_server: NatsServer, tmp_path: Path
) -> None:
    first, lines = _tour()
    env = {
        **os.environ,
        "STREAMD_SERVER": nats_server.url,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env.pop("STREAMD_CONFIG", None)
    ran = 0
    for n, line in enumerate(lines, start=first):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert shlex.split(line, comments=True)[0] == "streamd", f"README.md:{n} is not a streamd command: {line}"
        code, out = await _run(line, env, tmp_path)
        assert code == 0, f"README.md:{n} failed with exit {code}: {line}\n{out}"
        ran += 1
    assert ran >= 10


async def test_the_python_quick_start_runs(streamd: object, nats_server: NatsServer, tmp_path: Path) -> None:
    snippet = next(b for _, b in _blocks("python") if "nats.connect(" in b and "HELLO" in b)
    script = tmp_path / "quick_start.py"
    script.write_text(snippet.replace("nats://127.0.0.1:4222", nats_server.url))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    assert "PubAck(stream='HELLO', seq=1" in out.decode() and "b'hello'" in out.decode()
