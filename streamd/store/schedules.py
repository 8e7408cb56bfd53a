"""Message schedules on the write path: the publish checks nats-server makes on the Nats-Schedule headers, and the
index of schedules by due time (the `sched` table) that ``scheduler`` fires from.

A schedule is an ordinary message on its own subject (stored with `Nats-Rollup: sub`, so a subject holds one);
its index row points at its sequence. A row whose message is gone, or no longer the last on its subject, is stale
and dropped when it comes due: replacing or purging a schedule costs no index upkeep. Streams without schedules
pay four dict lookups per message that has Nats-* headers, nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lmdb

from streamd.store.layout import StreamDbs, pack_pair
from streamd.wire import durations, errors, headers, schedule, subjects
from streamd.wire.models import StreamConfig

_NS = 1_000_000_000
_MAX_TTL = (1 << 63) - 1
PURGE = b"purge"


@dataclass(slots=True)
class Plan:
    """What storing a message means for schedules: index it as due at `due_ns` (adding `Nats-Rollup: sub` when
    `add_rollup`); or, as a produced message or a client's purge, remove the schedule on subject `purge`."""

    due_ns: int = 0
    add_rollup: bool = False
    purge: bytes = b""


def involved(h: dict[bytes, bytes]) -> bool:
    """Whether a message's Nats-* headers concern schedules (the publish hot path: four dict lookups)."""
    return headers.SCHEDULE in h or headers.SCHEDULER in h or headers.SCHEDULE_NEXT in h or headers.SCHEDULE_TZ in h


def check(
    cfg: StreamConfig,
    subject: bytes,
    h: dict[bytes, bytes],
    now_ns: int,
    last_headers: Callable[[bytes], bytes | None],
) -> Plan:
    """The checks of nats-server's processJetStreamMsg, in its order; raises ApiError. `last_headers(subject)` is
    the header block of the last message on a subject (None when there is none)."""
    allowed = cfg.allow_msg_schedules is True
    pattern = h.get(headers.SCHEDULE, b"")
    try:
        tz = schedule.zone(h.get(headers.SCHEDULE_TZ))
        due = schedule.next_fire(pattern.decode(), tz, now_ns, now_ns)[0] if pattern else 0
    except schedule.Invalid as exc:
        if not allowed:
            raise errors.SCHEDULES_DISABLED() from None
        kind = errors.SCHEDULES_TZ_INVALID if str(exc) == "time zone" else errors.SCHEDULES_PATTERN_INVALID
        raise kind() from None
    except UnicodeDecodeError:
        raise (errors.SCHEDULES_PATTERN_INVALID if allowed else errors.SCHEDULES_DISABLED)() from None
    plan = Plan()
    if due:
        if not allowed:
            raise errors.SCHEDULES_DISABLED()
        plan.due_ns = due
        plan.add_rollup = _check_schedule(cfg, subject, h)
    _check_scheduler(subject, h, allowed, last_headers)
    return plan


def _check_schedule(cfg: StreamConfig, subject: bytes, h: dict[bytes, bytes]) -> bool:
    """A schedule's TTL, rollup, target and source; -> whether `Nats-Rollup: sub` must be added."""
    ttl = h.get(headers.SCHEDULE_TTL, b"")
    if ttl and not ttl_ok(ttl):
        raise errors.SCHEDULES_TTL_INVALID()
    rollup = h.get(headers.SCHEDULE_ROLLUP, b"")
    if rollup and rollup != b"sub":
        raise errors.SCHEDULES_ROLLUP_INVALID()
    if ttl and cfg.allow_msg_ttl is not True:
        raise errors.MSG_TTL_DISABLED()
    target = _text(h.get(headers.SCHEDULE_TARGET, b""))
    if not _publishable(target) or target == subject.decode(errors="replace"):
        raise errors.SCHEDULES_TARGET_INVALID()
    source = _text(h.get(headers.SCHEDULE_SOURCE, b""))
    if source and (source in (target, subject.decode(errors="replace")) or not _publishable(source)):
        raise errors.SCHEDULES_SOURCE_INVALID()
    if not _in_stream(cfg, target):
        raise errors.SCHEDULES_TARGET_INVALID()
    if source and not _in_stream(cfg, source):
        raise errors.SCHEDULES_SOURCE_INVALID()
    own = h.get(headers.ROLLUP)
    if own is not None and own != b"sub":
        raise errors.SCHEDULES_ROLLUP_INVALID()
    return own is None


def _check_scheduler(
    subject: bytes, h: dict[bytes, bytes], allowed: bool, last_headers: Callable[[bytes], bytes | None]
) -> None:
    """Clients may send Nats-Scheduler only with `Nats-Schedule-Next: purge`, naming a schedule's subject."""
    nxt = h.get(headers.SCHEDULE_NEXT)
    scheduler = h.get(headers.SCHEDULER)
    if nxt:
        if nxt != PURGE or not scheduler or scheduler == subject or not _publishable(_text(scheduler)):
            raise errors.SCHEDULES_SCHEDULER_INVALID()
        if not allowed:
            raise errors.SCHEDULES_DISABLED()
        last = last_headers(scheduler)
        if last is not None and headers.SCHEDULE not in headers.parse(last):
            raise errors.SCHEDULES_SCHEDULER_INVALID()
    elif scheduler:
        raise errors.SCHEDULES_SCHEDULER_INVALID()


def purge_target(h: dict[bytes, bytes]) -> bytes:
    """The schedule subject a stored message purges (`Nats-Schedule-Next: purge`), or b""."""
    return h.get(headers.SCHEDULER, b"") if h.get(headers.SCHEDULE_NEXT) == PURGE else b""


def ttl_ok(value: bytes) -> bool:
    """A Nats-TTL value as nats-server's parseMessageTTL takes it: `never`, whole seconds, or a Go duration of
    at least a second."""
    if value == b"never":
        return True
    try:
        text = value.decode().strip()
        ns = int(text) * _NS if text.isdigit() else durations.parse(text)
    except (UnicodeDecodeError, ValueError):
        return False
    return _NS <= ns <= _MAX_TTL


def index(txn: lmdb.Transaction, dbs: StreamDbs, due_ns: int, seq: int) -> None:
    txn.put(dbs.prefix + pack_pair(min(max(0, due_ns), _MAX_TTL), seq), b"", db=dbs.sched)


def _text(value: bytes) -> str:
    return value.decode(errors="replace")


def _publishable(subject: str) -> bool:
    return subjects.is_valid_subject(subject) and subjects.is_literal(subject)


def _in_stream(cfg: StreamConfig, subject: str) -> bool:
    return any(subjects.collide(s, subject) for s in cfg.subjects or ())
