"""Stream configuration defaults and validation, as nats-server's checkStreamCfg applies them (pure functions)."""

from __future__ import annotations

from msgspec import UNSET

from streamd.streams import copying
from streamd.wire import errors, subjects, transform
from streamd.wire.models import Discard, RePublish, Retention, StreamConfig, SubjectTransformConfig
from streamd.wire.subject_tree import SubjectTree

DEFAULT_DUPLICATE_WINDOW = 120 * 1_000_000_000
MIN_WINDOW = 100_000_000  # 100 ms
MAX_DESCRIPTION = 4096
MAX_METADATA = 128 * 1024
MAX_REPLICAS = 5  # nats-server's StreamMaxReplicas: checked before "not supported in non-clustered mode"


def _invalid(text: str) -> errors.ApiError:
    return errors.STREAM_INVALID_CONFIG(err=text)


def normalize(cfg: StreamConfig) -> StreamConfig:
    """Apply the server's defaults and reject what it rejects; returns a new config, never mutates the input."""
    c = StreamConfig(**{f: getattr(cfg, f) for f in cfg.__struct_fields__})
    check_name(c.name)
    copying.check_config(c)  # before the unserved flags: a mirror with counters gets the mirror's own error
    _check_unsupported(c)
    _normalize_description(c)
    _normalize_replicas(c)
    _normalize_limits(c)
    _normalize_window(c)
    _normalize_subjects(c)
    _check_subject_transform(c)
    _check_republish(c)
    _check_flags(c)
    if c.metadata is not UNSET and sum(len(k) + len(v) for k, v in c.metadata.items()) > MAX_METADATA:
        raise _invalid("stream metadata exceeds maximum size of 128 KiB")
    return c


# Off-by-default features streamd does not serve: turned on, they are refused by name (never stored unserved).
_UNSERVED_FLAGS = {
    "allow_batched": "batch publish",
}


def _check_unsupported(c: StreamConfig) -> None:
    """Refuse what streamd would not do; an off or empty value of such a field is dropped, as Go's omitempty
    drops it (`sources: []`, `allow_atomic: false`, `persist_mode: "default"`, `placement: {}`)."""
    for feature in ("republish", "subject_transform"):
        if getattr(c, feature) is None:
            setattr(c, feature, UNSET)
    for flag, what in _UNSERVED_FLAGS.items():
        if getattr(c, flag) is True:
            raise _invalid(f"streamd does not support {what} ({flag})")
        setattr(c, flag, UNSET)
    if c.allow_msg_counter is True and c.sources not in (UNSET, None, []):
        raise _invalid("streamd does not support counters aggregated from sources (allow_msg_counter with sources)")
    if c.allow_msg_counter is not True:
        c.allow_msg_counter = UNSET  # served (store/counters)
    if c.allow_atomic is not True:
        c.allow_atomic = UNSET  # served (streams/batching, store/atomic); off is dropped as Go's omitempty does
    if c.persist_mode == "async":
        raise _invalid("streamd does not support async persist mode (see its --sync setting)")
    c.persist_mode = UNSET
    if not c.placement or (isinstance(c.placement, dict) and not any(c.placement.values())):
        c.placement = UNSET  # nil or empty, as the server drops it
    elif isinstance(c.placement, dict) and c.placement.get("preferred"):
        raise _invalid("preferred server not permitted in placement")


def required_level(c: StreamConfig) -> int:
    """The JetStream API level a stream's config needs (nats-server's `_nats.req.level`): 2 for atomic batch
    publish, counters and message schedules (2.12), 1 for per-message TTLs or subject delete markers (2.11)."""
    if c.allow_atomic is True or c.allow_msg_counter is True or c.allow_msg_schedules is True:
        return 2
    return 1 if c.allow_msg_ttl or c.subject_delete_marker_ttl else 0


def _check_subject_transform(c: StreamConfig) -> None:
    """checkStreamCfg's subject_transform rules: a valid source subject (10155), a destination the server's
    ValidateMapping takes (10156). A null src or dest reads as "", as in Go."""
    st = c.subject_transform
    if st is UNSET or st is None:
        return
    src, dest = st.src or "", st.dest or ""
    c.subject_transform = SubjectTransformConfig(src=src, dest=dest)  # the request's object stays as it was
    if src and not subjects.is_valid_subject(src):
        raise errors.STREAM_TRANSFORM_INVALID_SOURCE(err=f"invalid subject {src}")
    try:
        transform.validate_mapping(src, dest)
    except transform.TransformError as exc:
        raise errors.STREAM_TRANSFORM_INVALID_DESTINATION(err=str(exc)) from None


