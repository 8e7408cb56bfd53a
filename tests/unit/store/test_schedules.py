"""The schedule index on the write path: rows fired in bounded passes, stale rows dropped, repeats re-indexed."""

from __future__ import annotations

import pytest

from streamd.store import scheduler
from streamd.store.env import Store
from streamd.store.layout import scan
from streamd.store.stream import Stream, delete_seq
from tests.unit.store.support import NOW, SECOND, make_stream, publish, write

AT = "@at 2027-01-15T08:00:00Z"  # NOW itself (1.8e9 s)
LATER = NOW + 3600 * SECOND


def _rows(store: Store, s: Stream) -> int:
    with store.env.begin() as txn:
        return sum(1 for _ in scan(txn.cursor(db=s.dbs.sched), s.dbs.prefix))


def _sched(target: str = "s.out", pattern: str = AT) -> dict[str, str]:
    return {"Nats-Schedule": pattern, "Nats-Schedule-Target": target}


def test_due_schedules_fire_in_bounded_passes(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_stream(store, allow_msg_schedules=True)
    for i in range(5):
        publish(store, s, f"s.sched.{i}", hdrs=_sched())
    monkeypatch.setattr(scheduler, "PER_PASS", 2)
    assert write(store, lambda b: scheduler.fire_due(b, s), now=NOW - SECOND) == 0  # not due yet
    taken = [write(store, lambda b: scheduler.fire_due(b, s), now=LATER) for _ in range(4)]
    assert taken == [2, 2, 1, 0]
    assert (s.committed.messages, s.committed.last_seq, _rows(store, s)) == (5, 10, 0)


def test_a_replaced_or_deleted_schedule_never_fires(store: Store) -> None:
    s = make_stream(store, allow_msg_schedules=True)
    publish(store, s, "s.sched.a", hdrs=_sched())
    publish(store, s, "s.sched.a", b"plain")  # the last on its subject is no schedule any more
    seq, _ = publish(store, s, "s.sched.b", hdrs=_sched())
    write(store, lambda b: delete_seq(b, s, seq))
    assert _rows(store, s) == 2
    assert write(store, lambda b: scheduler.fire_due(b, s), now=LATER) == 2
    assert (s.committed.last_seq, _rows(store, s)) == (3, 0)  # nothing produced, the stale rows gone


def test_a_repeating_schedule_is_indexed_again_at_its_next_time(store: Store) -> None:
    s = make_stream(store, allow_msg_schedules=True)
    publish(store, s, "s.sched", hdrs=_sched(pattern="@every 1m"))
    write(store, lambda b: scheduler.fire_due(b, s), now=NOW + 61 * SECOND)
    assert (s.committed.messages, _rows(store, s)) == (2, 1)  # the schedule stays, one produced message
    assert write(store, lambda b: scheduler.fire_due(b, s), now=NOW + 61 * SECOND) == 0  # next one is later
    assert write(store, lambda b: scheduler.fire_due(b, s), now=NOW + 122 * SECOND) == 1
    assert (s.committed.messages, s.committed.last_seq) == (3, 3)  # the schedule and two produced messages
