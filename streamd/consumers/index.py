"""A stream's consumers indexed by filter, so per-message work is proportional to the consumers it concerns.

Consumers with the same filters form a `FilterGroup`; the groups are kept in a subject tree by filter. A stored
message bumps one counter per matching group (`added`) instead of touching every consumer: a consumer's
`num_pending` is its own count plus what its group added since it last looked. Only consumers that can take a
message now (`hungry`: push consumers, pull consumers with a waiting request) are woken. An idle consumer costs
memory only, whatever the publish rate.

The index knows its members only through `Member`, so it sits below the consumer runtime.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

from streamd.wire.subject_tree import SubjectTree


class Member(Protocol):
    """What the index needs of a consumer."""

    @property
    def filters(self) -> list[str]: ...

    @property
    def delivered_seq(self) -> int: ...

    @property
    def group(self) -> FilterGroup[Any] | None:
        """The group it was added to (set by `regroup`)."""

    @property
    def wants_messages(self) -> bool:
        """Could it take a message now (push, or a pull request waiting)?"""

    def regroup(self, group: FilterGroup[Any] | None) -> None:
        """Count pending messages against `group` from now on (None: against nothing)."""


M = TypeVar("M", bound=Member)


class FilterGroup(Generic[M]):
    """Consumers with one filter set (empty: the whole stream) and the matching messages stored for them."""

    __slots__ = ("added", "ahead", "filters", "members")

    def __init__(self, filters: tuple[str, ...]) -> None:
        self.filters = filters
        self.members: set[M] = set()
        # Members whose delivered stream seq lies beyond the stream's last seq (a start sequence in the future):
        # stored messages at or below it are not pending for them, so they are told about each store.
        self.ahead: set[M] = set()
        self.added = 0


class StreamIndex(Generic[M]):
    """One stream's consumers by filter; `hungry` holds the ones that may want a message now."""

    __slots__ = ("groups", "hungry", "tree")

    def __init__(self) -> None:
        self.groups: dict[tuple[str, ...], FilterGroup[M]] = {}
        self.tree: SubjectTree[FilterGroup[M]] = SubjectTree()
        self.hungry: set[M] = set()

    def __len__(self) -> int:
        return sum(len(g.members) for g in self.groups.values())

    def add(self, c: M, last_seq: int) -> None:
        key = tuple(sorted(c.filters))
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = FilterGroup(key)
            for f in key:
                self.tree.insert(f, group)
        c.regroup(group)
        group.members.add(c)
        if c.delivered_seq > last_seq:
            group.ahead.add(c)
        if c.wants_messages:  # a pull consumer re-indexed by a config update keeps its waiting requests
            self.hungry.add(c)

    def remove(self, c: M) -> None:
        group = c.group
        self.hungry.discard(c)
        if group is None:
            return
        c.regroup(None)
        group.members.discard(c)
        group.ahead.discard(c)
        if not group.members:
            del self.groups[group.filters]
            for f in group.filters:
                self.tree.remove(f, group)

    def matching_groups(self, subject: str) -> list[FilterGroup[M]]:
        """The groups whose filters select the literal `subject`: O(depth), not O(consumers)."""
        out = list(self.tree.match(subject))
        everything = self.groups.get(())
        if everything is not None:
            out.append(everything)
        return out

    def matching(self, subject: str) -> Iterator[M]:
        for group in self.matching_groups(subject):
            yield from group.members

    def interested(self, subject: str) -> bool:
        """Does any consumer select `subject` (interest retention)? Empty groups are removed, so a group is one."""
        return () in self.groups or next(self.tree.match(subject), None) is not None

    def consumers(self) -> Iterator[M]:
        for group in self.groups.values():
            yield from group.members
