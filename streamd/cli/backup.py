"""`streamd backup STREAM FILE` and `streamd restore FILE`: save a stream to a file and bring it back.

Two modes. Snapshot (the default when the server serves streamd's snapshots: STREAM.SNAPSHOT / STREAM.RESTORE, see
snapshot_file.py) keeps sequences, times and consumer state, and restores into streamd only; `restore --stream NEW
--subject NEW.>` puts it beside the original. Message copy (`--copy`, or automatically when the server refuses
snapshots or sends its own format, as nats-server does) goes through the ordinary JetStream wire API only — so a
backup of a streamd stream restores into `nats-server -js` and the other way round; it is described below.

The message-copy file format ("streamd-backup", version 1) is gzip-compressed JSON lines, UTF-8, one JSON object per
line:

1. A header::

       {"format": "streamd-backup", "version": 1, "created": "<RFC 3339 time of the backup>",
        "stream": {<StreamInfo.config exactly as the server's API returned it>},
        "consumers": [{<ConsumerInfo.config of each durable consumer, as returned>}, ...],
        "state": {<StreamInfo.state when the backup began>}}

2. One line per stored message, in stream order::

       {"seq": <sequence in the source stream>, "subject": "...", "time": "<RFC 3339 time stored>",
        "hdrs": "<base64 of the NATS header block>" (only when the message has headers),
        "data": "<base64 of the body>"}

3. A trailer, so a truncated file is recognised::

       {"end": true, "messages": <number of message lines>}

The messages are those stored from the stream's first to its last sequence when the backup began (gaps from deleted
messages are skipped); ephemeral consumers are not saved, nor any consumer's progress (delivered and acknowledged
positions).

Restore creates the stream with the saved configuration (`--stream NEW` changes only its name), publishes every
message in order with its headers and waits for each acknowledgement (in windows of 500), then creates the consumers
(for interest retention, before the messages, so they are kept). It refuses a stream that already exists.

Restore writes only into the stream it creates. Before anything is created or published it reads the whole file once
(streaming: memory stays bounded by one line) and refuses it, with one line naming the first bad line, when:

- a message's subject is not a literal subject matched by the stream's subjects (a backup line cannot send to another
  stream or to `$JS.API.*`: API, ack and `$SYS` subjects are refused even where a pattern would cover them);
- a line is longer than 16 MiB (MAX_LINE_BYTES, decompressed: room for a 8 MiB message in base64 plus its headers),
  or the decompressed file exceeds 1 TiB (MAX_FILE_BYTES); a message's data or headers are not valid base64.

The publish pass checks each line again before publishing it (the file could change in between) and stops there.
Reading the file twice costs one more decompression, but a bad line found midway would leave a half-restored stream.
What restore cannot keep:

- Sequence numbers and stored times are assigned anew by the target server: the messages are numbered from 1 in the
  same order, stamped with the time of the restore. Sequences in consumer configs (`opt_start_seq`) are not renumbered.
- `Nats-Expected-*` headers are left out when publishing (they were checks against the source stream at the time);
  a header name repeated within one message keeps only its last value (nats-py sends one value per name).
- Messages with a `Nats-Msg-Id` seen again within the duplicate window are dropped by the target; the summary counts
  them. Server-set `_nats.*` metadata is left out. A sealed stream is sealed again after the messages are in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

import nats
import typer

from streamd.cli import snapshot_file
from streamd.cli.consumers import all_consumers
from streamd.cli.session import CliError, Session, admin_command, api_error
from streamd.client import snapshot as protocol
from streamd.wire import timefmt
from streamd.wire.subjects import is_valid_subject, matches

FORMAT = "streamd-backup"
VERSION = 1
WINDOW = 500
ACK_TIMEOUT = 10.0
MAX_LINE_BYTES = 16 << 20  # one decompressed line
MAX_FILE_BYTES = 1 << 40  # the whole decompressed file
_RESERVED_PREFIXES = ("$JS.API.", "$JS.ACK.", "$JS.FC.", "$SYS.", "$STREAMD.")

backup_app = typer.Typer()


def register(app: typer.Typer) -> None:
    """Add `streamd backup` and `streamd restore` to the root app (once)."""
    known = {c.name for c in app.registered_commands}
    app.registered_commands.extend(c for c in backup_app.registered_commands if c.name not in known)


# --------------------------------------------------------------------------- backup


async def _next_message(s: Session, name: str, seq: int) -> dict[str, Any] | None:
    """The message stored at `seq` or the next one after it; None past the end."""
    try:
        answer = await s.api(f"STREAM.MSG.GET.{name}", {"seq": seq, "next_by_subj": ">"})
    except CliError as exc:
        if "(404/10037)" in str(exc):
            return None
        raise
    message: dict[str, Any] = answer["message"]
    return message


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _Progress:
    """Progress on stderr: a bar on a terminal, a line every few seconds when piped (so a log shows it is alive),
    nothing with --json."""

    EVERY_S = 2.0

    def __init__(self, s: Session, length: int, label: str, unit: str = "messages") -> None:
        self.length, self.label, self.done, self.unit = length, label, 0, unit
        self.quiet = s.json or length <= 0
        self.bar: Any = None
        if not self.quiet and _isatty(sys.stderr):
            self.bar = typer.progressbar(length=length, label=label, file=sys.stderr)
        self.next_line = time.monotonic() + self.EVERY_S

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif not self.quiet and time.monotonic() >= self.next_line:
            self.next_line = time.monotonic() + self.EVERY_S
            typer.echo(f"{self.label}: {self.done:,} of {self.length:,} {self.unit}", err=True)


async def _messages(s: Session, name: str, first: int, last: int) -> AsyncIterator[dict[str, Any]]:
    """The stream's messages first..last in order, WINDOW requests in flight: each asks for the message at a
    sequence or the next one after it, so deleted sequences cost nothing and no message is missed or repeated."""
    seq = max(first, 1)
    while last and seq <= last:
        asks = range(seq, min(seq + WINDOW, last + 1))
        answers = await asyncio.gather(*(_next_message(s, name, q) for q in asks))
        found = {m["seq"]: m for m in answers if m is not None and m["seq"] <= last}
        for n in sorted(found):
            yield found[n]
        if answers[-1] is None or not found:
            return
        seq = max(found) + 1


@admin_command(backup_app, "backup")
async def backup(
    s: Session,
    stream: Annotated[str, typer.Argument(help="Stream to save.", show_default=False)],
    file: Annotated[Path, typer.Argument(help="File to write (replaced if it exists).")],
    copy: Annotated[
        bool, typer.Option("--copy", help="Copy messages one by one (portable to any JetStream server).")
    ] = False,
) -> None:
    """Save a stream to a file: a snapshot (sequences, times and consumer state kept; restores into streamd) when
    the server serves streamd's snapshots, else a portable message copy (see `streamd restore`)."""
    if not copy and await _snapshot_backup(s, stream, file):
        return
    await _copy_backup(s, stream, file)


