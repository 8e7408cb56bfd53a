"""The single writer on a real LMDB: group commit, PubAcks and call results after the commit, order, refusals
that stay with their item, map growth, queue limits, and a drain before stop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.store.writer import Frames, Replies, Writer
from streamd.wire import errors
from streamd.wire.models import RePublish, SubjectTransformConfig
from tests.unit.store.support import make_stream, seqs

T = TypeVar("T")


class Harness:
    """A writer running on the test's loop, with the replies it sent collected in order."""

    def __init__(self, store: Store, **options: object) -> None:
        self.store = store
        self.registry: dict[str, streams.Stream] = {}
        self.replies: Replies = []
        self.frames: Frames = []
        self.writer = Writer(store, self.registry, self._send, **options)  # type: ignore[arg-type]
        self.committed: list[streams.Batch] = []
        self.writer.on_commit = self.committed.append
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.writer.run())

    async def stop(self) -> None:
        """As the service stops it: wait until everything queued is committed and answered, then cancel."""
        await self.writer.wait_idle()
        if self.task is not None:
            self.task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self.task

    async def queue_call(self, fn: Callable[[streams.Batch], T]) -> asyncio.Future[T]:
        """Queue a call now (behind what is queued already); its future resolves after its commit."""
        fut = asyncio.ensure_future(self.writer.call(fn))
        await asyncio.sleep(0)  # let call() put it on the queue
        return fut

    async def _send(self, replies: Replies, frames: Frames) -> None:
        self.replies.extend(replies)
        self.frames.extend(frames)

    def stream(self, name: str = "S", **cfg: object) -> streams.Stream:
        s = make_stream(self.store, name, **cfg)  # type: ignore[arg-type]
        self.registry[name] = s
        return s

    def acks(self) -> dict[bytes, dict[str, object]]:
        return {reply: json.loads(payload) for reply, payload in self.replies}


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """A writer not yet started: a test queues first, then starts it, so what one batch holds is known."""
    store = Store.open(tmp_path / "data", sync=False, map_size=1 << 20)
    h = Harness(store)
    yield h
    await h.stop()
    store.close()


async def test_publishes_queued_together_commit_in_one_transaction(harness: Harness) -> None:
    s = harness.stream()
    for i in range(200):
        assert harness.writer.publish(s, b"s.a", b"r%d" % i, None, b"x")
    harness.start()
    await harness.writer.wait_idle()
    assert harness.writer.committed_batches == 1 and harness.writer.committed_items == 200
    assert [r for r, _ in harness.replies] == [b"r%d" % i for i in range(200)]
    assert [a["seq"] for a in harness.acks().values()] == list(range(1, 201))
    assert harness.acks()[b"r0"] == {"stream": "S", "seq": 1}
    assert len(harness.committed) == 1 and len(harness.committed[0].stored) == 200
    assert s.committed.messages == 200


async def test_batches_are_cut_at_the_batch_limit(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "data", sync=False)
    h = Harness(store, max_batch_msgs=10, linger=0)
    s = h.stream()
    for i in range(35):
        h.writer.publish(s, b"s.a", b"r%d" % i, None, b"x")
    h.start()
    await h.stop()
    assert h.writer.committed_batches == 4 and seqs(store, s) == list(range(1, 36))
    store.close()


async def test_calls_see_the_publishes_queued_before_them(harness: Harness) -> None:
    s = harness.stream()
    harness.writer.publish(s, b"s.a", b"r1", None, b"x")
    first = await harness.queue_call(lambda b: s.counters.last_seq)
    harness.writer.publish(s, b"s.a", b"r2", None, b"x")
    second = await harness.queue_call(lambda b: s.counters.last_seq)
    harness.start()
    assert await first == 1 and await second == 2
    assert harness.writer.committed_batches == 1


async def test_refusals_stay_with_their_item(harness: Harness) -> None:
    s = harness.stream(max_msgs=1, discard="new")
    quiet = harness.stream("Q")
    harness.writer.publish(s, b"s.a", b"ok", None, b"x")
    harness.writer.publish(s, b"s.a", b"full", None, b"x")
    harness.writer.publish(s, b"s.a", b"", None, b"x")  # refused, and nobody to tell
    refused = await harness.queue_call(lambda b: (_ for _ in ()).throw(errors.SEALED()))
    harness.writer.publish(quiet, b"q.a", b"after", None, b"x")
    harness.start()
    with pytest.raises(errors.ApiError) as info:
        await refused
    assert info.value.err_code == errors.SEALED.err_code
    await harness.writer.wait_idle()
    acks = harness.acks()
    assert acks[b"ok"] == {"stream": "S", "seq": 1}
    assert acks[b"full"]["error"]["err_code"] == errors.STORE_FAILED.err_code  # type: ignore[index]
    assert acks[b"after"] == {"stream": "Q", "seq": 1}
    assert len(harness.replies) == 3 and harness.writer.committed_batches == 1


