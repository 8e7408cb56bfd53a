"""A token tree of subject patterns (nats-server's sublist, simplified): match and overlap in O(depth).

Patterns are stored token by token; each pattern carries values (a stream name, a consumer group, ...). Two
queries replace pairwise scans over every stored pattern:

- ``match(subject)``: values of the patterns that select a literal subject (follow the token, ``*`` and ``>``);
- ``colliding(pattern)``: values of the patterns some literal subject would match together with ``pattern``
  (wildcards on both sides, as ``subjects.collide``).

A literal query visits at most three children per level; a ``*`` in the query visits every child at its level
and a ``>`` every pattern below, which is what the answer needs (nats-server's sublist does the same).
Pure data structure: no I/O, no asyncio.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class _Node(Generic[T]):
    __slots__ = ("children", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.values: set[T] = set()

    def walk(self) -> Iterator[T]:
        """Every value at this node and below (iterative: patterns can be deep)."""
        stack: list[_Node[T]] = [self]
        while stack:
            node = stack.pop()
            yield from node.values
            stack.extend(node.children.values())


class SubjectTree(Generic[T]):
    """Subject patterns mapped to sets of values; empty branches are pruned on removal."""

    __slots__ = ("_root", "_size")

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._size = 0

    def __len__(self) -> int:
        """The number of (pattern, value) entries."""
        return self._size

    def insert(self, pattern: str, value: T) -> None:
        node = self._root
        for tok in pattern.split("."):
            nxt = node.children.get(tok)
            if nxt is None:
                nxt = node.children[tok] = _Node()
            node = nxt
        if value not in node.values:
            node.values.add(value)
            self._size += 1

    def remove(self, pattern: str, value: T) -> None:
        path: list[tuple[_Node[T], str]] = []
        node = self._root
        for tok in pattern.split("."):
            nxt = node.children.get(tok)
            if nxt is None:
                return
            path.append((node, tok))
            node = nxt
        if value not in node.values:
            return
        node.values.discard(value)
        self._size -= 1
        for parent, tok in reversed(path):
            child = parent.children[tok]
            if child.values or child.children:
                break
            del parent.children[tok]

    def match(self, subject: str) -> Iterator[T]:
        """Values of the patterns that select the literal `subject` (a value may repeat if it has many)."""
        return self._walk(subject, wildcards=False)

    def colliding(self, pattern: str) -> Iterator[T]:
        """Values of the stored patterns that overlap `pattern` (some literal subject matches both)."""
        return self._walk(pattern, wildcards=True)

    def _walk(self, query: str, *, wildcards: bool) -> Iterator[T]:
        """The descent both queries share; with `wildcards`, the query's own `*` and `>` fan out as well."""
        tokens = query.split(".")
        last = len(tokens)
        stack: list[tuple[_Node[T], int]] = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            if i == last:
                yield from node.values
                continue
            kids = node.children
            full = kids.get(">")
            if full is not None:  # a stored `>` takes the query's remaining one or more tokens
                yield from full.values
            tok = tokens[i]
            if wildcards and tok == ">":  # the query's `>` takes every stored pattern with one or more tokens left
                for key, child in kids.items():
                    if key != ">":
                        yield from child.walk()
            elif wildcards and tok == "*":
                stack.extend((child, i + 1) for key, child in kids.items() if key != ">")
            else:
                for key in (tok, "*"):
                    nxt = kids.get(key)
                    if nxt is not None:
                        stack.append((nxt, i + 1))

    def collides(self, pattern: str, ignore: T | None = None) -> bool:
        """True when a stored pattern (whose value is not `ignore`) overlaps `pattern`."""
        return any(v != ignore for v in self.colliding(pattern))


def first_overlap(patterns: list[str]) -> tuple[str, str] | None:
    """The first (earlier, later) pair of overlapping patterns in list order, or None: O(N * depth) for literals."""
    tree: SubjectTree[str] = SubjectTree()
    for p in patterns:
        other = next(tree.colliding(p), None)
        if other is not None:
            return other, p
        tree.insert(p, p)
    return None
