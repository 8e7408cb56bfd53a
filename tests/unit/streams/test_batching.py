"""The atomic batch stager: a pure state machine, time passed in (no timers, no waiting)."""

from __future__ import annotations

import pytest

from streamd.streams.batching import Commit, Limits, Stager, batch_id
from streamd.wire import errors

S = 1_000_000_000


def hdrs(bid: str, seq: int, commit: str | None = None) -> bytes:
    out = f"NATS/1.0\r\nNats-Batch-Id: {bid}\r\nNats-Batch-Sequence: {seq}\r\n"
    return (out + (f"Nats-Batch-Commit: {commit}\r\n" if commit else "") + "\r\n").encode()


def offer(st: Stager, bid: str, seq: int, commit: str | None = None, now: int = 0, stream: str = "S") -> Commit | None:
    return st.offer(stream, bid.encode(), b"s.x", hdrs(bid, seq, commit), b"12345678", now)


def refused(st: Stager, *args: object, **kw: object) -> int:
    with pytest.raises(errors.ApiError) as caught:
        offer(st, *args, **kw)  # type: ignore[arg-type]
    return caught.value.err_code


def test_batch_id_costs_nothing_without_the_header() -> None:
    assert batch_id(None) == batch_id(b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n") == b""
    assert batch_id(hdrs("abc", 1)) == b"abc"


def test_an_idle_batch_times_out_and_its_memory_is_freed() -> None:
    st = Stager(2, Limits(timeout_ns=10 * S))
    assert offer(st, "a", 1, now=0) is None
    assert offer(st, "a", 2, now=9 * S) is None  # each message restarts the clock
    assert st.bytes > 0
    assert refused(st, "a", 3, "1", now=19 * S) == 10176
    assert (len(st), st.bytes) == (0, 0)
    assert st.abandoned == [("S", "a", "timeout")]
    offer(st, "b", 1, now=20 * S)
    assert st.expire(30 * S) == 1 and st.abandoned[-1] == ("S", "b", "timeout")


def test_expired_batches_give_their_slots_to_new_ones() -> None:
    st = Stager(2, Limits(inflight_per_stream=2, inflight_total=3, timeout_ns=S))
    offer(st, "a", 1)
    offer(st, "b", 1)
    assert refused(st, "c", 1) == 10210  # per stream
    offer(st, "c", 1, stream="T")
    assert refused(st, "d", 1, stream="U") == 10210  # in total
    assert offer(st, "c", 1, now=2 * S) is None  # a and b expired meanwhile
    assert len(st) == 1


def test_staged_bytes_are_bounded() -> None:
    st = Stager(2, Limits(max_bytes=100))
    offer(st, "a", 1)
    assert refused(st, "a", 2) == 10210  # the second message would pass the bound: the batch is dropped
    assert (len(st), st.bytes) == (0, 0)


def test_commit_hands_over_the_messages_in_order_and_eob_marks_the_last() -> None:
    st = Stager(2)
    offer(st, "a", 1)
    offer(st, "a", 2)
    commit = offer(st, "a", 3, "eob")
    assert commit is not None and commit.batch_id == "a" and len(commit.msgs) == 2
    assert b"Nats-Batch-Sequence: 2\r\nNats-Batch-Commit: 1\r\n\r\n" in (commit.msgs[-1][1] or b"")
    assert (len(st), st.bytes) == (0, 0)


def test_forget_stream_drops_its_batches_only() -> None:
    st = Stager(2)
    offer(st, "a", 1)
    offer(st, "a", 1, stream="T")
    st.forget_stream("S")
    assert len(st) == 1
