"""Job-queue benchmark: streamd.client.jobs (Queue, Worker) on streamd against a real `nats-server -js`, one run.

Usage (from the project root, with the project's venv):

    .venv/bin/python scripts/bench_jobs.py [--sync always|batch-interval|never] [--count 20000] [--workers 4]
        [--concurrency 16] [--timeout 30] [--json]

The systems run one after the other on 127.0.0.1 (processes launched as in bench_publish.py; streamd attaches to
a core nats-server started here). Per system: `Queue.open(js, "bench")` on a fresh queue; `enqueue_many` --count
jobs with unique ids (pipelined publish_async; jobs/s until every PubAck arrived); then --workers
`Worker(queue, handler, concurrency=--concurrency)` run a no-op handler that records job ids; jobs/s from worker
start until every id was handled. Checks: each id handled exactly once, the queue stream drains to 0 messages,
no dead letters, no errors logged by streamd.client.jobs; workers are stopped with `Worker.stop()`.
Ratio = streamd / JetStream. Exit status 1 on warnings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import Counter

import nats
from bench_publish import check_interrupted, interrupted, report, run_header, run_main, with_system
from nats.js import JetStreamContext

from streamd.client.jobs import Job, Queue, Worker

METRICS = ("enqueue_many jobs/s", "workers jobs/s")
Results = dict[str, float]


class Collect(logging.Handler):
    """Records streamd.client.jobs log messages (fetch/settle failures) as warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        err = record.exc_info[1] if record.exc_info else None
        exc = f" ({type(err).__module__}.{type(err).__qualname__}: {err})" if err else ""
        self.lines.append(record.getMessage() + exc)


