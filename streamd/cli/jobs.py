"""`streamd jobs ...`: look after a job queue (see streamd.jobs) — counts, dead letters, requeue, purge."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from streamd.cli.output import confirm, print_table
from streamd.cli.session import Session, admin_command
from streamd.client.jobs import Queue

jobs_app = typer.Typer(help="Job queues made with streamd.jobs: counts, dead letters, requeue, purge.")

QueueName = Annotated[str, typer.Argument(help="Queue name (streams JOBS_<name> and JOBS_<name>_DLQ).")]


async def _queue(s: Session, name: str) -> Queue:
    queue = Queue(s.nc.jetstream(domain=s.settings.get("domain") or None), name)
    for stream in (queue.stream, queue.dlq_stream):
        await s.api(f"STREAM.INFO.{stream}", hint=f"is {name!r} a queue? its streams are JOBS_<name>[_DLQ]")
    return queue


@admin_command(jobs_app, "info")
async def info(s: Session, name: QueueName) -> None:
    """Jobs waiting, running and dead for one queue."""
    queue = await _queue(s, name)
    stream = await s.api(f"STREAM.INFO.{queue.stream}")
    consumer = await s.api(f"CONSUMER.INFO.{queue.stream}.{queue.consumer}", hint="start a Worker once")
    data: dict[str, Any] = {
        "queue": name,
        "waiting": consumer.get("num_pending", 0),
        "running": consumer.get("num_ack_pending", 0),
        "retried": consumer.get("num_redelivered", 0),
        "stored": stream["state"]["messages"],
        "dead_letters": await queue.dead_letter_count(),
    }
    s.emit(data, lambda: print_table(["Setting", "Value"], [(k.replace("_", " "), v) for k, v in data.items()]))


@admin_command(jobs_app, "dead-letters")
async def dead_letters(
    s: Session, name: QueueName, limit: Annotated[int, typer.Option(help="Show at most this many.")] = 50
) -> None:
    """List dead letters: jobs that failed every attempt, with their last error."""
    queue = await _queue(s, name)
    dead = await queue.dead_letters(limit)
    rows = [
        {"sequence": d.sequence, "id": d.id, "attempts": d.attempts, "error": d.error, "bytes": len(d.data)}
        for d in dead
    ]
    s.emit(
        rows,
        lambda: print_table(
            ["Sequence", "Job id", "Attempts", "Error", "Bytes"],
            [(r["sequence"], r["id"] or "", r["attempts"], r["error"], r["bytes"]) for r in rows],
        ),
    )


@admin_command(jobs_app, "requeue")
async def requeue(
    s: Session,
    name: QueueName,
    sequence: Annotated[
        list[int] | None, typer.Option(help="Only this dead letter (its DLQ sequence; repeatable).")
    ] = None,
) -> None:
    """Put dead letters back on the queue as new jobs (with fresh attempts)."""
    queue = await _queue(s, name)
    count = await queue.requeue_dead_letters(sequence or None)
    s.emit({"requeued": count}, lambda: typer.echo(f"Requeued {count} dead letter(s) onto {name}"))


@admin_command(jobs_app, "purge")
async def purge(
    s: Session,
    name: QueueName,
    force: Annotated[bool, typer.Option(help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every dead letter of a queue."""
    queue = await _queue(s, name)
    count = await queue.dead_letter_count()
    if not force:
        confirm(f"Delete {count} dead letter(s) of {name}?")
    await queue.purge_dead_letters()
    s.emit({"purged": count}, lambda: typer.echo(f"Deleted {count} dead letter(s) of {name}"))