def _check_republish(c: StreamConfig) -> None:
    """checkStreamCfg's republish rules: an empty source means all; `>` to `>` with a transform of the stream's only
    subject republishes the transformed subjects; the destination must not feed the stream (a cycle)."""
    rp = c.republish
    if rp is UNSET or rp is None:
        return
    src, dest = rp.src or ">", rp.dest or ""
    st = c.subject_transform
    if src == ">" and dest == ">" and isinstance(st, SubjectTransformConfig) and c.subjects == [st.src]:
        src = dest = st.dest or ""
    c.republish = RePublish(src=src, dest=dest, headers_only=True if rp.headers_only else UNSET)
    if any(dest == subj or subjects.collide(dest, subj) for subj in c.subjects):
        raise _invalid("stream configuration for republish destination forms a cycle")
    try:
        transform.compile(src, dest)
    except transform.TransformError:
        raise _invalid(
            f"stream configuration for republish with transform from '{src}' to '{dest}' not valid"
        ) from None


def _normalize_description(c: StreamConfig) -> None:
    if c.description == "":
        c.description = UNSET
    elif c.description is not UNSET and len(c.description) > MAX_DESCRIPTION:
        raise _invalid("stream description is too long, maximum allowed is 4096")


def _normalize_replicas(c: StreamConfig) -> None:
    if c.num_replicas < 0:
        raise errors.REPLICAS_NEGATIVE()
    if c.num_replicas == 0:
        c.num_replicas = 1
    if c.num_replicas > MAX_REPLICAS:
        raise _invalid(f"maximum replicas is {MAX_REPLICAS}")
    if c.num_replicas > 1:
        raise errors.REPLICAS_NOT_SUPPORTED()


def _normalize_limits(c: StreamConfig) -> None:
    for field in ("max_consumers", "max_msgs", "max_bytes", "max_msgs_per_subject", "max_msg_size"):
        if getattr(c, field) == 0 or getattr(c, field) < -1:
            setattr(c, field, -1)
    if c.max_age < 0:
        raise _invalid("max age can not be negative")
    if 0 < c.max_age < MIN_WINDOW:
        raise _invalid("max age needs to be >= 100ms")


def check_name(name: str) -> None:
    if "/" in name or "\\" in name:
        raise errors.STREAM_NAME_PATH_SEPARATORS()
    if len(name.encode()) > subjects.MAX_NAME_LEN:  # bytes, as the server counts them
        raise _invalid(f"stream name is too long, maximum allowed is {subjects.MAX_NAME_LEN}")
    if not subjects.is_valid_name(name):
        raise _invalid("stream name is required and can not contain '.', '*', '>', '\\', '/'")


def _copies(c: StreamConfig) -> bool:
    return c.mirror not in (UNSET, None) or c.sources not in (UNSET, None, [])


def _normalize_window(c: StreamConfig) -> None:
    if c.duplicate_window < 0:
        raise _invalid("duplicates window can not be negative")
    if c.duplicate_window == 0 and not _copies(c):  # the server leaves a mirror's or source's window at 0
        c.duplicate_window = DEFAULT_DUPLICATE_WINDOW
        if 0 < c.max_age < DEFAULT_DUPLICATE_WINDOW:
            c.duplicate_window = c.max_age
    elif 0 < c.duplicate_window < MIN_WINDOW:
        raise _invalid("duplicates window needs to be >= 100ms")
    if c.max_age and c.duplicate_window > c.max_age:
        raise _invalid("duplicates window can not be larger then max age")


def _normalize_subjects(c: StreamConfig) -> None:
    if not c.subjects and not _copies(c):
        c.subjects = [c.name]
    seen: SubjectTree[str] = SubjectTree()  # overlap within the config in O(N * depth), not O(N^2)
    for subj in c.subjects:
        if not subjects.is_valid_subject(subj):
            raise _invalid("invalid subject")
        if (
            len(subj.encode()) > subjects.MAX_STORED_SUBJECT
        ):  # also keeps each SUB line far below the server's 4 KiB limit
            raise _invalid(f"subject is longer than {subjects.MAX_STORED_SUBJECT} bytes, streamd cannot store it")
        other = next(seen.colliding(subj), None)
        if other is not None:
            raise _invalid(f'subject "{other}" overlaps with "{subj}"')
        seen.insert(subj, subj)
        if c.no_ack is not True:
            _check_needs_no_ack(subj)


