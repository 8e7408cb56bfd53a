"""`streamd stream …`: create, change, inspect and empty streams; read their messages.

They speak the JetStream wire API through nats-py, so they work against streamd and a real `nats-server -js` alike.
"""

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from streamd.cli.options import Force, StreamName
from streamd.cli.output import confirm, print_pairs, print_table
from streamd.cli.session import CliError, Session, admin_command
from streamd.cli.values import checked, choice, format_duration, parse_duration, parse_size, parse_time
from streamd.wire import timefmt

stream_app = typer.Typer(help="Create, change, inspect and empty streams; read their messages.", no_args_is_help=True)


# --------------------------------------------------------------------------- shared option types

Subjects = Annotated[
    list[str] | None, typer.Option("--subject", help="Subject the stream stores (repeatable; wildcards allowed).")
]
Retention = Annotated[str | None, typer.Option(help="limits, interest or workqueue [limits].")]
MaxMessages = Annotated[int | None, typer.Option(help="Most messages kept (-1: unlimited).")]
MaxBytes = Annotated[
    str | None, typer.Option(help="Most bytes kept, e.g. 10GB (-1: unlimited).", callback=checked(parse_size))
]
MaxAge = Annotated[
    str | None, typer.Option(help="Oldest message kept, e.g. 1h, 7d (0: unlimited).", callback=checked(parse_duration))
]
MaxPerSubject = Annotated[int | None, typer.Option(help="Most messages kept per subject (-1: unlimited).")]
MaxMessageSize = Annotated[
    str | None, typer.Option(help="Largest message accepted, e.g. 1MB (-1: unlimited).", callback=checked(parse_size))
]
Discard = Annotated[str | None, typer.Option(help="At a limit: old (drop the oldest) or new (refuse the new one).")]
DuplicateWindow = Annotated[
    str | None,
    typer.Option(help="How long Nats-Msg-Id values are remembered, e.g. 2m.", callback=checked(parse_duration)),
]
AllowDirect = Annotated[bool | None, typer.Option("--allow-direct/--no-allow-direct", help="Allow direct gets.")]
AllowRollup = Annotated[
    bool | None, typer.Option("--allow-rollup/--no-allow-rollup", help="Allow Nats-Rollup headers.")
]
DenyDelete = Annotated[bool | None, typer.Option("--deny-delete/--no-deny-delete", help="Refuse message deletes.")]
DenyPurge = Annotated[bool | None, typer.Option("--deny-purge/--no-deny-purge", help="Refuse purges.")]
Description = Annotated[str | None, typer.Option(help="Free text describing the stream.")]


def _size(value: str | None, what: str) -> int | None:
    return None if value is None else parse_size(value, what)


@dataclass(frozen=True)
class StreamSettings:
    """The stream settings `stream add` and `stream edit` take; a setting not given is left out."""

    subject: Subjects = None
    retention: Retention = None
    max_messages: MaxMessages = None
    max_bytes: MaxBytes = None
    max_age: MaxAge = None
    max_messages_per_subject: MaxPerSubject = None
    max_message_size: MaxMessageSize = None
    discard: Discard = None
    duplicate_window: DuplicateWindow = None
    allow_direct: AllowDirect = None
    allow_rollup: AllowRollup = None
    deny_delete: DenyDelete = None
    deny_purge: DenyPurge = None
    description: Description = None

    def config(self) -> dict[str, Any]:
        """The stream config fields the flags give."""
        window = self.duplicate_window
        changes: dict[str, Any] = {
            "subjects": self.subject or None,
            "retention": choice(self.retention, ("limits", "interest", "workqueue"), "--retention")
            if self.retention
            else None,
            "max_msgs": self.max_messages,
            "max_bytes": _size(self.max_bytes, "--max-bytes"),
            "max_age": parse_duration(self.max_age, "--max-age") if self.max_age is not None else None,
            "max_msgs_per_subject": self.max_messages_per_subject,
            "max_msg_size": _size(self.max_message_size, "--max-message-size"),
            "discard": choice(self.discard, ("old", "new"), "--discard") if self.discard else None,
            "duplicate_window": parse_duration(window, "--duplicate-window") if window is not None else None,
            "allow_direct": self.allow_direct,
            "allow_rollup_hdrs": self.allow_rollup,
            "deny_delete": self.deny_delete,
            "deny_purge": self.deny_purge,
            "description": self.description,
        }
        return {k: v for k, v in changes.items() if v is not None}