async def _snapshot_backup(s: Session, stream: str, file: Path) -> bool:
    """Snapshot mode; False (nothing written) when the server does not serve snapshots in streamd's format."""
    try:
        snap = await protocol.start_snapshot(s.nc, stream, api_prefix=s.prefix)
    except protocol.SnapshotFailed as exc:
        if exc.err_code == 10064:  # an older streamd: no snapshots
            return False
        raise CliError(str(exc)) from None
    first = b""
    try:
        async for chunk in snap.chunks():
            first = chunk
            break
    except protocol.SnapshotFailed as exc:
        await snap.close()
        raise CliError(str(exc)) from None
    if not protocol.is_streamd_snapshot(first):
        await snap.close()  # a JetStream server's own format: streamd cannot restore it, so copy messages instead
        return False
    state = snap.answer.get("state") or {}
    try:
        with _Progress(s, int(state.get("bytes", 0)), "Saving", "bytes (about)") as bar:
            size = await snapshot_file.save(snap, file, snap.answer.get("config") or {}, state, first, bar.update)
    except protocol.SnapshotFailed as exc:
        raise CliError(f"{exc} — no backup written to {file}") from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise CliError(f"interrupted — no backup written to {file}") from None
    first_seq, last_seq = int(state.get("first_seq", 0)), int(state.get("last_seq", 0))
    count = int(state.get("messages", 0))
    summary = {
        "stream": stream,
        "file": str(file),
        "mode": "snapshot",
        "messages": count,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "bytes": size,
        "consumers": int(state.get("consumer_count", 0)),
    }
    s.emit(
        summary,
        lambda: typer.echo(
            f"Saved stream {stream} to {file} as a snapshot: {count} messages (sequences {first_seq}..{last_seq}), "
            f"{summary['consumers']} consumers with their state, {size:,} bytes"
        ),
    )
    return True


