"""`streamd replay`, `streamd subscribe` and `streamd bench publish|consume|work-queue`.

Each runs until done or until Ctrl-C (SIGINT) or SIGTERM, which end it cleanly: the ephemeral consumer of
`replay` and the temporary stream of `bench` are deleted, and the exit status is 0. With --json, `replay` and
`subscribe` print one JSON object per line as messages arrive.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import secrets
import signal
import time
from collections.abc import Coroutine, Sequence
from typing import Annotated, Any

import nats.errors
import nats.js.errors
import typer
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from streamd.cli.output import print_pairs
from streamd.cli.session import REQUEST_TIMEOUT, CliError, Session, admin_command, api_error
from streamd.cli.values import parse_time
from streamd.client.replay import replay as replay_events
from streamd.wire import timefmt

streaming_app = typer.Typer()
bench_app = typer.Typer(
    help="Measure messages per second and latency against the server (uses a temporary stream).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add `replay`, `subscribe` and `bench` to the root `streamd` app."""
    app.registered_commands.extend(streaming_app.registered_commands)
    app.add_typer(bench_app, name="bench")


# --------------------------------------------------------------------------- shared


async def until_interrupted(work: Coroutine[Any, Any, None]) -> bool:
    """Run `work`; SIGINT/SIGTERM cancel it (its `finally` and `async with` cleanups run). True if interrupted.

    Signal handlers can only be installed in the main thread; elsewhere (tests) `work` simply runs.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    interrupted = False

    def stop() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop)
            installed.append(sig)
        except (ValueError, RuntimeError, NotImplementedError):
            pass
    try:
        await task
    except asyncio.CancelledError:
        if not interrupted:
            raise
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return interrupted


def _jetstream(s: Session) -> JetStreamContext:
    return s.nc.jetstream(prefix=s.prefix, timeout=REQUEST_TIMEOUT)  # type: ignore[no-any-return]


def _js_error(exc: nats.js.errors.APIError) -> CliError:
    return api_error({"code": exc.code or 0, "err_code": exc.err_code or 0, "description": exc.description or ""})


def _time_text(t: dt.datetime) -> str:
    micros = (t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    return timefmt.format_ns(micros * 1000)


def _print_message(s: Session, message: dict[str, Any], title: str) -> None:
    if s.json:
        typer.echo(json.dumps(message, sort_keys=True))
        return
    typer.echo(title)
    for key, value in message["headers"].items():
        typer.echo(f"  {key}: {value}")
    typer.echo(message["data"])
    typer.echo("")


def _check_count(count: int | None) -> None:
    if count is not None and count < 1:
        raise CliError("--count must be at least 1")


# --------------------------------------------------------------------------- replay


@admin_command(streaming_app, "replay")
async def replay(
    s: Session,
    stream: Annotated[str, typer.Argument(help="Stream name.", show_default=False)],
    sequence: Annotated[int | None, typer.Option(help="Start at this stream sequence.")] = None,
    since: Annotated[str | None, typer.Option(help="Start at this RFC 3339 time, or a duration ago (e.g. 1h).")] = None,
    last_per_subject: Annotated[bool, typer.Option("--last-per-subject", help="Only the newest per subject.")] = False,
    subject: Annotated[list[str] | None, typer.Option(help="Only these subjects (repeatable; wildcards).")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Keep waiting for new messages until Ctrl-C.")] = False,
    count: Annotated[int | None, typer.Option(help="Stop after N messages.")] = None,
) -> None:
    """Print a stream's messages in order through an ephemeral consumer, deleted when done."""
    _check_count(count)
    if sum((sequence is not None, since is not None, last_per_subject)) > 1:
        raise CliError("give at most one of --sequence, --since and --last-per-subject")
    if sequence is not None and sequence < 1:
        raise CliError("--sequence must be at least 1")
    start_time = None
    if since is not None:
        ns = parse_time(since, "--since")
        start_time = dt.datetime.fromtimestamp(ns // 1000 / 1_000_000, dt.UTC)
    js = _jetstream(s)
    seen = 0

    async def run() -> None:
        nonlocal seen
        events = replay_events(
            js,
            stream,
            subjects=subject or None,
            start_seq=sequence,
            start_time=start_time,
            last_per_subject=last_per_subject,
            follow=follow,
        )
        async with events:
            async for event in events:
                seen += 1
                message = {
                    "sequence": event.sequence,
                    "time": _time_text(event.time),
                    "subject": event.subject,
                    "headers": event.headers,
                    "data": event.data.decode(errors="replace"),
                }
                _print_message(s, message, f"[{event.sequence}] {message['time']} {event.subject}")
                if count is not None and seen >= count:
                    break

    try:
        interrupted = await until_interrupted(run())
    except nats.js.errors.APIError as exc:
        raise _js_error(exc) from None
    except (TimeoutError, nats.errors.TimeoutError):
        raise CliError(f"no answer from {s.prefix} within {REQUEST_TIMEOUT:g}s — is streamd running?") from None
    if interrupted:
        typer.echo(f"Stopped after {seen} messages.", err=True)
    elif seen == 0 and not s.json:
        typer.echo(f"No messages in stream {stream} from the chosen start.")


# --------------------------------------------------------------------------- subscribe


@admin_command(streaming_app, "subscribe")
async def subscribe(
    s: Session,
    subject: Annotated[str, typer.Argument(help="Subject to subscribe to (wildcards allowed).", show_default=False)],
    count: Annotated[int | None, typer.Option(help="Stop after N messages.")] = None,
    queue: Annotated[str | None, typer.Option(help="Join this queue group (each message goes to one member).")] = None,
) -> None:
    """Print core NATS messages on a subject as they arrive, until Ctrl-C or --count messages."""
    _check_count(count)
    seen = 0

    async def run() -> None:
        nonlocal seen
        sub = await s.nc.subscribe(subject, queue=queue or "")
        try:
            await s.nc.flush(timeout=REQUEST_TIMEOUT)
            group = f" in queue group {queue}" if queue else ""
            typer.echo(f"Listening on {subject}{group}; Ctrl-C to stop.", err=True)
            async for msg in sub.messages:
                seen += 1
                message = {
                    "subject": msg.subject,
                    "reply": msg.reply or "",
                    "headers": dict(msg.headers or {}),
                    "data": msg.data.decode(errors="replace"),
                }
                reply = f" (reply to {msg.reply})" if msg.reply else ""
                _print_message(s, message, f"[#{seen}] {msg.subject}{reply}")
                if count is not None and seen >= count:
                    break
        finally:
            try:
                await sub.unsubscribe()
            except nats.errors.Error:
                pass

    if await until_interrupted(run()):
        typer.echo(f"Stopped after {seen} messages.", err=True)


# --------------------------------------------------------------------------- bench

BenchCount = Annotated[int, typer.Option(help="Messages to send.")]
BenchSize = Annotated[int, typer.Option(help="Payload size in bytes.")]
BenchWorkers = Annotated[int, typer.Option(help="Concurrent publishers (publish) or consumers (work-queue).")]
_SENT_HEADER = "Bench-Sent-Ns"
_STALL_SECONDS = 15.0


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of ascending values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class _Bench:
    def __init__(self, s: Session, mode: str, count: int, size: int, workers: int) -> None:
        if count < 1:
            raise CliError("--count must be at least 1")
        if size < 0:
            raise CliError("--size must be 0 or more")
        if workers < 1:
            raise CliError("--workers must be at least 1")
        self.s, self.mode, self.count, self.size, self.workers = s, mode, count, size, workers
        self.js = _jetstream(s)
        tag = secrets.token_hex(4).upper()
        self.stream = f"BENCH_{tag}"
        self.subject = f"streamd.bench.{tag}"
        self.payload = b"x" * size
        self.latencies_ns: list[int] = []
        self.done = 0  # messages published (publish) or received (consume, work-queue)
        self.started = time.perf_counter()
        self.finished = self.started

    async def run(self) -> dict[str, Any]:
        retention = RetentionPolicy.WORK_QUEUE if self.mode == "work-queue" else RetentionPolicy.LIMITS
        try:
            await self.js.add_stream(StreamConfig(name=self.stream, subjects=[self.subject], retention=retention))
        except nats.js.errors.APIError as exc:
            raise _js_error(exc) from None
        progress = asyncio.create_task(self._progress())
        try:
            if self.mode == "publish":
                await self._publish_all(self.workers)
            else:
                await self._consume_all()
        except nats.js.errors.APIError as exc:
            raise _js_error(exc) from None
        finally:
            progress.cancel()
            try:
                await self.js.delete_stream(self.stream)
            except (nats.errors.Error, TimeoutError):
                typer.echo(f"streamd: could not delete the temporary stream {self.stream}; delete it by hand", err=True)
        return self.result()

    async def _progress(self) -> None:
        """Every second after the first, the progress on stderr."""
        while True:
            await asyncio.sleep(1)
            verb = "published" if self.mode == "publish" else "received"
            typer.echo(f"… {verb} {self.done:,} of {self.count:,}", err=True)

    async def _publish_all(self, publishers: int) -> None:
        self.started = time.perf_counter()
        shares = [self.count // publishers + (1 if i < self.count % publishers else 0) for i in range(publishers)]
        await asyncio.gather(*(self._publisher(n) for n in shares if n))
        if self.mode == "publish":
            self.finished = time.perf_counter()

    async def _publisher(self, n: int) -> None:
        timed = self.mode == "publish"
        for _ in range(n):
            sent = time.perf_counter_ns()
            try:
                await self.js.publish(
                    self.subject, self.payload, stream=self.stream, headers={_SENT_HEADER: str(time.time_ns())}
                )
            except nats.errors.NoRespondersError:
                raise CliError(f"nobody stores {self.subject} — is streamd (or nats-server -js) running?") from None
            except (TimeoutError, nats.errors.TimeoutError):
                raise CliError(f"no acknowledgement for {self.subject} within {REQUEST_TIMEOUT:g}s") from None
            if timed:
                self.latencies_ns.append(time.perf_counter_ns() - sent)
            self.done += timed

    async def _consume_all(self) -> None:
        """Consumers first, then the publishers; latency is from publishing to delivery."""
        work_queue = self.mode == "work-queue"
        config = ConsumerConfig(
            durable_name="BENCH" if work_queue else None,
            ack_policy=AckPolicy.EXPLICIT if work_queue else AckPolicy.NONE,
            max_ack_pending=-1 if work_queue else None,
            inactive_threshold=None if work_queue else 60.0,
        )
        info = await self.js.add_consumer(self.stream, config=config)
        consumers = self.workers if work_queue else 1
        subs = [await self.js.pull_subscribe_bind(consumer=info.name, stream=self.stream) for _ in range(consumers)]
        try:
            readers = [asyncio.create_task(self._reader(sub, work_queue)) for sub in subs]
            await self._publish_all(1 if work_queue else self.workers)
            await asyncio.gather(*readers)
        finally:
            for sub in subs:
                try:
                    await sub.unsubscribe()
                except nats.errors.Error:
                    pass

    async def _reader(self, sub: JetStreamContext.PullSubscription, ack: bool) -> None:
        last_progress = time.monotonic()
        while self.done < self.count:
            try:
                msgs = await sub.fetch(min(256, self.count), timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                if time.monotonic() - last_progress > _STALL_SECONDS:
                    raise CliError(
                        f"no message for {_STALL_SECONDS:g}s; received {self.done:,} of {self.count:,}"
                    ) from None
                continue
            now = time.time_ns()
            for msg in msgs:
                sent = int((msg.headers or {}).get(_SENT_HEADER, now))
                self.latencies_ns.append(max(0, now - sent))
                if ack:
                    await msg.ack()
            self.done += len(msgs)
            if self.done >= self.count:
                self.finished = time.perf_counter()
            last_progress = time.monotonic()

    def result(self) -> dict[str, Any]:
        seconds = max(self.finished - self.started, 1e-9)
        lat = sorted(x / 1000 for x in self.latencies_ns)
        return {
            "mode": self.mode,
            "messages": self.done,
            "size": self.size,
            "workers": self.workers,
            "seconds": round(seconds, 6),
            "messages_per_second": round(self.done / seconds, 1),
            "latency_microseconds": {f"p{p}": round(percentile(lat, p), 1) for p in (50, 90, 99)},
        }


async def _bench(s: Session, mode: str, count: int, size: int, workers: int) -> None:
    bench = _Bench(s, mode, count, size, workers)
    result: dict[str, Any] = {}

    async def run() -> None:
        result.update(await bench.run())

    if await until_interrupted(run()):
        typer.echo(f"Stopped; the temporary stream {bench.stream} was deleted.", err=True)
        return

    def text() -> None:
        lat = result["latency_microseconds"]
        print_pairs(
            f"Bench {mode}: {result['messages']:,} messages of {size:,} bytes, {workers} worker(s)",
            [
                ("Messages per second", f"{result['messages_per_second']:,.0f}"),
                ("Duration", f"{result['seconds']:.3f}s"),
                ("Latency p50", f"{lat['p50']:,.0f} microseconds"),
                ("Latency p90", f"{lat['p90']:,.0f} microseconds"),
                ("Latency p99", f"{lat['p99']:,.0f} microseconds"),
            ],
        )

    s.emit(result, text)


@admin_command(bench_app, "publish")
async def bench_publish(s: Session, count: BenchCount = 1000, size: BenchSize = 128, workers: BenchWorkers = 1) -> None:
    """Publish to a temporary stream and wait for each acknowledgement; latency is publish to acknowledgement."""
    await _bench(s, "publish", count, size, workers)


@admin_command(bench_app, "consume")
async def bench_consume(s: Session, count: BenchCount = 1000, size: BenchSize = 128, workers: BenchWorkers = 1) -> None:
    """Publish (with --workers publishers) while one pull consumer reads; latency is publish to delivery."""
    await _bench(s, "consume", count, size, workers)


@admin_command(bench_app, "work-queue")
async def bench_work_queue(
    s: Session, count: BenchCount = 1000, size: BenchSize = 128, workers: BenchWorkers = 2
) -> None:
    """A work-queue stream shared by --workers consumers that ack each message; latency is publish to delivery."""
    await _bench(s, "work-queue", count, size, workers)


__all__ = ["bench_app", "register", "streaming_app", "until_interrupted"]
