"""Hardening benchmark (issue 9): work that grows with a request or with idle state, streamd beside `nats-server -js`.

Usage (from the project root, with the project's venv):

    .venv/bin/python scripts/bench_hardening.py [--subjects 1000,10000] [--big 100000] [--idle 0,1000,10000]
        [--publish 1000] [--redeliver 100000] [--ack-wait 3] [--create-timeout 60] [--sync always] [--json]

Each system (streamd attached to a core nats-server, and a real nats-server -js) runs, one after the other:
  phase 1, one process:
    "create N subjects": STREAM.CREATE with N literal subjects (seconds; one create per N, deleted after);
    "publish p50, K idle": sequential `js.publish` p50 (us) on a stream with K idle durable pull consumers;
    "redelivery: INFO/publish p99": a push consumer with ack_wait --ack-wait gets --redeliver messages and acks
        none; while they all come due and are redelivered, INFO and a publish to another stream are timed
        every 10 ms (p99 in us; also the seconds until every message was redelivered once);
  phase 2, a fresh process:
    "create 1 MB": STREAM.CREATE with --big subjects (a ~1 MB request; seconds, or "> timeout"), and INFO
        latency (p50/max, us) sampled every 10 ms while it runs.
Ratio = streamd / jetstream. A value JetStream did not reach within --create-timeout is shown as ">T".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from bench_publish import Child, percentile, run_header, run_main, with_system
from nats.aio.client import Client
from nats.aio.msg import Msg

Results = dict[str, float]
TIMED_OUT = float("inf")


async def api(nc: Client, subject: str, body: dict[str, Any] | bytes, timeout: float) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = await nc.request(subject, data, timeout=timeout)
    out: dict[str, Any] = json.loads(reply.data)
    if "error" in out:
        raise RuntimeError(f"{subject}: {out['error']}")
    return out


def create_body(name: str, prefix: str, n: int) -> bytes:
    subjects = [f"{prefix}.{i}" for i in range(n)]
    return json.dumps({"name": name, "subjects": subjects}, separators=(",", ":")).encode()


async def timed(call: Awaitable[Any]) -> float:
    t = time.perf_counter()
    await call
    return time.perf_counter() - t


class Prober:
    """Times INFO (and optionally a publish to PROBE) every 10 ms until stopped."""

    def __init__(self, nc: Client, publish: bool) -> None:
        self.nc, self.publish = nc, publish
        self.info_us: list[int] = []
        self.pub_us: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Ask the loop to end and wait for it (nats-py swallows CancelledError in publish: no cancel())."""
        self._stopping = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        js = self.nc.jetstream(timeout=60)
        while not self._stopping:
            try:
                self.info_us.append(int(await timed(self.nc.request("$JS.API.INFO", b"", timeout=30)) * 1e6))
            except nats.errors.TimeoutError:
                self.info_us.append(30_000_000)  # counted as 30 s: no answer at all
            if self.publish:
                self.pub_us.append(int(await timed(js.publish("probe", b"p")) * 1e6))
            await asyncio.sleep(0.01)


async def bench_creates(nc: Client, sizes: list[int], timeout: float, out: Results) -> None:
    for n in sizes:
        name = f"C{n}"
        try:
            out[f"create {n} subjects s"] = await timed(
                api(nc, f"$JS.API.STREAM.CREATE.{name}", create_body(name, f"c{n}", n), timeout)
            )
            await api(nc, f"$JS.API.STREAM.DELETE.{name}", b"", timeout)
        except (TimeoutError, nats.errors.TimeoutError):
            out[f"create {n} subjects s"] = TIMED_OUT
            return  # the server is still busy with it: later figures would measure that


