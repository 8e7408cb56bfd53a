"""The hub's subscriptions as a leaf connection learns them (`LS+`/`LS-` lines): who would receive a subject.

Exact subjects are kept apart from wildcards, and wildcards are bucketed by their literal prefix, so the question
asked for every delivery ("does anybody listen on this literal subject?") is a set lookup plus, only when
wildcards exist, a look into the buckets of the subject's own prefixes. Pure: no I/O, no asyncio.
"""

from __future__ import annotations

from collections.abc import Iterator

from streamd.wire.subjects import is_literal, matches

_IGNORED_PREFIXES = ("$LDS.", "$SYS.")  # hub loop detection and system-account probes: never interest for us

Change = tuple[str, str | None, bool]  # (subject, queue group or None, present)


class HubInterest:
    """Plain subscriptions by subject, queue subscriptions by subject and group (→ weight), wildcards by prefix."""

    __slots__ = ("_plain", "_queues", "_wild")

    def __init__(self) -> None:
        self._plain: set[str] = set()
        self._queues: dict[str, dict[str, int]] = {}
        self._wild: dict[str, set[str]] = {}

    def clear(self) -> None:
        self._plain.clear()
        self._queues.clear()
        self._wild.clear()

    def apply(self, line: bytes) -> Change | None:
        """Apply one `LS+ subject [queue [weight]]` / `LS- …` line; -> what changed, None for an ignored line."""
        parts = line.decode(errors="replace").split()
        if len(parts) < 2 or parts[1].startswith(_IGNORED_PREFIXES):
            return None
        present = parts[0] == "LS+"
        subject = parts[1]
        queue = parts[2] if len(parts) > 2 else None
        if queue is None:
            if present:
                self._plain.add(subject)
            else:
                self._plain.discard(subject)
        elif present:
            self._queues.setdefault(subject, {})[queue] = int(parts[3]) if len(parts) > 3 else 1
        else:
            self._remove_queue(subject, queue)
        self._index_wild(subject)
        return subject, queue, present

    def has_interest(self, subject: str) -> bool:
        """True when some plain or queue subscription (wildcards included) matches the literal `subject`."""
        if subject in self._plain or subject in self._queues:
            return True
        return bool(self._wild) and next(self._wild_matches(subject), None) is not None

    def queue_groups(self, subject: str) -> list[str]:
        """Names of the queue groups with a subscription matching the literal `subject`."""
        names = list(self._queues.get(subject, ()))
        if self._wild:
            for wild in self._wild_matches(subject):
                names.extend(q for q in self._queues.get(wild, ()) if q not in names)
        return names

    def snapshot(self) -> dict[str, dict[str, int]]:
        """subject → {queue: weight}, with "" standing for plain subscriptions."""
        snap: dict[str, dict[str, int]] = {s: {"": 1} for s in self._plain}
        for subject, groups in self._queues.items():
            snap.setdefault(subject, {}).update(groups)
        return snap

    def pairs(self) -> set[tuple[str, str | None]]:
        """(subject, queue or None) of every subscription: what a reconnect compares before and after."""
        return {(s, q or None) for s, groups in self.snapshot().items() for q in groups}

    def _remove_queue(self, subject: str, queue: str) -> None:
        groups = self._queues.get(subject)
        if groups is not None:
            groups.pop(queue, None)
            if not groups:
                del self._queues[subject]

    def _wild_matches(self, subject: str) -> Iterator[str]:
        """Wildcard subscriptions matching `subject`; only buckets keyed by a literal prefix of `subject` are tried."""
        wild = self._wild
        end = -1  # prefixes "", then subject[:i] for every dot i (a wildcard needs at least one more token)
        while True:
            bucket = wild.get(subject[:end] if end >= 0 else "")
            if bucket:
                for w in bucket:
                    if matches(w, subject):
                        yield w
            end = subject.find(".", end + 1)
            if end == -1:
                return

    def _index_wild(self, subject: str) -> None:
        if is_literal(subject):
            return
        tokens = subject.split(".")
        n = next(i for i, t in enumerate(tokens) if t in ("*", ">"))
        prefix = ".".join(tokens[:n])
        if subject in self._plain or subject in self._queues:
            self._wild.setdefault(prefix, set()).add(subject)
        elif prefix in self._wild:
            self._wild[prefix].discard(subject)
            if not self._wild[prefix]:
                del self._wild[prefix]