async def _copy_backup(s: Session, stream: str, file: Path) -> None:
    info = await s.api(f"STREAM.INFO.{stream}")
    state = info.get("state", {})
    consumers = [c["config"] for c in await all_consumers(s, stream) if c.get("config", {}).get("durable_name")]
    first, last = int(state.get("first_seq", 0)), int(state.get("last_seq", 0))
    count = 0
    try:
        with (
            snapshot_file.whole_file(file) as partial,
            gzip.open(partial, "wt", encoding="utf-8") as out,
            _Progress(s, state.get("messages", 0), "Saving") as bar,
        ):
            header = {
                "format": FORMAT,
                "version": VERSION,
                "created": timefmt.format_ns(timefmt.now_ns()),
                "stream": info["config"],
                "consumers": consumers,
                "state": state,
            }
            out.write(json.dumps(header) + "\n")
            async for msg in _messages(s, stream, first, last):
                record = {"seq": msg["seq"], "subject": msg["subject"], "time": msg.get("time", "")}
                if msg.get("hdrs"):
                    record["hdrs"] = msg["hdrs"]
                record["data"] = msg.get("data", "")
                out.write(json.dumps(record) + "\n")
                count += 1
                bar.update(1)
            out.write(json.dumps({"end": True, "messages": count}) + "\n")
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise CliError(f"interrupted after {count} messages — no backup written to {file}") from None
    summary = {
        "stream": stream,
        "file": str(file),
        "mode": "copy",
        "messages": count,
        "first_seq": first,
        "last_seq": last,
        "consumers": [c.get("durable_name") for c in consumers],
    }
    s.emit(
        summary,
        lambda: typer.echo(
            f"Saved stream {stream} to {file} as a message copy: {count} messages (sequences {first}..{last}), "
            f"{len(consumers)} consumers"
        ),
    )


# --------------------------------------------------------------------------- restore