async def bench_idle(nc: Client, counts: list[int], n_pub: int, out: Results) -> None:
    js = nc.jetstream(timeout=60)
    # nats-server refuses a stream's 1001st consumer unless max_consumers is set: set it on both systems
    await api(nc, "$JS.API.STREAM.CREATE.IDLE", {"name": "IDLE", "subjects": ["idle.>"], "max_consumers": 100_000}, 60)
    have = 0
    for k in counts:
        for start in range(have, k, 100):
            await asyncio.gather(
                *(
                    api(
                        nc,
                        f"$JS.API.CONSUMER.CREATE.IDLE.d{i}",
                        {"stream_name": "IDLE", "config": {"durable_name": f"d{i}", "ack_policy": "explicit"}},
                        60,
                    )
                    for i in range(start, min(start + 100, k))
                )
            )
        have = max(have, k)
        for _ in range(50):  # warm-up
            await js.publish("idle.x", b"w")
        lat = sorted([int(await timed(js.publish("idle.x", b"x" * 128)) * 1e6) for _ in range(n_pub)])
        out[f"publish p50 us, {k} idle consumers"] = percentile(lat, 0.5)
    await js.delete_stream("IDLE")


async def bench_redelivery(nc: Client, n: int, ack_wait: float, out: Results, where: str = "") -> None:
    js = nc.jetstream(timeout=60)
    await js.add_stream(name="RD", subjects=["rd"])
    await js.add_stream(name="PROBE", subjects=["probe"])
    for start in range(0, n, 1000):
        futs = [await js.publish_async("rd", b"r" * 64) for _ in range(min(1000, n - start))]
        await asyncio.gather(*futs)
    redelivered = 0
    first = 0
    done = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        nonlocal redelivered, first
        tokens = msg.reply.split(".")
        if tokens[4 if len(tokens) < 11 else 6] == "1":  # v1 or v2 ack subject: the delivery count
            first += 1
        else:
            redelivered += 1
            if redelivered >= n:
                done.set()

    sub = await nc.subscribe("rd.deliver", cb=on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1)
    cfg = {
        "durable_name": "rd",
        "deliver_subject": "rd.deliver",
        "ack_policy": "explicit",
        "ack_wait": int(ack_wait * 1e9),
        "max_ack_pending": -1,
        "max_deliver": 2,
    }
    await api(nc, "$JS.API.CONSUMER.CREATE.RD.rd", {"stream_name": "RD", "config": cfg}, 60)
    t0 = time.perf_counter()
    while first < n and time.perf_counter() - t0 < 120:
        await asyncio.sleep(0.05)
    prober = Prober(nc, publish=True)
    prober.start()  # from the end of the first deliveries until every message was redelivered
    t1 = time.perf_counter()
    while not done.is_set() and time.perf_counter() - t1 < ack_wait + 120:
        await asyncio.sleep(0.05)
    spent = time.perf_counter() - t1
    out["redelivery all out s (after first delivery)"] = spent if done.is_set() else TIMED_OUT
    print(f"# {where}: {first} first deliveries, {redelivered} redeliveries seen", file=sys.stderr)
    await prober.stop()
    await sub.unsubscribe()
    out["redelivery: INFO p99 us"] = percentile(sorted(prober.info_us), 0.99)
    out["redelivery: publish p99 us"] = percentile(sorted(prober.pub_us), 0.99)
    for name in ("RD", "PROBE"):
        await js.delete_stream(name)


async def phase1(url: str, args: argparse.Namespace) -> Results:
    out: Results = {}
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        await bench_idle(nc, args.idle, args.publish, out)
        await bench_redelivery(nc, args.redeliver, args.ack_wait, out, url)
        await bench_creates(nc, args.subjects, args.create_timeout, out)
    finally:
        await nc.close()
    return out