def _limit(value: int) -> str:
    return "unlimited" if value is None or value < 0 else f"{value:,}"


def _age(ns: int) -> str:
    return "unlimited" if not ns else format_duration(ns)


def _print_stream(info: dict[str, Any], heading: str = "") -> None:
    if heading:
        typer.echo(heading)
    cfg, state = info.get("config", {}), info.get("state", {})
    print_pairs(
        f"Stream {cfg.get('name')}" + (f" — {cfg['description']}" if cfg.get("description") else ""),
        [
            ("Subjects", ", ".join(cfg.get("subjects") or []) or "(none)"),
            ("Retention", cfg.get("retention", "limits")),
            ("Storage", cfg.get("storage", "file")),
            ("Maximum messages", _limit(cfg.get("max_msgs", -1))),
            ("Maximum bytes", _limit(cfg.get("max_bytes", -1))),
            ("Maximum age", _age(cfg.get("max_age", 0))),
            ("Maximum messages per subject", _limit(cfg.get("max_msgs_per_subject", -1))),
            ("Maximum message size", _limit(cfg.get("max_msg_size", -1))),
            ("Discard policy", cfg.get("discard", "old")),
            ("Duplicate window", format_duration(cfg.get("duplicate_window", 0))),
            ("Direct get allowed", _yes(cfg.get("allow_direct"))),
            ("Rollup allowed", _yes(cfg.get("allow_rollup_hdrs"))),
            ("Deletes denied", _yes(cfg.get("deny_delete"))),
            ("Purges denied", _yes(cfg.get("deny_purge"))),
            ("Sealed", _yes(cfg.get("sealed"))),
            ("Created", info.get("created", "")),
        ],
    )
    print_pairs(
        "State",
        [
            ("Messages", f"{state.get('messages', 0):,}"),
            ("Bytes", f"{state.get('bytes', 0):,}"),
            ("First sequence", _seq_at(state.get("first_seq", 0), state.get("first_ts", ""), state)),
            ("Last sequence", _seq_at(state.get("last_seq", 0), state.get("last_ts", ""), state)),
            ("Deleted messages", state.get("num_deleted", 0)),
            ("Subjects", state.get("num_subjects", 0)),
            ("Consumers", state.get("consumer_count", 0)),
        ],
    )


def _seq_at(seq: int, ts: str, state: dict[str, Any]) -> str:
    return f"{seq} at {ts}" if state.get("messages") else f"{seq} (no messages stored)"


def _yes(value: object) -> str:
    return "yes" if value else "no"


# --------------------------------------------------------------------------- stream commands


@admin_command(stream_app, "add")
async def stream_add(
    s: Session,
    name: StreamName,
    settings: StreamSettings,
    config_file: Annotated[
        Path | None,
        typer.Option("--config-file", help="JSON stream configuration (as `stream info --json` prints); flags win."),
    ] = None,
) -> None:
    """Create a stream that stores the messages published on its subjects."""
    config: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read stream configuration {config_file}: {exc} — give a JSON file") from None
        config = loaded.get("config", loaded) if isinstance(loaded, dict) else {}
    config.update(settings.config())
    config["name"] = name
    if not config.get("subjects"):
        raise CliError(f"stream {name} needs at least one --subject — e.g. --subject '{name.lower()}.>'")
    config.setdefault("storage", "file")
    config.setdefault("num_replicas", 1)
    info = await s.api(f"STREAM.CREATE.{name}", config)
    s.emit(info, lambda: _print_stream(info, f"Created stream {name}"))


