"""Consumer configuration defaults and validation, as nats-server's setConsumerConfigDefaults and
checkConsumerCfg apply them (pure functions)."""

from __future__ import annotations

import secrets
import string
from typing import NamedTuple

import msgspec
from msgspec import UNSET

from streamd.consumers import acks, priority
from streamd.wire import errors, subjects, timefmt
from streamd.wire.models import AckPolicyWire, ConsumerConfig, DeliverPolicy, Retention, StreamConfig
from streamd.wire.subject_tree import SubjectTree

DEFAULT_ACK_WAIT = 30 * 1_000_000_000
DEFAULT_MAX_ACK_PENDING = 1000
DEFAULT_MAX_WAITING = 512
DEFAULT_EPHEMERAL_INACTIVE = 5 * 1_000_000_000
MIN_HEARTBEAT = 100_000_000
# Deliveries go out as `HMSG <deliver> + <ack reply> <group> …` lines, which the server takes up to 4 KiB: streamd
# bounds what it puts there (nats-server, delivering internally, has no such limit).
MAX_DELIVER_SUBJECT = 1024
MAX_DELIVER_GROUP = 255
_WHITESPACE = " \t\r\n\f\v"
MAX_DESCRIPTION = 4096
MAX_METADATA = 128 * 1024
_ALPHABET = string.ascii_letters + string.digits


def random_name() -> str:
    """The 8-character name a legacy ephemeral consumer gets."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(8))


def is_push(cfg: ConsumerConfig) -> bool:
    return bool(cfg.deliver_subject)


def ack_settings(cfg: ConsumerConfig) -> acks.AckSettings:
    """What the ack state machine needs of a (normalised) config."""
    return acks.AckSettings(
        ack_policy=acks.AckPolicy(cfg.ack_policy.value),
        ack_wait_ns=cfg.ack_wait if isinstance(cfg.ack_wait, int) else acks.DEFAULT_ACK_WAIT_NS,
        backoff_ns=list(cfg.backoff) if isinstance(cfg.backoff, list) else [],
        max_deliver=cfg.max_deliver,
        max_ack_pending=cfg.max_ack_pending if isinstance(cfg.max_ack_pending, int) else -1,
    )


def filters(cfg: ConsumerConfig) -> list[str]:
    if cfg.filter_subject:
        return [str(cfg.filter_subject)]
    return list(cfg.filter_subjects) if cfg.filter_subjects else []


def check_name(name: str) -> None:
    if "/" in name or "\\" in name:
        raise errors.CONSUMER_NAME_PATH_SEPARATORS()
    if len(name.encode()) > subjects.MAX_NAME_LEN:  # bytes, as the server counts them
        raise errors.CONSUMER_NAME_TOO_LONG(max=subjects.MAX_NAME_LEN)
    if not subjects.is_valid_name(name):
        raise errors.STREAM_INVALID_CONFIG(err="consumer name can not contain '.', '*', '>', '\\', '/'")


class Normalized(NamedTuple):
    config: ConsumerConfig
    filters: list[str]  # the config's filters, computed once here and carried by the consumer


def required_level(c: ConsumerConfig) -> int:
    """The JetStream API level a consumer's config needs (nats-server's `_nats.req.level`): 1 when paused or with
    priority groups (2.11)."""
    if c.priority_policy is not UNSET or c.priority_groups is not UNSET or c.priority_timeout is not UNSET:
        return 1
    return 1 if isinstance(c.pause_until, str) and c.pause_until and c.pause_until != timefmt.ZERO_TIME else 0


def normalize(cfg: ConsumerConfig, stream: StreamConfig, name: str) -> Normalized:
    """Apply defaults and reject what the server rejects; returns a new config for the consumer `name`."""
    c = ConsumerConfig(**{f: getattr(cfg, f) for f in cfg.__struct_fields__})
    durable = bool(c.durable_name)
    check_name(name)
    if c.durable_name == "":
        c.durable_name = UNSET
    _check_unsupported(c)
    _check_description(c)
    _check_deliver_policy(c)
    _check_acks(c, stream)
    _check_push_pull(c, stream)
    mine = _check_filters(c)
    _check_workqueue(c, stream)
    if c.num_replicas > max(stream.num_replicas, 1):
        raise errors.REPLICAS_EXCEED_STREAM()
    if c.num_replicas < 0:
        raise errors.REPLICAS_NEGATIVE()
    _check_inactive(c, stream, durable)
    _check_pause(c)
    _check_priority(c)
    for flag in ("headers_only", "flow_control", "mem_storage"):
        if getattr(c, flag) is False:
            setattr(c, flag, UNSET)
    return Normalized(c, mine)


def _check_unsupported(c: ConsumerConfig) -> None:
    c.pinned_ttl = UNSET
    if c.sourcing not in (UNSET, None):
        raise errors.CONSUMER_CREATE(err="streamd does not support sourcing consumers")
    c.sourcing = UNSET
    # `direct` marks the consumer a mirror or source creates (nats-server: unreplicated, internal); on one server
    # it is an ordinary ephemeral consumer, so it is taken as such (and echoed back, as the server does).
    if c.direct is not True:
        c.direct = UNSET
    elif not c.deliver_subject:
        raise errors.DIRECT_REQUIRES_PUSH()
    elif c.durable_name:
        raise errors.DIRECT_REQUIRES_EPHEMERAL()


def _check_priority(c: ConsumerConfig) -> None:
    """nats-server's priority group defaults and checks (setConsumerConfigDefaults, checkConsumerCfg)."""
    policy = _priority_policy(c)
    groups = c.priority_groups if isinstance(c.priority_groups, list) else []
    if policy != priority.NONE:
        if c.deliver_subject:
            raise errors.PUSH_WITH_PRIORITY_GROUP()
        if not groups:
            raise errors.PRIORITY_POLICY_WITHOUT_GROUP()
        for group in groups:
            if not group:
                raise errors.EMPTY_GROUP_NAME()
            if not priority.GROUP_NAME.fullmatch(group):
                raise errors.INVALID_GROUP_NAME()
    elif groups:
        raise errors.PRIORITY_GROUP_WITH_POLICY_NONE()
    elif c.priority_timeout:
        raise errors.PINNED_TTL_WITHOUT_POLICY()
    c.priority_policy = UNSET if policy == priority.NONE else policy
    if not groups:
        c.priority_groups = UNSET


