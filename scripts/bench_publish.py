"""Publish benchmark: streamd against a real `nats-server -js`, same nats-py client code, one run.

Usage (from the project root, with the project's venv):

    .venv/bin/python scripts/bench_publish.py [--sync always|batch-interval|never] [--embedded]
        [--attach nats://host:port] [--sizes 128,1024] [--count-sync 5000] [--count 100000]
        [--warmup 1000] [--max-pending 1000] [--js-sync-always] [--json]

The systems run one after the other on 127.0.0.1, each workload on a fresh stream BENCH (subjects
["bench.>"]), deleted afterwards. Per message size: "publish sync" awaits `js.publish()` one at a time
(msgs/s, p50/p99 latency in us); "publish async" keeps up to --max-pending `js.publish_async()` PubAcks
outstanding (msgs/s), then checks that the PubAck seqs are exactly 1..N and stream_info holds N messages.
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
import shlex
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import nats
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from streamd.server.embedded import nats_server_binary

STREAM, SUBJECT = "BENCH", "bench.x"
METRICS = ("publish sync msgs/s", "publish sync p50 us", "publish sync p99 us", "publish async msgs/s")
PROBLEM_MARKERS = ("[ERR]", "[WRN]", "[FTL]", " ERROR ", " WARNING ", " CRITICAL ", "Traceback", "panic:")
Results = dict[tuple[str, int], float]


def interrupted() -> bool:
    """Ctrl-C/SIGTERM cancelled us? nats-py swallows CancelledError (NATS.publish) or turns it into other
    errors (publish_async), so the publish loops ask the task instead of relying on the exception."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def check_interrupted() -> None:
    if interrupted():
        raise asyncio.CancelledError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A child process in its own process group (Ctrl-C reaches only this script) but in this script's session:
    with Linux's sched_autogroup each session is scheduled as one unit, so children in sessions of their own
    would get CPU shares by process count, not by need, and skew the comparison on a small machine.
    stderr is watched for a ready marker, then drained."""

    def __init__(self, name: str, argv: Sequence[str]) -> None:
        self.name, self.argv = name, list(argv)
        self.proc: asyncio.subprocess.Process | None = None
        self.tail: deque[str] = deque(maxlen=20)
        self.problems: list[str] = []
        self.late_problems: list[str] = []  # logged after we asked it to stop
        self.stopping = False
        self._drain: asyncio.Task[None] | None = None

    async def _line(self) -> str | None:
        assert self.proc is not None and self.proc.stderr is not None
        raw = await self.proc.stderr.readline()
        if not raw:
            return None
        line = raw.decode(errors="replace").rstrip()
        self.tail.append(line)
        if any(m in line for m in PROBLEM_MARKERS):
            (self.late_problems if self.stopping else self.problems).append(line)
        return line

    async def start(self, marker: str, timeout: float = 30.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, process_group=0,
        )
        try:
            async with asyncio.timeout(timeout):
                while (line := await self._line()) is not None and marker not in line:
                    pass
        except TimeoutError:
            raise RuntimeError(f"{self.name}: no {marker!r} within {timeout:.0f}s:\n" + self.dump()) from None
        if line is None:
            await self.proc.wait()
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n" + self.dump())
        self._drain = asyncio.create_task(self._drain_stderr())

    async def _drain_stderr(self) -> None:
        while await self._line() is not None:
            pass

    def dump(self) -> str:
        return "\n".join(f"    {line}" for line in self.tail)

    async def stop(self) -> None:
        proc = self.proc
        self.stopping = True
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)  # not asyncio.timeout: robust while being cancelled
            except TimeoutError:
                self.problems.append("did not stop within 15s after SIGTERM; killed its process group")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # also a nats-server that `streamd serve` started
                await proc.wait()
        if self._drain is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._drain, 2)


async def launch(stack: contextlib.AsyncExitStack, children: list[Child], name: str, argv: list[str],
                 marker: str) -> None:
    child = Child(name, argv)
    stack.push_async_callback(child.stop)  # registered first: stopped even if start() fails half-way
    children.append(child)
    await child.start(marker)


async def start_jetstream(stack: contextlib.AsyncExitStack, tmp: Path, args: argparse.Namespace,
                          children: list[Child]) -> str:
    port = free_port()
    sync = "  sync_interval: always\n" if args.js_sync_always else ""
    conf = tmp / "jetstream.conf"
    conf.write_text(f'listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: "{tmp / "js"}"\n{sync}}}\n')
    await launch(stack, children, "nats-server -js", [nats_server_binary(), "-c", str(conf)], "Server is ready")
    return f"nats://127.0.0.1:{port}"


async def start_streamd(stack: contextlib.AsyncExitStack, tmp: Path, args: argparse.Namespace,
                        children: list[Child]) -> str:
    if args.attach:
        return str(args.attach)
    port, leaf_port = free_port(), free_port()
    serve = [sys.executable, "-m", "streamd", "serve", "--data", str(tmp / "streamd"), "--sync", args.sync]
    if args.embedded:
        serve += ["--port", str(port), "--leaf-port", str(leaf_port)]
    else:
        conf = tmp / "core.conf"
        conf.write_text(f"listen: 127.0.0.1:{port}\nleafnodes {{ listen: 127.0.0.1:{leaf_port} }}\n")
        await launch(stack, children, "nats-server (core)", [nats_server_binary(), "-c", str(conf)],
                     "Server is ready")
        serve += ["--server", f"nats://127.0.0.1:{port}", "--leaf", f"nats-leaf://127.0.0.1:{leaf_port}"]
    await launch(stack, children, "streamd", serve, "streamd serving")
    return f"nats://127.0.0.1:{port}"


async def fresh_stream(js: JetStreamContext) -> None:
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(STREAM)
    await js.add_stream(name=STREAM, subjects=["bench.>"])


async def check_stream(js: JetStreamContext, expected: int, where: str, warn: list[str]) -> None:
    state = (await js.stream_info(STREAM)).state
    if state.messages != expected or state.last_seq != expected:
        warn.append(f"{where}: stream_info says {state.messages} messages (seq {state.first_seq}.."
                    f"{state.last_seq}), expected {expected}")


def percentile(sorted_values: Sequence[int], q: float) -> float:
    return float(sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))])


async def bench_sync(js: JetStreamContext, payload: bytes, n: int) -> tuple[float, float, float]:
    lat: list[int] = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await js.publish(SUBJECT, payload)
        lat.append(time.perf_counter_ns() - t0)
        check_interrupted()
    elapsed = time.perf_counter() - start
    lat.sort()
    return n / elapsed, percentile(lat, 0.50) / 1e3, percentile(lat, 0.99) / 1e3


async def bench_async(js: JetStreamContext, payload: bytes, n: int, timeout: float, where: str,
                      warn: list[str], first: int = 1) -> float | None:
    futures: list[asyncio.Future[PubAck]] = []
    start = time.perf_counter()
    for _ in range(n):
        futures.append(await js.publish_async(SUBJECT, payload, wait_stall=timeout))
        check_interrupted()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(js.publish_async_completed(), timeout)
    elapsed = time.perf_counter() - start
    ok = check_pubacks(futures, n, first, timeout, where, warn)
    return n / elapsed if ok else None


def check_pubacks(futures: Sequence[asyncio.Future[PubAck]], n: int, first: int, timeout: float, where: str,
                  warn: list[str]) -> bool:
    """Did every pipelined publish get its PubAck, with seqs exactly first..first+n-1? Warns with the details."""
    seqs, errors, missing = [], [], 0
    for fut in futures:
        if not fut.done():
            missing += 1
            fut.cancel()
        elif fut.exception() is not None:
            errors.append(repr(fut.exception()))
        else:
            seqs.append(fut.result().seq)
    unique, expected = set(seqs), set(range(first, first + n))
    ok = not missing and not errors and len(seqs) == n and unique == expected
    if not ok:
        warn.append(f"{where}: {missing} PubAcks never came within {timeout:.0f}s, {len(errors)} errors "
                    f"{errors[:3]}, {len(seqs) - len(unique)} duplicate seqs, "
                    f"{len(expected - unique)} of seqs {first}..{first + n - 1} missing, "
                    f"{len(unique - expected)} out of range")
    return ok


async def run_header(args: argparse.Namespace, counts: dict[str, Any]) -> dict[str, Any]:
    """What every benchmark prints first: both systems' settings, the server version and the command line."""
    where = "embedded nats-server" if args.embedded else "on a core nats-server"
    mode = f"attached to {args.attach} (sync mode unknown)" if args.attach else f"{args.sync} ({where})"
    return {
        "streamd_sync": mode, "nats_server": await server_version(),
        "jetstream_sync": "always" if args.js_sync_always else "server default",
        "command": shlex.join([sys.executable, *sys.argv]), "counts": counts,
    }


