"""Fast-client benchmark: streamd and `nats-server -js` driven by a load generator that is not the bottleneck.

Usage (from the project root, with the project's venv):

    .venv/bin/python scripts/bench_fast.py [--count 100000] [--size 128] [--only pub,pubsync,consume,...]
        [--procs consume=2,fetch=2] [--window 500] [--sync-count 2000] [--get-count 20000] [--json]
        [--save results.json] [-v]

nats-py saturates before either server (issue 12), so this uses scripts/loadgen: the NATS client protocol over
raw sockets, frames coalesced into one write per loop turn, reads parsed in bulk, each scenario in one or more
worker processes (`--procs`). nats-py is used only for setup (streams, durable consumers, checks afterwards).

Started here, all on 127.0.0.1 and all up for the whole run: `nats-server -js` (default fsync), a second
`nats-server -js` with `sync_interval: always` (only for "publish one at a time"), and streamd (`--sync always`)
attached to a core nats-server. Each scenario runs against JetStream, then against streamd, same client code:
  pub      publish async: --count messages of --size bytes, --window PubAcks outstanding; PubAck seqs 1..N each
           exactly once, stream_info must say N messages. Fills stream BENCH for the scenarios below.
  pubsync  publish one at a time (window 1) to a fresh stream, --sync-count messages.
  consume  durable pull consumer, explicit acks: pull requests of --pull-batch kept outstanding, refilled at half,
           every message acked (no ack reply awaited); the consumer's ack floor must reach N afterwards.
  fetch    durable pull consumer: pull requests of --fetch-batch with expires, one at a time per worker, acked.
  ordered  ephemeral push consumer as an ordered consumer: ack none, flow control and heartbeats answered.
  get      DIRECT.GET one at a time, --get-count sequences from 1; each answer's Nats-Sequence is checked.
Consumers check that every stream sequence 1..N was delivered exactly once (from the ack subject).

Printed per scenario: msgs/s for both servers, ratio streamd/JetStream, JetStream against the Go client's figure
from issue 12 (`nats bench`, same machine), and CPU shares (CPU seconds / wall seconds, 1.00 = one core) of the
load generator's workers (summed), nats-server and streamd. Exit status 1 on warnings (failed checks).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from bench_publish import Child, run_header, run_main, with_system
from loadgen.procstat import snapshot
from loadgen.workers import Job, Tally, worker_main
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StorageType
from nats.js.errors import NotFoundError

STREAM, SUBJECT, SYNC_STREAM, SYNC_SUBJECT = "BENCH", "bench.x", "BENCHSYNC", "benchsync.x"
SCENARIOS = {  # key: (row label, Go client's msgs/s against nats-server -js from issue 12, or None)
    "pub": ("publish async", 75_588),
    "consume": ("pull consume, acks", 106_567),
    "fetch": ("fetch, acks", 77_791),
    "ordered": ("ordered consumer", 172_583),
    "get": ("direct get one at a time", 4_763),
    "pubsync": ("publish one at a time", None),  # last: the consumers read BENCH soon after it was written
}
DEFAULT_PROCS = {"pub": 1, "pubsync": 1, "consume": 2, "fetch": 2, "ordered": 1, "get": 1}
SYSTEMS = ("jetstream", "streamd")
TARGETS = {"pub": 0.8, "pubsync": 0.5, "consume": 0.7, "fetch": 0.7, "ordered": 0.6, "get": 0.8}  # issue 12, item 3
CLIENT_BAR = 0.8  # issue 12, item 1: this client must drive nats-server -js at >= 80% of the Go client's figure


@dataclass
class Target:
    """One system under test: where to connect, whose CPU to read, an admin connection for setup and checks."""

    name: str
    url: str
    pids: dict[str, int]
    nc: Client
    js: JetStreamContext
    sync_url: str = ""  # pubsync goes here (JetStream: the sync_interval: always server)
    sync_pids: dict[str, int] = field(default_factory=dict)
    sync_js: JetStreamContext | None = None
    filled: int = 0  # messages in stream BENCH


@dataclass
class Measurement:
    rate: float | None = None
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # process label -> CPU share
    worker_cpu: list[float] = field(default_factory=list)
    worker_counts: list[int] = field(default_factory=list)  # how the work split between workers (fairness)
    per_read: float = 0.0  # messages per recv() that returned data: how much each loop turn batches
    control: int = 0  # flow-control requests, heartbeats, pull statuses seen
    us_per_msg: float = 0.0  # the load generator's CPU microseconds per message (all workers)
    max_gap: float = 0.0  # longest time any worker had nothing to read (seconds)
    stalls: int = 0  # read gaps over 10 ms, all workers
    sys_part: float = 0.0  # the kernel's share of the load generator's CPU
    latency_us: dict[str, float] = field(default_factory=dict)  # one-at-a-time: p50, p99, max round trip


class Log:
    def __init__(self, verbose: bool) -> None:
        self.warn: list[str] = []  # failed checks: exit status 1
        self.notes: list[str] = []
        self.verbose, self.t0 = verbose, time.monotonic()

    def progress(self, text: str) -> None:
        if self.verbose:
            print(f"[{time.monotonic() - self.t0:7.2f}s] {text}", file=sys.stderr, flush=True)


async def run_workers(jobs: list[Job], pids: dict[str, int], target: int, args: argparse.Namespace,
                      where: str, log: Log) -> tuple[Measurement, list[Tally]]:
    """Start one process per job, wait until all are connected, then go; stop when their progress adds up to
    `target` (or nothing moved for --timeout seconds). Servers' CPU is read right at go and at the end."""
    mpc = mp.get_context("spawn")  # no fork of a process with an event loop and threads
    ready: Any = mpc.Queue()
    results: Any = mpc.Queue()
    go, stop = mpc.Event(), mpc.Event()
    progress: Any = mpc.Array("q", len(jobs), lock=False)
    procs = [mpc.Process(target=worker_main, args=(job, ready, results, go, stop, progress), daemon=True)
             for job in jobs]
    for p in procs:
        p.start()
    try:
        for _ in jobs:
            index, err = await asyncio.to_thread(ready.get, timeout=60)
            if err:
                log.warn.append(f"{where}: worker {index} setup failed: {err}")
        cpu0, t0 = snapshot(pids), time.perf_counter()
        go.set()
        seen, moved = 0, t0
        while (done := sum(progress)) < target and any(p.is_alive() for p in procs):
            now = time.perf_counter()
            if done != seen:
                seen, moved = done, now
            elif now - moved > args.timeout:
                log.warn.append(f"{where}: stalled at {done} of {target} for {args.timeout:g}s")
                break
            await asyncio.sleep(0.005)
        t1 = time.perf_counter()
        cpu1 = snapshot(pids)
        stop.set()
        tallies = [await asyncio.to_thread(results.get, timeout=60) for _ in jobs]
    finally:
        stop.set()
        for p in procs:
            await asyncio.to_thread(p.join, 10)
            if p.is_alive():
                p.kill()
    return summarise(tallies, t1 - t0, {name: cpu1[name] - cpu0[name] for name in pids}, where, log), tallies