def _check_needs_no_ack(subj: str) -> None:
    """Streams that would capture API or system traffic must not answer it with PubAcks."""
    if subj == ">":
        raise _invalid("capturing all subjects requires no-ack to be true")
    if subjects.is_subset(subj, "$JS.EVENT.>"):
        return
    if any(subjects.collide(subj, p + ">") for p in ("$JS.", "$JSC.", "$NRG.")):
        raise _invalid("subjects that overlap with jetstream api require no-ack to be true")
    if subjects.collide(subj, "$SYS.>"):
        raise _invalid("subjects that overlap with system api require no-ack to be true")


def _check_flags(c: StreamConfig) -> None:
    if c.allow_msg_counter is True and c.allow_msg_schedules is True:  # nats-server's counter rules come first
        raise _invalid("counter stream cannot use message schedules")
    _normalize_marker_ttl(c)
    _check_schedules(c)
    if c.sealed:  # a sealed stream is read-only for good: the server makes that explicit in its config
        c.deny_delete = c.deny_purge = True
        c.allow_rollup_hdrs = False
        c.discard = Discard.NEW
        c.max_age = 0
    if c.deny_purge and c.allow_rollup_hdrs:
        raise _invalid("roll-ups require the purge permission")
    _check_counter(c)
    _check_discard_new_per_subject(c)
    if c.no_ack is False:
        c.no_ack = UNSET
    if c.first_seq == 0:
        c.first_seq = UNSET
    if c.retention == Retention.WORKQUEUE and c.max_consumers == 0:
        c.max_consumers = -1


def _check_counter(c: StreamConfig) -> None:
    """A counter stream keeps every subject's last total: nothing may refuse or expire an increment."""
    if c.allow_msg_counter is not True:
        return
    if c.discard == Discard.NEW:
        raise _invalid("counter stream cannot use discard new")
    if c.allow_msg_ttl:
        raise _invalid("counter stream cannot use message TTLs")
    if c.retention != Retention.LIMITS:
        raise _invalid("counter stream can only use limits retention")


def _check_discard_new_per_subject(c: StreamConfig) -> None:
    if c.discard_new_per_subject is True:
        if c.discard != Discard.NEW:
            raise _invalid("discard new per subject requires discard new policy to be set")
        if c.max_msgs_per_subject <= 0:
            raise _invalid("discard new per subject requires max msgs per subject > 0")
    elif c.discard_new_per_subject is False:
        c.discard_new_per_subject = UNSET


def _check_schedules(c: StreamConfig) -> None:
    """A schedule message is stored with a subject rollup, so schedules need roll-ups (turned on, and purges
    allowed, as nats-server does outside pedantic mode) and cannot use discard new."""
    if c.allow_msg_schedules is not True:
        c.allow_msg_schedules = UNSET
        return
    if c.discard == Discard.NEW:
        raise _invalid("message scheduling cannot use discard new")
    if not c.allow_rollup_hdrs:
        c.allow_rollup_hdrs, c.deny_purge = True, False


def _normalize_marker_ttl(c: StreamConfig) -> None:
    """Subject delete markers are messages with a TTL that purge a subject: they need both features on, and the
    purge permission (nats-server turns deny_purge off; a stream stored before streamd did the same heals here)."""
    if c.subject_delete_marker_ttl is UNSET:
        return
    if c.subject_delete_marker_ttl == 0:
        c.subject_delete_marker_ttl = UNSET
    elif c.subject_delete_marker_ttl < 1_000_000_000:
        raise _invalid("subject delete marker TTL must be at least 1 second")
    else:
        c.allow_msg_ttl = True
        c.allow_rollup_hdrs = True
        c.deny_purge = False


def check_update(old: StreamConfig, new: StreamConfig) -> None:
    """The update rules: what a stream may never change once created."""
    if new.storage != old.storage:
        raise _invalid("stream configuration update can not change storage type")
    if old.retention != new.retention and Retention.WORKQUEUE in (old.retention, new.retention):
        raise _invalid("stream configuration update can not change retention policy to/from workqueue")
    if old.sealed and not new.sealed:
        raise _invalid("stream configuration update can not unseal a sealed stream")
    if old.deny_delete and not new.deny_delete:
        raise _invalid("stream configuration update can not cancel deny message deletes")
    if old.deny_purge and not new.deny_purge:
        raise _invalid("stream configuration update can not cancel deny purge")
    if old.allow_msg_ttl and not new.allow_msg_ttl:
        raise _invalid("stream configuration update can not disable message TTL")
    if old.allow_msg_schedules is True and new.allow_msg_schedules is not True:
        raise _invalid("message schedules can not be disabled")
    if bool(old.allow_msg_counter) != bool(new.allow_msg_counter):
        raise _invalid("stream configuration update can not change message counter setting")
    copying.check_update(old, new)