@admin_command(stream_app, "edit")
async def stream_edit(
    s: Session,
    name: StreamName,
    settings: StreamSettings,
) -> None:
    """Change a stream: only the settings given change."""
    changes = settings.config()
    if not changes:
        raise CliError(f"nothing to change in stream {name} — give the settings to change, see --help")
    current = await s.api(f"STREAM.INFO.{name}")
    config = {**current["config"], **changes}
    info = await s.api(f"STREAM.UPDATE.{name}", config)
    s.emit(info, lambda: _print_stream(info, f"Changed stream {name}: {', '.join(sorted(changes))}"))


@admin_command(stream_app, "info")
async def stream_info(s: Session, name: StreamName) -> None:
    """Show a stream's configuration and state."""
    info = await s.api(f"STREAM.INFO.{name}")
    s.emit(info, lambda: _print_stream(info))


async def _all_streams(s: Session) -> list[dict[str, Any]]:
    streams: list[dict[str, Any]] = []
    while True:
        page = await s.api("STREAM.LIST", {"offset": len(streams)})
        got = page.get("streams") or []
        streams.extend(got)
        if not got or len(streams) >= page.get("total", 0):
            return streams


@admin_command(stream_app, "list")
async def stream_list(s: Session) -> None:
    """List every stream with its size."""
    streams = await _all_streams(s)

    def text() -> None:
        if not streams:
            typer.echo("No streams. Create one with `streamd stream add NAME --subject SUBJECT`.")
            return
        rows = []
        for st in sorted(streams, key=lambda x: x["config"]["name"]):
            cfg, state = st["config"], st["state"]
            rows.append(
                (
                    cfg["name"],
                    ", ".join(cfg.get("subjects") or []),
                    f"{state.get('messages', 0):,}",
                    f"{state.get('bytes', 0):,}",
                    state.get("consumer_count", 0),
                    state.get("last_ts", "") if state.get("last_seq") else "never",
                )
            )
        print_table(("Name", "Subjects", "Messages", "Bytes", "Consumers", "Last message"), rows)

    s.emit(streams, text)


@admin_command(stream_app, "delete")
async def stream_delete(s: Session, name: StreamName, force: Force = False) -> None:
    """Delete a stream with all its messages and consumers."""
    if not force:
        await s.api(f"STREAM.INFO.{name}")
        confirm(f"Delete stream {name} with all its messages and consumers?")
    result = await s.api(f"STREAM.DELETE.{name}")
    s.emit(result, lambda: typer.echo(f"Deleted stream {name}"))


@dataclass(frozen=True)
class PurgeScope:
    """What `stream purge` removes: everything, or by subject, by sequence, or all but the newest N."""

    subject: Annotated[str | None, typer.Option(help="Purge only messages on this subject (wildcards allowed).")] = None
    sequence: Annotated[int | None, typer.Option(help="Purge messages before this sequence.")] = None
    keep: Annotated[int | None, typer.Option(help="Keep this many of the newest messages.")] = None

    def request(self) -> dict[str, Any]:
        """The STREAM.PURGE request body; empty for a purge of everything."""
        if self.sequence is not None and self.keep is not None:
            raise CliError("give --sequence or --keep, not both")
        body = {"filter": self.subject or None, "seq": self.sequence, "keep": self.keep}
        return {k: v for k, v in body.items() if v is not None}


@admin_command(stream_app, "purge")
async def stream_purge(s: Session, name: StreamName, scope: PurgeScope, force: Force = False) -> None:
    """Remove messages from a stream (all, or by subject, sequence or count to keep)."""
    body = scope.request()
    if not force and not body:
        await s.api(f"STREAM.INFO.{name}")
        confirm(f"Purge every message of stream {name}?")
    result = await s.api(f"STREAM.PURGE.{name}", body or None)
    s.emit(result, lambda: typer.echo(f"Purged {result.get('purged', 0):,} messages from stream {name}"))


def _decode_headers(raw: bytes) -> list[tuple[str, str]]:
    lines = raw.decode(errors="replace").split("\r\n")
    out: list[tuple[str, str]] = []
    if lines and lines[0].startswith("NATS/1.0"):
        status = lines[0][len("NATS/1.0") :].strip()
        if status:
            out.append(("Status", status))
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            out.append((k.strip(), v.strip()))
    return out


