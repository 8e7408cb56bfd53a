"""`streamd consumer …`: create, inspect, read from, pause and explain consumers."""

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from streamd.cli.options import ConsumerName, Force, StreamName
from streamd.cli.output import confirm, print_pairs, print_table
from streamd.cli.session import CliError, Session, admin_command
from streamd.cli.values import checked, choice, format_duration, parse_duration, parse_time
from streamd.wire import timefmt

consumer_app = typer.Typer(help="Create, inspect, read from and pause consumers.", no_args_is_help=True)


_DELIVER = ("all", "last", "new", "last-per-subject")


@dataclass(frozen=True)
class ConsumerSettings:
    """The consumer settings `consumer add` and `consumer edit` take; a setting not given is left as it is."""

    filter_subject: Annotated[
        list[str] | None, typer.Option("--filter", help="Only messages on this subject (repeatable).")
    ] = None
    ack_wait: Annotated[
        str | None,
        typer.Option(help="Redeliver when not acknowledged within this, e.g. 30s.", callback=checked(parse_duration)),
    ] = None
    max_deliver: Annotated[int | None, typer.Option(help="Stop redelivering after N deliveries.")] = None
    max_ack_pending: Annotated[int | None, typer.Option(help="Most messages waiting for acknowledgement.")] = None
    description: Annotated[str | None, typer.Option(help="Free text describing the consumer.")] = None

    def apply(self, config: dict[str, Any]) -> None:
        """Write the settings given into a consumer config (a new filter replaces both filter forms)."""
        if self.filter_subject:
            config.pop("filter_subject", None)
            config.pop("filter_subjects", None)
            if len(self.filter_subject) == 1:
                config["filter_subject"] = self.filter_subject[0]
            else:
                config["filter_subjects"] = self.filter_subject
        if self.ack_wait is not None:
            config["ack_wait"] = parse_duration(self.ack_wait, "--ack-wait")
        given = {
            "max_deliver": self.max_deliver,
            "max_ack_pending": self.max_ack_pending,
            "description": self.description,
        }
        config.update({k: v for k, v in given.items() if v is not None})


def _deliver_policy(value: str) -> dict[str, Any]:
    """`all`, `last`, `new`, `last-per-subject`, a start sequence, an RFC 3339 time or a duration ago."""
    if value in _DELIVER:
        return {"deliver_policy": value.replace("-", "_")}
    if value.isdigit():
        return {"deliver_policy": "by_start_sequence", "opt_start_seq": int(value)}
    try:
        start = parse_time(value, "--deliver")
    except CliError:
        raise CliError(
            f"invalid --deliver {value!r} — use all, last, new, last-per-subject, a sequence number, "
            "an RFC 3339 time or a duration ago like 1h"
        ) from None
    return {"deliver_policy": "by_start_time", "opt_start_time": timefmt.format_ns(start)}


def _print_consumer(info: dict[str, Any], heading: str = "") -> None:
    if heading:
        typer.echo(heading)
    cfg = info.get("config", {})
    filters = cfg.get("filter_subjects") or ([cfg["filter_subject"]] if cfg.get("filter_subject") else [])
    kind = f"push to {cfg['deliver_subject']}" if cfg.get("deliver_subject") else "pull"
    paused = info.get("paused")
    print_pairs(
        f"Consumer {info.get('name')} on stream {info.get('stream_name')}",
        [
            ("Kind", kind + ("" if cfg.get("durable_name") else " (ephemeral)")),
            ("Filter", ", ".join(filters) or "(every subject)"),
            ("Deliver policy", cfg.get("deliver_policy", "all").replace("_", " ")),
            ("Acknowledgement", cfg.get("ack_policy", "explicit")),
            ("Acknowledgement wait", format_duration(cfg.get("ack_wait", 0))),
            ("Maximum deliveries", "unlimited" if cfg.get("max_deliver", -1) < 1 else cfg["max_deliver"]),
            ("Maximum acknowledgements pending", cfg.get("max_ack_pending", 0)),
            ("Paused", f"until {cfg.get('pause_until')}" if paused else "no"),
            ("Created", info.get("created", "")),
        ],
    )
    delivered, acked = info.get("delivered", {}), info.get("ack_floor", {})
    print_pairs(
        "State",
        [
            ("Last delivered stream sequence", delivered.get("stream_seq", 0)),
            ("Acknowledged up to stream sequence", acked.get("stream_seq", 0)),
            ("Pending (not yet delivered)", info.get("num_pending", 0)),
            ("Waiting for acknowledgement", info.get("num_ack_pending", 0)),
            ("Redelivered", info.get("num_redelivered", 0)),
            ("Pull requests waiting", info.get("num_waiting", 0)),
        ],
    )


