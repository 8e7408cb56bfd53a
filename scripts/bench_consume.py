"""Consume benchmark: streamd against a real `nats-server -js`, same nats-py client code, one run.

Usage (from the project root, with the project's venv):

    .venv/bin/python scripts/bench_consume.py [--sync always|batch-interval|never] [--embedded]
        [--attach nats://host:port] [--count 100000] [--size 128] [--wq-count 20000] [--max-pending 1000]
        [--fetch-timeout 5] [--timeout 30] [--only consume,replay,ordered,wq] [--js-sync-always] [--json] [-v]

The systems run one after the other on 127.0.0.1 (processes launched as in bench_publish.py). The first three
workloads each get a fresh stream BENCH (subjects ["bench.>"]) filled with --count messages of --size bytes by
pipelined `publish_async` (not timed; the first fill's rate is shown for context):
  "pull consume explicit": durable pull consumer, ack explicit, `fetch(100)` in a loop, `msg.ack()` each; then
      consumer_info must reach num_ack_pending 0 and ack_floor.stream_seq N;
  "pull replay ack none": durable pull consumer, ack none, `fetch(100)` until N;
  "ordered push replay": `js.subscribe(ordered_consumer=True)` with a callback until N;
  all three check that the stream sequences delivered are exactly 1..N in order.
"work queue": fresh stream WQ (workqueue retention, ["wq.>"]); 2 producer tasks publish --wq-count messages with
  unique ids (publish_async) while 4 workers, each with its own `pull_subscribe` bound to the one durable
  "workers", fetch batches of 10 and ack each; msgs/s from the first publish to the last ack; every id must be
  processed exactly once and WQ must drain to 0 messages.
Ratio = streamd / JetStream; target = the issue's goal for that ratio. Exit status 1 on warnings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from bench_publish import (
    Child,
    bench_async,
    check_interrupted,
    fresh_stream,
    interrupted,
    run_header,
    run_main,
    with_system,
)
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, PubAck, RetentionPolicy
from nats.js.errors import NotFoundError

STREAM, WQ = "BENCH", "WQ"
FILL = "fill publish async"
WORKLOADS = {  # --only key: (row label, target ratio)
    "consume": ("pull consume explicit", 0.8),
    "replay": ("pull replay ack none", 0.8),
    "ordered": ("ordered push replay", 0.5),
    "wq": ("work queue", 0.8),
}
Results = dict[str, float]


class Log:
    def __init__(self, verbose: bool) -> None:
        self.warn: list[str] = []  # failures: exit status 1
        self.notes: list[str] = []  # worth a look, not a failure
        self.verbose, self.t0 = verbose, time.monotonic()

    def progress(self, text: str) -> None:
        if self.verbose:
            print(f"[{time.monotonic() - self.t0:7.2f}s] {text}", file=sys.stderr, flush=True)


async def poll(check: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    """Ask check() every 0.1s until it says yes or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def check_seqs(msgs: list[Msg], n: int, where: str, log: Log) -> None:
    seqs = [m.metadata.sequence.stream for m in msgs]
    if seqs == list(range(1, n + 1)):
        return
    unique = set(seqs)
    first_bad = next((i for i, s in enumerate(seqs) if s != i + 1), len(seqs))
    log.warn.append(f"{where}: {len(seqs)} deliveries, {len(seqs) - len(unique)} duplicates, "
                    f"{len(set(range(1, n + 1)) - unique)} of seqs 1..{n} missing; first out of order at "
                    f"delivery #{first_bad + 1}: {seqs[first_bad:first_bad + 5]}")


async def fill(js: JetStreamContext, args: argparse.Namespace, where: str, log: Log) -> float:
    await fresh_stream(js)
    rate = await bench_async(js, os.urandom(args.size), args.count, args.timeout, f"{where} fill", log.warn)
    if rate is None:
        raise RuntimeError("fill failed (see above)")
    info = (await js.stream_info(STREAM)).state
    if info.messages != args.count:
        raise RuntimeError(f"stream holds {info.messages} messages after the fill, expected {args.count}")
    return rate