def summarise(tallies: list[Tally], wall: float, server_cpu: dict[str, float], where: str, log: Log) -> Measurement:
    """Rate from the workers' own clocks (first go to last message handled); CPU shares over the driver's window."""
    tallies = sorted(tallies, key=lambda t: t.index)
    m = Measurement(wall=wall, cpu={name: cpu / wall for name, cpu in server_cpu.items()},
                    worker_cpu=[t.cpu / wall for t in tallies], worker_counts=[t.count for t in tallies])
    m.cpu["loadgen"] = sum(m.worker_cpu)
    count, cpu = sum(t.count for t in tallies), sum(t.cpu for t in tallies)
    m.per_read = count / max(1, sum(t.reads for t in tallies))
    m.control = sum(t.control for t in tallies)
    m.us_per_msg = 1e6 * cpu / max(1, count)
    m.sys_part = sum(t.cpu_sys for t in tallies) / max(1e-9, cpu)
    m.max_gap = max(t.max_gap for t in tallies)
    m.stalls = sum(t.stalls for t in tallies)
    if lat := sorted(x for t in tallies for x in t.latencies):
        m.latency_us = {q: 1e6 * lat[min(len(lat) - 1, int(p * len(lat)))]
                        for q, p in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))}
    ran = [t for t in tallies if t.start]  # a worker that failed before go has no clock
    if ran and (elapsed := max(t.end for t in ran) - min(t.start for t in ran)) > 0:
        m.rate = count / elapsed
    for t in tallies:
        if t.error_count:
            log.warn.append(f"{where}: worker {t.index}: {t.error_count} errors, first: {t.errors}")
    return m


