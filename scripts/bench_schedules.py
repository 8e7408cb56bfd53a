"""Message-schedule benchmark: many one-shot schedules due at the same moment, on streamd and `nats-server -js`.

Usage (from the project root, with the project's venv):

    .venv/bin/python scripts/bench_schedules.py [--sync always|batch-interval|never] [--count 20000]
        [--lead 3] [--timeout 60] [--json]

Per system (launched as in bench_publish.py, one after the other): a stream `S` on `s.>` with
allow_msg_schedules; --count schedules published pipelined (publish_async), each on its own subject `s.sched.<i>`
with `Nats-Schedule: @at <start + --lead seconds>` and target `s.out` (schedules/s until every PubAck arrived);
then the time from that due moment until every produced message is stored and every schedule purged (the
stream holds exactly --count messages, last_seq 2 x --count), as produced messages/s. Exit status 1 on warnings
(a count that never settles, errors, stderr problems).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time

import nats
from bench_publish import interrupted, report, run_header, run_main, with_system
from nats.js import JetStreamContext

METRICS = ("publish schedules/s", "fire produced/s")
Results = dict[str, float]


async def run_system(name: str, url: str, args: argparse.Namespace, warn: list[str]) -> Results:
    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False, name=f"bench-{name}")
    js: JetStreamContext = nc.jetstream(timeout=args.timeout, publish_async_max_pending=args.count + 1)
    n = args.count
    try:
        await js.add_stream(name="S", subjects=["s.>"], allow_msg_schedules=True)
        due = time.time() + args.lead
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(due)) + f".{int(due % 1 * 1e6):06d}Z"
        hdrs = {"Nats-Schedule": f"@at {at}", "Nats-Schedule-Target": "s.out"}
        start = time.perf_counter()
        futures = [await js.publish_async(f"s.sched.{i}", b"job", headers=hdrs) for i in range(n)]
        await asyncio.wait_for(asyncio.gather(*futures), args.timeout)
        published = time.perf_counter()
        if time.time() >= due:
            warn.append(f"{name}: publishing took longer than --lead {args.lead}s; the fire rate is understated")
        deadline = time.monotonic() + args.timeout + args.lead
        while True:
            state = (await js.stream_info("S")).state
            if state.last_seq == 2 * n and state.messages == n:
                break
            if time.monotonic() > deadline:
                warn.append(f"{name}: not settled: messages={state.messages} last_seq={state.last_seq}")
                return {METRICS[0]: n / (published - start)}
            await asyncio.sleep(0.02)
        fired = time.time() - due
        return {METRICS[0]: n / (published - start), METRICS[1]: n / max(fired, 1e-3)}
    except Exception as exc:
        if interrupted():
            raise asyncio.CancelledError from exc
        warn.append(f"{name}: {type(exc).__name__}: {exc}")
        return {}
    finally:
        await nc.close()


async def amain(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    header = await run_header(args, {"schedules": args.count, "lead": args.lead})
    warn: list[str] = []
    notes: list[str] = []
    results = {
        name: await with_system(name, args, warn, notes, lambda url, name=name: run_system(name, url, args, warn))
        for name in ("jetstream", "streamd")
    }
    intro = (f"# streamd sync: {header['streamd_sync']} | nats-server {header['nats_server']}\n"
             f"# command: {header['command']}\n# {args.count} one-shot schedules due together; ratio = streamd / js")
    return report(results, METRICS, header, intro, warn, notes, args.json)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sync", choices=["always", "batch-interval", "never"], default="always")
    p.add_argument("--count", type=int, default=20_000, help="schedules, all due at once [20000]")
    p.add_argument("--lead", type=float, default=3.0, help="seconds from the start until they are due [3]")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the publishes, and to settle [60]")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(attach=None, embedded=False, js_sync_always=False)  # used by bench_publish's starters
    return p.parse_args()


def main() -> int:
    return run_main(amain, parse_args())


if __name__ == "__main__":
    sys.exit(main())