def _lines(file: Path) -> Iterator[tuple[int, bytes]]:
    """Numbered decompressed lines, never more than MAX_LINE_BYTES of one in memory."""
    total = 0
    try:
        with gzip.open(file, "rb") as f:
            n = 0
            while line := f.readline(MAX_LINE_BYTES + 1):
                n += 1
                total += len(line)
                if len(line) > MAX_LINE_BYTES:
                    raise CliError(f"{file} line {n} is longer than {MAX_LINE_BYTES >> 20} MiB — not a streamd backup")
                if total > MAX_FILE_BYTES:
                    raise CliError(f"{file} is larger than {MAX_FILE_BYTES >> 40} TiB uncompressed — refused")
                yield n, line
    except (OSError, EOFError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CliError(f"cannot read {file}: {reason} — give a file written by `streamd backup`") from None


def _records(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, line in _lines(file):
        try:
            record = json.loads(line.decode("utf-8"))
        except ValueError:
            raise CliError(f"{file} line {n} is not UTF-8 JSON — is it a streamd backup file?") from None
        if not isinstance(record, dict):
            raise CliError(f"{file} line {n} is not a JSON object — is it a streamd backup file?")
        yield n, record


def _check_header(file: Path, header: dict[str, Any] | None) -> dict[str, Any]:
    if not header or header.get("format") != FORMAT:
        raise CliError(f"{file} is not a streamd backup file — make one with `streamd backup STREAM FILE`")
    if header.get("version") != VERSION:
        raise CliError(f"{file} is backup format version {header.get('version')}; this streamd reads {VERSION}")
    if not isinstance(header.get("stream"), dict) or not isinstance(header.get("consumers", []), list):
        raise CliError(f"{file} has a damaged header — it has no stream configuration")
    return header


def target_subjects(config: dict[str, Any], name: str) -> list[str]:
    """The subjects the restored stream will have: its own, or its name when it has none (as the servers do)."""
    subjects = config.get("subjects")
    if isinstance(subjects, list) and subjects:
        return [str(s) for s in subjects]
    return [] if config.get("sources") else [name]


class _LineCheck:
    """Is a message line safe to publish into stream `name` (subject inside its subjects, valid base64)?"""

    def __init__(self, file: Path, name: str, subjects: list[str]) -> None:
        self.file, self.name, self.subjects = file, name, subjects
        self._known: set[str] = set()  # subjects already found inside the stream's (most backups repeat them)

    def __call__(self, n: int, record: dict[str, Any]) -> None:
        subject = record.get("subject")
        where = f"{self.file} line {n}"
        if not isinstance(subject, str) or not is_valid_subject(subject, wildcards=False):
            raise CliError(f"{where} has no valid subject — the file is damaged")
        if subject not in self._known:
            self._check_subject(where, subject)
        for key in ("data", "hdrs"):
            value = record.get(key, "")
            try:
                if not isinstance(value, str):
                    raise ValueError(key)
                base64.b64decode(value, validate=True)
            except ValueError:
                raise CliError(f"{where} has invalid {key} (not base64) — the file is damaged") from None

    def _check_subject(self, where: str, subject: str) -> None:
        tokens = subject.split(".")
        if subject.startswith(_RESERVED_PREFIXES) or (tokens[0] == "$JS" and len(tokens) > 2 and tokens[2] == "API"):
            raise CliError(f"{where} names subject {subject}, a NATS or JetStream API subject — refused")
        if not any(matches(pattern, subject) for pattern in self.subjects):
            listed = ", ".join(self.subjects[:5]) + (" ..." if len(self.subjects) > 5 else "")
            raise CliError(
                f"{where} has subject {subject}, which is not one of stream {self.name}'s subjects ({listed}) — "
                "restore writes only into the stream it restores"
            )
        if len(self._known) < 100_000:
            self._known.add(subject)


def _check(file: Path, name: str | None) -> tuple[dict[str, Any], int]:
    """The header and message count of a complete backup file whose every message may go into stream `name`
    (the saved stream's name if None); a CliError naming the first bad line otherwise. Reads the whole file."""
    records = _records(file)
    first = next(records, None)
    header = _check_header(file, first[1] if first else None)
    config = header["stream"]
    name = name or str(config.get("name"))
    check = _LineCheck(file, name, target_subjects(config, name))
    count, ended = 0, False
    for n, record in records:
        if ended:
            raise CliError(f"{file} has lines after its end — the file is damaged")
        if record.get("end"):
            ended = True
            if record.get("messages") != count:
                raise CliError(f"{file} holds {count} messages but says {record.get('messages')} — it is damaged")
        elif "subject" not in record:
            raise CliError(f"{file} message {count + 1} has no subject — the file is damaged")
        else:
            check(n, record)
            count += 1
    if not ended:
        raise CliError(f"{file} is truncated (no end line after {count} messages) — take the backup again")
    return header, count


def _headers(hdrs: str) -> dict[str, str] | None:
    """A base64 NATS header block as nats-py headers, without the Nats-Expected-* checks."""
    if not hdrs:
        return None
    block = base64.b64decode(hdrs).decode(errors="surrogateescape")
    headers: dict[str, str] = {}
    for line in block.split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip() and not key.strip().lower().startswith("nats-expected-"):
            headers[key.strip()] = value.strip()
    return headers or None


def _without_server_metadata(config: dict[str, Any]) -> dict[str, Any]:
    config = dict(config)
    meta = config.get("metadata")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if not str(k).startswith("_nats.")}
        if kept:
            config["metadata"] = kept
        else:
            config.pop("metadata")
    return config


class _Publisher:
    """Publishes in order with a reply inbox per message and waits for the PubAcks a window at a time."""

    def __init__(self, s: Session, stream: str) -> None:
        self.s, self.stream = s, stream
        self.inbox = s.nc.new_inbox()
        self.sub: Any = None
        self.pending: list[str] = []  # subjects published whose acks are not in yet
        self.stored = self.duplicates = 0
        self.first_seq = self.last_seq = 0

    async def start(self) -> None:
        self.sub = await self.s.nc.subscribe(f"{self.inbox}.*")

    async def publish(self, record: dict[str, Any]) -> None:
        data = base64.b64decode(record.get("data") or "")
        reply = f"{self.inbox}.{len(self.pending)}"
        await self.s.nc.publish(record["subject"], data, reply=reply, headers=_headers(record.get("hdrs", "")))
        self.pending.append(record["subject"])
        if len(self.pending) >= WINDOW:
            await self.wait()

    async def wait(self) -> None:
        acks: dict[int, dict[str, Any]] = {}
        while len(acks) < len(self.pending):
            try:
                msg = await self.sub.next_msg(timeout=ACK_TIMEOUT)
            except nats.errors.TimeoutError:
                raise CliError(
                    f"no acknowledgement from stream {self.stream} within {ACK_TIMEOUT:g}s — is the server healthy?"
                ) from None
            index = int(msg.subject.rsplit(".", 1)[1])
            subject = self.pending[index]
            if msg.headers and msg.headers.get("Status") == "503":
                raise CliError(
                    f"no stream stores subject {subject} — stream {self.stream}'s subjects do not cover every "
                    "saved message (or another stream took them)"
                )
            try:
                ack = json.loads(msg.data)
            except ValueError:
                raise CliError(f"the answer on {subject} is not a stream acknowledgement") from None
            if "error" in ack:
                raise api_error(ack["error"])
            if ack.get("stream") != self.stream:
                raise CliError(f"subject {subject} is stored by stream {ack.get('stream')}, not {self.stream}")
            acks[index] = ack
        for index in range(len(self.pending)):
            ack = acks[index]
            if ack.get("duplicate"):
                self.duplicates += 1
            else:
                self.stored += 1
                self.first_seq = self.first_seq or int(ack["seq"])
                self.last_seq = int(ack["seq"])
        self.pending = []

    async def close(self) -> None:
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()


async def _create_consumers(s: Session, stream: str, configs: list[dict[str, Any]]) -> list[str]:
    names = []
    for config in configs:
        config = _without_server_metadata(config)
        name = config.get("durable_name") or config.get("name")
        await s.api(f"CONSUMER.CREATE.{stream}.{name}", {"stream_name": stream, "config": config})
        names.append(str(name))
    return names


async def _require_absent(s: Session, name: str) -> None:
    """Restore never writes into an existing stream: its sequences and consumers would no longer match the file's."""
    try:
        await s.api(f"STREAM.INFO.{name}")
    except CliError as exc:
        if "(404/10059)" not in str(exc):
            raise
    else:
        raise CliError(f"stream {name} already exists — delete it first, or restore under another name with --stream")


async def _publish_messages(s: Session, file: Path, name: str, total: int, check: _LineCheck) -> _Publisher:
    """Publish the file's messages to the new stream, in order; an interruption says what is left to clean up."""
    pub = _Publisher(s, name)
    await pub.start()
    done = 0
    try:
        with _Progress(s, total, "Restoring") as bar:
            records = _records(file)
            next(records)  # the header
            for n, record in records:
                if record.get("end"):
                    break
                check(n, record)  # again: the file may have changed since the first pass
                await pub.publish(record)
                done += 1
                bar.update(1)
            await pub.wait()
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise CliError(
            f"interrupted after publishing {done} of {total} messages — stream {name} is incomplete; "
            f"delete it with `streamd stream delete {name}` before restoring again"
        ) from None
    except CliError as exc:
        raise CliError(
            f"{exc} (stream {name} is incomplete: delete it with `streamd stream delete {name}` before trying again)"
        ) from None
    finally:
        await pub.close()
    return pub


@admin_command(backup_app, "restore")
async def restore(
    s: Session,
    file: Annotated[Path, typer.Argument(help="File written by `streamd backup`.", show_default=False)],
    stream: Annotated[str | None, typer.Option("--stream", help="Create the stream under this name instead.")] = None,
    subject: Annotated[
        list[str] | None,
        typer.Option("--subject", help="Replace the stream's subjects (repeat for more); snapshot backups only."),
    ] = None,
) -> None:
    """Create a stream from a backup file: a snapshot keeps sequences, times and consumer state; a message copy
    is published anew (renumbered from 1) with its durable consumers."""
    if snapshot_file.is_snapshot_file(file):
        await _snapshot_restore(s, file, stream, subject or [])
        return
    if subject:
        raise CliError(
            f"{file} is a message copy: its messages can only go back on their own subjects, so --subject needs a "
            "snapshot backup (`streamd backup` without --copy, from streamd)"
        )
    await _copy_restore(s, file, stream)


async def _snapshot_restore(s: Session, file: Path, stream: str | None, subjects: list[str]) -> None:
    header, size = snapshot_file.read_header(file)
    config = _without_server_metadata(header["stream"])
    name = stream or str(config.get("name"))
    config["name"] = name
    if subjects:
        for subject in subjects:
            if not is_valid_subject(subject):
                raise CliError(f"--subject {subject!r} is not a valid subject")
        config["subjects"] = subjects
    await _require_absent(s, name)
    try:
        with _Progress(s, size, "Restoring", "bytes") as bar:
            info = await protocol.restore(
                s.nc, name, config, snapshot_file.payload(file), api_prefix=s.prefix, progress=bar.update
            )
    except protocol.SnapshotFailed as exc:
        hint = ""
        if exc.err_code == 10065:
            hint = " — restore beside the original with --stream NEW --subject NEW.>"
        elif exc.err_code in (10062, 0):
            hint = " (a snapshot backup restores only into streamd; `streamd backup --copy` makes a portable one)"
        raise CliError(f"{exc}{hint}") from None
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}") from None
    state = info.get("state") or {}
    summary = {
        "stream": name,
        "mode": "snapshot",
        "messages": int(state.get("messages", 0)),
        "first_seq": int(state.get("first_seq", 0)),
        "last_seq": int(state.get("last_seq", 0)),
        "consumers": int(state.get("consumer_count", 0)),
    }

    def text() -> None:
        typer.echo(
            f"Restored stream {name} from snapshot {file}: {summary['messages']} messages, sequences "
            f"{summary['first_seq']}..{summary['last_seq']} and times as they were, {summary['consumers']} "
            "consumers with their state"
        )

    s.emit(summary, text)


