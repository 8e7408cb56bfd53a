"""What consumers decide about the messages of their stream and about themselves: workqueue and interest
retention (a message every consumer that selects it has finished with goes), and the removal of consumers that
stayed inactive past their threshold."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from streamd.consumers.consumer import Consumer
from streamd.consumers.index import StreamIndex
from streamd.consumers.persistence import Persistence
from streamd.store import reads
from streamd.store import stream as streams
from streamd.store.env import Store
from streamd.store.layout import key_seq, message_subject, scan
from streamd.wire.models import Retention as Policy

logger = logging.getLogger(__name__)
SWEEP_EVERY = 0.5  # seconds between looks at consumers with an inactive threshold


def acked(c: Consumer, seq: int) -> bool:
    """Has this consumer finished with stream seq `seq` (acked, termed, or never going to get it)?"""
    st = c.state
    return seq <= st.ack_floor.stream_seq or (seq <= st.delivered.stream_seq and seq not in st.pending)


class Retention:
    def __init__(
        self,
        store: Store,
        index: dict[str, StreamIndex[Consumer]],
        persistence: Persistence,
        copying: dict[str, int] | None = None,
    ) -> None:
        self._store = store
        self._index = index
        self._persistence = persistence
        self._copying = copying if copying is not None else {}  # streams with `direct` consumers (Registry's)

    def on_acked(self, c: Consumer, seqs: list[int]) -> None:
        """`c` finished with `seqs`: under workqueue they go (once a mirror's or source's consumer on it has them
        too); under interest, those no other consumer needs."""
        stream = c.stream
        if stream.config.retention == Policy.WORKQUEUE and stream.name not in self._copying:
            self._persistence.retire(stream, seqs)
            return
        idx = self._index.get(stream.name) or StreamIndex()
        doomed: list[int] = []
        with self._store.read() as txn:
            for seq in seqs:
                found = reads.load(txn, stream, seq)
                if found is None:
                    continue
                subject = found.subject.decode(errors="replace")
                if all(acked(o, seq) for o in idx.matching(subject)):
                    doomed.append(seq)
        self._persistence.retire(stream, doomed)

    def retire_unneeded(self, b: streams.Batch, stream: streams.Stream) -> None:
        """Interest retention after a consumer left: drop what no remaining consumer still needs (writer thread).

        One pass over the stream's messages; the consumers' states are only read here."""
        idx = self._index.get(stream.name) or StreamIndex()
        doomed: list[int] = []
        for key, raw in scan(b.txn.cursor(db=stream.dbs.msgs), stream.dbs.prefix):
            seq = key_seq(key)
            subject = message_subject(raw).decode(errors="replace")
            if all(acked(o, seq) for o in idx.matching(subject)):
                doomed.append(seq)
        for seq in doomed:
            streams.delete_seq(b, stream, seq)


async def sweep(expiring: set[Consumer], remove: Callable[[Consumer], Awaitable[None]]) -> None:
    """Remove the consumers of `expiring` (those with an inactive threshold) that stay inactive past it.

    Runs in the service's TaskGroup: a failure is logged and the sweep goes on, the service is not stopped."""
    while True:
        await asyncio.sleep(SWEEP_EVERY)
        now = time.time_ns()
        for c in list(expiring):  # only consumers with an inactive threshold: durables cost nothing
            try:
                if not c.deleted and inactive(c, now):
                    logger.info("consumer '%s > %s' inactive; deleting it", c.stream.name, c.name)
                    await remove(c)
            except Exception:
                logger.exception("removing inactive consumer failed")


def inactive(c: Consumer, now: int) -> bool:
    """Past its inactive threshold: no push subscriber, no pull request waiting, no activity (renews the mark
    while it is active)."""
    threshold = c.config.inactive_threshold
    if not isinstance(threshold, int) or threshold <= 0:
        return False
    if c.is_push:
        if c.push_bound():
            c.inactive_since_ns = now
            return False
        return now - c.inactive_since_ns > threshold
    if c.waiting:
        c.last_active_ns = now
        return False
    return now - c.last_active_ns > threshold
