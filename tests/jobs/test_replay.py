"""streamd.replay against the real JetStream and streamd (each test runs on both)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext

from streamd.client.replay import CheckpointedReader, Event, Projection, replay
from tests.helpers import wait_for


async def _fill(js: JetStreamContext) -> None:
    await js.add_stream(name="EV", subjects=["ev.>"])
    for subject, data in [
        ("ev.a", b"a1"),
        ("ev.b", b"b1"),
        ("ev.a", b"a2"),
        ("ev.c", b"c1"),
        ("ev.b", b"b2"),
        ("ev.a", b"a3"),
    ]:
        await js.publish(subject, data, headers={"K": data.decode()})


async def _collect(events: AsyncIterator[Event]) -> list[tuple[int, str, bytes]]:
    return [(e.sequence, e.subject, e.data) async for e in events]


async def _consumers(js: JetStreamContext, stream: str) -> int:
    return int((await js.stream_info(stream)).state.consumer_count)


async def test_replay_from_start_sequence_and_filters(js: JetStreamContext) -> None:
    await _fill(js)
    everything = [e async for e in replay(js, "EV")]
    assert [(e.sequence, e.subject, e.data) for e in everything] == [
        (1, "ev.a", b"a1"),
        (2, "ev.b", b"b1"),
        (3, "ev.a", b"a2"),
        (4, "ev.c", b"c1"),
        (5, "ev.b", b"b2"),
        (6, "ev.a", b"a3"),
    ]
    assert everything[0].headers["K"] == "a1"
    assert everything[0].time.tzinfo is not None and everything[0].time <= everything[-1].time
    assert await _collect(replay(js, "EV", start_seq=4)) == [(4, "ev.c", b"c1"), (5, "ev.b", b"b2"), (6, "ev.a", b"a3")]
    assert await _collect(replay(js, "EV", subjects=["ev.a"])) == [
        (1, "ev.a", b"a1"),
        (3, "ev.a", b"a2"),
        (6, "ev.a", b"a3"),
    ]
    assert await _collect(replay(js, "EV", subjects=["ev.b", "ev.c"], start_seq=3)) == [
        (4, "ev.c", b"c1"),
        (5, "ev.b", b"b2"),
    ]
    assert await _collect(replay(js, "EV", start_seq=7)) == []
    await wait_for(lambda: _consumers_zero(js, "EV"))


async def _consumers_zero(js: JetStreamContext, stream: str) -> bool:
    return await _consumers(js, stream) == 0


async def test_replay_from_time_and_last_per_subject(js: JetStreamContext) -> None:
    await _fill(js)
    everything = [e async for e in replay(js, "EV")]
    between = everything[2].time + (everything[3].time - everything[2].time) / 2
    assert await _collect(replay(js, "EV", start_time=between)) == [
        (4, "ev.c", b"c1"),
        (5, "ev.b", b"b2"),
        (6, "ev.a", b"a3"),
    ]
    assert await _collect(replay(js, "EV", last_per_subject=True)) == [
        (4, "ev.c", b"c1"),
        (5, "ev.b", b"b2"),
        (6, "ev.a", b"a3"),
    ]
    assert await _collect(replay(js, "EV", last_per_subject=True, subjects=["ev.a", "ev.b"])) == [
        (5, "ev.b", b"b2"),
        (6, "ev.a", b"a3"),
    ]
    with pytest.raises(ValueError):
        replay(js, "EV", start_seq=1, last_per_subject=True)


async def test_replay_empty_stream_and_early_close(js: JetStreamContext) -> None:
    await js.add_stream(name="EMPTY", subjects=["empty.>"])
    assert await _collect(replay(js, "EMPTY")) == []
    await _fill(js)
    async with replay(js, "EV") as events:
        async for event in events:
            assert event.sequence == 1
            break
    await wait_for(lambda: _consumers_zero(js, "EV"))


async def test_follow_sees_new_events(js: JetStreamContext) -> None:
    await _fill(js)
    seen: list[tuple[int, str, bytes]] = []

    async def tail() -> None:
        async with replay(js, "EV", subjects=["ev.a"], start_seq=6, follow=True) as events:
            async for e in events:
                seen.append((e.sequence, e.subject, e.data))

    task = asyncio.create_task(tail())
    await wait_for(lambda: len(seen) == 1)
    await js.publish("ev.b", b"b3")
    await js.publish("ev.a", b"a4")
    await wait_for(lambda: len(seen) == 2)
    assert seen == [(6, "ev.a", b"a3"), (8, "ev.a", b"a4")]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await wait_for(lambda: _consumers_zero(js, "EV"))


async def test_checkpointed_reader_resumes_without_gaps_or_repeats(js: JetStreamContext) -> None:
    await _fill(js)
    seen: list[int] = []
    async with CheckpointedReader(js, "EV", "proj1") as reader:
        async for e in reader:
            seen.append(e.sequence)
            if len(seen) == 2:
                break
    # an exception in the loop body: that event is not checkpointed
    with pytest.raises(RuntimeError):
        async with CheckpointedReader(js, "EV", "proj1") as reader:
            async for e in reader:
                if e.sequence == 4:
                    raise RuntimeError("crash while processing 4")
                seen.append(e.sequence)
    assert seen == [1, 2, 3]
    await js.publish("ev.d", b"d1")
    async with CheckpointedReader(js, "EV", "proj1") as reader:
        seen.extend([e.sequence async for e in reader])
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    async with CheckpointedReader(js, "EV", "proj1") as reader:
        assert [e async for e in reader] == []
    info = await js.consumer_info("EV", "proj1")
    assert info.ack_floor.stream_seq == 7


async def test_projection_rebuild_then_live(js: JetStreamContext) -> None:
    await _fill(js)

    def count(state: dict[str, int], event: Event) -> dict[str, int]:
        return {**state, event.subject: state.get(event.subject, 0) + 1}

    projection: Projection[dict[str, int]] = Projection(js, "EV", count, {})
    assert await projection.start() == {"ev.a": 3, "ev.b": 2, "ev.c": 1}
    assert projection.last_sequence == 6
    await js.publish("ev.c", b"c2")
    await js.publish("ev.z", b"z1")
    state = await projection.wait_until(lambda s: s.get("ev.z") == 1)
    assert state == {"ev.a": 3, "ev.b": 2, "ev.c": 2, "ev.z": 1}
    assert projection.last_sequence == 8
    await projection.stop()
    await wait_for(lambda: _consumers_zero(js, "EV"))
    fresh: Projection[dict[str, int]] = Projection(js, "EV", count, {}, subjects=["ev.c"])
    assert await fresh.rebuild() == {"ev.c": 2}


async def test_projection_example_runs(server_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamd.client.examples.projection",
        "--server",
        server_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "rebuilt: {'alice': 70, 'bob': 50, 'carol': 10} (up to #4)" in text
    assert "live:    {'alice': 70, 'bob': 75, 'carol': 10, 'dave': 7} (up to #6)" in text