def _priority_policy(c: ConsumerConfig) -> str:
    """The policy (an unknown one fails as the server's JSON decoding does); sets the pin timeout's default."""
    policy = c.priority_policy
    if policy is UNSET:
        policy = priority.NONE
    elif policy not in priority.POLICIES:
        raise errors.INVALID_JSON(err=f"unknown priority policy: {msgspec.json.encode(policy).decode()}")
    if not isinstance(c.priority_timeout, int) or c.priority_timeout <= 0:
        c.priority_timeout = UNSET  # negative: taken as none, as the server does without pedantic
    if policy == priority.PINNED and c.priority_timeout is UNSET:
        c.priority_timeout = priority.DEFAULT_PINNED_TTL
    return str(policy)


def _check_description(c: ConsumerConfig) -> None:
    if c.description == "":
        c.description = UNSET
    elif isinstance(c.description, str) and len(c.description) > MAX_DESCRIPTION:
        raise errors.CONSUMER_DESCRIPTION_TOO_LONG(max=MAX_DESCRIPTION)
    if isinstance(c.metadata, dict) and sum(len(k) + len(v) for k, v in c.metadata.items()) > MAX_METADATA:
        raise errors.CONSUMER_CREATE(err="consumer metadata exceeds maximum size of 128 KiB")


def _check_inactive(c: ConsumerConfig, stream: StreamConfig, durable: bool) -> None:
    if c.inactive_threshold is UNSET or c.inactive_threshold == 0:
        if durable:
            c.inactive_threshold = UNSET
        else:
            limit = stream.consumer_limits.inactive_threshold
            c.inactive_threshold = limit or DEFAULT_EPHEMERAL_INACTIVE
    elif isinstance(c.inactive_threshold, int) and c.inactive_threshold < 0:
        raise errors.CONSUMER_CREATE(err="consumer inactive threshold can not be negative")


def _check_pause(c: ConsumerConfig) -> None:
    if c.pause_until == "":
        c.pause_until = UNSET
    elif isinstance(c.pause_until, str):
        try:
            timefmt.parse(c.pause_until)
        except ValueError:
            raise errors.CONSUMER_CREATE(err="invalid pause_until time") from None


def _check_deliver_policy(c: ConsumerConfig) -> None:
    p = c.deliver_policy
    if c.opt_start_seq == 0:
        c.opt_start_seq = UNSET
    if c.opt_start_time in ("", timefmt.ZERO_TIME):
        c.opt_start_time = UNSET
    words = p.value.replace("_", " ")
    if p == DeliverPolicy.BY_START_SEQUENCE:
        if c.opt_start_seq is UNSET:
            raise errors.CONSUMER_INVALID_POLICY(
                err="consumer delivery policy is deliver by start sequence, but optional start sequence is not set"
            )
    elif c.opt_start_seq is not UNSET:
        raise errors.CONSUMER_INVALID_POLICY(
            err=f"consumer delivery policy is deliver {words}, but optional start sequence is also set"
        )
    if p == DeliverPolicy.BY_START_TIME:
        if c.opt_start_time is UNSET:
            raise errors.CONSUMER_INVALID_POLICY(
                err="consumer delivery policy is deliver by start time, but optional start time is not set"
            )
        try:
            timefmt.parse(str(c.opt_start_time))
        except ValueError:
            raise errors.CONSUMER_INVALID_POLICY(err="consumer optional start time is not a valid time") from None
    elif c.opt_start_time is not UNSET:
        raise errors.CONSUMER_INVALID_POLICY(
            err=f"consumer delivery policy is deliver {words}, but optional start time is also set"
        )