def check_once(tallies: list[Tally], first: int, last: int, where: str, log: Log) -> bool:
    """Every sequence first..last seen exactly once over all workers, nothing else."""
    arrays = [t.counts for t in tallies if t.counts]
    if not arrays:
        log.warn.append(f"{where}: no sequence counts came back")
        return False
    totals = arrays[0] if len(arrays) == 1 else bytes(map(sum, zip(*arrays, strict=True)))
    wanted = totals[first : last + 1]
    missing, dups = wanted.count(0), len(wanted) - wanted.count(0) - wanted.count(1)
    stray = sum(1 for i, c in enumerate(totals) if c and not first <= i <= last)
    stray += sum(t.out_of_range for t in tallies)
    if missing or dups or stray:
        log.warn.append(f"{where}: of sequences {first}..{last}: {missing} never seen, {dups} seen more than once, "
                        f"{stray} outside the range")
        return False
    return True


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def recreate_stream(js: JetStreamContext, name: str, subject: str) -> None:
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(name)
    await js.add_stream(name=name, subjects=[subject.split(".")[0] + ".>"], allow_direct=True,
                        storage=StorageType.FILE)


async def publish(t: Target, args: argparse.Namespace, log: Log, sync: bool) -> Measurement:
    """pub / pubsync: a fresh stream, P workers with their share of the messages; PubAck seqs and stream_info
    checked. pub leaves BENCH filled for the consumer scenarios."""
    key = "pubsync" if sync else "pub"
    where = f"{t.name} {SCENARIOS[key][0]}"
    js, url, pids = (t.sync_js or t.js, t.sync_url or t.url, t.sync_pids or t.pids) if sync else (t.js, t.url, t.pids)
    name, subject = (SYNC_STREAM, SYNC_SUBJECT) if sync else (STREAM, SUBJECT)
    n = args.sync_count if sync else args.count
    await recreate_stream(js, name, subject)
    procs = args.procs[key]
    jobs = [Job("pub", url, name, subject, i, share, n, size=args.size, window=1 if sync else args.window)
            for i, share in enumerate(split(n, procs))]
    m, tallies = await run_workers(jobs, pids, n, args, where, log)
    ok = check_once(tallies, 1, n, where, log)
    state = (await js.stream_info(name)).state
    if state.messages != n or state.last_seq != n:
        log.warn.append(f"{where}: stream_info says {state.messages} messages, last seq {state.last_seq}; "
                        f"expected {n}")
        ok = False
    if sync:
        await js.delete_stream(name)
    else:
        t.filled = n if ok else 0
    return m


async def ensure_filled(t: Target, args: argparse.Namespace, log: Log) -> None:
    if t.filled != args.count:
        log.progress(f"{t.name}: filling {STREAM} (not timed)")
        await publish(t, args, Log(False), sync=False)
        if t.filled != args.count:
            raise RuntimeError(f"{t.name}: could not fill {STREAM} with {args.count} messages")


async def settle(t: Target, durable: str, n: int, where: str, args: argparse.Namespace, log: Log) -> None:
    """After the run the durable's ack floor must reach N with nothing pending: every ack arrived and counted."""
    deadline = time.monotonic() + args.settle
    while True:
        info = await t.js.consumer_info(STREAM, durable)
        if info.num_ack_pending == 0 and info.ack_floor.stream_seq == n and info.num_pending == 0:
            return
        if time.monotonic() > deadline:
            log.warn.append(f"{where}: {args.settle:g}s after the run consumer_info says num_ack_pending="
                            f"{info.num_ack_pending}, ack_floor.stream_seq={info.ack_floor.stream_seq}, "
                            f"num_pending={info.num_pending} (expected 0, {n}, 0)")
            return
        await asyncio.sleep(0.1)