async def pull_drain(js: JetStreamContext, args: argparse.Namespace, durable: str, ack: bool, where: str,
                     log: Log) -> float:
    n: int = args.count
    policy = AckPolicy.EXPLICIT if ack else AckPolicy.NONE
    sub = await js.pull_subscribe("bench.>", durable=durable, stream=STREAM, config=ConsumerConfig(ack_policy=policy))
    got: list[Msg] = []
    timeouts, idle_since = 0, time.monotonic()
    start = time.perf_counter()
    while len(got) < n:
        try:
            msgs = await sub.fetch(100, timeout=args.fetch_timeout)
        except TimeoutError:
            check_interrupted()
            timeouts += 1
            if time.monotonic() - idle_since > args.timeout:
                break
            continue
        if ack:
            for m in msgs:
                await m.ack()
        got.extend(msgs)
        idle_since = time.monotonic()
        check_interrupted()
    elapsed = time.perf_counter() - start
    if timeouts:
        log.notes.append(f"{where}: {timeouts} fetch(100, timeout={args.fetch_timeout:g}) calls timed out "
                         f"(after {len(got)} of {n} messages)")
    check_seqs(got, n, where, log)
    if len(got) < n:
        log.warn.append(f"{where}: stalled, only {len(got)} of {n} messages within {args.timeout:.0f}s of no progress")
        return float("nan")
    last_ack = time.monotonic()
    info: list[Any] = []

    async def settled() -> bool:
        info[:] = [await js.consumer_info(STREAM, durable)]
        c = info[0]
        acked = not ack or (c.num_ack_pending == 0 and c.ack_floor.stream_seq == n)
        return bool(acked and c.num_pending == 0 and c.delivered.stream_seq == n)

    if not await poll(settled, args.settle):
        c = info[0]
        log.warn.append(f"{where}: after {args.settle:g}s consumer_info still says num_ack_pending="
                        f"{c.num_ack_pending} ack_floor.stream_seq={c.ack_floor.stream_seq} num_pending="
                        f"{c.num_pending} delivered.stream_seq={c.delivered.stream_seq} (expected 0/{n}/0/{n})")
    elif ack and (lag := time.monotonic() - last_ack) > 0.5:
        log.notes.append(f"{where}: ack floor reached {n} only {lag:.2f}s after the last ack was sent")
    return n / elapsed


async def ordered_replay(js: JetStreamContext, args: argparse.Namespace, where: str, log: Log) -> float:
    n: int = args.count
    got: list[Msg] = []
    done, end = asyncio.Event(), [0.0]

    async def cb(msg: Msg) -> None:
        got.append(msg)
        if len(got) == n:
            end[0] = time.perf_counter()
            done.set()

    start = time.perf_counter()
    sub = await js.subscribe("bench.>", ordered_consumer=True, stream=STREAM, cb=cb)
    seen, idle_since = 0, time.monotonic()
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.5)
        check_interrupted()
        if len(got) != seen:
            seen, idle_since = len(got), time.monotonic()
        elif time.monotonic() - idle_since > args.timeout:
            break
    await sub.unsubscribe()
    check_seqs(got[:n], n, where, log)
    if not done.is_set():
        log.warn.append(f"{where}: stalled, only {len(got)} of {n} messages within {args.timeout:.0f}s of no progress")
        return float("nan")
    return n / (end[0] - start)


def _check_work_queue(
    where: str,
    log: Log,
    workers: list[asyncio.Task[None]],
    futures: list[asyncio.Future[PubAck]],
    unacked: int,
    seen: Counter[int],
    n: int,
) -> None:
    """Every job PubAck'd and processed exactly once, and no worker failed; anything else is a warning."""
    for task in workers:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warn.append(f"{where}: worker failed: {task.exception()!r}")
    errors = [repr(f.exception()) for f in futures if f.done() and f.exception() is not None]
    if unacked or errors:
        log.warn.append(f"{where}: {unacked} PubAcks never came, {len(errors)} publish errors {errors[:3]}")
    dups = sum(c - 1 for c in seen.values() if c > 1)
    missing = sorted(set(range(n)) - seen.keys())
    if dups or missing:
        log.warn.append(f"{where}: {dups} duplicate deliveries ({sum(c > 1 for c in seen.values())} ids), "
                        f"{len(missing)} of {n} ids never processed {missing[:10]}")


