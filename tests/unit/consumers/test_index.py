"""The per-stream consumer index: groups by filter set, pending counts through the group counter, `ahead` and
`hungry` membership. Members are plain objects that keep the index's `Member` contract."""

from __future__ import annotations

from typing import Any

from streamd.consumers.index import FilterGroup, StreamIndex


class Member:
    def __init__(self, filters: list[str], delivered: int = 0, wants: bool = False, pending: int = 0) -> None:
        self.filters = filters
        self.delivered_seq = delivered
        self.wants_messages = wants
        self.group: FilterGroup[Any] | None = None
        self.own = pending
        self.base = 0

    @property
    def pending(self) -> int:
        return self.own + (self.group.added - self.base if self.group is not None else 0)

    def regroup(self, group: FilterGroup[Any] | None) -> None:
        self.own = self.pending
        self.group = group
        self.base = group.added if group is not None else 0


def test_same_filters_share_a_group_in_any_order() -> None:
    idx: StreamIndex[Member] = StreamIndex()
    a, b, c = Member(["x.1", "x.2"]), Member(["x.2", "x.1"]), Member([])
    for m in (a, b, c):
        idx.add(m, 0)
    assert len(idx.groups) == 2 and len(idx) == 3
    assert a.group is b.group and a.group is not c.group
    assert sorted(len(g.members) for g in idx.matching_groups("x.1")) == [1, 2]
    assert set(idx.matching("x.3")) == {c}
    assert set(idx.consumers()) == {a, b, c}


def test_stores_counted_by_the_group_stay_with_a_member_that_leaves() -> None:
    idx: StreamIndex[Member] = StreamIndex()
    m = Member(["x.*"], pending=2)
    idx.add(m, 0)
    for g in idx.matching_groups("x.a"):
        g.added += 3
    assert m.pending == 5
    idx.remove(m)
    assert m.pending == 5 and m.group is None
    assert not idx.groups and not idx.interested("x.a")


def test_interest_wildcards_and_the_whole_stream() -> None:
    idx: StreamIndex[Member] = StreamIndex()
    idx.add(Member(["orders.>"]), 0)
    assert idx.interested("orders.eu.1") and not idx.interested("billing.1")
    idx.add(Member([]), 0)
    assert idx.interested("billing.1")


def test_ahead_and_hungry_membership() -> None:
    idx: StreamIndex[Member] = StreamIndex()
    late, eager = Member(["x"], delivered=10), Member(["x"], wants=True)
    idx.add(late, last_seq=4)
    idx.add(eager, last_seq=4)
    group = late.group
    assert group is not None and group.ahead == {late}
    assert idx.hungry == {eager}
    idx.remove(eager)
    idx.remove(late)
    assert not idx.hungry and not group.ahead
