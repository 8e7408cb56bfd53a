"""Event replay and a projection: account balances rebuilt from history, then kept current.

    python -m streamd.client.examples.projection [--server nats://127.0.0.1:4222]

Works against streamd or a JetStream server. Creates and finally deletes the stream EXAMPLE_ACCOUNTS.
"""

from __future__ import annotations

import sys

import nats

from streamd.client import examples
from streamd.client.replay import Event, Projection, replay

STREAM = "EXAMPLE_ACCOUNTS"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def balances(state: dict[str, int], event: Event) -> dict[str, int]:
    account = event.subject.rsplit(".", 1)[-1]
    return {**state, account: state.get(account, 0) + int(event.data)}


async def main(server: str) -> None:
    nc = await nats.connect(server)
    js = nc.jetstream(timeout=5)
    await js.add_stream(name=STREAM, subjects=["example.accounts.>"])
    try:
        for account, amount in [("alice", 100), ("bob", 50), ("alice", -30), ("carol", 10)]:
            await js.publish(f"example.accounts.{account}", str(amount).encode())
        say("history:")
        async for event in replay(js, STREAM):
            say(f"  #{event.sequence} {event.time:%H:%M:%S.%f} {event.subject} {event.data.decode()}")
        say("latest per account:")
        async for event in replay(js, STREAM, last_per_subject=True):
            say(f"  {event.subject} {event.data.decode()}")

        projection: Projection[dict[str, int]] = Projection(js, STREAM, balances, {})
        say(f"rebuilt: {await projection.start()} (up to #{projection.last_sequence})")
        await js.publish("example.accounts.bob", b"25")
        await js.publish("example.accounts.dave", b"7")
        await projection.wait_until(lambda s: "dave" in s)
        say(f"live:    {projection.state} (up to #{projection.last_sequence})")
        await projection.stop()
    finally:
        await js.delete_stream(STREAM)
        await nc.close()


if __name__ == "__main__":
    examples.run(main, __doc__.splitlines()[0] if __doc__ else None)