async def test_a_failing_call_is_refused_alone_and_the_writer_goes_on(harness: Harness) -> None:
    s = harness.stream()

    def broken(b: streams.Batch) -> None:
        streams.store_message(b, s, b"s.lost", None, b"x")  # written, then undone with its transaction
        raise RuntimeError("bug")

    harness.writer.publish(s, b"s.a", b"r1", None, b"x")
    bad = await harness.queue_call(broken)
    harness.writer.publish(s, b"s.a", b"r2", None, b"x")
    harness.start()
    with pytest.raises(errors.ApiError) as info:
        await bad
    assert info.value.err_code == errors.STREAM_GENERAL.err_code
    await harness.writer.wait_idle()
    assert [a["seq"] for a in harness.acks().values()] == [1, 2]
    assert seqs(harness.store, s) == [1, 2] and s.committed.last_seq == 2
    harness.writer.publish(s, b"s.a", b"r3", None, b"x")
    await harness.writer.wait_idle()
    assert harness.acks()[b"r3"]["seq"] == 3


async def test_a_full_map_grows_and_nothing_is_refused(harness: Harness) -> None:
    s = harness.stream()
    size_before = harness.store.env.info()["map_size"]
    payload = b"p" * 4000
    for i in range(1000):  # about 4 MB into a 1 MiB map
        assert harness.writer.publish(s, b"s.%d" % (i % 7), b"r%d" % i, None, payload)
    harness.start()
    await harness.writer.wait_idle()
    assert harness.store.env.info()["map_size"] > size_before
    assert [a.get("seq") for a in harness.acks().values()] == list(range(1, 1001))
    assert s.committed.messages == 1000 and len(seqs(harness.store, s)) == 1000


async def test_the_pending_limits_refuse_publishes_not_calls(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "data", sync=False)
    h = Harness(store, max_pending_msgs=3, max_pending_bytes=20)
    s = h.stream()
    assert h.writer.publish(s, b"s.a", b"", None, b"12345")
    assert h.writer.publish(s, b"s.a", b"", b"NATS/1.0\r\n\r\n", b"1")  # headers count: 18 bytes now
    assert not h.writer.publish(s, b"s.a", b"", None, b"123")  # bytes
    assert h.writer.publish(s, b"s.a", b"", None, b"")
    assert not h.writer.publish(s, b"s.a", b"", None, b"")  # messages
    assert h.writer.pending == 3
    call = await h.queue_call(lambda b: "done")
    assert h.writer.pending == 4
    h.start()
    assert await call == "done"
    await h.writer.wait_idle()
    assert h.writer.pending == 0 and h.writer.publish(s, b"s.a", b"", None, b"x" * 20)
    await h.stop()
    assert seqs(store, s) == [1, 2, 3, 4]
    store.close()


async def test_wait_idle_drains_everything_queued_before_a_stop(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "data", sync=True)
    h = Harness(store, max_batch_msgs=50)
    s = h.stream()
    h.start()
    for i in range(500):
        h.writer.publish(s, b"s.a", b"r%d" % i, None, b"x")
        if i % 100 == 0:
            await asyncio.sleep(0)
    await h.stop()
    assert len(h.replies) == 500 and h.writer.committed_items == 500
    store.close()
    reopened = Store.open(tmp_path / "data", sync=False)
    with reopened.read() as txn:
        assert reopened.get_counters(txn, s.id).last_seq == 500
    reopened.close()


async def test_republished_copies_go_out_with_the_commits_pubacks(harness: Harness) -> None:
    rp = RePublish(src="s.*", dest="out.$1", headers_only=True)
    s = harness.stream(subject_transform=SubjectTransformConfig(src="s.in", dest="s.a"), republish=rp)
    harness.writer.publish(s, b"s.in", b"r1", b"NATS/1.0\r\nH: 1\r\n\r\n", b"abc")
    harness.writer.publish(s, b"s.a", b"r2", b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n", b"de")
    harness.writer.publish(s, b"s.a", b"r3", b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n", b"de")  # duplicate: not sent
    harness.writer.publish(s, b"s.b.c", b"r4", None, b"")  # stored, not matching the republish source
    harness.start()
    await harness.writer.wait_idle()
    assert [a["seq"] for a in harness.acks().values()] == [1, 2, 2, 3]
    assert [(subject, data) for subject, _, data in harness.frames] == [(b"out.a", b""), (b"out.a", b"")]
    first = harness.frames[0][1]
    assert first.startswith(b"NATS/1.0\r\nH: 1\r\nNats-Stream: S\r\nNats-Subject: s.a\r\nNats-Sequence: 1\r\n")
    assert first.endswith(b"Nats-Last-Sequence: 0\r\nNats-Msg-Size: 3\r\n\r\n")
    assert b"Nats-Last-Sequence: 1\r\nNats-Msg-Size: 2\r\n" in harness.frames[1][1]
