"""Plain-text output for people: aligned tables and key/value blocks (`--json` bypasses them)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence

import typer

from streamd.cli.session import CliError


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Iterator[str]:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        yield "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        if n == 0:
            yield "  ".join("-" * w for w in widths)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    for line in table(headers, rows):
        typer.echo(line)


def print_pairs(title: str, pairs: Sequence[tuple[str, object]]) -> None:
    typer.echo(title)
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        typer.echo(f"  {key.rjust(width)}: {value}")


def stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def confirm(question: str) -> None:
    """Ask before destroying data; with no answer to read (stdin not a terminal, nothing piped), say how to go on."""
    try:
        answered = typer.confirm(question)
    except typer.Abort:
        if stdin_is_tty():
            raise
        raise CliError("no answer to the confirmation (stdin is not a terminal) — add --force to go ahead") from None
    if not answered:
        raise typer.Abort()