async def pull(t: Target, args: argparse.Namespace, log: Log, key: str) -> Measurement:
    """consume / fetch: a fresh durable pull consumer with explicit acks; P workers share it."""
    where, n = f"{t.name} {SCENARIOS[key][0]}", args.count
    await ensure_filled(t, args, log)
    durable = key.upper()
    with contextlib.suppress(NotFoundError):
        await t.js.delete_consumer(STREAM, durable)
    await t.js.add_consumer(STREAM, ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                                                   max_ack_pending=args.max_ack_pending, ack_wait=60))
    batch, expires = (args.pull_batch, 30) if key == "consume" else (args.fetch_batch, 5)
    jobs = [Job(key, t.url, STREAM, SUBJECT, i, n, n, size=args.size, batch=batch, consumer=durable,
                expires_ns=expires * 1_000_000_000) for i in range(args.procs[key])]
    m, tallies = await run_workers(jobs, t.pids, n, args, where, log)
    check_once(tallies, 1, n, where, log)
    await settle(t, durable, n, where, args, log)
    await t.js.delete_consumer(STREAM, durable)
    return m


async def ordered(t: Target, args: argparse.Namespace, log: Log) -> Measurement:
    where, n = f"{t.name} {SCENARIOS['ordered'][0]}", args.count
    await ensure_filled(t, args, log)
    jobs = [Job("ordered", t.url, STREAM, SUBJECT, 0, n, n, size=args.size)]
    m, tallies = await run_workers(jobs, t.pids, n, args, where, log)
    check_once(tallies, 1, n, where, log)
    return m


async def direct_get(t: Target, args: argparse.Namespace, log: Log) -> Measurement:
    where, n = f"{t.name} {SCENARIOS['get'][0]}", min(args.get_count, args.count)
    await ensure_filled(t, args, log)
    jobs, first = [], 1
    for i, share in enumerate(split(n, args.procs["get"])):
        jobs.append(Job("get", t.url, STREAM, SUBJECT, i, share, args.count, size=args.size, first=first))
        first += share
    m, tallies = await run_workers(jobs, t.pids, n, args, where, log)
    check_once(tallies, 1, n, where, log)
    return m


async def scenario(key: str, t: Target, args: argparse.Namespace, log: Log) -> Measurement:
    if key in ("pub", "pubsync"):
        return await publish(t, args, log, sync=key == "pubsync")
    if key in ("consume", "fetch"):
        return await pull(t, args, log, key)
    if key == "ordered":
        return await ordered(t, args, log)
    return await direct_get(t, args, log)


def pids_of(children: list[Child]) -> dict[str, int]:
    return {c.name: c.proc.pid for c in children if c.proc is not None}


async def connect(url: str) -> tuple[Client, JetStreamContext]:
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False, name="bench-fast-admin")
    return nc, nc.jetstream(timeout=30)


async def with_targets(args: argparse.Namespace, log: Log,
                       body: Callable[[dict[str, Target]], Awaitable[dict[str, dict[str, Measurement]]]]
                       ) -> dict[str, dict[str, Measurement]]:
    """Start all three systems (bench_publish.with_system, nested) and hand `body` one Target per system."""
    kids: dict[str, list[Child]] = {}

    def keep(name: str) -> Callable[[list[Child]], None]:
        return lambda children: kids.__setitem__(name, children)

    sync_args = argparse.Namespace(**{**vars(args), "js_sync_always": True})

    async def all_up(js_url: str, sync_url: str, sd_url: str) -> dict[str, dict[str, Measurement]]:
        targets: dict[str, Target] = {}
        try:
            for name, url in (("jetstream", js_url), ("streamd", sd_url)):
                nc, js = await connect(url)
                targets[name] = Target(name, url, pids_of(kids[name]), nc, js)
            snc, sjs = await connect(sync_url)
            jt = targets["jetstream"]
            jt.sync_url, jt.sync_pids, jt.sync_js = sync_url, pids_of(kids["jetstream-sync"]), sjs
            try:
                return await body(targets)
            finally:
                await snc.close()
        finally:
            for t in targets.values():
                await t.nc.close()

    async def sync_up(js_url: str, sync_url: str) -> dict[str, dict[str, Measurement]]:
        return await with_system("streamd", args, log.warn, log.notes,
                                 lambda sd_url: all_up(js_url, sync_url, sd_url), keep("streamd"))

    async def js_up(js_url: str) -> dict[str, dict[str, Measurement]]:
        return await with_system("jetstream", sync_args, log.warn, log.notes,
                                 lambda sync_url: sync_up(js_url, sync_url), keep("jetstream-sync"))

    return await with_system("jetstream", args, log.warn, log.notes, js_up, keep("jetstream"))