async def work_queue(js: JetStreamContext, args: argparse.Namespace, where: str, log: Log) -> float:
    n: int = args.wq_count
    pad = b"." * max(0, args.size - 10)
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(WQ)
    await js.add_stream(name=WQ, subjects=["wq.>"], retention=RetentionPolicy.WORK_QUEUE)
    subs = [await js.pull_subscribe("wq.>", durable="workers", stream=WQ) for _ in range(4)]
    seen: Counter[int] = Counter()  # id -> times processed
    done, end, idle_since = asyncio.Event(), [0.0], [time.monotonic()]
    early_timeouts = [0]

    async def producer(k: int) -> list[asyncio.Future[PubAck]]:
        futures = []
        for i in range(k, n, 2):
            futures.append(await js.publish_async(f"wq.p{k}", b"%010d" % i + pad, wait_stall=args.timeout))
            check_interrupted()
        return futures

    async def worker(sub: JetStreamContext.PullSubscription) -> None:
        while not done.is_set() and time.monotonic() - idle_since[0] < args.timeout:
            try:
                msgs = await sub.fetch(10, timeout=args.fetch_timeout)
            except TimeoutError:
                check_interrupted()
                early_timeouts[0] += not done.is_set()
                continue
            for m in msgs:
                await m.ack()
                seen[int(m.data[:10])] += 1
            idle_since[0] = time.monotonic()
            if len(seen) >= n and not done.is_set():
                end[0] = time.perf_counter()
                done.set()

    start = time.perf_counter()
    workers = [asyncio.create_task(worker(sub)) for sub in subs]
    producers = [asyncio.create_task(producer(k)) for k in (0, 1)]
    waiter = asyncio.create_task(done.wait())
    try:
        futures = [f for fs in await asyncio.gather(*producers) for f in fs]
        _, pending = await asyncio.wait(futures, timeout=args.timeout)
        await asyncio.wait([waiter, *workers], return_when=asyncio.FIRST_COMPLETED)  # all done, or one failed
        await asyncio.wait(workers, timeout=1.0)  # workers still in fetch(): a second for late duplicates
    finally:
        for task in (*workers, *producers, waiter):
            task.cancel()
        await asyncio.wait([*workers, *producers, waiter], timeout=2)
    _check_work_queue(where, log, workers, futures, len(pending), seen, n)
    if early_timeouts[0]:
        log.notes.append(f"{where}: {early_timeouts[0]} worker fetch(10) calls timed out before all were processed")
    state: list[Any] = []

    async def drained() -> bool:
        state[:] = [(await js.stream_info(WQ)).state]
        return bool(state[0].messages == 0)

    ok = await poll(drained, args.settle)
    c = await js.consumer_info(WQ, "workers")
    summary = (f"{where}: WQ final stream messages={state[0].messages} (first_seq {state[0].first_seq}, last_seq "
               f"{state[0].last_seq}); consumer num_ack_pending={c.num_ack_pending} num_pending={c.num_pending} "
               f"ack_floor.stream_seq={c.ack_floor.stream_seq} num_redelivered={c.num_redelivered}")
    (log.notes if ok else log.warn).append(summary)
    await js.delete_stream(WQ)
    return n / (end[0] - start) if done.is_set() else float("nan")


async def run_system(name: str, url: str, args: argparse.Namespace, log: Log) -> Results:
    results: Results = {}

    async def error_cb(exc: Exception) -> None:
        log.warn.append(f"{name} client error callback: {type(exc).__name__}: {exc}")

    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False, name=f"bench-{name}", error_cb=error_cb)
    js = nc.jetstream(timeout=args.timeout, publish_async_max_pending=args.max_pending)
    try:
        for key in args.only:
            label, _ = WORKLOADS[key]
            where = f"{name} {label}"
            try:
                if key != "wq":
                    log.progress(f"{where}: filling {args.count} messages")
                    rate = await fill(js, args, where, log)
                    results.setdefault(FILL, rate)
                log.progress(f"{where}: start")
                if key == "consume":
                    value = await pull_drain(js, args, "pull-explicit", True, where, log)
                elif key == "replay":
                    value = await pull_drain(js, args, "pull-none", False, where, log)
                elif key == "ordered":
                    value = await ordered_replay(js, args, where, log)
                else:
                    value = await work_queue(js, args, where, log)
                log.progress(f"{where}: done, {value:.0f} msgs/s")
                if not math.isnan(value):
                    results[label] = value
                if key != "wq":
                    await js.delete_stream(STREAM)
            except Exception as exc:  # keep going: the other workloads still say something
                if interrupted():
                    raise asyncio.CancelledError from exc
                log.warn.append(f"{where}: {type(exc).__name__}: {exc}")
    finally:
        await nc.close()
    return results


