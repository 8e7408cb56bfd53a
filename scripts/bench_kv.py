"""Key/value benchmark: streamd against a real `nats-server -js`, same nats-py client code, one run.

Usage (from the project root, with the project's venv):

    .venv/bin/python scripts/bench_kv.py [--sync always|batch-interval|never] [--embedded]
        [--attach nats://host:port] [--count 50000] [--count-sync 5000] [--keys 1000] [--size 128]
        [--warmup 1000] [--max-pending 1000] [--timeout 30] [--js-sync-always] [--json]

The systems run one after the other on 127.0.0.1 (processes launched as in bench_publish.py: own process group,
same session), each workload on a fresh bucket BENCHKV (history 1), deleted afterwards. Keys cycle over --keys
names k000000, k000001, ...:
  "kv put sync": `kv.put(key, value)` awaited one at a time, --count-sync puts (msgs/s, p50/p99 latency in us);
  "kv put async": `js.publish_async("$KV.BENCHKV.<key>", value)` with up to --max-pending PubAcks outstanding,
      --count puts (msgs/s); the PubAck seqs must be exactly 1..N;
  "kv get sync msg-get" / "kv get sync direct": --keys keys written first (not timed), then --count-sync
      `kv.get(key)` one at a time on a bucket with allow_direct false (STREAM.MSG.GET last_by_subj) or true
      (DIRECT.GET); every value and revision is checked.
After each put workload the bucket must hold min(keys, N) values with last revision N.
streamd attaches to a core nats-server started here, or starts its own (--embedded), or is already running
(--attach). JetStream keeps nats-server's default fsync policy unless --js-sync-always. Ratio = streamd /
JetStream. Child processes are stopped on exit, Ctrl-C, SIGTERM and errors; exit status 1 on warnings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import nats
from bench_publish import (
    check_interrupted,
    check_pubacks,
    interrupted,
    percentile,
    run_header,
    run_main,
    with_system,
)
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

BUCKET = "BENCHKV"
PREFIX = f"$KV.{BUCKET}."
PUT_SYNC, PUT_ASYNC = "kv put sync", "kv put async"
GET_MSG, GET_DIRECT = "kv get sync msg-get", "kv get sync direct"
METRICS = (
    f"{PUT_SYNC} msgs/s",
    f"{PUT_SYNC} p50 us",
    f"{PUT_SYNC} p99 us",
    f"{PUT_ASYNC} msgs/s",
    f"{GET_MSG} msgs/s",
    f"{GET_MSG} p50 us",
    f"{GET_MSG} p99 us",
    f"{GET_DIRECT} msgs/s",
    f"{GET_DIRECT} p50 us",
    f"{GET_DIRECT} p99 us",
)
Results = dict[str, float]


def key_names(n: int) -> list[str]:
    return [f"k{i:06d}" for i in range(n)]


def value_for(key: str, size: int) -> bytes:
    """A value that names its key, padded to `size` bytes, so a get of the wrong key is noticed."""
    head = key.encode() + b":"
    return (head + os.urandom(max(0, size - len(head))))[: max(size, len(head))]


async def fresh_bucket(js: JetStreamContext, direct: bool) -> KeyValue:
    with contextlib.suppress(NotFoundError):
        await js.delete_key_value(BUCKET)
    return await js.create_key_value(bucket=BUCKET, history=1, direct=direct)


async def check_bucket(kv: KeyValue, values: int, last: int, where: str, warn: list[str]) -> None:
    state = (await kv.status()).stream_info.state
    if state.messages != values or state.last_seq != last:
        warn.append(
            f"{where}: bucket holds {state.messages} values (last revision {state.last_seq}), "
            f"expected {values} (last revision {last})"
        )


def timings(n: int, elapsed: float, lat: list[int]) -> tuple[float, float, float]:
    lat.sort()
    return n / elapsed, percentile(lat, 0.50) / 1e3, percentile(lat, 0.99) / 1e3


async def put_sync(kv: KeyValue, keys: Sequence[str], payload: bytes, n: int) -> tuple[float, float, float]:
    lat: list[int] = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter_ns()
        await kv.put(keys[i % len(keys)], payload)
        lat.append(time.perf_counter_ns() - t0)
        check_interrupted()
    return timings(n, time.perf_counter() - start, lat)


async def put_async(
    js: JetStreamContext,
    keys: Sequence[str],
    values: Sequence[bytes],
    n: int,
    timeout: float,
    where: str,
    warn: list[str],
    first: int = 1,
) -> float | None:
    """Pipelined puts: publish_async on $KV.<bucket>.<key>, as kv.put does one at a time."""
    futures: list[asyncio.Future[PubAck]] = []
    start = time.perf_counter()
    for i in range(n):
        futures.append(
            await js.publish_async(PREFIX + keys[i % len(keys)], values[i % len(values)], wait_stall=timeout)
        )
        check_interrupted()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(js.publish_async_completed(), timeout)
    elapsed = time.perf_counter() - start
    ok = check_pubacks(futures, n, first, timeout, where, warn)
    return n / elapsed if ok else None


async def get_sync(
    kv: KeyValue, keys: Sequence[str], expected: dict[str, tuple[bytes, int]], n: int, where: str, warn: list[str]
) -> tuple[float, float, float]:
    lat: list[int] = []
    wrong: list[str] = []
    start = time.perf_counter()
    for i in range(n):
        key = keys[i % len(keys)]
        t0 = time.perf_counter_ns()
        entry = await kv.get(key)
        lat.append(time.perf_counter_ns() - t0)
        if (entry.value, entry.revision) != expected[key] and len(wrong) < 3:
            wrong.append(f"{key}: revision {entry.revision}, {len(entry.value or b'')} bytes")
        check_interrupted()
    out = timings(n, time.perf_counter() - start, lat)
    if wrong:
        warn.append(f"{where}: wrong entries, e.g. {wrong}")
    return out


async def workload(js: JetStreamContext, args: argparse.Namespace, name: str, where: str, warn: list[str]) -> Results:
    """One measurement on a fresh bucket BENCHKV, checked and deleted afterwards."""
    keys = key_names(args.keys)
    kv = await fresh_bucket(js, direct=name == GET_DIRECT)
    out: Results = {}
    if name == PUT_SYNC:
        n = args.count_sync
        out = dict(zip(METRICS[:3], await put_sync(kv, keys, os.urandom(args.size), n), strict=True))
        await check_bucket(kv, min(n, len(keys)), n, where, warn)
    elif name == PUT_ASYNC:
        n = args.count
        values = [os.urandom(args.size) for _ in range(16)]
        rate = await put_async(js, keys, values, n, args.timeout, where, warn)
        out = {} if rate is None else {METRICS[3]: rate}
        await check_bucket(kv, min(n, len(keys)), n, where, warn)
    else:
        values = [value_for(key, args.size) for key in keys]
        if await put_async(js, keys, values, len(keys), args.timeout, f"{where} (fill)", warn) is None:
            return {}
        expected = {key: (value, rev) for rev, (key, value) in enumerate(zip(keys, values, strict=True), 1)}
        first = METRICS.index(f"{name} msgs/s")
        measured = await get_sync(kv, keys, expected, args.count_sync, where, warn)
        out = dict(zip(METRICS[first : first + 3], measured, strict=True))
    await js.delete_key_value(BUCKET)
    return out


async def warm_up(js: JetStreamContext, args: argparse.Namespace, name: str, warn: list[str]) -> None:
    keys = key_names(min(args.keys, 100))
    for direct in (False, True):
        kv = await fresh_bucket(js, direct)
        for i in range(args.warmup):
            await kv.put(keys[i % len(keys)], b"w" * 128)
            await kv.get(keys[i % len(keys)])
            check_interrupted()
        await put_async(
            js, keys, [b"w" * 128], args.warmup, args.timeout, f"{name} warm-up", warn, first=args.warmup + 1
        )
        await js.delete_key_value(BUCKET)


async def run_system(name: str, url: str, args: argparse.Namespace, warn: list[str]) -> Results:
    results: Results = {}
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False, name=f"bench-kv-{name}")
    js = nc.jetstream(timeout=args.timeout, publish_async_max_pending=args.max_pending)
    try:
        await warm_up(js, args, name, warn)
        for wl in (PUT_SYNC, PUT_ASYNC, GET_MSG, GET_DIRECT):
            where = f"{name} {wl}"
            try:
                results.update(await workload(js, args, wl, where, warn))
            except Exception as exc:  # keep going: the other workloads still say something
                if interrupted():
                    raise asyncio.CancelledError from exc
                warn.append(f"{where}: {type(exc).__name__}: {exc}")
    finally:
        await nc.close()
    return results


async def run_one(name: str, args: argparse.Namespace, warn: list[str], notes: list[str]) -> Results:
    return await with_system(name, args, warn, notes, lambda url: run_system(name, url, args, warn))


def fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if metric.endswith(" us") else f"{value:.0f}"


def rows(results: dict[str, Results]) -> list[dict[str, Any]]:
    out = []
    for metric in METRICS:
        js, sd = results["jetstream"].get(metric), results["streamd"].get(metric)
        ratio = sd / js if js and sd is not None else None
        out.append({"workload": metric, "jetstream": js, "streamd": sd, "ratio": ratio})
    return out


async def amain(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    counts = {"sync": args.count_sync, "async": args.count, "keys": args.keys, "size": args.size,
              "warmup": args.warmup, "max_pending": args.max_pending}
    header = await run_header(args, counts)
    warn: list[str] = []  # failures: exit status 1
    notes: list[str] = []  # worth a look, not a failure
    try:
        results = {name: await run_one(name, args, warn, notes) for name in ("jetstream", "streamd")}
    except Exception as exc:
        if interrupted():
            raise asyncio.CancelledError from exc
        raise
    table = rows(results)
    if args.json:
        print(json.dumps({"header": header, "results": table, "warnings": warn, "notes": notes}, indent=2))
    else:
        print(
            f"# streamd sync: {header['streamd_sync']} | nats-server {header['nats_server']} "
            f"(JetStream sync: {header['jetstream_sync']})\n# command: {header['command']}"
        )
        print(
            f"# {args.count_sync} sync puts/gets, {args.count} async puts (max {args.max_pending} pending), "
            f"{args.keys} keys, {args.size} B values, warm-up {args.warmup}; ratio = streamd / jetstream"
        )
        print(f"{'workload':<30}{'jetstream':>12}{'streamd':>12}{'ratio':>8}")
        for r in table:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
            print(
                f"{r['workload']:<30}{fmt(r['workload'], r['jetstream']):>12}"
                f"{fmt(r['workload'], r['streamd']):>12}{ratio:>8}"
            )
        for w in warn:
            print(f"WARNING: {w}")
        for n in notes:
            print(f"NOTE: {n}")
    return 1 if warn else 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sync", choices=["always", "batch-interval", "never"], default="always")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--embedded", action="store_true", help="let `streamd serve` start its own nats-server")
    where.add_argument("--attach", metavar="URL", help="benchmark an already running streamd at this URL")
    p.add_argument("--count", type=int, default=50_000, help="pipelined puts (publish_async) [50000]")
    p.add_argument("--count-sync", type=int, default=5000, help="sequential kv.put / kv.get calls each [5000]")
    p.add_argument("--keys", type=int, default=1000, help="distinct keys the operations cycle over [1000]")
    p.add_argument("--size", type=int, default=128, help="value size in bytes [128]")
    p.add_argument("--warmup", type=int, default=1000, help="warm-up puts and gets per system [1000]")
    p.add_argument("--max-pending", type=int, default=1000, help="outstanding async PubAcks [1000]")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a PubAck / API reply [30]")
    p.add_argument("--js-sync-always", action="store_true", help="JetStream reference with sync_interval: always")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args()
    for name in ("count", "count_sync", "keys", "warmup", "max_pending"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main() -> int:
    return run_main(amain, parse_args())


if __name__ == "__main__":
    sys.exit(main())