@admin_command(consumer_app, "add")
async def consumer_add(
    s: Session,
    stream: StreamName,
    name: ConsumerName,
    settings: ConsumerSettings,
    pull: Annotated[bool, typer.Option(help="A pull consumer: clients fetch messages (the default).")] = False,
    deliver_subject: Annotated[
        str | None, typer.Option(help="A push consumer: deliver messages to this subject.")
    ] = None,
    ack: Annotated[str, typer.Option(help="explicit, all or none.")] = "explicit",
    deliver: Annotated[
        str, typer.Option(help="Where to start: all, last, new, last-per-subject, a sequence, a time or 1h (ago).")
    ] = "all",
) -> None:
    """Create a durable consumer on a stream."""
    if pull and deliver_subject:
        raise CliError("give --pull or --deliver-subject, not both")
    config: dict[str, Any] = {
        "durable_name": name,
        "name": name,
        "ack_policy": choice(ack, ("explicit", "all", "none"), "--ack"),
        **_deliver_policy(deliver),
    }
    if deliver_subject:
        config["deliver_subject"] = deliver_subject
    settings.apply(config)
    info = await s.api(f"CONSUMER.CREATE.{stream}.{name}", {"stream_name": stream, "config": config})
    s.emit(info, lambda: _print_consumer(info, f"Created consumer {name} on stream {stream}"))


@admin_command(consumer_app, "edit")
async def consumer_edit(
    s: Session,
    stream: StreamName,
    name: ConsumerName,
    settings: ConsumerSettings,
) -> None:
    """Change a consumer's settings that may change (the rest stay as they are)."""
    current = await s.api(f"CONSUMER.INFO.{stream}.{name}")
    config: dict[str, Any] = dict(current["config"])
    settings.apply(config)
    if config == current["config"]:
        raise CliError("nothing to change: give at least one of --filter, --ack-wait, --max-deliver, ...")
    body = {"stream_name": stream, "config": config, "action": "update"}
    info = await s.api(f"CONSUMER.CREATE.{stream}.{name}", body, hint="only some settings may change")
    s.emit(info, lambda: _print_consumer(info, f"Changed consumer {name} on stream {stream}"))


@admin_command(consumer_app, "info")
async def consumer_info(s: Session, stream: StreamName, name: ConsumerName) -> None:
    """Show a consumer's configuration and progress."""
    info = await s.api(f"CONSUMER.INFO.{stream}.{name}")
    s.emit(info, lambda: _print_consumer(info))


async def all_consumers(s: Session, stream: str) -> list[dict[str, Any]]:
    consumers: list[dict[str, Any]] = []
    while True:
        page = await s.api(f"CONSUMER.LIST.{stream}", {"offset": len(consumers)})
        got = page.get("consumers") or []
        consumers.extend(got)
        if not got or len(consumers) >= page.get("total", 0):
            return consumers


@admin_command(consumer_app, "list")
async def consumer_list(s: Session, stream: StreamName) -> None:
    """List a stream's consumers with their progress."""
    consumers = await all_consumers(s, stream)

    def text() -> None:
        if not consumers:
            typer.echo(f"No consumers on stream {stream}. Create one with `streamd consumer add {stream} NAME`.")
            return
        rows = [
            (
                c["name"],
                "push" if c["config"].get("deliver_subject") else "pull",
                c.get("num_pending", 0),
                c.get("num_ack_pending", 0),
                c.get("num_redelivered", 0),
                c.get("num_waiting", 0),
                "yes" if c.get("paused") else "no",
            )
            for c in sorted(consumers, key=lambda c: str(c["name"]))
        ]
        print_table(("Name", "Kind", "Pending", "Awaiting ack", "Redelivered", "Pull requests", "Paused"), rows)

    s.emit(consumers, text)


@admin_command(consumer_app, "delete")
async def consumer_delete(s: Session, stream: StreamName, name: ConsumerName, force: Force = False) -> None:
    """Delete a consumer (the stream's messages stay)."""
    if not force:
        await s.api(f"CONSUMER.INFO.{stream}.{name}")
        confirm(f"Delete consumer {name} of stream {stream}?")
    result = await s.api(f"CONSUMER.DELETE.{stream}.{name}")
    s.emit(result, lambda: typer.echo(f"Deleted consumer {name} of stream {stream}"))