async def run_one(name: str, args: argparse.Namespace, log: Log) -> Results:
    def started(children: list[Child]) -> None:
        for child in children:
            if child.proc is not None:
                log.progress(f"{child.name} pid {child.proc.pid}")

    return await with_system(
        name, args, log.warn, log.notes, lambda url: run_system(name, url, args, log), started
    )


def rows(results: dict[str, Results], args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    labels = [(FILL, None)] if set(args.only) - {"wq"} else []
    for label, target in labels + [WORKLOADS[k] for k in args.only]:
        js, sd = results["jetstream"].get(label), results["streamd"].get(label)
        ratio = sd / js if js and sd is not None else None
        met = None if ratio is None or target is None else ratio >= target
        out.append({"workload": label, "jetstream": js, "streamd": sd, "ratio": ratio, "target": target, "met": met})
    return out


async def amain(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    header = await run_header(args, {"count": args.count, "size": args.size, "wq_count": args.wq_count,
                                     "max_pending": args.max_pending, "fetch_timeout": args.fetch_timeout})
    log = Log(args.verbose)
    try:
        results = {name: await run_one(name, args, log) for name in ("jetstream", "streamd")}
    except Exception as exc:
        if interrupted():
            raise asyncio.CancelledError from exc
        raise
    table = rows(results, args)
    if args.json:
        print(json.dumps({"header": header, "results": table, "warnings": log.warn, "notes": log.notes}, indent=2))
    else:
        print(f"# streamd sync: {header['streamd_sync']} | nats-server {header['nats_server']} "
              f"(JetStream sync: {header['jetstream_sync']})\n# command: {header['command']}")
        print(f"# messages: {args.count} x {args.size} B per replay stream, work queue {args.wq_count} "
              f"(2 producers, 4 workers); msgs/s; ratio = streamd / jetstream")
        print(f"{'workload':<24}{'jetstream':>12}{'streamd':>12}{'ratio':>8}{'target':>8}  met")
        for r in table:
            cells = [f"{r[k]:.0f}" if r[k] is not None else "-" for k in ("jetstream", "streamd")]
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
            target = "" if r["target"] is None else f">={r['target']:.1f}"
            met = {None: "", True: "yes", False: "NO"}[r["met"]]
            print(f"{r['workload']:<24}{cells[0]:>12}{cells[1]:>12}{ratio:>8}{target:>8}  {met}")
        for w in log.warn:
            print(f"WARNING: {w}")
        for n in log.notes:
            print(f"NOTE: {n}")
    return 1 if log.warn else 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sync", choices=["always", "batch-interval", "never"], default="always")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--embedded", action="store_true", help="let `streamd serve` start its own nats-server")
    where.add_argument("--attach", metavar="URL", help="benchmark an already running streamd at this URL")
    p.add_argument("--count", type=int, default=100_000, help="messages in each replay stream [100000]")
    p.add_argument("--size", type=int, default=128, help="payload bytes [128]")
    p.add_argument("--wq-count", type=int, default=20_000, help="work queue messages, both producers [20000]")
    p.add_argument("--max-pending", type=int, default=1000, help="outstanding async PubAcks [1000]")
    p.add_argument("--fetch-timeout", type=float, default=5.0, help="timeout of each fetch() [5]")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for a PubAck / API reply, and without progress before giving up [30]")
    p.add_argument("--settle", type=float, default=5.0, help="seconds for ack floor / WQ drain checks [5]")
    p.add_argument("--only", type=lambda s: s.split(","), default=list(WORKLOADS),
                   help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--js-sync-always", action="store_true", help="JetStream reference with sync_interval: always")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="progress with child pids on stderr")
    args = p.parse_args()
    if unknown := set(args.only) - set(WORKLOADS):
        p.error(f"--only: unknown {sorted(unknown)}")
    return args


def main() -> int:
    return run_main(amain, parse_args())


if __name__ == "__main__":
    sys.exit(main())
