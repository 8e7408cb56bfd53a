"""A stream's write path: header checks, sequencing, limits, retention, purge and delete.

Everything here runs on the writer thread inside the batch's LMDB write transaction (``Batch``); reads for the
API live in ``reads.py``. Checks come before writes, so a refused message leaves the transaction untouched and
never harms its neighbours in the same batch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import lmdb
import msgspec

from streamd.store import schedules
from streamd.store.env import Store
from streamd.store.layout import (
    SEQ,
    Counters,
    StreamDbs,
    delete_prefix,
    key_seq,
    message_subject,
    message_time,
    pack_message,
    pack_pair,
    record_size,
    seek_first,
    stored_size,
    unpack_message,
    unpack_pair,
)
from streamd.store.routing import Frame, Routing
from streamd.store.schedules import Plan
from streamd.wire import durations, errors, headers, subjects
from streamd.wire.models import Discard, Retention, StreamConfig

MAX_HEADER = 64 * 1024
MAX_PLAIN_ID = 400
MAX_SEQ = (1 << 64) - 1  # sequences are u64 keys
MAX_TTL = (1 << 63) - 1  # a Go time.Duration
MAX_SUBJECT = subjects.MAX_STORED_SUBJECT
_NS = 1_000_000_000


class Stream:
    """One stream's identity, config and running totals; its counters are only mutated by the writer thread."""

    def __init__(
        self,
        stream_id: int,
        config: StreamConfig,
        created_ns: int,
        counters: Counters,
        dbs: StreamDbs,
        domain: str = "",
    ) -> None:
        self.id = stream_id
        self.config = config
        self.created_ns = created_ns
        self.counters = counters  # working copy: writer thread only, may run ahead of the disk mid-batch
        self.committed = msgspec.structs.replace(counters)  # as of the last commit: what reads report
        self.dbs = dbs
        self.deleted = False
        self.name = config.name
        self.name_bytes = config.name.encode()
        # PubAcks are built from this prefix plus the sequence: no JSON encoding per message.
        dom = b',"domain":' + msgspec.json.encode(domain) if domain else b""
        self.puback_prefix = b'{"stream":' + msgspec.json.encode(config.name) + dom + b',"seq":'
        # Interest retention asks this before storing; consumers (a later layer) replace it.
        self.has_interest = _no_interest
        # subject_transform and republish compiled for `routing_config` (routing_of keeps it current).
        self.routing: Routing | None = None
        self.routing_config: StreamConfig | None = None

    def num_deleted(self) -> int:
        c = self.committed
        return (c.last_seq - c.first_seq + 1) - c.messages if c.messages else 0


def _no_interest(subject: bytes) -> bool:
    return False


def routing_of(stream: Stream) -> Routing | None:
    """The stream's subject_transform and republish compiled for its current config (again when the config object
    changed); None when it has neither."""
    cfg = stream.config
    if stream.routing_config is not cfg:
        routing = Routing(cfg)
        stream.routing = routing if routing.active else None
        stream.routing_config = cfg
    return stream.routing


@dataclass(slots=True)
class Batch:
    """One write transaction and what it touched; the writer commits it and persists touched counters."""

    store: Store
    txn: lmdb.Transaction
    now_ns: int
    touched: dict[int, Stream] = field(default_factory=dict)
    # What changed, for consumers once the commit succeeded: (stream, seq, subject) stored and removed;
    # streams purged whole (their removals are not listed one by one).
    stored: list[tuple[Stream, int, bytes]] = field(default_factory=list)
    removed: list[tuple[Stream, int, bytes]] = field(default_factory=list)
    purged: list[Stream] = field(default_factory=list)
    republish: list[Frame] = field(default_factory=list)  # sent once the commit succeeded

    def touch(self, stream: Stream) -> None:
        self.touched[stream.id] = stream


