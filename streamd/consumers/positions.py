"""Where a new consumer starts reading, by its deliver policy (nats-server `selectStartingSeqNo`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from streamd.store import reads
from streamd.store.env import Store
from streamd.store.stream import Stream
from streamd.wire import timefmt
from streamd.wire.models import ConsumerConfig, DeliverPolicy


class Start(NamedTuple):
    first_seq: int  # the first stream seq to consider
    lps: list[int]  # last-per-subject seqs to deliver first
    pending: int  # how many messages are pending from there


def initial_position(store: Store, stream: Stream, cfg: ConsumerConfig, filters: list[str]) -> Start:
    """Where a consumer with `cfg` starts and what it has pending, read in one store snapshot."""
    c = stream.committed
    policy = cfg.deliver_policy
    with store.read() as txn:
        lps: list[int] = []
        if policy == DeliverPolicy.ALL:
            first = max(c.first_seq, 1)
        elif policy == DeliverPolicy.NEW:
            first = c.last_seq + 1
        elif policy == DeliverPolicy.BY_START_SEQUENCE:
            first = int(cfg.opt_start_seq) if isinstance(cfg.opt_start_seq, int) else 1
        elif policy == DeliverPolicy.BY_START_TIME:
            first = reads.first_seq_at_or_after(txn, stream, timefmt.parse(str(cfg.opt_start_time)))
        elif policy == DeliverPolicy.LAST:
            first = max(c.last_seq, 1)
            if filters and not reads.covers_all(stream, filters):
                last = max((reads.last_by_subject(txn, stream, f) for f in filters), key=_seq, default=None)
                first = last.seq if last is not None else c.last_seq + 1
        else:
            lps = reads.last_per_subject(txn, stream, filters)
            first = lps[0] if lps else c.last_seq + 1
        # Counted as for a consumer that delivered everything before `first` (see acks.skip_before).
        after = max(first - 1, lps[-1] if lps else 0, 0)
        return Start(first, lps, len(lps) + reads.count_after(txn, stream, filters, after))


def pending(store: Store, stream: Stream, filters: list[str], delivered: int, lps: Sequence[int]) -> int:
    """Messages pending for a consumer that delivered up to stream seq `delivered` and still owes `lps` first
    (a recovered consumer: the only scan at start, O(its backlog))."""
    with store.read() as txn:
        return len(lps) + reads.count_after(txn, stream, filters, max(delivered, lps[-1] if lps else 0))


def _seq(found: reads.Found | None) -> int:
    return found.seq if found is not None else 0
