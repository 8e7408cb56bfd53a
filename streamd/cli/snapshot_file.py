"""Backup files in snapshot mode: what `streamd backup` writes when the server serves STREAM.SNAPSHOT in streamd's
format, and `streamd restore` sends back through STREAM.RESTORE, so sequences, times and consumer state are kept.

The file is one JSON header line, then the snapshot payload exactly as the server sent it (already compressed and
checked end to end by its own digest, which the server verifies on restore)::

    {"format": "streamd-snapshot", "version": 1, "created": "<RFC 3339>", "stream": {<config>}, "state": {<state>}}
    <snapshot bytes>
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from streamd.cli.session import CliError
from streamd.client import snapshot as protocol
from streamd.wire import timefmt

FORMAT = "streamd-snapshot"
VERSION = 1
MAGIC = b'{"format": "streamd-snapshot"'
MAX_HEADER = 16 << 20
READ_SIZE = 128 * 1024


def is_snapshot_file(file: Path) -> bool:
    try:
        with file.open("rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


@contextlib.contextmanager
def whole_file(file: Path) -> Iterator[Path]:
    """A path beside `file` to write to, renamed to `file` when the block ends well and removed otherwise: a backup
    file never exists half written."""
    partial = file.with_name(f".{file.name}.partial")
    try:
        yield partial
        os.replace(partial, file)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise CliError(f"cannot write {file}: {exc.strerror or exc} — check the path and free space") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


async def save(
    snap: protocol.Snapshot,
    file: Path,
    config: dict[str, Any],
    state: dict[str, Any],
    first: bytes,
    progress: Callable[[int], None],
) -> int:
    """Write the header, `first` (the chunk already read) and the rest of the transfer; -> bytes of payload.
    The file appears only when complete (written beside it, then renamed)."""
    header = {
        "format": FORMAT,
        "version": VERSION,
        "created": timefmt.format_ns(timefmt.now_ns()),
        "stream": config,
        "state": state,
    }
    total = 0
    try:
        with whole_file(file) as partial, partial.open("wb") as out:
            out.write(json.dumps(header).encode() + b"\n")
            out.write(first)
            total += len(first)
            progress(len(first))
            async for chunk in snap.chunks():
                out.write(chunk)
                total += len(chunk)
                progress(len(chunk))
    finally:
        await snap.close()
    return total


def read_header(file: Path) -> tuple[dict[str, Any], int]:
    """The header of a snapshot-mode backup and the payload's size."""
    try:
        with file.open("rb") as f:
            line = f.readline(MAX_HEADER + 1)
            size = os.fstat(f.fileno()).st_size - len(line)
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        header = json.loads(line)
    except ValueError:
        raise CliError(f"{file} has a damaged header — it is not a complete streamd backup") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("stream"), dict):
        raise CliError(f"{file} has a damaged header — it is not a complete streamd backup")
    if header.get("version") != VERSION:
        raise CliError(f"{file} is snapshot backup version {header.get('version')}; this streamd reads {VERSION}")
    return header, size


async def payload(file: Path) -> AsyncIterator[bytes]:
    """The snapshot bytes after the header line, READ_SIZE at a time."""
    with file.open("rb") as f:
        f.readline(MAX_HEADER + 1)
        while chunk := f.read(READ_SIZE):
            yield chunk