def parse_ttl(text: bytes) -> int:
    """A Nats-TTL value: a Go duration (`1h2m`, `500ms`) or, as nats-server also takes, plain integer seconds -> ns;
    ValueError when neither."""
    s = text.decode().strip()
    if s.isdigit():
        return int(s) * _NS
    return durations.parse(s)


def _ttl(stream: Stream, value: bytes) -> int:
    """-> TTL in ns; -1 means never expire."""
    if not stream.config.allow_msg_ttl:
        raise errors.MSG_TTL_DISABLED()
    if value == b"never":
        return -1
    try:
        ttl = parse_ttl(value)
    except ValueError:
        raise errors.MSG_TTL_INVALID() from None
    if ttl < _NS or ttl > MAX_TTL:  # past int64 ns the server refuses it too, and it would not fit the TTL index
        raise errors.MSG_TTL_INVALID()
    return ttl


_INTEGER = re.compile(rb"[+-]?[0-9]+")  # Go's big.Int SetString(s, 10): no spaces, no underscores


def increment_of(value: bytes | None) -> int | None:
    """A Nats-Incr value -> the integer; None when absent or empty (as nats-server reads it); ApiError if invalid."""
    if not value:
        return None
    if _INTEGER.fullmatch(value) is None:
        raise errors.INCR_INVALID()
    try:
        return int(value)
    except ValueError:  # past Python's digit limit for int(str)
        raise errors.INCR_INVALID() from None


