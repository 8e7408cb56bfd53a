"""`streamd jobs ...` against a queue made with streamd.jobs."""

from __future__ import annotations

from nats.js import JetStreamContext

from streamd.client.jobs import Job, Queue, Worker
from tests.cli import cli, ok, ok_json, one_line_error
from tests.helpers import wait_for
from tests.natsd import NatsServer


async def test_jobs_info_dead_letters_requeue_purge(js: JetStreamContext, nats_server: NatsServer) -> None:
    url = nats_server.url
    queue = await Queue.open(js, "mail", ack_wait=2, max_attempts=1)
    await queue.enqueue(b"broken", id="job-1")

    async def fail(job: Job) -> None:
        raise RuntimeError("smtp down")

    async with Worker(queue, fail):
        await wait_for(queue.dead_letter_count)

    info = await ok_json(url, "jobs", "info", "mail")
    assert info["dead_letters"] == 1 and info["queue"] == "mail"
    [dead] = await ok_json(url, "jobs", "dead-letters", "mail")
    assert dead["id"] == "job-1" and "smtp down" in dead["error"] and dead["attempts"] == 1
    assert "smtp down" in await ok(url, "jobs", "dead-letters", "mail")

    assert (await ok_json(url, "jobs", "requeue", "mail"))["requeued"] == 1
    assert await queue.dead_letter_count() == 0
    assert await queue.pending() == 1

    async def fail_again(job: Job) -> None:
        raise RuntimeError("still down")

    async with Worker(queue, fail_again):
        await wait_for(queue.dead_letter_count)
    assert "Deleted 1 dead letter" in await ok(url, "jobs", "purge", "mail", "--force")
    assert await queue.dead_letter_count() == 0
    assert "JOBS_" in one_line_error(await cli(url, "jobs", "info", "nosuch"))
