"""The hub's interest as LS+/LS- lines build it: plain and queue subscriptions, wildcards, ignored system
subjects, and (hypothesis) the bucketed lookup against a plain scan of every live subscription."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamd.transport.interest import HubInterest
from streamd.wire import subjects


def _applied(*lines: str) -> HubInterest:
    interest = HubInterest()
    for line in lines:
        interest.apply(line.encode() + b"\r\n")
    return interest


def test_plain_subscriptions_come_and_go() -> None:
    interest = HubInterest()
    assert interest.apply(b"LS+ a.b\r\n") == ("a.b", None, True)
    assert interest.has_interest("a.b") and not interest.has_interest("a.c")
    assert interest.apply(b"LS- a.b\r\n") == ("a.b", None, False)
    assert not interest.has_interest("a.b") and interest.snapshot() == {}


def test_queue_groups_with_weights() -> None:
    interest = _applied("LS+ q.x workers 3", "LS+ q.x other", "LS+ q.* wild")
    assert interest.snapshot() == {"q.x": {"workers": 3, "other": 1}, "q.*": {"wild": 1}}
    assert interest.queue_groups("q.x") == ["workers", "other", "wild"]
    assert interest.queue_groups("q.y") == ["wild"]
    interest.apply(b"LS- q.x workers\r\n")
    interest.apply(b"LS- q.x other\r\n")
    assert interest.queue_groups("q.x") == ["wild"] and "q.x" not in interest.snapshot()
    assert interest.pairs() == {("q.*", "wild")}


def test_wildcards_match_literal_subjects() -> None:
    interest = _applied("LS+ orders.*.created", "LS+ logs.>", "LS+ >")
    assert interest.has_interest("orders.7.created") and interest.has_interest("anything")
    interest.apply(b"LS- >\r\n")
    assert interest.has_interest("logs.a.b") and not interest.has_interest("logs")
    assert not interest.has_interest("orders.7.deleted")
    interest.apply(b"LS- logs.>\r\n")
    interest.apply(b"LS- orders.*.created\r\n")
    assert not interest.has_interest("orders.7.created") and interest.snapshot() == {}


def test_system_and_loop_detection_subjects_are_ignored() -> None:
    interest = HubInterest()
    assert interest.apply(b"LS+ $LDS.abc\r\n") is None
    assert interest.apply(b"LS+ $SYS.REQ.x\r\n") is None
    assert interest.apply(b"LS+\r\n") is None
    assert interest.snapshot() == {}


def test_clear_forgets_everything() -> None:
    interest = _applied("LS+ a", "LS+ b.* g", "LS+ c.>")
    interest.clear()
    assert interest.snapshot() == {} and not interest.has_interest("c.d") and interest.queue_groups("b.x") == []


_PATTERNS = ["a", "a.b", "a.*", "a.>", "*.b", ">", "b.c.d", "b.*.d", "*"]
_LITERALS = ["a", "a.b", "a.c", "b", "b.c.d", "b.x.d", "c.b", "a.b.c"]
_lines = st.lists(
    st.tuples(st.booleans(), st.sampled_from(_PATTERNS), st.sampled_from([None, "g1", "g2"])), max_size=40
)


@given(_lines)
def test_lookups_agree_with_a_scan_of_the_live_subscriptions(ops: list[tuple[bool, str, str | None]]) -> None:
    interest = HubInterest()
    live: set[tuple[str, str | None]] = set()
    for present, pattern, queue in ops:
        line = f"LS{'+' if present else '-'} {pattern}" + (f" {queue}" if queue else "")
        interest.apply(line.encode() + b"\r\n")
        (live.add if present else live.discard)((pattern, queue))
    assert interest.pairs() == live
    for subject in _LITERALS:
        matching = [(p, q) for p, q in live if subjects.matches(p, subject)]
        assert interest.has_interest(subject) == bool(matching)
        assert sorted(interest.queue_groups(subject)) == sorted({q for _p, q in matching if q})