async def poll_empty(queue: Queue, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while (left := await queue.pending()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return left


async def enqueue(queue: Queue, n: int, timeout: float, where: str, warn: list[str]) -> float | None:
    ids = [f"job-{i}" for i in range(n)]
    start = time.perf_counter()
    try:
        seqs = await asyncio.wait_for(queue.enqueue_many((b"%d" % i for i in range(n)), ids=ids), timeout)
    except TimeoutError:
        warn.append(f"{where}: enqueue_many of {n} jobs did not finish within {timeout:.0f}s")
        return None
    elapsed = time.perf_counter() - start
    pending = await queue.pending()
    if sorted(seqs) != list(range(1, n + 1)) or pending != n:
        warn.append(f"{where}: enqueue_many returned {len(set(seqs))} distinct seqs (expected 1..{n}); "
                    f"queue holds {pending} jobs")
        return None
    return n / elapsed


async def work(queue: Queue, args: argparse.Namespace, where: str, warn: list[str], notes: list[str]) -> float | None:
    n: int = args.count
    seen: Counter[str] = Counter()
    done, end = asyncio.Event(), [0.0]

    async def handler(job: Job) -> None:
        seen[job.id or "?"] += 1
        if len(seen) >= n and not done.is_set():
            end[0] = time.perf_counter()
            done.set()

    workers = [Worker(queue, handler, concurrency=args.concurrency) for _ in range(args.workers)]
    started: list[Worker] = []
    start = time.perf_counter()
    try:
        for w in workers:
            await w.start()
            started.append(w)
        progress, idle_since = 0, time.monotonic()
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.5)
            check_interrupted()
            if sum(seen.values()) != progress:
                progress, idle_since = sum(seen.values()), time.monotonic()
            elif time.monotonic() - idle_since > args.timeout:
                warn.append(f"{where}: stalled, {len(seen)} of {n} jobs handled, no progress for {args.timeout:.0f}s")
                break
        await asyncio.sleep(0.5)  # workers keep fetching: time for late redeliveries to show up as duplicates
    finally:
        t0 = time.monotonic()
        stops = await asyncio.gather(*(w.stop(timeout=5.0) for w in started), return_exceptions=True)
        stop_s = time.monotonic() - t0
    warn.extend(f"{where}: Worker.stop() raised {s!r}" for s in stops if isinstance(s, BaseException))
    if left := [w.running for w in started if w.running]:
        warn.append(f"{where}: handlers still registered as running after stop(): {left}")
    dups = sum(c - 1 for c in seen.values() if c > 1)
    missing = [i for i in range(n) if f"job-{i}" not in seen]
    extra = sorted(set(seen) - {f"job-{i}" for i in range(n)})
    if dups or missing or extra:
        warn.append(f"{where}: {dups} duplicate runs ({sum(c > 1 for c in seen.values())} ids), {len(missing)} of "
                    f"{n} jobs never run {missing[:10]}, unknown ids {extra[:5]}")
    left_jobs = await poll_empty(queue, 5.0)
    c = await queue.js.consumer_info(queue.stream, queue.consumer)
    state = (await queue.js.stream_info(queue.stream)).state
    summary = (f"{where}: queue stream messages={state.messages} (first_seq {state.first_seq}, last_seq "
               f"{state.last_seq}); consumer num_ack_pending={c.num_ack_pending} num_pending={c.num_pending} "
               f"num_redelivered={c.num_redelivered} ack_floor.stream_seq={c.ack_floor.stream_seq}; "
               f"Worker.stop() x{len(started)} took {stop_s:.2f}s")
    (warn if left_jobs else notes).append(summary)
    if dead := await queue.dead_letter_count():
        warn.append(f"{where}: {dead} dead letters")  # the no-op handler never fails
    return n / (end[0] - start) if done.is_set() else None


async def run_system(name: str, url: str, args: argparse.Namespace, warn: list[str], notes: list[str]) -> Results:
    results: Results = {}

    async def error_cb(exc: Exception) -> None:
        warn.append(f"{name} client error callback: {type(exc).__name__}: {exc}")

    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False, name=f"bench-{name}", error_cb=error_cb)
    js: JetStreamContext = nc.jetstream(timeout=args.timeout)
    collect = Collect()
    logging.getLogger("streamd.client.jobs").addHandler(collect)
    try:
        await Queue(js, "bench").delete()
        queue = await Queue.open(js, "bench")
        try:
            for metric, step in ((METRICS[0], "enqueue"), (METRICS[1], "work")):
                where = f"{name} {step}"
                rate = await (enqueue(queue, args.count, args.timeout, where, warn) if step == "enqueue"
                              else work(queue, args, where, warn, notes))
                if rate is None:
                    break
                results[metric] = rate
        except Exception as exc:
            if interrupted():
                raise asyncio.CancelledError from exc
            warn.append(f"{name}: {type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):
            await queue.delete()
    finally:
        logging.getLogger("streamd.client.jobs").removeHandler(collect)
        await nc.close()
    if collect.lines:
        warn.append(f"{name}: streamd.client.jobs logged {len(collect.lines)} problems:\n"
                    + "\n".join(f"    {line}" for line in collect.lines[:10]))
    return results


async def run_one(name: str, args: argparse.Namespace, warn: list[str], notes: list[str]) -> Results:
    return await with_system(name, args, warn, notes, lambda url: run_system(name, url, args, warn, notes))


async def amain(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    header = await run_header(args, {"jobs": args.count, "workers": args.workers, "concurrency": args.concurrency})
    warn: list[str] = []  # failures: exit status 1
    notes: list[str] = []  # worth a look, not a failure
    try:
        results = {name: await run_one(name, args, warn, notes) for name in ("jetstream", "streamd")}
    except Exception as exc:
        if interrupted():
            raise asyncio.CancelledError from exc
        raise
    intro = (f"# streamd sync: {header['streamd_sync']} | nats-server {header['nats_server']} "
             f"(JetStream sync: {header['jetstream_sync']})\n# command: {header['command']}\n"
             f"# jobs: {args.count}, {args.workers} workers x concurrency {args.concurrency}, no-op handler; "
             f"ratio = streamd / jetstream")
    return report(results, METRICS, header, intro, warn, notes, args.json)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sync", choices=["always", "batch-interval", "never"], default="always")
    p.add_argument("--count", type=int, default=20_000, help="jobs to enqueue and run [20000]")
    p.add_argument("--workers", type=int, default=4, help="Worker instances [4]")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent handlers per worker [16]")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds for enqueue_many / API replies, and without progress before giving up [30]")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(attach=None, embedded=False, js_sync_always=False)  # used by bench_publish's starters
    return p.parse_args()


def main() -> int:
    return run_main(amain, parse_args())


if __name__ == "__main__":
    sys.exit(main())
