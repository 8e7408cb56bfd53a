"""streamd.jobs: queues, workers, retries, dead letters, delays, shutdown; against the real JetStream and streamd."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time

import pytest
from nats.js import JetStreamContext

from streamd.client.jobs import Backoff, Job, Queue, Reject, Retry, Worker
from tests.helpers import wait_for

FAST = Backoff(base=0.2, factor=2.0, cap=5.0, jitter=0.0)


async def _idle(queue: Queue) -> bool:
    return await queue.pending() == 0


async def test_open_is_idempotent_and_names(js: JetStreamContext) -> None:
    q1 = await Queue.open(js, "mail", ack_wait=1, max_attempts=3)
    q2 = await Queue.open(js, "mail", ack_wait=1, max_attempts=3)
    assert (q2.stream, q2.consumer, q2.dlq_stream, q2.subject) == (
        "JOBS_mail",
        "JOBS_mail_workers",
        "JOBS_mail_DLQ",
        "jobs.mail.run",
    )
    info = await js.consumer_info(q1.stream, q1.consumer)
    assert (info.config.ack_wait, info.config.max_deliver) == (1.0, 6)
    with pytest.raises(ValueError):
        await Queue.open(js, "bad.name")


async def test_fails_twice_then_succeeds_with_backoff(js: JetStreamContext) -> None:
    queue = await Queue.open(js, "retry", ack_wait=1, max_attempts=5)
    runs: list[tuple[int, float]] = []

    async def handler(job: Job) -> None:
        runs.append((job.attempt, time.monotonic()))
        if len(runs) < 3:
            raise RuntimeError("flaky")

    await queue.enqueue({"to": "x"})
    async with Worker(queue, handler, backoff=FAST):
        await wait_for(lambda: len(runs) == 3)
        await wait_for(lambda: _idle(queue))
    assert [a for a, _ in runs] == [1, 2, 3]
    assert runs[1][1] - runs[0][1] >= 0.2 * 0.9
    assert runs[2][1] - runs[1][1] >= 0.4 * 0.9
    assert await queue.dead_letter_count() == 0


async def test_explicit_retry_and_reject(js: JetStreamContext) -> None:
    queue = await Queue.open(js, "explicit", ack_wait=1, max_attempts=5)
    runs: list[tuple[bytes, int, float]] = []

    async def handler(job: Job) -> None:
        runs.append((job.data, job.attempt, time.monotonic()))
        if job.data == b"later" and job.attempt == 1:
            raise Retry(after=0.5)
        if job.data == b"bad":
            raise Reject("invalid")

    await queue.enqueue(b"later")
    await queue.enqueue(b"bad")
    async with Worker(queue, handler, backoff=FAST, concurrency=2):
        await wait_for(lambda: len(runs) == 3)
        await wait_for(lambda: _idle(queue))
    later = [r for r in runs if r[0] == b"later"]
    assert [r[1] for r in later] == [1, 2] and later[1][2] - later[0][2] >= 0.45
    assert [r[1] for r in runs if r[0] == b"bad"] == [1]
    assert await queue.dead_letter_count() == 0


async def test_always_failing_job_is_dead_lettered_then_requeued_and_purged(js: JetStreamContext) -> None:
    queue = await Queue.open(js, "dlq", ack_wait=1, max_attempts=3)
    attempts: list[int] = []
    healthy = False

    async def handler(job: Job) -> None:
        attempts.append(job.attempt)
        if not healthy:
            raise ValueError(f"boom {job.decode(dict)['n']}")

    await queue.enqueue({"n": 1}, id="job-1", headers={"Tenant": "acme"})
    async with Worker(queue, handler, backoff=Backoff(base=0.1, jitter=0)):
        await wait_for(lambda: queue.dead_letter_count(), timeout=15)
        await wait_for(lambda: _idle(queue))
    assert attempts == [1, 2, 3]
    [dead] = await queue.dead_letters()
    assert dead.error == "ValueError: boom 1" and dead.attempts == 3 and dead.id == "job-1"
    assert dead.headers["Tenant"] == "acme" and dead.data == b'{"n":1}'

    healthy = True
    assert await queue.requeue_dead_letters() == 1
    assert await queue.dead_letter_count() == 0
    async with Worker(queue, handler):
        await wait_for(lambda: len(attempts) == 4)
        await wait_for(lambda: _idle(queue))
    assert attempts[-1] == 1

    healthy = False
    await queue.enqueue({"n": 2})
    async with Worker(queue, handler, backoff=Backoff(base=0.1, jitter=0)):
        await wait_for(lambda: queue.dead_letter_count(), timeout=15)
    await queue.purge_dead_letters()
    assert await queue.dead_letter_count() == 0


async def test_slow_handler_keeps_its_job(js: JetStreamContext) -> None:
    queue = await Queue.open(js, "slow", ack_wait=1, max_attempts=5)
    calls: list[int] = []

    async def handler(job: Job) -> None:
        calls.append(job.attempt)
        await asyncio.sleep(2.5)  # the work itself: longer than ack_wait

    await queue.enqueue(b"long")
    async with Worker(queue, handler, concurrency=2), Worker(queue, handler, concurrency=2):
        await wait_for(lambda: _idle(queue), timeout=15)
    assert calls == [1]
    info = await js.consumer_info(queue.stream, queue.consumer)
    assert info.num_redelivered == 0 and info.num_ack_pending == 0


async def test_dedup_by_job_id_and_enqueue_many(js: JetStreamContext) -> None:
    queue = await Queue.open(js, "dedup", ack_wait=1)
    first = await queue.enqueue(b"a", id="same")
    assert await queue.enqueue(b"a-again", id="same") == first
    seqs = await queue.enqueue_many([{"i": i} for i in range(20)], ids=[f"m{i % 10}" for i in range(20)])
    assert len(set(seqs)) == 10
    assert await queue.pending() == 11
    seen: list[bytes] = []
    active = 0
    peak = 0

    async def handler(job: Job) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        seen.append(job.data)
        active -= 1

    async with Worker(queue, handler, concurrency=4):
        await wait_for(lambda: _idle(queue))
    assert sorted(seen) == sorted([b"a"] + [b'{"i":%d}' % i for i in range(10)])
    assert 1 < peak <= 4


@pytest.mark.parametrize("schedules", [True, False], ids=["scheduled", "nak"])
async def test_delayed_jobs_do_not_run_early(js: JetStreamContext, schedules: bool) -> None:
    """Both servers serve message schedules (API level 2+): a delayed job is a schedule the server fires, its
    message carries Nats-Scheduler; the nak path stays for servers without them."""
    queue = await Queue.open(js, "delay", ack_wait=1, max_attempts=2, schedules=schedules)
    assert queue.schedules is schedules
    assert bool((await js.stream_info(queue.stream)).config.allow_msg_schedules) is schedules
    ran: dict[bytes, tuple[float, int]] = {}
    scheduler: dict[bytes, str | None] = {}

    async def handler(job: Job) -> None:
        ran[job.data] = (time.monotonic(), job.attempt)
        scheduler[job.data] = job.headers.get("Nats-Scheduler")

    start = time.monotonic()
    await queue.enqueue(b"later", delay=1.5)
    await queue.enqueue(b"now")
    async with Worker(queue, handler):
        await wait_for(lambda: len(ran) == 2, timeout=10)
        await wait_for(lambda: _idle(queue))
    assert ran[b"now"][0] < ran[b"later"][0]
    assert ran[b"later"][0] - start >= 1.5 - 0.05
    assert ran[b"later"][1] == 1  # the deferral is not an attempt
    assert (scheduler[b"later"] or "").startswith("jobs.delay.sched.") is schedules
    assert scheduler[b"now"] is None


async def test_a_queue_made_without_schedules_turns_them_on(js: JetStreamContext) -> None:
    old = await Queue.open(js, "upgrade", schedules=False)
    assert not (await js.stream_info(old.stream)).config.allow_msg_schedules
    new = await Queue.open(js, "upgrade")
    assert new.schedules and (await js.stream_info(new.stream)).config.allow_msg_schedules
    await new.enqueue(b"x", delay=3600)
    assert await new.pending() == 1  # the schedule waits in the stream, invisible to workers


async def test_graceful_stop_finishes_running_and_naks_the_rest(js: JetStreamContext) -> None:
    queue = await Queue.open(js, "stop", ack_wait=30, max_attempts=3)
    finished: list[bytes] = []
    started: list[bytes] = []

    async def handler(job: Job) -> None:
        started.append(job.data)
        await asyncio.sleep(0.3 if job.data == b"short" else 3600)
        finished.append(job.data)

    await queue.enqueue(b"short")
    await queue.enqueue(b"stuck")
    worker = Worker(queue, handler, concurrency=2)
    await worker.start()
    await wait_for(lambda: len(started) == 2)
    await worker.stop(timeout=1.5)
    assert finished == [b"short"]
    assert worker.running == 0
    # the stuck job was nak'ed: another worker gets it at once, long before ack_wait (30 s)
    again: list[int] = []

    async def second(job: Job) -> None:
        again.append(job.attempt)

    async with Worker(queue, second):
        await wait_for(lambda: again, timeout=5)
        await wait_for(lambda: _idle(queue))
    assert again == [2]


WORKER_SCRIPT = """
import asyncio, sys, nats
from streamd.client.jobs import Queue, Worker