async def measure_all(targets: dict[str, Target], args: argparse.Namespace,
                      log: Log) -> dict[str, dict[str, Measurement]]:
    """The scenarios in order, each against JetStream then streamd."""
    out: dict[str, dict[str, Measurement]] = {}
    for key in args.only:
        for name in SYSTEMS:
            log.progress(f"{name}: {SCENARIOS[key][0]}")
            try:
                out.setdefault(key, {})[name] = m = await scenario(key, targets[name], args, log)
                log.progress(f"{name}: {SCENARIOS[key][0]}: {m.rate or 0:,.0f} msgs/s, CPU {cpu_text(m)}; "
                             f"workers {m.worker_counts}, {m.per_read:.0f} msgs/read, {m.control} control msgs, "
                             f"loadgen {m.us_per_msg:.1f} us CPU/msg ({m.sys_part:.0%} sys), "
                             f"{m.stalls} read gaps > 10 ms, longest {1e3 * m.max_gap:.1f} ms"
                             + "".join(f", {q} {v:.0f} us" for q, v in m.latency_us.items()))
            except Exception as exc:
                log.warn.append(f"{name} {SCENARIOS[key][0]}: {type(exc).__name__}: {exc}")
    return out


def cpu_text(m: Measurement | None) -> str:
    if m is None:
        return "-"
    return " ".join(f"{label}={share:.2f}" for label, share in m.cpu.items())


def table(results: dict[str, dict[str, Measurement]]) -> list[dict[str, Any]]:
    rows = []
    for key, by_system in results.items():
        label, go_rate = SCENARIOS[key]
        js, sd = by_system.get("jetstream"), by_system.get("streamd")
        js_rate, sd_rate = js and js.rate, sd and sd.rate
        rows.append({
            "scenario": label, "key": key, "jetstream": js_rate, "streamd": sd_rate,
            "ratio": sd_rate / js_rate if js_rate and sd_rate else None, "target_ratio": TARGETS[key],
            "go_client": go_rate,
            "jetstream_vs_go": js_rate / go_rate if js_rate and go_rate else None,
            "cpu_jetstream": js.cpu if js else {}, "cpu_streamd": sd.cpu if sd else {},
            "detail": {name: {"wall": m.wall, "worker_cpu": m.worker_cpu, "worker_counts": m.worker_counts,
                              "msgs_per_read": m.per_read, "control_msgs": m.control,
                              "loadgen_us_cpu_per_msg": m.us_per_msg,
                              "loadgen_sys_part": m.sys_part, "longest_read_gap_s": m.max_gap,
                              "read_gaps_over_10ms": m.stalls,
                              "latency_us": m.latency_us}
                       for name, m in by_system.items()},
        })
    return rows