async def workload(js: JetStreamContext, args: argparse.Namespace, size: int, pipelined: bool, where: str,
                   warn: list[str]) -> dict[str, float]:
    """One measurement on a fresh stream BENCH, checked with stream_info and deleted afterwards."""
    payload, n = os.urandom(size), args.count if pipelined else args.count_sync
    await fresh_stream(js)
    if pipelined:
        rate = await bench_async(js, payload, n, args.timeout, where, warn)
        out = {} if rate is None else {METRICS[3]: rate}
    else:
        out = dict(zip(METRICS[:3], await bench_sync(js, payload, n), strict=True))
    await check_stream(js, n, where, warn)
    await js.delete_stream(STREAM)
    return out


async def run_system(name: str, url: str, args: argparse.Namespace, warn: list[str]) -> Results:
    results: Results = {}
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False, name=f"bench-{name}")
    js = nc.jetstream(timeout=args.timeout, publish_async_max_pending=args.max_pending)
    try:
        await fresh_stream(js)  # warm-up: connection, stream API, both publish paths
        for _ in range(args.warmup):
            await js.publish(SUBJECT, b"w" * 128)
            check_interrupted()
        await bench_async(js, b"w" * 128, args.warmup, args.timeout, f"{name} warm-up", warn,
                          first=args.warmup + 1)
        await js.delete_stream(STREAM)
        for size in args.sizes:
            for pipelined in (False, True):
                where = f"{name} publish {'async' if pipelined else 'sync'} {size}B"
                try:
                    out = await workload(js, args, size, pipelined, where, warn)
                    results.update({(metric, size): value for metric, value in out.items()})
                except Exception as exc:  # keep going: the other workloads still say something
                    if interrupted():
                        raise asyncio.CancelledError from exc
                    warn.append(f"{where}: {type(exc).__name__}: {exc}")
    finally:
        await nc.close()
    return results