async def main():
    nc = await nats.connect(sys.argv[1])
    queue = await Queue.open(nc.jetstream(), "crash", ack_wait=1, max_attempts=3)
    async def handler(job):
        sys.stdout.write("started\\n")
        sys.stdout.flush()
        await asyncio.sleep(3600)
    await Worker(queue, handler).start()
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_worker_killed_mid_job_is_redelivered(js: JetStreamContext, server_url: str) -> None:
    queue = await Queue.open(js, "crash", ack_wait=1, max_attempts=3)
    await queue.enqueue(b"survive")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER_SCRIPT, server_url, stdout=asyncio.subprocess.PIPE, env=dict(os.environ)
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            assert (await proc.stdout.readline()).strip() == b"started"
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    runs: list[tuple[bytes, int]] = []

    async def handler(job: Job) -> None:
        runs.append((job.data, job.attempt))

    async with Worker(queue, handler):
        await wait_for(lambda: runs, timeout=10)
        await wait_for(lambda: _idle(queue))
    assert runs == [(b"survive", 2)]


async def test_jobs_example_runs(server_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamd.client.examples.jobs",
        "--server",
        server_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "attempt 2 for bob@example.com: sent" in text
    assert "attempt 1 for zoe@example.com: sent" in text
    assert text.count("for dan@example.com: sent") == 1
    assert "after 3 attempts: ConnectionError: SMTP refused eve@example.com" in text