def _check_acks(c: ConsumerConfig, stream: StreamConfig) -> None:
    ack_wait = c.ack_wait if isinstance(c.ack_wait, int) else 0
    if ack_wait < 0:
        raise errors.ACK_WAIT_NEGATIVE()
    backoff = c.backoff if isinstance(c.backoff, list) else []
    if any(b <= 0 for b in backoff):
        raise errors.BACKOFF_NEGATIVE()
    if not backoff:
        c.backoff = UNSET
    if c.max_deliver == 0 or c.max_deliver < -1:
        c.max_deliver = -1
    if backoff and c.max_deliver != -1 and len(backoff) > c.max_deliver:
        raise errors.MAX_DELIVER_BACKOFF()
    if c.ack_policy == AckPolicyWire.NONE:
        if c.max_ack_pending not in (UNSET, 0, -1) and is_push(c):
            raise errors.MAX_PENDING_NEEDS_ACK()
        c.ack_wait = ack_wait or UNSET  # omitted by the server when nothing is acked
        if c.max_ack_pending == 0:
            c.max_ack_pending = UNSET
        return
    if backoff:
        c.ack_wait = backoff[0]
    elif not ack_wait:
        c.ack_wait = DEFAULT_ACK_WAIT
    if c.max_ack_pending is UNSET or c.max_ack_pending == 0:
        c.max_ack_pending = stream.consumer_limits.max_ack_pending or DEFAULT_MAX_ACK_PENDING


def _check_push_pull(c: ConsumerConfig, stream: StreamConfig) -> None:
    if is_push(c):
        _check_push(c, stream)
    else:
        _check_pull(c)


def _check_push(c: ConsumerConfig, stream: StreamConfig) -> None:
    _check_deliver(c, stream)
    if c.max_waiting not in (UNSET, 0):
        raise errors.PUSH_MAX_WAITING()
    c.max_waiting = UNSET
    hb = c.idle_heartbeat if isinstance(c.idle_heartbeat, int) else 0
    if 0 < hb < MIN_HEARTBEAT:
        raise errors.SMALL_HEARTBEAT()
    if not hb:
        c.idle_heartbeat = UNSET
    if c.flow_control is True and not hb:
        raise errors.FC_NEEDS_HEARTBEATS()
    for field in ("max_batch", "max_expires", "max_bytes"):
        if getattr(c, field) not in (UNSET, 0):
            raise errors.CONSUMER_CREATE(err=f"consumer in push mode can not set {field.replace('_', ' ')}")
        setattr(c, field, UNSET)
    if c.rate_limit_bps == 0:
        c.rate_limit_bps = UNSET


def _check_deliver(c: ConsumerConfig, stream: StreamConfig) -> None:
    """The deliver subject and group: a literal subject outside the stream, a group that fits a protocol line."""
    deliver = str(c.deliver_subject)
    if not subjects.is_valid_subject(deliver) or len(deliver.encode()) > MAX_DELIVER_SUBJECT:
        raise errors.INVALID_DELIVER_SUBJECT()
    if not _valid_group(c.deliver_group):
        # the group is a queue name on each delivery's protocol line: a space there would break the line
        raise errors.CONSUMER_CREATE(err="consumer deliver group must be a queue name of at most 255 bytes")
    if not subjects.is_literal(deliver):
        raise errors.DELIVER_WILDCARDS()
    if any(subjects.matches(s, deliver) for s in stream.subjects):
        raise errors.DELIVER_CYCLE()
    if c.deliver_group == "":
        c.deliver_group = UNSET


def _valid_group(group: object) -> bool:
    name = group if isinstance(group, str) else ""
    return len(name.encode()) <= MAX_DELIVER_GROUP and not any(ch in name for ch in _WHITESPACE)


