"""Firing due message schedules, inside a writer batch (so produced messages are group-committed with the rest).

Each due row of the `sched` index is taken out; if its schedule message is still the last on its subject, the
message it produces is stored on the target subject (through ``store_message``, so limits, TTLs, rollups and
consumers treat it like any publish) and a repeating schedule is indexed again at its next time. A due time that
passed while streamd was down fires once at the first pass, as nats-server does after a restart.
"""

from __future__ import annotations

import logging

from streamd.store import schedules
from streamd.store.layout import seek_first, unpack_message, unpack_pair
from streamd.store.stream import Batch, Stream, last_seq_on_subject, store_message
from streamd.wire import errors, headers, schedule

logger = logging.getLogger(__name__)

PER_PASS = 1000  # schedules one stream fires per writer call: the retention pass comes back at once for more
# Headers a produced message does not inherit: the schedule's own, and those that could refuse or reshape it.
_STRIP_PREFIXES = (b"Nats-Schedule", b"Nats-Expected-")
_STRIP = frozenset({headers.MSG_ID, headers.TTL, headers.ROLLUP})


def fire_due(b: Batch, stream: Stream) -> int:
    """Fire up to PER_PASS schedules due at `b.now_ns`; -> how many rows were taken (fired or stale)."""
    dbs = stream.dbs
    cur = b.txn.cursor(db=dbs.sched)
    taken = 0
    while taken < PER_PASS and seek_first(cur, dbs.prefix):
        due, seq = unpack_pair(cur.key()[4:])
        if due > b.now_ns:
            break
        cur.delete()
        taken += 1
        _fire(b, stream, due, seq)
    return taken


def _fire(b: Batch, stream: Stream, due: int, seq: int) -> None:
    raw = b.txn.get(stream.dbs.mkey(seq), db=stream.dbs.msgs)
    if raw is None:
        return
    subject, hdrs, data, _ = unpack_message(raw)
    subject = bytes(subject)
    if last_seq_on_subject(b, stream, subject) != seq:
        return  # replaced by a later message on its subject: no longer a schedule
    h = headers.parse(bytes(hdrs))
    try:
        tz = schedule.zone(h.get(headers.SCHEDULE_TZ))
        nxt, repeat = schedule.next_fire(h.get(headers.SCHEDULE, b"").decode(), tz, due, b.now_ns)
    except (schedule.Invalid, UnicodeDecodeError):
        return
    ttl = h.get(headers.SCHEDULE_TTL, b"")
    target = h.get(headers.SCHEDULE_TARGET, b"")
    if (ttl and not schedules.ttl_ok(ttl)) or not target:
        return
    body_hdrs, body = bytes(hdrs), bytes(data)
    source = h.get(headers.SCHEDULE_SOURCE, b"")
    if source:
        src_seq = last_seq_on_subject(b, stream, source)
        src_raw = b.txn.get(stream.dbs.mkey(src_seq), db=stream.dbs.msgs) if src_seq else None
        if src_raw is not None:
            _, src_hdrs, src_data, _ = unpack_message(src_raw)
            body_hdrs, body = bytes(src_hdrs), bytes(src_data)
    added = [
        ("Nats-Scheduler", subject.decode()),
        ("Nats-Schedule-Next", schedule.format_next(nxt, tz) if repeat else "purge"),
    ]
    if ttl:
        added.append(("Nats-TTL", ttl.decode()))
    rollup = h.get(headers.SCHEDULE_ROLLUP, b"")
    if rollup:
        added.append(("Nats-Rollup", rollup.decode()))
    try:
        store_message(b, stream, target, headers.build(added, _stripped(body_hdrs)), body, sourced=True)
    except errors.ApiError as exc:
        logger.warning("stream %s: schedule %s could not store on %s: %s", stream.name, subject, target, exc)
    if repeat:
        schedules.index(b.txn, stream.dbs, nxt, seq)


def _stripped(block: bytes) -> bytes:
    """The header block without the lines a produced message must not carry (the status line kept)."""
    if not block:
        return b""
    lines = block.split(b"\r\n")
    kept = [lines[0]]
    for line in lines[1:]:
        key = line.partition(b":")[0].strip()
        if line and not key.startswith(_STRIP_PREFIXES) and key not in _STRIP:
            kept.append(line)
    return b"\r\n".join(kept) + b"\r\n\r\n"
