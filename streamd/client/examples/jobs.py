"""A job queue in a few lines: enqueue, run with retries, look at the dead letters, clean up.

    python -m streamd.client.examples.jobs [--server nats://127.0.0.1:4222]

Works against streamd or a JetStream server. Creates and finally deletes the streams JOBS_example and
JOBS_example_DLQ.
"""

from __future__ import annotations

import asyncio
import sys

import msgspec
import nats

from streamd.client import examples
from streamd.client.jobs import Backoff, Job, Queue, Worker


class Email(msgspec.Struct):
    to: str
    flaky: bool = False
    broken: bool = False


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(server: str) -> None:
    nc = await nats.connect(server)
    js = nc.jetstream(timeout=5)
    queue = await Queue.open(js, "example", ack_wait=5, max_attempts=3)
    try:
        await queue.enqueue_many(
            [Email("ann@example.com"), Email("bob@example.com", flaky=True), Email("eve@example.com", broken=True)]
        )
        await queue.enqueue(Email("dan@example.com"), id="welcome-dan")
        await queue.enqueue(Email("dan@example.com"), id="welcome-dan")  # deduplicated
        await queue.enqueue(Email("zoe@example.com"), delay=1.0)
        say(f"enqueued, {await queue.pending()} jobs waiting")

        async def send(job: Job) -> None:
            email = job.decode(Email)
            if email.broken or (email.flaky and job.attempt < 2):
                say(f"  attempt {job.attempt} for {email.to}: failing")
                raise ConnectionError(f"SMTP refused {email.to}")
            say(f"  attempt {job.attempt} for {email.to}: sent")

        async with Worker(queue, send, concurrency=4, backoff=Backoff(base=0.2, jitter=0)):
            async with asyncio.timeout(30):
                while await queue.pending():
                    await asyncio.sleep(0.1)
        for dead in await queue.dead_letters():
            say(f"dead letter: {dead.data.decode()} after {dead.attempts} attempts: {dead.error}")
    finally:
        await queue.delete()
        await nc.close()


if __name__ == "__main__":
    examples.run(main, __doc__.splitlines()[0] if __doc__ else None)
