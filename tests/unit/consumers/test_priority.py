"""The priority group rules (consumers/priority.py): request checks and which waiting request gets a message."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.consumers import priority
from streamd.consumers.priority import OVERFLOW, PINNED, PRIORITIZED, Pin
from streamd.wire.models import PullRequest


@dataclass
class W:
    group: str = "g"
    min_pending: int = 0
    min_ack_pending: int = 0
    pin_id: str = ""
    priority: int = 0


PIN = Pin("p" * 22, 1, 2, "g")
waiters = st.lists(
    st.builds(
        W,
        group=st.sampled_from(["g", ""]),
        min_pending=st.integers(0, 5),
        min_ack_pending=st.integers(0, 5),
        pin_id=st.sampled_from(["", PIN.id, "stale"]),
        priority=st.integers(0, 9),
    ),
    max_size=8,
)


@pytest.mark.parametrize(
    ("policy", "req", "pin", "want"),
    [
        (priority.NONE, PullRequest(group="x"), None, None),
        (priority.NONE, PullRequest(min_pending=1), None, (400, "Bad Request - Not a Overflow Priority consumer")),
        (OVERFLOW, PullRequest(id="x", group="g"), None, (400, "Bad Request - Not a Pinned Client Priority consumer")),
        (
            PRIORITIZED,
            PullRequest(priority=10, group="g"),
            None,
            (400, "Bad Request - Priority must be between 0 and 9"),
        ),
        (PINNED, PullRequest(), None, (400, "Bad Request - Priority Group missing")),
        (PINNED, PullRequest(group="h"), None, (400, "Bad Request - Invalid Priority Group")),
        (PINNED, PullRequest(group="g", id="old"), PIN, (423, "Nats-Pin-Id mismatch")),
        (PINNED, PullRequest(group="g", id="old"), None, None),  # answered later, when a message comes
        (PINNED, PullRequest(group="g", id=PIN.id), PIN, None),
    ],
)
def test_refusal(policy: str, req: PullRequest, pin: Pin | None, want: tuple[int, str] | None) -> None:
    assert priority.refusal(policy, ["g"], req, pin) == want


@given(waiters, st.integers(0, 9))
def test_insert_keeps_priority_order_and_arrival_order_within_a_level(ws: list[W], level: int) -> None:
    ordered: list[W] = []
    for w in ws:
        ordered.insert(priority.insert_at(ordered, w.priority), w)
    assert ordered == sorted(ws, key=lambda w: w.priority)  # sorted() is stable: arrival order within a level


@given(waiters, st.integers(0, 6), st.integers(0, 6))
def test_overflow_serves_the_first_request_whose_threshold_is_met(ws: list[W], pending: int, acks: int) -> None:
    choice = priority.choose(OVERFLOW, ws, None, pending, acks)
    met = [i for i, w in enumerate(ws) if priority.overflows(w, pending, acks)]
    assert (choice.index if choice else None) == (met[0] if met else None)
    assert choice is None or not (choice.reject or choice.pin)


@given(waiters, st.booleans())
def test_pinned_serves_only_the_pinned_client(ws: list[W], pinned: bool) -> None:
    pin = PIN if pinned else None
    choice = priority.choose(PINNED, ws, pin, 1, 0)
    if choice is None:
        assert not ws or (pin is not None and all(not w.pin_id for w in ws))  # requests without an id wait
        return
    w = ws[choice.index]
    before = ws[: choice.index]
    if pin is None:
        assert not before  # nobody pinned: the first request decides
        assert choice.reject == bool(w.pin_id) and choice.pin == (not w.pin_id and bool(w.group))
    else:
        assert all(not b.pin_id for b in before)  # unpinned requests are passed over
        assert choice.reject == (w.pin_id != pin.id) and not choice.pin


@given(waiters)
def test_prioritized_serves_the_head(ws: list[W]) -> None:
    choice = priority.choose(PRIORITIZED, ws, None, 0, 0)
    assert (choice.index if choice else None) == (0 if ws else None)


def test_pin_ids_are_fresh() -> None:
    ids = {priority.new_pin_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 22 and i.isalnum() for i in ids)