T = TypeVar("T")


async def with_system(
    name: str,
    args: argparse.Namespace,
    warn: list[str],
    notes: list[str],
    body: Callable[[str], Awaitable[T]],
    started: Callable[[list[Child]], None] | None = None,
) -> T:
    """Start `name` ("jetstream" or streamd) in a temp dir, run `body(url)`, stop it, report its stderr problems.

    Shared by every benchmark in scripts/, so each one only says what it measures."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmpdir:
        children: list[Child] = []
        try:
            async with contextlib.AsyncExitStack() as stack:
                starter = start_jetstream if name == "jetstream" else start_streamd
                url = await starter(stack, Path(tmpdir), args, children)
                if started is not None:
                    started(children)
                return await body(url)
        finally:
            for child in children:
                for kind, lines in (("", child.problems), (" during shutdown", child.late_problems)):
                    if lines:
                        (notes if kind else warn).append(
                            f"{child.name} stderr problems{kind} ({len(lines)}):\n"
                            + "\n".join(f"    {line}" for line in lines[:10]))
                if child.proc is not None and child.proc.returncode not in (0, -signal.SIGTERM):
                    warn.append(f"{child.name} exit status {child.proc.returncode}; last stderr:\n" + child.dump())


async def run_one(name: str, args: argparse.Namespace, warn: list[str], notes: list[str]) -> Results:
    return await with_system(name, args, warn, notes, lambda url: run_system(name, url, args, warn))


def run_main(amain: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], args: argparse.Namespace) -> int:
    """asyncio.run with the benchmarks' Ctrl-C convention (children stopped, exit status 130)."""
    try:
        return asyncio.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; child processes stopped", file=sys.stderr)
        return 130


