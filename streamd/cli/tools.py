"""`streamd publish`, `streamd context` and `streamd report`."""

import json
import sys
from typing import Annotated, Any

import nats
import typer

from streamd.cli.consumers import all_consumers
from streamd.cli.output import print_table, stdin_is_tty
from streamd.cli.session import CliError, Session, admin_command, api_error
from streamd.wire.subjects import is_valid_subject

top_app = typer.Typer()


def _read_stdin() -> bytes:
    stream = getattr(sys.stdin, "buffer", None)
    return stream.read() if stream is not None else sys.stdin.read().encode()


def _headers(pairs: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition(":")
        if not sep or not key.strip():
            raise CliError(f"invalid --header {pair!r} — use KEY:VALUE, e.g. --header Trace-Id:42")
        headers[key.strip()] = value.strip()
    return headers


def _literal(subject: str) -> str:
    """A message is published on one subject: wildcards would be stored literally, as nobody means them."""
    if not is_valid_subject(subject, wildcards=False):
        raise typer.BadParameter(f"{subject!r} is not a subject to publish on — no spaces, empty tokens or wildcards")
    return subject


@admin_command(top_app, "publish")
async def publish(
    s: Session,
    subject: Annotated[str, typer.Argument(help="Subject to publish on.", show_default=False, callback=_literal)],
    data: Annotated[
        str | None, typer.Argument(help="Message body; `-` or absent reads stdin (when it is not a terminal).")
    ] = None,
    count: Annotated[int, typer.Option(help="Publish N messages; `{n}` in the body becomes 1..N.")] = 1,
    header: Annotated[list[str] | None, typer.Option(help="Header KEY:VALUE (repeatable).")] = None,
    msg_id: Annotated[
        str | None, typer.Option(help="Nats-Msg-Id for deduplication (`{n}` becomes the message number).")
    ] = None,
) -> None:
    """Publish to a stream subject and wait for the stream's acknowledgement."""
    if count < 1:
        raise CliError("--count must be at least 1")
    if data == "-" or (data is None and not stdin_is_tty()):
        body = _read_stdin().decode(errors="surrogateescape")
    else:
        body = data or ""
    headers = _headers(header or [])
    acks: list[dict[str, Any]] = []
    for n in range(1, count + 1):
        hdrs = dict(headers)
        if msg_id:
            hdrs["Nats-Msg-Id"] = msg_id.replace("{n}", str(n))
        payload = body.replace("{n}", str(n)).encode(errors="surrogateescape")
        try:
            reply = await s.nc.request(subject, payload, timeout=5, headers=hdrs or None)
        except nats.errors.NoRespondersError:
            raise CliError(
                f"no stream stores subject {subject} — add one with `streamd stream add NAME --subject {subject}`"
            ) from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise CliError(f"no acknowledgement for {subject} within 5s — is streamd running and healthy?") from None
        try:
            ack = json.loads(reply.data)
        except ValueError:
            raise CliError(
                f"the answer on {subject} is not a stream acknowledgement — is it a stream subject?"
            ) from None
        if "error" in ack:
            raise api_error(ack["error"])
        acks.append(ack)

    def text() -> None:
        for ack in acks:
            dup = " (duplicate, not stored again)" if ack.get("duplicate") else ""
            typer.echo(f"Stored in stream {ack.get('stream')} at sequence {ack.get('seq')}{dup}")

    s.emit(acks if count > 1 else acks[0], text)


@admin_command(top_app, "context", connected=False)
async def context(s: Session) -> None:
    """Show the server, API prefix and authentication used, and where each came from."""
    rows = s.settings.describe()
    data = {label: {"value": value, "from": source} for label, value, source in rows}
    s.emit(data, lambda: print_table(("Setting", "Value", "From"), rows))


@admin_command(top_app, "report")
async def report(s: Session) -> None:
    """Every stream and consumer with messages, bytes, pending and acknowledgement counts."""
    streams: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = await s.api("STREAM.LIST", {"offset": offset})
        got = page.get("streams") or []
        streams.extend(got)
        offset += len(got)
        if not got or offset >= page.get("total", 0):
            break
    rows: list[dict[str, Any]] = []
    for st in sorted(streams, key=lambda x: str(x["config"]["name"])):
        name, state = st["config"]["name"], st["state"]
        consumers = await all_consumers(s, name)
        rows.append(
            {
                "stream": name,
                "messages": state.get("messages", 0),
                "bytes": state.get("bytes", 0),
                "consumers": [
                    {
                        "name": c["name"],
                        "pending": c.get("num_pending", 0),
                        "ack_pending": c.get("num_ack_pending", 0),
                        "redelivered": c.get("num_redelivered", 0),
                        "waiting": c.get("num_waiting", 0),
                        "paused": bool(c.get("paused")),
                    }
                    for c in sorted(consumers, key=lambda c: str(c["name"]))
                ],
            }
        )

    def text() -> None:
        if not rows:
            typer.echo("No streams.")
            return
        table: list[tuple[object, ...]] = []
        for r in rows:
            table.append((r["stream"], "", f"{r['messages']:,}", f"{r['bytes']:,}", "", "", "", ""))
            for c in r["consumers"]:
                name = c["name"] + (" (paused)" if c["paused"] else "")
                table.append(("", name, "", "", c["pending"], c["ack_pending"], c["redelivered"], c["waiting"]))
        print_table(
            (
                "Stream",
                "Consumer",
                "Messages",
                "Bytes",
                "Pending",
                "Awaiting ack",
                "Redelivered",
                "Pull requests",
            ),
            table,
        )

    s.emit(rows, text)


__all__ = ["top_app"]