def _stored_message(msg: dict[str, Any]) -> dict[str, Any]:
    """A MSG.GET message with headers and data decoded, for JSON output."""
    hdrs = base64.b64decode(msg["hdrs"]) if msg.get("hdrs") else b""
    data = base64.b64decode(msg["data"]) if msg.get("data") else b""
    return {
        "subject": msg.get("subject", ""),
        "seq": msg.get("seq", 0),
        "time": msg.get("time", ""),
        "headers": dict(_decode_headers(hdrs)),
        "data": data.decode(errors="replace"),
    }


def _print_message(m: dict[str, Any]) -> None:
    typer.echo(f"[{m['seq']}] {m['time']} {m['subject']}")
    for k, v in m["headers"].items():
        typer.echo(f"  {k}: {v}")
    typer.echo(m["data"])
    typer.echo("")


@admin_command(stream_app, "get")
async def stream_get(
    s: Session,
    name: StreamName,
    sequence: Annotated[int | None, typer.Option(help="The message with this sequence.")] = None,
    last_for: Annotated[str | None, typer.Option(help="The newest message on this subject.")] = None,
) -> None:
    """Print one stored message with its headers."""
    if (sequence is None) == (last_for is None):
        raise CliError("give either --sequence N or --last-for SUBJECT")
    body: dict[str, Any] = {"seq": sequence} if sequence is not None else {"last_by_subj": last_for}
    msg = _stored_message((await s.api(f"STREAM.MSG.GET.{name}", body))["message"])
    s.emit(msg, lambda: _print_message(msg))


@admin_command(stream_app, "delete-message")
async def stream_delete_message(
    s: Session,
    name: StreamName,
    sequence: Annotated[int, typer.Argument(help="Sequence of the message to delete.", show_default=False)],
) -> None:
    """Delete one message by its sequence."""
    result = await s.api(f"STREAM.MSG.DELETE.{name}", {"seq": sequence})
    s.emit(result, lambda: typer.echo(f"Deleted message {sequence} from stream {name}"))


async def _next_message(s: Session, name: str, seq: int) -> dict[str, Any] | None:
    try:
        return (await s.api(f"STREAM.MSG.GET.{name}", {"seq": seq, "next_by_subj": ">"}))["message"]  # type: ignore[no-any-return]
    except CliError as exc:
        if "(404/10037)" in str(exc):
            return None
        raise


async def _first_at_or_after(s: Session, name: str, first: int, last: int, since_ns: int) -> int:
    """The lowest sequence stored at or after `since_ns` (sequences grow with time), by bisection."""
    lo, hi = first, last + 1
    while lo < hi:
        mid = (lo + hi) // 2
        msg = await _next_message(s, name, mid)
        if msg is None:
            hi = mid
        elif timefmt.parse(msg["time"]) >= since_ns:
            hi = mid
        else:
            lo = msg["seq"] + 1
    return lo


@admin_command(stream_app, "view")
async def stream_view(
    s: Session,
    name: StreamName,
    since: Annotated[
        str | None, typer.Option(help="Start at this sequence, RFC 3339 time, or duration ago (e.g. 1h).")
    ] = None,
    last: Annotated[int | None, typer.Option(help="Only the newest N messages.")] = None,
    limit: Annotated[int, typer.Option(help="Print at most this many messages.")] = 100,
) -> None:
    """Print stored messages, oldest first, with their headers."""
    state = (await s.api(f"STREAM.INFO.{name}"))["state"]
    first, last_seq = state.get("first_seq", 0), state.get("last_seq", 0)
    start = first
    if since is not None:
        start = (
            int(since)
            if since.isdigit()
            else await _first_at_or_after(s, name, first, last_seq, parse_time(since, "--since"))
        )
    if last is not None:
        start = max(start, last_seq - last + 1)
    messages: list[dict[str, Any]] = []
    seq = max(start, 1)
    while len(messages) < limit and seq <= last_seq:
        msg = await _next_message(s, name, seq)
        if msg is None:
            break
        messages.append(_stored_message(msg))
        seq = msg["seq"] + 1

    def text() -> None:
        if not messages:
            typer.echo(f"No messages in stream {name} from sequence {start}.")
        for m in messages:
            _print_message(m)

    s.emit(messages, text)