async def server_version() -> str:
    proc = await asyncio.create_subprocess_exec(nats_server_binary(), "--version",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return out.decode().strip().removeprefix("nats-server: ")


def report(results: dict[str, dict[str, float]], metrics: Sequence[str], header: dict[str, Any], intro: str,
           warn: list[str], notes: list[str], as_json: bool) -> int:
    """Print each metric for both servers and the ratio streamd / jetstream (as JSON, or a table under `intro`);
    -> the exit status: 1 when a check warned."""
    table: list[dict[str, Any]] = []
    for metric in metrics:
        js, sd = results["jetstream"].get(metric), results["streamd"].get(metric)
        table.append({"workload": metric, "jetstream": js, "streamd": sd, "ratio": sd / js if js and sd else None})
    if as_json:
        print(json.dumps({"header": header, "results": table, "warnings": warn, "notes": notes}, indent=2))
        return 1 if warn else 0
    print(intro)
    print(f"{'workload':<22}{'jetstream':>12}{'streamd':>12}{'ratio':>8}")
    for r in table:
        cells = [f"{r[k]:.0f}" if r[k] is not None else "-" for k in ("jetstream", "streamd")]
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['workload']:<22}{cells[0]:>12}{cells[1]:>12}{ratio:>8}")
    for w in warn:
        print(f"WARNING: {w}")
    for note in notes:
        print(f"NOTE: {note}")
    return 1 if warn else 0


def fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if metric.endswith(" us") else f"{value:.0f}"


def rows(results: dict[str, Results], sizes: Sequence[int]) -> list[dict[str, Any]]:
    out = []
    for size in sizes:
        for metric in METRICS:
            js, sd = results["jetstream"].get((metric, size)), results["streamd"].get((metric, size))
            ratio = sd / js if js and sd is not None else None
            out.append({"workload": metric, "size": size, "jetstream": js, "streamd": sd, "ratio": ratio})
    return out


async def amain(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    header = await run_header(args, {"sync": args.count_sync, "async": args.count, "warmup": args.warmup,
                                     "max_pending": args.max_pending})
    warn: list[str] = []  # failures: exit status 1
    notes: list[str] = []  # worth a look, not a failure
    try:
        results = {name: await run_one(name, args, warn, notes) for name in ("jetstream", "streamd")}
    except Exception as exc:
        if interrupted():
            raise asyncio.CancelledError from exc
        raise
    table = rows(results, args.sizes)
    if args.json:
        print(json.dumps({"header": header, "results": table, "warnings": warn, "notes": notes}, indent=2))
    else:
        print(f"# streamd sync: {header['streamd_sync']} | nats-server {header['nats_server']} "
              f"(JetStream sync: {header['jetstream_sync']})\n# command: {header['command']}")
        print(f"# messages: {args.count_sync} sync, {args.count} async (max {args.max_pending} pending), "
              f"warm-up {args.warmup}; ratio = streamd / jetstream")
        print(f"{'workload':<22}{'size':>6}{'jetstream':>12}{'streamd':>12}{'ratio':>8}")
        for r in table:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
            print(f"{r['workload']:<22}{r['size']:>6}{fmt(r['workload'], r['jetstream']):>12}"
                  f"{fmt(r['workload'], r['streamd']):>12}{ratio:>8}")
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
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[128, 1024],
                   help="comma-separated payload sizes in bytes [128,1024]")
    p.add_argument("--count-sync", type=int, default=5000, help="messages for publish sync [5000]")
    p.add_argument("--count", type=int, default=100_000, help="messages for publish async [100000]")
    p.add_argument("--warmup", type=int, default=1000, help="warm-up messages per system and path [1000]")
    p.add_argument("--max-pending", type=int, default=1000, help="outstanding async PubAcks [1000]")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a PubAck / API reply [30]")
    p.add_argument("--js-sync-always", action="store_true", help="JetStream reference with sync_interval: always")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p.parse_args()


def main() -> int:
    return run_main(amain, parse_args())


if __name__ == "__main__":
    sys.exit(main())