def num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]], header: dict[str, Any], log: Log) -> None:
    print(f"# streamd sync: {header['streamd_sync']} | nats-server {header['nats_server']} "
          f"(JetStream sync: {header['jetstream_sync']})")
    print(f"# command: {header['command']}\n# counts: {header['counts']}")
    print("# ratio = streamd / jetstream (target: issue 12); vs Go = jetstream driven by this client / by the Go "
          f"client (issue 12; '!' below {CLIENT_BAR}); CPU = CPU seconds / wall (1.00 = one core)")
    print(f"{'scenario':<26}{'jetstream':>11}{'streamd':>11}{'ratio':>7}{'target':>7}{'vs Go':>8}   "
          "CPU jetstream run | CPU streamd run")
    for r in rows:
        low = "!" if r["jetstream_vs_go"] is not None and r["jetstream_vs_go"] < CLIENT_BAR else " "
        print(f"{r['scenario']:<26}{num(r['jetstream'], ',.0f'):>11}{num(r['streamd'], ',.0f'):>11}"
              f"{num(r['ratio'], '.2f'):>7}{r['target_ratio']:>7.1f}{num(r['jetstream_vs_go'], '.2f'):>7}{low}   "
              + " ".join(f"{k}={v:.2f}" for k, v in r["cpu_jetstream"].items()) + " | "
              + " ".join(f"{k}={v:.2f}" for k, v in r["cpu_streamd"].items()))
    for w in log.warn:
        print(f"WARNING: {w}")
    for n in log.notes:
        print(f"NOTE: {n}")


async def amain(args: argparse.Namespace) -> int:
    log = Log(args.verbose)
    header = await run_header(args, {"count": args.count, "size": args.size, "window": args.window,
                                     "sync_count": args.sync_count, "get_count": args.get_count,
                                     "pull_batch": args.pull_batch, "fetch_batch": args.fetch_batch,
                                     "max_ack_pending": args.max_ack_pending, "procs": args.procs})
    header["jetstream_sync"] = "server default; 'publish one at a time': a second server, sync_interval: always"
    results = await with_targets(args, log, lambda targets: measure_all(targets, args, log))
    rows = table(results)
    report = json.dumps({"header": header, "results": rows, "warnings": log.warn, "notes": log.notes}, indent=2)
    if args.save:
        Path(args.save).write_text(report + "\n")  # noqa: ASYNC240 - once, after the measurements
    if args.json:
        print(report)
    else:
        print_table(rows, header, log)
    return 1 if log.warn else 0


def parse_procs(text: str) -> dict[str, int]:
    procs = dict(DEFAULT_PROCS)
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in SCENARIOS:
            raise argparse.ArgumentTypeError(f"unknown scenario {key!r}")
        procs[key] = int(value)
    return procs


def parse_only(text: str) -> list[str]:
    keys = [k for k in text.split(",") if k]
    if unknown := [k for k in keys if k not in SCENARIOS]:
        raise argparse.ArgumentTypeError(f"unknown scenarios {unknown}")
    return keys


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=100_000, help="messages published / consumed [100000]")
    p.add_argument("--size", type=int, default=128, help="payload bytes [128]")
    p.add_argument("--window", type=int, default=500, help="outstanding PubAcks in publish async [500]")
    p.add_argument("--sync-count", type=int, default=2000, help="messages published one at a time [2000]")
    p.add_argument("--get-count", type=int, default=20_000, help="direct gets one at a time [20000]")
    p.add_argument("--pull-batch", type=int, default=500, help="consume: messages per pull request [500]")
    p.add_argument("--fetch-batch", type=int, default=100, help="fetch: messages per pull request [100]")
    p.add_argument("--max-ack-pending", type=int, default=20_000, help="durable consumers' max_ack_pending [20000]")
    p.add_argument("--procs", type=parse_procs, default=dict(DEFAULT_PROCS),
                   help="worker processes per scenario, e.g. consume=3,fetch=2 "
                   f"[{','.join(f'{k}={v}' for k, v in DEFAULT_PROCS.items())}]")
    p.add_argument("--only", type=parse_only, default=list(SCENARIOS), help="comma-separated scenarios [all]")
    p.add_argument("--sync", choices=["always", "batch-interval", "never"], default="always",
                   help="streamd's --sync [always]")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds without progress before giving up [30]")
    p.add_argument("--settle", type=float, default=10.0, help="seconds for a durable's ack floor to reach N [10]")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--save", metavar="PATH", help="also write the JSON results to PATH")
    p.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = p.parse_args()
    args.embedded, args.attach, args.js_sync_always = False, None, False  # what bench_publish's starters read
    return args


def main() -> int:
    return run_main(amain, parse_args())


if __name__ == "__main__":
    sys.exit(main())
