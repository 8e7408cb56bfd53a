"""A stream's consumers indexed by filter, so per-message work is proportional to the consumers it concerns.

Consumers with the same filters form a `FilterGroup`; the groups are kept in a subject tree by filter. A stored
message bumps one counter per matching group (`added`) instead of touching every consumer: a consumer's
`num_pending` is its own count plus what its group added since it last looked. Only consumers that can take a
message now (`hungry`: push consumers, pull consumers with a waiting request) are woken. An idle consumer costs
memory only, whatever the publish rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from streamd.wire.subject_tree import SubjectTree

if TYPE_CHECKING:
    from streamd.consumers.consumer import Consumer


class FilterGroup:
    """Consumers with one filter set (empty: the whole stream) and the matching messages stored for them."""

    __slots__ = ("added", "ahead", "filters", "members")

    def __init__(self, filters: tuple[str, ...]) -> None:
        self.filters = filters
        self.members: set[Consumer] = set()
        # Members whose delivered stream seq lies beyond the stream's last seq (a start sequence in the future):
        # stored messages at or below it are not pending for them, so they are told about each store.
        self.ahead: set[Consumer] = set()
        self.added = 0


class StreamIndex:
    """One stream's consumers by filter; `hungry` holds the ones that may want a message now."""

    __slots__ = ("groups", "hungry", "tree")

    def __init__(self) -> None:
        self.groups: dict[tuple[str, ...], FilterGroup] = {}
        self.tree: SubjectTree[FilterGroup] = SubjectTree()
        self.hungry: set[Consumer] = set()

    def __len__(self) -> int:
        return sum(len(g.members) for g in self.groups.values())

    def add(self, c: Consumer, last_seq: int) -> None:
        key = tuple(sorted(c.filters))
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = FilterGroup(key)
            for f in key:
                self.tree.insert(f, group)
        pending = c.num_pending
        c.group = group
        c.num_pending = pending  # from now on counted against this group's `added`
        group.members.add(c)
        if c.state.delivered.stream_seq > last_seq:
            group.ahead.add(c)
        if c.is_push or c.waiting:  # a pull consumer re-indexed by a config update keeps its waiting requests
            self.hungry.add(c)

    def remove(self, c: Consumer) -> None:
        group = c.group
        self.hungry.discard(c)
        if group is None:
            return
        pending = c.num_pending
        c.group = None
        c.num_pending = pending
        group.members.discard(c)
        group.ahead.discard(c)
        if not group.members:
            del self.groups[group.filters]
            for f in group.filters:
                self.tree.remove(f, group)

    def matching_groups(self, subject: str) -> list[FilterGroup]:
        """The groups whose filters select the literal `subject`: O(depth), not O(consumers)."""
        out = list(self.tree.match(subject))
        everything = self.groups.get(())
        if everything is not None:
            out.append(everything)
        return out

    def matching(self, subject: str) -> Iterator[Consumer]:
        for group in self.matching_groups(subject):
            yield from group.members

    def interested(self, subject: str) -> bool:
        """Does any consumer select `subject` (interest retention)? Empty groups are removed, so a group is one."""
        return () in self.groups or next(self.tree.match(subject), None) is not None

    def consumers(self) -> Iterator[Consumer]:
        for group in self.groups.values():
            yield from group.members