async def _copy_restore(s: Session, file: Path, stream: str | None) -> None:
    header, total = _check(file, stream)
    config = _without_server_metadata(header["stream"])
    name = stream or str(config.get("name"))
    check = _LineCheck(file, name, target_subjects(config, name))
    config["name"] = name
    if config.get("mirror"):
        raise CliError(f"stream {name} is a mirror — create it with `streamd stream add`; it copies its origin")
    sealed = bool(config.pop("sealed", False))
    await _require_absent(s, name)
    await s.api(f"STREAM.CREATE.{name}", config)
    consumer_configs: list[dict[str, Any]] = header.get("consumers") or []
    consumers: list[str] = []
    interest = config.get("retention") == "interest"
    if interest:
        consumers = await _create_consumers(s, name, consumer_configs)
    pub = await _publish_messages(s, file, name, total, check)
    if not interest:
        consumers = await _create_consumers(s, name, consumer_configs)
    if sealed:
        await s.api(f"STREAM.UPDATE.{name}", {**config, "sealed": True})
    summary = {
        "stream": name,
        "mode": "copy",
        "messages": pub.stored,
        "duplicates": pub.duplicates,
        "first_seq": pub.first_seq,
        "last_seq": pub.last_seq,
        "consumers": consumers,
        "sealed": sealed,
    }

    def text() -> None:
        dups = f" ({pub.duplicates} dropped as duplicates)" if pub.duplicates else ""
        typer.echo(
            f"Restored stream {name} from {file} (message copy): {pub.stored} of {total} messages{dups}, "
            f"{len(consumers)} consumers"
        )
        if pub.stored:
            state = header.get("state") or {}
            typer.echo(
                f"Sequences and times were assigned anew: {pub.first_seq}..{pub.last_seq} "
                f"(were {state.get('first_seq', '?')}..{state.get('last_seq', '?')})"
            )
        if sealed:
            typer.echo(f"Stream {name} is sealed again, as it was")

    s.emit(summary, text)


__all__ = ["backup_app", "register"]