async def phase2(url: str, args: argparse.Namespace) -> Results:
    out: Results = {}
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    probe_nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    prober = Prober(probe_nc, publish=False)
    try:
        body = create_body("BIG", "b", args.big)  # "b.99999": 10 bytes a subject, 100k < 1 MB
        out["create 1 MB request bytes"] = len(body)
        prober.start()
        try:
            out[f"create {args.big} subjects (1 MB) s"] = await timed(
                nc.request("$JS.API.STREAM.CREATE.BIG", body, timeout=args.create_timeout)
            )
        except (TimeoutError, nats.errors.TimeoutError):
            out[f"create {args.big} subjects (1 MB) s"] = TIMED_OUT
        await prober.stop()
        lat = sorted(prober.info_us)
        out["INFO during 1 MB create p50 us"] = percentile(lat, 0.5) if lat else TIMED_OUT
        out["INFO during 1 MB create max us"] = float(lat[-1]) if lat else TIMED_OUT
    finally:
        await nc.close()
        await probe_nc.close()
    return out


def fmt(value: float | None, timeout: float) -> str:
    if value is None:
        return "-"
    if value == TIMED_OUT:
        return f">{timeout:.0f}s"
    return f"{value:.3f}" if value < 100 else f"{value:.0f}"


async def amain(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    header = await run_header(
        args, {"subjects": args.subjects, "big": args.big, "idle": args.idle, "redeliver": args.redeliver}
    )
    warn: list[str] = []
    notes: list[str] = []
    results: dict[str, Results] = {}
    for name in ("jetstream", "streamd"):
        got: Results = {}
        for phase in (phase1, phase2):
            body: Callable[[str], Awaitable[Results]] = lambda url, p=phase: p(url, args)  # noqa: E731
            try:
                got.update(await with_system(name, args, warn, notes, body, _quiet))
            except Exception as exc:
                warn.append(f"{name} {phase.__name__}: {type(exc).__name__}: {exc}")
        results[name] = got
    keys = list(dict.fromkeys([*results["streamd"], *results["jetstream"]]))
    table = []
    for key in keys:
        js, sd = results["jetstream"].get(key), results["streamd"].get(key)
        ratio = sd / js if js and sd is not None and js != TIMED_OUT and sd != TIMED_OUT else None
        table.append({"metric": key, "jetstream": js, "streamd": sd, "ratio": ratio})
    if args.json:
        print(json.dumps({"header": header, "results": table, "warnings": warn, "notes": notes}, indent=2, default=str))
        return 1 if warn else 0
    print(
        f"# streamd sync: {header['streamd_sync']} | nats-server {header['nats_server']}\n"
        f"# command: {header['command']}\n# ratio = streamd / jetstream"
    )
    print(f"{'metric':<46}{'jetstream':>12}{'streamd':>12}{'ratio':>8}")
    for r in table:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        t = args.create_timeout
        print(f"{r['metric']:<46}{fmt(r['jetstream'], t):>12}{fmt(r['streamd'], t):>12}{ratio:>8}")
    for w in warn:
        print(f"WARNING: {w}")
    for n in notes:
        print(f"NOTE: {n}")
    return 1 if warn else 0


def _quiet(_children: list[Child]) -> None:
    """with_system's hook after start; nothing to do here."""


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sync", choices=["always", "batch-interval", "never"], default="always")
    p.add_argument("--subjects", type=ints, default=[1000, 10000], help="create sizes [1000,10000]")
    p.add_argument("--big", type=int, default=100_000, help="subjects in the 1 MB create [100000]")
    p.add_argument("--idle", type=ints, default=[0, 1000, 10000], help="idle consumer counts [0,1000,10000]")
    p.add_argument("--publish", type=int, default=1000, help="sequential publishes per idle count [1000]")
    p.add_argument("--redeliver", type=int, default=100_000, help="messages coming due at once [100000]")
    p.add_argument("--ack-wait", type=float, default=3.0, help="ack wait of the redelivery consumer, s [3]")
    p.add_argument("--create-timeout", type=float, default=60.0, help="give up on one create after, s [60]")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    args.attach, args.embedded, args.js_sync_always = None, False, False
    return args


def main() -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run_main(amain, parse_args())


if __name__ == "__main__":
    sys.exit(main())