async def _pull(s: Session, stream: str, name: str, count: int, wait_ns: int) -> list[Any]:
    """Ask for up to `count` messages; stop at `count`, or at the server's 404/408/409 status, or the wait."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        await queue.put(msg)

    inbox = s.nc.new_inbox()
    sub = await s.nc.subscribe(inbox, cb=on_msg)
    try:
        body = {"batch": count, "expires": wait_ns}
        await s.nc.publish(f"{s.prefix}.CONSUMER.MSG.NEXT.{stream}.{name}", json.dumps(body).encode(), reply=inbox)
        got: list[Any] = []
        deadline = time.monotonic() + wait_ns / 1e9 + 1.0
        while len(got) < count:
            try:
                msg = await asyncio.wait_for(queue.get(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                break
            status = (msg.headers or {}).get("Status")
            if status == "100":  # idle heartbeat
                continue
            if status is not None or not msg.reply:
                if status == "409" and "Consumer Deleted" in str((msg.headers or {}).get("Description")):
                    raise CliError(f"consumer {name} was deleted — create it again with `streamd consumer add`")
                break
            got.append(msg)
        return got
    finally:
        await sub.unsubscribe()


@admin_command(consumer_app, "next")
async def consumer_next(
    s: Session,
    stream: StreamName,
    name: ConsumerName,
    count: Annotated[int, typer.Option(help="How many messages to fetch.")] = 1,
    wait: Annotated[str, typer.Option(help="How long to wait for messages, e.g. 1s.")] = "1s",
    ack: Annotated[bool, typer.Option("--ack", help="Acknowledge each message (the default).")] = False,
    nak: Annotated[bool, typer.Option("--nak", help="Ask for redelivery of each message.")] = False,
    term: Annotated[bool, typer.Option("--term", help="Stop delivering each message, never redeliver.")] = False,
    no_ack: Annotated[bool, typer.Option("--no-ack", help="Leave each message unacknowledged.")] = False,
) -> None:
    """Fetch messages from a pull consumer, print them, and acknowledge them."""
    if sum((ack, nak, term, no_ack)) > 1:
        raise CliError("give one of --ack, --nak, --term, --no-ack")
    if count < 1:
        raise CliError("--count must be at least 1")
    info = await s.api(f"CONSUMER.INFO.{stream}.{name}")
    if info["config"].get("deliver_subject"):
        raise CliError(f"consumer {name} is a push consumer — `next` reads pull consumers; subscribe to its subject")
    reply = b"-NAK" if nak else b"+TERM" if term else None if no_ack else b"+ACK"
    action = "nak" if nak else "term" if term else "none" if no_ack else "ack"
    messages = await _pull(s, stream, name, count, parse_duration(wait, "--wait"))
    out: list[dict[str, Any]] = []
    for msg in messages:
        md = msg.metadata
        if reply == b"+ACK" and info["config"].get("ack_policy") != "none":
            await s.nc.request(msg.reply, b"+ACK", timeout=5)  # confirmed once the ack is stored
        elif reply is not None and info["config"].get("ack_policy") != "none":
            await s.nc.publish(msg.reply, reply)
        out.append(
            {
                "subject": msg.subject,
                "stream_seq": md.sequence.stream,
                "consumer_seq": md.sequence.consumer,
                "delivered": md.num_delivered,
                "pending": md.num_pending,
                "headers": dict(msg.headers or {}),
                "data": msg.data.decode(errors="replace"),
                "reply": action,
            }
        )
    await s.nc.flush()

    def text() -> None:
        if not out:
            typer.echo(f"No message for consumer {name} within {wait}.")
        done = {"ack": "acknowledged", "nak": "asked for redelivery", "term": "terminated", "none": "not acknowledged"}
        for m in out:
            typer.echo(
                f"[stream sequence {m['stream_seq']}, delivery {m['delivered']}] {m['subject']} ({done[m['reply']]})"
            )
            for k, v in m["headers"].items():
                typer.echo(f"  {k}: {v}")
            typer.echo(m["data"])
            typer.echo("")

    s.emit(out, text)


@admin_command(consumer_app, "pause")
async def consumer_pause(
    s: Session,
    stream: StreamName,
    name: ConsumerName,
    until: Annotated[str | None, typer.Option(help="Pause until this RFC 3339 time.")] = None,
    for_: Annotated[str | None, typer.Option("--for", help="Pause for this long, e.g. 10m.")] = None,
) -> None:
    """Stop deliveries to a consumer until a time."""
    if (until is None) == (for_ is None):
        raise CliError("give --until TIME or --for DURATION")
    if until is not None:
        try:
            until_ns = timefmt.parse(until)
        except ValueError:
            raise CliError(f"invalid --until {until!r} — use an RFC 3339 time like 2026-01-02T15:04:05Z") from None
    else:
        until_ns = time.time_ns() + parse_duration(for_ or "", "--for")
    result = await s.api(f"CONSUMER.PAUSE.{stream}.{name}", {"pause_until": timefmt.format_ns(until_ns)})
    s.emit(result, lambda: typer.echo(f"Paused consumer {name} of stream {stream} until {result.get('pause_until')}"))


@admin_command(consumer_app, "resume")
async def consumer_resume(s: Session, stream: StreamName, name: ConsumerName) -> None:
    """Resume deliveries to a paused consumer now."""
    result = await s.api(f"CONSUMER.PAUSE.{stream}.{name}", {})
    s.emit(result, lambda: typer.echo(f"Resumed consumer {name} of stream {stream}"))


def explain(info: dict[str, Any], stream: dict[str, Any]) -> list[str]:
    """Plain reasons why a consumer is not receiving messages (empty: nothing holds it back)."""
    cfg = info.get("config", {})
    reasons: list[str] = []
    if info.get("paused"):
        reasons.append(
            f"It is paused until {cfg.get('pause_until')}; resume it with "
            f"`streamd consumer resume {info.get('stream_name')} {info.get('name')}`."
        )
    max_ack_pending = cfg.get("max_ack_pending", 0)
    if max_ack_pending > 0 and info.get("num_ack_pending", 0) >= max_ack_pending:
        reasons.append(
            f"{info.get('num_ack_pending')} messages wait for acknowledgement, the maximum it allows "
            "(max_ack_pending); acknowledge them, or wait for ack_wait to redeliver them."
        )
    filters = cfg.get("filter_subjects") or ([cfg["filter_subject"]] if cfg.get("filter_subject") else [])
    if info.get("num_pending", 0) == 0 and info.get("num_ack_pending", 0) == 0:
        what = f"matching {', '.join(filters)}" if filters else "in the stream"
        reasons.append(f"Nothing is pending: every message {what} was already delivered. Publish more to receive.")
    if cfg.get("deliver_subject"):
        if not info.get("push_bound"):
            reasons.append(
                f"It is a push consumer and nobody subscribes to its deliver subject {cfg['deliver_subject']}."
            )
    elif info.get("num_waiting", 0) == 0 and info.get("num_pending", 0) > 0:
        reasons.append(
            f"{info.get('num_pending')} messages are pending but no pull request is waiting: a client must fetch "
            f"(e.g. `streamd consumer next {info.get('stream_name')} {info.get('name')}`)."
        )
    return reasons


@admin_command(consumer_app, "explain")
async def consumer_explain(s: Session, stream: StreamName, name: ConsumerName) -> None:
    """Say in plain words why a consumer is not receiving messages."""
    info = await s.api(f"CONSUMER.INFO.{stream}.{name}")
    stream_info = await s.api(f"STREAM.INFO.{stream}")
    reasons = explain(info, stream_info)
    filters = info["config"].get("filter_subjects") or (
        [info["config"]["filter_subject"]] if info["config"].get("filter_subject") else []
    )
    if filters and stream_info.get("state", {}).get("messages", 0):
        matched = 0
        for f in filters:
            subjects = (await s.api(f"STREAM.INFO.{stream}", {"subjects_filter": f})).get("state", {}).get("subjects")
            matched += len(subjects or {})
        if matched == 0:
            reasons.insert(
                0,
                f"Its filter {', '.join(filters)} matches no stored message; stream subjects are "
                f"{', '.join(stream_info['config'].get('subjects') or [])}.",
            )
    result = {"stream": stream, "consumer": name, "reasons": reasons}
    s.emit(
        result,
        lambda: typer.echo(
            "\n".join(f"- {r}" for r in reasons)
            if reasons
            else f"Nothing holds consumer {name} back: messages are pending and a client is waiting for them."
        ),
    )
