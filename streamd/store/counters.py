"""Message counters (nats-server's `allow_msg_counter`): a publish carries `Nats-Incr: <integer>` and no payload;
the stream stores the subject's new total as `{"val":"<total>"}`, read from the subject's last message.

Totals are arbitrary-precision integers as in nats-server (Go's big.Int); Python's own decimal-digit limit (4300)
bounds what one header may carry. Counters fed by sources (Nats-Counter-Sources) are not served: a counter stream
with sources is refused at create (streams/rules).
"""

from __future__ import annotations

import msgspec

from streamd.store import stream as streams
from streamd.store.layout import unpack_message
from streamd.wire import errors, headers

_INCOMPATIBLE = (
    headers.ROLLUP,
    headers.EXPECTED_STREAM,
    headers.EXPECTED_LAST_MSG_ID,
    headers.EXPECTED_LAST_SUBJ_SEQ_SUBJ,
    headers.EXPECTED_LAST_SEQ,
    headers.EXPECTED_LAST_SUBJ_SEQ,
)


class _Value(msgspec.Struct):
    val: str = ""  # a value without digits counts as 0, as Go's big.Int SetString leaves it


_DECODE = msgspec.json.Decoder(_Value)


def store_increment(
    b: streams.Batch, stream: streams.Stream, subject: bytes, hdrs: bytes | None, data: bytes
) -> tuple[int, bool, str]:
    """A publish to a counter stream, in nats-server's order of checks. -> (seq, duplicate, new total)."""
    h = headers.parse(hdrs) if hdrs else {}
    incr = streams.increment_of(h.get(headers.INCR))
    if incr is None:
        if h:  # the single-publish header rules speak first, as in nats-server
            streams.check_writable(stream, subject)
            duplicate_of = streams.check_headers(b, stream, subject, h)[3]
            if duplicate_of:
                return duplicate_of, True, ""
        raise errors.INCR_MISSING()
    if data:
        raise errors.INCR_PAYLOAD()
    if any(k in h for k in _INCOMPATIBLE):
        raise errors.INCR_INVALID()
    total = current_total(b, stream, subject) + incr
    text = str(total)
    seq, duplicate = streams.store_message(b, stream, subject, hdrs, b'{"val":"%s"}' % text.encode())
    return seq, duplicate, text


def current_total(b: streams.Batch, stream: streams.Stream, subject: bytes) -> int:
    """The subject's total: its last message's value, 0 when it has none; a last message that is not a counter
    value makes the counter broken (10172), as in nats-server."""
    seq = streams.last_seq_on_subject(b, stream, subject)
    if not seq:
        return 0
    raw = b.txn.get(stream.dbs.mkey(seq), db=stream.dbs.msgs)
    if raw is None:
        return 0
    _, _, payload, _ = unpack_message(raw)
    try:
        value = _DECODE.decode(payload).val
    except msgspec.DecodeError:
        raise errors.COUNTER_BROKEN() from None
    try:
        return streams.increment_of(value.encode()) or 0
    except errors.ApiError:
        return 0