def _check_pull(c: ConsumerConfig) -> None:
    c.deliver_subject = UNSET
    c.deliver_group = UNSET
    if c.idle_heartbeat not in (UNSET, 0):
        raise errors.HB_REQUIRES_PUSH()
    c.idle_heartbeat = UNSET
    if c.flow_control is True:
        raise errors.FC_REQUIRES_PUSH()
    if c.rate_limit_bps not in (UNSET, 0):
        raise errors.PULL_WITH_RATE_LIMIT()
    c.rate_limit_bps = UNSET
    if isinstance(c.max_waiting, int) and c.max_waiting < 0:
        raise errors.MAX_WAITING_NEGATIVE()
    if c.max_waiting in (UNSET, 0):
        c.max_waiting = DEFAULT_MAX_WAITING
    if isinstance(c.max_batch, int) and c.max_batch < 0:
        raise errors.MAX_BATCH_NEGATIVE()
    if isinstance(c.max_expires, int) and 0 < c.max_expires < 1_000_000:
        raise errors.MAX_EXPIRES_TOO_SMALL()
    for field in ("max_batch", "max_expires", "max_bytes"):
        if getattr(c, field) == 0:
            setattr(c, field, UNSET)


def _check_filters(c: ConsumerConfig) -> list[str]:
    if c.filter_subject == "":
        c.filter_subject = UNSET
    many = c.filter_subjects if isinstance(c.filter_subjects, list) else []
    if c.filter_subject is not UNSET and many:
        raise errors.DUPLICATE_FILTERS()
    if not many:
        c.filter_subjects = UNSET
    seen: SubjectTree[str] = SubjectTree()  # overlap among filters in O(N * depth), not O(N^2)
    for f in many:
        if not f:
            raise errors.EMPTY_FILTER()
        if not subjects.is_valid_subject(f):
            raise errors.STREAM_INVALID_CONFIG(err="invalid subject")  # sic: the server's error
        if seen.collides(f):
            raise errors.OVERLAPPING_FILTERS()
        seen.insert(f, f)
    if isinstance(c.filter_subject, str) and not subjects.is_valid_subject(c.filter_subject):
        raise errors.STREAM_INVALID_CONFIG(err="invalid subject")  # sic: the server's error
    mine = filters(c)
    if c.deliver_policy == DeliverPolicy.LAST_PER_SUBJECT and not mine:
        raise errors.CONSUMER_INVALID_POLICY(
            err="consumer delivery policy is deliver last per subject, but optional filter subject is not set"
        )
    return mine


def _check_workqueue(c: ConsumerConfig, stream: StreamConfig) -> None:
    """A workqueue wants explicit acks and every message; a mirror's or source's `direct` consumer is exempt (as in
    nats-server: with ack none, each delivery takes the message off the queue)."""
    if stream.retention != Retention.WORKQUEUE or c.direct is True:
        return
    if c.deliver_policy != DeliverPolicy.ALL:
        raise errors.WQ_NOT_DELIVER_ALL()
    if c.ack_policy == AckPolicyWire.NONE and not is_push(c):
        raise errors.PULL_REQUIRES_ACK()
    if c.ack_policy != AckPolicyWire.EXPLICIT:
        raise errors.WQ_REQUIRES_EXPLICIT_ACK()


_IMMUTABLE = (
    ("deliver_policy", "deliver policy"),
    ("opt_start_seq", "start sequence"),
    ("opt_start_time", "start time"),
    ("ack_policy", "ack policy"),
    ("replay_policy", "replay policy"),
    ("idle_heartbeat", "heart beats"),
    ("flow_control", "flow control"),
    ("max_waiting", "max waiting"),
    ("mem_storage", "storage type"),
)


def check_update(old: ConsumerConfig, new: ConsumerConfig) -> None:
    """What a consumer may never change once created (500/10012 "<what> can not be updated")."""
    if is_push(old) != is_push(new):
        raise errors.CONSUMER_CREATE(
            err="can not update push consumer to pull based"
            if is_push(old)
            else "can not update pull consumer to push based"
        )
    for field, words in _IMMUTABLE:
        if getattr(old, field) != getattr(new, field):
            raise errors.CONSUMER_CREATE(err=f"{words} can not be updated")


def stored_problem(cfg: ConsumerConfig) -> str:
    """Why a consumer config stored by an older streamd cannot be served by this one ("" when it can): the
    subjects and names that reach the wire are checked again, since older rules were looser."""
    for f in filters(cfg):
        if not subjects.is_valid_subject(f):
            return f"invalid filter subject {f!r}"
    if is_push(cfg):
        deliver = str(cfg.deliver_subject)
        if not subjects.is_valid_subject(deliver) or not subjects.is_literal(deliver):
            return "invalid deliver subject"
        if len(deliver.encode()) > MAX_DELIVER_SUBJECT:
            return "deliver subject too long"
        if not _valid_group(cfg.deliver_group):
            return "invalid deliver group"
    return ""
