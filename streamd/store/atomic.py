"""Atomic batch commit: every message of a staged batch is stored, or none is (nats-server's allow_atomic).

The batch runs in a child transaction of the writer's batch transaction: a refusal part-way aborts the child alone,
so the neighbours in the same group commit keep their writes, and the stream's counters go back to what they were.
"""

from __future__ import annotations

import msgspec

from streamd.store import counters
from streamd.store.stream import Batch, Stream, dedup_key, store_message
from streamd.wire import errors, headers

Staged = tuple[bytes, bytes | None, bytes]  # (subject, headers, data) of one message of the batch


def store_batch(b: Batch, stream: Stream, msgs: list[Staged]) -> int:
    """Store the batch's messages in order as one unit. -> the last sequence; raises ApiError (nothing stored)."""
    saved = msgspec.structs.replace(stream.counters)
    child = b.store.env.begin(write=True, parent=b.txn)
    sub = Batch(b.store, child, b.now_ns)
    try:
        seq = _store_all(sub, stream, msgs)
    except BaseException:
        child.abort()
        stream.counters = saved
        raise
    child.commit()
    b.touched.update(sub.touched)
    b.stored.extend(sub.stored)
    b.removed.extend(sub.removed)
    b.purged.extend(sub.purged)
    b.republish.extend(sub.republish)
    return seq


def _store_all(sub: Batch, stream: Stream, msgs: list[Staged]) -> int:
    ids: set[bytes] = set()
    written: set[bytes] = set()
    seq = 0
    for i, (subject, hdrs, data) in enumerate(msgs):
        h = headers.parse(hdrs) if hdrs else {}
        if h:
            _check_batch_headers(h, i, subject, ids, written)
        if stream.config.allow_msg_counter is True:
            seq, duplicate, _ = counters.store_increment(sub, stream, subject, hdrs, data)
        else:
            seq, duplicate = store_message(sub, stream, subject, hdrs, data)
        if duplicate:
            raise errors.ATOMIC_DUPLICATE()
        written.add(subject)
    return seq


def _check_batch_headers(h: dict[bytes, bytes], i: int, subject: bytes, ids: set[bytes], written: set[bytes]) -> None:
    """What a batch refuses beyond a single publish's rules (nats-server's order): a last-msg-id expectation,
    a message id twice, a last-sequence expectation after the first message or on a subject it already wrote."""
    if h.get(headers.EXPECTED_LAST_MSG_ID):
        raise errors.ATOMIC_UNSUPPORTED_HEADER(header=headers.EXPECTED_LAST_MSG_ID.decode())
    msg_id = h.get(headers.MSG_ID)
    if msg_id:
        key = dedup_key(msg_id)
        if key in ids:
            raise errors.ATOMIC_DUPLICATE()
        ids.add(key)
    if headers.EXPECTED_LAST_SEQ in h and i > 0:
        raise errors.WRONG_LAST_SEQUENCE_CONSTANT()
    if headers.EXPECTED_LAST_SUBJ_SEQ in h and (h.get(headers.EXPECTED_LAST_SUBJ_SEQ_SUBJ) or subject) in written:
        raise errors.WRONG_LAST_SEQUENCE_CONSTANT()