def _to_int(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise errors.BAD_REQUEST() from None


def last_seq_on_subject(b: Batch, stream: Stream, subject: bytes) -> int:
    """Last stored seq on a subject, or on any subject a wildcard selects; 0 when none."""
    cur = b.txn.cursor(db=stream.dbs.subjects)
    text = subject.decode(errors="replace")
    keys = [subject] if subjects.is_literal(text) else matching_subjects(b.txn, stream, text)
    best = 0
    for key in keys:
        if cur.set_key(stream.dbs.skey(key)) and cur.last_dup():
            best = max(best, int(SEQ.unpack(cur.value())[0]))
    return best


def subject_count(b: Batch, stream: Stream, subject: bytes) -> int:
    cur = b.txn.cursor(db=stream.dbs.subjects)
    return int(cur.count()) if cur.set_key(stream.dbs.skey(subject)) else 0


def store_message(
    b: Batch, stream: Stream, subject: bytes, hdrs: bytes | None, data: bytes, *, sourced: bool = False
) -> tuple[int, bool]:
    """Check, sequence and store one published message. -> (seq, duplicate); raises ApiError to refuse it.
    `sourced`: a message a schedule produced (see ``scheduler``) or a source copied: its schedule headers are not
    a client's to check (nats-server's `sourced`), only a `Nats-Schedule-Next: purge` is honoured.

    The hot path: each helper below is called once per message, so splitting costs a call, never a second look.
    """
    cfg = stream.config
    routing = stream.routing if stream.routing_config is cfg else routing_of(stream)
    if routing is not None:
        subject = routing.stored_subject(subject)
    check_writable(stream, subject)
    hlen = len(hdrs) if hdrs else 0
    ttl, msg_id, rollup, plan = 0, b"", None, None
    if hlen:
        h = headers.parse(hdrs)
        if h:
            ttl, msg_id, rollup, duplicate_of, plan = check_headers(b, stream, subject, h, sourced)
            if duplicate_of:
                return duplicate_of, True
            hdrs, rollup = _with_schedule_rollup(plan, hdrs or b"", rollup)
            hlen = len(hdrs)
    size = _check_size(stream, subject, hlen, len(data))
    if cfg.discard == Discard.NEW:
        _check_discard_new(b, stream, subject, size)
    seq = _next_seq(b, stream, msg_id)
    if cfg.retention == Retention.INTEREST and not stream.has_interest(subject):
        # Nobody would ever ack it: the sequence is used, nothing is stored (JetStream does the same).
        if not stream.counters.messages:
            stream.counters.first_seq = min(seq + 1, MAX_SEQ)
        return seq, False
    if routing is not None and (target := routing.republish_to(subject)) is not None:
        frame = routing.frame(b.txn, stream.dbs, stream.name_bytes, b.now_ns, target, seq, subject, hdrs, data)
        b.republish.append(frame)
    _put_message(b, stream, seq, subject, hdrs, data, size)
    if msg_id:
        _put_msg_id(b, stream, seq, msg_id)
    if ttl > 0:
        b.txn.put(stream.dbs.prefix + pack_pair(b.now_ns + ttl, seq), b"", db=stream.dbs.ttl)
    if rollup is not None:
        _apply_rollup(b, stream, subject, seq, rollup)
    _apply_schedule_plan(b, stream, seq, plan)
    _enforce_limits(b, stream, subject)
    return seq, False


def _schedule_plan(b: Batch, stream: Stream, subject: bytes, h: dict[bytes, bytes], sourced: bool) -> Plan | None:
    """What the Nats-Schedule headers ask (None: there are none); raises the server's errors for a client's."""
    if not schedules.involved(h):
        return None
    if sourced:
        return Plan(purge=schedules.purge_target(h))

    def last_headers(on: bytes) -> bytes | None:
        seq = last_seq_on_subject(b, stream, on)
        raw = b.txn.get(stream.dbs.mkey(seq), db=stream.dbs.msgs) if seq else None
        return None if raw is None else bytes(unpack_message(raw)[1])

    plan = schedules.check(stream.config, subject, h, b.now_ns, last_headers)
    plan.purge = schedules.purge_target(h)
    return plan


def _with_schedule_rollup(plan: Plan | None, hdrs: bytes, rollup: bytes | None) -> tuple[bytes, bytes | None]:
    """A subject holds one schedule: the server adds `Nats-Rollup: sub` to a schedule's stored headers."""
    if plan is not None and plan.add_rollup:
        return headers.build([("Nats-Rollup", "sub")], hdrs), b"sub"
    return hdrs, rollup


def _apply_schedule_plan(b: Batch, stream: Stream, seq: int, plan: Plan | None) -> None:
    if plan is None:
        return
    if plan.due_ns:
        schedules.index(b.txn, stream.dbs, plan.due_ns, seq)
    if plan.purge:  # a literal subject (checked at publish, or a schedule's own): its messages, straight off the index
        for old in subject_seqs(b, stream, plan.purge):
            delete_seq(b, stream, old)


def _check_size(stream: Stream, subject: bytes, hlen: int, dlen: int) -> int:
    """Refuse what is too big; -> the size the message counts against max_bytes."""
    if hlen > MAX_HEADER:
        raise errors.HEADER_TOO_BIG()
    max_size = stream.config.max_msg_size
    if max_size >= 0 and hlen + dlen > max_size:
        raise errors.MESSAGE_TOO_BIG()
    return stored_size(len(subject), hlen, dlen)


def _next_seq(b: Batch, stream: Stream, msg_id: bytes) -> int:
    """Take the next sequence (the config's first_seq for a stream's very first message) and note it as last."""
    c = stream.counters
    seq = c.last_seq + 1
    if c.last_seq == 0 and isinstance(stream.config.first_seq, int):
        seq = max(seq, stream.config.first_seq)
    if seq > MAX_SEQ:  # first_seq may be 2^64-1, as nats-server allows: that stream holds one message, no more
        raise errors.STORE_FAILED(err="stream sequence space exhausted")
    b.touch(stream)
    c.last_seq = seq
    c.last_ns = b.now_ns
    c.last_msg_id = msg_id
    return seq


def _put_message(
    b: Batch, stream: Stream, seq: int, subject: bytes, hdrs: bytes | None, data: bytes, size: int
) -> None:
    """Store the message and index it by subject, counting the subject when it is new (a `get` before the put
    costs 1.9 us, a cursor's count after it 4.5 us: this runs once per published message)."""
    c, dbs = stream.counters, stream.dbs
    skey = dbs.skey(subject)
    if b.txn.get(skey, db=dbs.subjects) is None:
        c.num_subjects += 1
    b.txn.put(dbs.mkey(seq), pack_message(subject, hdrs, data, b.now_ns), db=dbs.msgs)
    b.txn.put(skey, SEQ.pack(seq), db=dbs.subjects, dupdata=True)
    b.stored.append((stream, seq, subject))
    if c.messages == 0:
        c.first_seq = seq
        c.first_ns = b.now_ns
    c.messages += 1
    c.total_bytes += size


def _put_msg_id(b: Batch, stream: Stream, seq: int, msg_id: bytes) -> None:
    dbs = stream.dbs
    b.txn.put(dbs.prefix + msg_id, pack_pair(seq, b.now_ns), db=dbs.dedup)
    b.txn.put(dbs.prefix + SEQ.pack(b.now_ns) + msg_id, b"", db=dbs.dedup_age)


def check_writable(stream: Stream, subject: bytes) -> None:
    if stream.deleted:
        raise errors.STREAM_NOT_FOUND()
    if stream.config.sealed:
        raise errors.SEALED()
    if len(subject) > MAX_SUBJECT:
        raise errors.STORE_FAILED(err=f"subject is longer than {MAX_SUBJECT} bytes, streamd cannot store it")
    if not subject.isascii():
        try:
            subject.decode()
        except UnicodeDecodeError:
            # Deliveries, filters and the API all treat subjects as text: refuse at the door, not mid-delivery.
            raise errors.STORE_FAILED(err="subject is not valid UTF-8, streamd cannot store it") from None


def check_headers(
    b: Batch, stream: Stream, subject: bytes, h: dict[bytes, bytes], sourced: bool = False
) -> tuple[int, bytes, bytes | None, int, Plan | None]:
    """The header rules in the server's order. -> (ttl ns, msg id, rollup, seq this duplicates or 0, what the
    schedule headers ask)."""
    c = stream.counters
    if headers.INCR in h and increment_of(h[headers.INCR]) is not None:
        # A counter stream checked it already (store/counters); a sourced copy of a counter is stored verbatim.
        if not stream.config.allow_msg_counter and headers.STREAM_SOURCE not in h:
            raise errors.INCR_DISABLED()
    expected = h.get(headers.EXPECTED_STREAM)
    if expected is not None and expected != stream.name_bytes:
        raise errors.EXPECTED_STREAM()
    ttl_raw = h.get(headers.TTL)
    ttl = _ttl(stream, ttl_raw) if ttl_raw is not None else 0
    subj_seq = h.get(headers.EXPECTED_LAST_SUBJ_SEQ)
    if subj_seq is not None:
        want = _to_int(subj_seq)
        on = h.get(headers.EXPECTED_LAST_SUBJ_SEQ_SUBJ) or subject
        actual = last_seq_on_subject(b, stream, on)
        if actual != want:
            raise errors.WRONG_LAST_SEQUENCE(seq=actual)
    last = h.get(headers.EXPECTED_LAST_SEQ)
    if last is not None and _to_int(last) != c.last_seq:
        raise errors.WRONG_LAST_SEQUENCE(seq=c.last_seq)
    plan = _schedule_plan(b, stream, subject, h, sourced)
    msg_id = dedup_key(h.get(headers.MSG_ID, b""))
    if msg_id:
        prior = b.txn.get(stream.dbs.prefix + msg_id, db=stream.dbs.dedup)
        if prior is not None:
            seq, stored = unpack_pair(prior)
            if b.now_ns - stored < stream.config.duplicate_window:
                return ttl, msg_id, None, seq, None
    _check_expected_msg_id(stream, h)
    rollup = h.get(headers.ROLLUP)
    if rollup is not None:
        _check_rollup(stream, rollup, sourced)
    return ttl, msg_id, rollup, 0, plan


def dedup_key(msg_id: bytes) -> bytes:
    """LMDB keys stop at 511 bytes: long message ids are kept as a digest (collisions are not a practical risk)."""
    if len(msg_id) <= MAX_PLAIN_ID:
        return msg_id
    return b"#blake2b:" + hashlib.blake2b(msg_id, digest_size=32).digest()


def _check_expected_msg_id(stream: Stream, h: dict[bytes, bytes]) -> None:
    want = h.get(headers.EXPECTED_LAST_MSG_ID)
    if want is not None and dedup_key(want) != stream.counters.last_msg_id:
        raise errors.WRONG_LAST_MSG_ID(id=bytes(stream.counters.last_msg_id).decode(errors="replace"))


def _check_rollup(stream: Stream, value: bytes, sourced: bool = False) -> None:
    """A sourced message's rollup applies even where clients may not roll up (as in nats-server)."""
    if not sourced and (not stream.config.allow_rollup_hdrs or stream.config.deny_purge):
        raise errors.ROLLUP_FAILED(err="rollup not permitted")
    if value not in (b"sub", b"all"):
        raise errors.ROLLUP_FAILED(err=f'rollup value invalid: "{value.decode(errors="replace")}"')


def _check_discard_new(b: Batch, stream: Stream, subject: bytes, size: int) -> None:
    cfg, c = stream.config, stream.counters
    if cfg.max_msgs > 0 and c.messages + 1 > cfg.max_msgs:
        raise errors.STORE_FAILED(err="maximum messages exceeded")
    if cfg.max_bytes > 0 and c.total_bytes + size > cfg.max_bytes:
        raise errors.STORE_FAILED(err="maximum bytes exceeded")
    if (
        cfg.discard_new_per_subject is True
        and cfg.max_msgs_per_subject > 0
        and subject_count(b, stream, subject) >= cfg.max_msgs_per_subject
    ):
        raise errors.STORE_FAILED(err="maximum messages per subject exceeded")


def _apply_rollup(b: Batch, stream: Stream, subject: bytes, seq: int, how: bytes) -> None:
    if how == b"all":
        purge(b, stream, seq=seq)
        return
    for old in subject_seqs(b, stream, subject):
        if old >= seq:
            break
        delete_seq(b, stream, old)


def _enforce_limits(b: Batch, stream: Stream, subject: bytes) -> None:
    cfg = stream.config
    if cfg.max_msgs_per_subject > 0:
        trim_subject(b, stream, subject, cfg.max_msgs_per_subject)
    if cfg.discard != Discard.NEW:
        trim_front(b, stream)


def trim_subject(b: Batch, stream: Stream, subject: bytes, keep: int) -> None:
    """Remove a subject's oldest messages beyond the newest `keep`."""
    excess = subject_count(b, stream, subject) - keep
    if excess > 0:
        for old in subject_seqs(b, stream, subject)[:excess]:
            delete_seq(b, stream, old)


def trim_front(b: Batch, stream: Stream) -> None:
    """Remove the oldest messages until the stream is within max_msgs and max_bytes."""
    cfg, c = stream.config, stream.counters
    while cfg.max_msgs > 0 and c.messages > cfg.max_msgs:
        delete_seq(b, stream, c.first_seq)
    while cfg.max_bytes > 0 and c.total_bytes > cfg.max_bytes and c.messages:
        delete_seq(b, stream, c.first_seq)


def subject_seqs(b: Batch, stream: Stream, subject: bytes) -> list[int]:
    cur = b.txn.cursor(db=stream.dbs.subjects)
    if not cur.set_key(stream.dbs.skey(subject)):
        return []
    return [SEQ.unpack(v)[0] for v in cur.iternext_dup()]


def delete_seq(b: Batch, stream: Stream, seq: int) -> bool:
    """Remove one message; keeps counters, the subject index and first_seq right. False if it was not there."""
    txn, dbs, c = b.txn, stream.dbs, stream.counters
    raw = txn.pop(dbs.mkey(seq), db=dbs.msgs)
    if raw is None:
        return False
    b.touch(stream)
    subject = message_subject(raw)
    b.removed.append((stream, seq, subject))
    skey = dbs.skey(subject)
    txn.delete(skey, SEQ.pack(seq), db=dbs.subjects)
    cur = txn.cursor(db=dbs.subjects)
    if not cur.set_key(skey):
        c.num_subjects -= 1
    c.messages -= 1
    c.total_bytes -= record_size(raw)
    if seq == c.first_seq:
        _advance_first(b, stream)
    return True


def _advance_first(b: Batch, stream: Stream) -> None:
    c = stream.counters
    cur = b.txn.cursor(db=stream.dbs.msgs)
    if c.messages and seek_first(cur, stream.dbs.prefix, SEQ.pack(c.first_seq)):
        c.first_seq = key_seq(cur.key())
        c.first_ns = message_time(cur.value())
    else:
        c.first_seq = min(c.last_seq + 1, MAX_SEQ)
        c.first_ns = 0
        c.messages = 0
        c.total_bytes = 0


def purge(b: Batch, stream: Stream, *, filter_subject: str = "", seq: int = 0, keep: int = 0) -> int:
    """Remove messages: all, all below `seq`, all but the newest `keep`, optionally only those on `filter`."""
    c = stream.counters
    b.touch(stream)
    if (
        filter_subject
        and filter_subject != ">"
        and not all(subjects.is_subset(s, filter_subject) for s in stream.config.subjects)
    ):
        return _purge_filtered(b, stream, filter_subject, seq, keep)
    if not seq and not keep:
        purged = c.messages
        for db in (stream.dbs.msgs, stream.dbs.subjects, stream.dbs.ttl, stream.dbs.sched):
            delete_prefix(b.txn.cursor(db=db), stream.dbs.prefix, 1 << 62)
        b.purged.append(stream)
        c.first_seq, c.first_ns, c.messages, c.total_bytes, c.num_subjects = min(c.last_seq + 1, MAX_SEQ), 0, 0, 0, 0
        return purged
    purged = 0
    while c.messages and (c.messages > keep if keep else c.first_seq < seq):
        delete_seq(b, stream, c.first_seq)
        purged += 1
    return purged


def _purge_filtered(b: Batch, stream: Stream, filter_subject: str, seq: int, keep: int) -> int:
    seqs: list[int] = []
    for subject in matching_subjects(b.txn, stream, filter_subject):
        seqs.extend(subject_seqs(b, stream, subject))
    seqs.sort()
    if keep:
        seqs = seqs[: max(0, len(seqs) - keep)]
    elif seq:
        seqs = [s for s in seqs if s < seq]
    return sum(1 for s in seqs if delete_seq(b, stream, s))


def matching_subjects(txn: lmdb.Transaction, stream: Stream, filter_subject: str) -> list[bytes]:
    """Stored subjects selected by a filter, read from the subject index (one key per subject)."""
    dbs = stream.dbs
    if subjects.is_literal(filter_subject):
        key = filter_subject.encode()
        cur = txn.cursor(db=dbs.subjects)
        return [key] if cur.set_key(dbs.skey(key)) else []
    prefix = dbs.skey(filter_subject.split("*")[0].split(">")[0].encode())
    cur = txn.cursor(db=dbs.subjects)
    out: list[bytes] = []
    if not cur.set_range(prefix):
        return out
    while True:
        found = bytes(cur.key())
        if not found.startswith(prefix):
            break
        found = found[4:]
        if subjects.matches(filter_subject, found.decode()):
            out.append(found)
        if not cur.next_nodup():
            break
    return out
