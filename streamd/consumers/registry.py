"""The consumers of all streams and the indexes that route events to the few they concern: by stream and filter
(``index``), by deliver subject (interest changes), and those with an inactive threshold (swept).

Commits and interest changes arrive here and wake only the consumers that can act on them."""

from __future__ import annotations

import time

from streamd.consumers.consumer import Consumer
from streamd.consumers.index import FilterGroup, StreamIndex
from streamd.store import stream as streams
from streamd.wire import errors


class Registry:
    def __init__(self) -> None:
        self.by_stream: dict[str, dict[str, Consumer]] = {}
        # Per-message and per-event work goes through these indexes, never over every consumer.
        self.index: dict[str, StreamIndex[Consumer]] = {}
        self.by_deliver: dict[str, set[Consumer]] = {}  # push consumers by deliver subject
        self.expiring: set[Consumer] = set()  # consumers with an inactive threshold (swept)
        self.copying: dict[str, int] = {}  # stream -> its mirrors' and sources' `direct` consumers (when any)

    def get(self, stream: str, name: str) -> Consumer:
        c = self.by_stream.get(stream, {}).get(name)
        if c is None or c.deleted:
            raise errors.CONSUMER_NOT_FOUND()
        return c

    def count(self, stream: str | None = None) -> int:
        if stream is not None:
            return len(self.by_stream.get(stream, {}))
        return sum(len(g) for g in self.by_stream.values())

    def hook(self, stream: streams.Stream) -> None:
        """Let the stream ask whether any consumer selects a subject (interest retention)."""
        name = stream.name

        def has_interest(subject: bytes) -> bool:
            idx = self.index.get(name)
            return idx is not None and idx.interested(subject.decode(errors="replace"))

        stream.has_interest = has_interest

    def track(self, c: Consumer) -> None:
        """Put a consumer in the indexes (after create, recovery or a config change)."""
        self.index.setdefault(c.stream.name, StreamIndex()).add(c, c.stream.committed.last_seq)
        if c.is_push:
            self.by_deliver.setdefault(str(c.config.deliver_subject), set()).add(c)
        threshold = c.config.inactive_threshold
        if isinstance(threshold, int) and threshold > 0:
            self.expiring.add(c)
        if c.config.direct is True:
            self.copying[c.stream.name] = self.copying.get(c.stream.name, 0) + 1

    def untrack(self, c: Consumer) -> None:
        idx = self.index.get(c.stream.name)
        if idx is not None:
            idx.remove(c)
        deliver = str(c.config.deliver_subject)
        same = self.by_deliver.get(deliver)
        if same is not None:
            same.discard(c)
            if not same:
                del self.by_deliver[deliver]
        self.expiring.discard(c)
        if c.config.direct is True and c.stream.name in self.copying:
            left = self.copying[c.stream.name] - 1
            if left > 0:
                self.copying[c.stream.name] = left
            else:
                del self.copying[c.stream.name]

    def want_messages(self, c: Consumer) -> None:
        """A pull consumer has a waiting request: wake it on matching stores (until it has none)."""
        idx = self.index.get(c.stream.name)
        if idx is not None and not c.deleted:
            idx.hungry.add(c)

    def on_commit(self, batch: streams.Batch) -> None:
        """From the writer, on the loop, after a commit: keep pending counts right and wake consumers.

        O(messages * depth + consumers that can take one now): a store bumps its matching filter groups, a
        removal touches the consumers that select it, and only `hungry` consumers are woken."""
        stored: dict[str, set[FilterGroup[Consumer]]] = {}
        for stream, seq, subject in batch.stored:
            idx = self.index.get(stream.name)
            if idx is None:
                continue
            touched = stored.setdefault(stream.name, set())
            for g in idx.matching_groups(subject.decode(errors="replace")):
                g.added += 1
                touched.add(g)
                for c in list(g.ahead):
                    c.on_stored_ahead(seq)
        for stream, seq, subject in batch.removed:
            idx = self.index.get(stream.name)
            if idx is not None:
                for c in list(idx.matching(subject.decode(errors="replace"))):
                    c.on_removed(seq)
        woken: set[Consumer] = set()
        for stream in batch.purged:
            for c in self.by_stream.get(stream.name, {}).values():
                c.on_purged()
                woken.add(c)
        for name, groups in stored.items():
            _wake_hungry(self.index[name], groups, woken)
        for c in woken:
            c.wake.set()

    def on_interest(self, subject: str, _queue: str | None, present: bool) -> None:
        """The hub reported interest in `subject` appearing or going (leaf LS+/LS-)."""
        for c in list(self.by_deliver.get(subject, ())):
            if present:
                c.inactive_since_ns = time.time_ns()
            c.on_interest_change()
        if not present:
            return
        for idx in self.index.values():  # a pull request may have been waiting for its inbox to show up
            for c in list(idx.hungry):
                if not c.is_push and c.waiting:
                    c.on_interest_change()


def _wake_hungry(idx: StreamIndex[Consumer], groups: set[FilterGroup[Consumer]], woken: set[Consumer]) -> None:
    for c in list(idx.hungry):
        if c.deleted or not c.wants_messages:
            idx.hungry.discard(c)  # nothing waiting any more: no wakeups until its next request
        elif c.group in groups:
            woken.add(c)
