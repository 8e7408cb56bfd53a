"""Where a consumer reads its next new message: its filters, the last-per-subject seqs it delivers first, and a
prefetch buffer, so finding the next match costs one store scan per _PREFETCH messages, not one per delivery."""

from __future__ import annotations

from collections import deque

from streamd.store import reads
from streamd.store.env import Store
from streamd.store.stream import Stream
from streamd.wire.subject_tree import SubjectTree

_PREFETCH = 128
# Consumers with more filters than this match a subject through a subject tree instead of a scan of the filters.
TREE_FILTERS = 8


class Reader:
    __slots__ = ("buffer", "filters", "from_lps", "lps", "resume_seq", "tree")

    def __init__(self, resume_seq: int) -> None:
        self.filters: list[str] = []  # see set_filters
        self.tree: SubjectTree[str] | None = None
        self.lps: deque[int] = deque()  # last_per_subject seqs still to deliver first
        self.buffer: deque[reads.Found] = deque()
        self.resume_seq = resume_seq
        self.from_lps = False  # the last message read came from `lps`

    def set_filters(self, filters: list[str]) -> None:
        self.filters = filters
        self.tree = None
        if len(filters) > TREE_FILTERS:
            self.tree = SubjectTree()
            for f in filters:
                self.tree.insert(f, f)

    def matches(self, subject: str) -> bool:
        if self.tree is not None:
            return next(self.tree.match(subject), None) is not None
        return reads.matches_any(self.filters, subject)

    def next_new(self, store: Store, stream: Stream, delivered_seq: int) -> reads.Found | None:
        """The next message after `delivered_seq` that the filters select (last-per-subject ones first)."""
        self.from_lps = bool(self.lps)
        while self.lps:
            seq = self.lps.popleft()
            with store.read() as txn:
                found = reads.load(txn, stream, seq)
            if found is not None and seq > delivered_seq:
                if not self.lps:  # the snapshot is done: continue with what was stored after it was taken
                    self.resume_seq = max(self.resume_seq, delivered_seq + 1)
                return found
        if not self.buffer:
            start = max(self.resume_seq, delivered_seq + 1)
            if start > stream.committed.last_seq:
                return None
            with store.read() as txn:
                match = self.matches if self.tree is not None else None
                got, self.resume_seq = reads.next_matching(txn, stream, self.filters, start, _PREFETCH, match=match)
            self.buffer.extend(got)
            if not got:
                return None
        return self.buffer.popleft()

    def unread(self, found: reads.Found) -> None:
        """Put back the message `next_new` just returned (it was not sent)."""
        if self.from_lps:
            self.lps.appendleft(found.seq)
        else:
            self.buffer.appendleft(found)

    def forget(self, seq: int, delivered_seq: int) -> None:
        """Stream seq `seq` left the stream: a prefetched copy is stale, so read again from after delivered."""
        if self.buffer and seq >= self.buffer[0].seq:
            self.restart(delivered_seq)

    def restart(self, delivered_seq: int) -> None:
        self.buffer.clear()
        self.resume_seq = delivered_seq + 1
