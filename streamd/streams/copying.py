"""Mirrors and sources, the pure part: config rules, the `Nats-Stream-Source` header, and what to do with each
message a copying consumer delivers (nats-server's stream.go: checkStreamCfg, processInboundMirrorMsg,
processInboundSourceMsg, genSourceHeader, streamAndSeq). The runtime that talks to the origin is server/copier.py.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import UNSET

from streamd.wire import errors, subjects, timefmt, transform
from streamd.wire.models import StreamConfig, StreamSource, SubjectTransformConfig

API_PREFIX = "$JS.API"
STREAM_SOURCE = b"Nats-Stream-Source"
FWC = ">"

# How a copier's consumer is set up on the origin (nats-server's sourceHealthHB / sourceHealthCheckInterval):
# heartbeats every second, the consumer removed by the origin 10 s after its inbox went away. The copier gives up
# on a consumer after 3 missed heartbeats (as the clients' ordered consumers do) rather than the server's 10 s.
HEARTBEAT_NS = 1_000_000_000
INACTIVE_NS = 10_000_000_000
STALLED_NS = 3 * HEARTBEAT_NS
RETRY_NS = 2_000_000_000  # sourceConsumerRetryThreshold: no faster than one consumer create per 2 s
RETRY_MAX_NS = 30_000_000_000


def retry_delay_ns(fails: int) -> int:
    """How long before the next consumer create: 2 s, plus 2 s per failed create in a row, at most 30 s (nats-server
    backs off likewise, from 10 s per failure up to 2 min)."""
    return min(RETRY_NS * (1 + fails), RETRY_MAX_NS)


MAX_PREFIX = 1024
Lookup = Callable[[str], StreamConfig | None]


def _invalid(text: str) -> errors.ApiError:
    return errors.STREAM_INVALID_CONFIG(err=text)


# ---- config rules ---------------------------------------------------------------------------------------------


def normalize_source(src: StreamSource) -> None:
    """Drop what Go's omitempty drops (`null`, empty strings, zero), in place."""
    if src.opt_start_seq == 0:
        src.opt_start_seq = UNSET
    if src.opt_start_time is None:
        src.opt_start_time = UNSET
    if src.filter_subject == "":
        src.filter_subject = UNSET
    if src.subject_transforms is None or src.subject_transforms == []:
        src.subject_transforms = UNSET
    else:  # a null src or dest reads as "" (Go); the request's objects stay as they were
        src.subject_transforms = [
            SubjectTransformConfig(src=t.src or "", dest=t.dest or "") for t in src.subject_transforms or ()
        ]
    if src.external is None:
        src.external = UNSET
    if src.consumer is None:
        src.consumer = UNSET


def check_config(c: StreamConfig) -> None:
    """Mirror and source rules in checkStreamCfg's order (the parts that need no other stream)."""
    if c.mirror is None:
        c.mirror = UNSET
    if c.sources is None or c.sources == []:
        c.sources = UNSET
    if c.mirror is not UNSET:
        _check_mirror(c)
    if c.sources is not UNSET:
        _check_sources(c)


def _check_mirror(c: StreamConfig) -> None:
    m = c.mirror
    assert m is not UNSET and m is not None
    normalize_source(m)
    if c.first_seq is not UNSET and c.first_seq:
        raise errors.MIRROR_WITH_FIRST_SEQ()
    if c.subjects:
        raise errors.MIRROR_WITH_SUBJECTS()
    if c.sources not in (UNSET, None, []):
        raise errors.MIRROR_WITH_SOURCES()
    for flag, kind in (
        (c.allow_msg_counter, errors.MIRROR_WITH_COUNTERS),
        (c.allow_atomic, errors.MIRROR_WITH_ATOMIC),
        (c.allow_batched, errors.MIRROR_WITH_BATCH),
        (c.allow_msg_schedules, errors.MIRROR_WITH_SCHEDULES),
    ):
        if flag is True:
            raise kind()
    _refuse_unserved(m)
    trs = transforms_of(m)
    if trs and isinstance(m.filter_subject, str):
        raise errors.MIRROR_MULTIPLE_FILTERS()
    if c.subject_delete_marker_ttl is not UNSET and c.subject_delete_marker_ttl > 0:
        raise _invalid("subject delete markers forbidden on mirrors")
    for i, t in enumerate(trs):  # the server's order: each one checked, then its overlaps with all the others
        _check_transform(t, errors.MIRROR_INVALID_SUBJECT_FILTER, errors.MIRROR_INVALID_TRANSFORM_DESTINATION)
        if any(j != i and _collide(t.src or "", o.src or "") for j, o in enumerate(trs)):
            raise errors.MIRROR_OVERLAPPING_SUBJECT_FILTERS()
    if m.external is UNSET:
        if not subjects.is_valid_name(m.name):
            raise errors.MIRROR_INVALID_NAME()
    else:
        _check_external(m)
    _check_start(m)
    _check_filter(m, "the mirror ")


def _check_sources(c: StreamConfig) -> None:
    assert isinstance(c.sources, list)
    if c.allow_msg_schedules is True:
        raise errors.SOURCE_WITH_SCHEDULES()
    seen: set[str] = set()
    for src in c.sources:
        normalize_source(src)
        if not subjects.is_valid_name(src.name):
            raise errors.SOURCE_INVALID_NAME()
        iname = index_name(src)
        if iname in seen:
            raise errors.SOURCE_DUPLICATE()
        seen.add(iname)
        trs = transforms_of(src)
        if trs and isinstance(src.filter_subject, str):
            raise errors.SOURCE_MULTIPLE_FILTERS()
        for t in trs:
            _check_transform(t, errors.SOURCE_INVALID_SUBJECT_FILTER, errors.SOURCE_INVALID_TRANSFORM_DESTINATION)
        for i, t in enumerate(trs):
            if any(j != i and _subset_match(t.src, o.src) for j, o in enumerate(trs)):
                raise errors.SOURCE_OVERLAPPING_SUBJECT_FILTERS()
        _refuse_unserved(src)
        if src.external is not UNSET:
            _check_external(src)
        _check_start(src)
        _check_filter(src, "the source: ")


def transforms_of(src: StreamSource) -> list[SubjectTransformConfig]:
    return src.subject_transforms if isinstance(src.subject_transforms, list) else []


def _check_transform(t: SubjectTransformConfig, bad_src: errors.ErrorKind, bad_dest: errors.ErrorKind) -> None:
    """A valid source subject, a destination the server's ValidateMapping takes; both short enough for streamd to
    put on a SUB line."""
    src, dest = t.src or "", t.dest or ""
    if src and not subjects.is_valid_subject(src):
        raise bad_src(err=f"invalid subject {src}")
    try:
        transform.validate_mapping(src, dest)
    except transform.TransformError as exc:
        raise bad_dest(err=str(exc)) from None
    if len(src.encode()) > MAX_PREFIX:
        raise _invalid(f"subject transform source is longer than {MAX_PREFIX} bytes, streamd cannot use it")


def _subset_match(a: str | None, b: str | None) -> bool:
    """nats-server's subjectIsSubsetMatch(a, b): is every subject `a` matches matched by `b` (an empty token,
    as in an empty subject, matches nothing)."""
    ta, tb = (a or "").split("."), (b or "").split(".")
    for i, t2 in enumerate(tb):
        if i >= len(ta) or not t2:
            return False
        if t2 == FWC:
            return True
        t1 = ta[i]
        if not t1 or t1 == FWC:
            return False
        if t1 == "*":
            if t2 != "*":
                return False
            continue
        if t2 != "*" and t1 != t2:
            return False
    return len(ta) == len(tb)


def _collide(a: str, b: str) -> bool:
    """nats-server's SubjectsCollide, where an empty subject (all, for a transform) collides only with itself and
    `>`."""
    if a == b:
        return True
    if not a or not b:
        return (a or b) == FWC
    return subjects.collide(a, b)


def compiled(src: StreamSource) -> list[transform.Transform]:
    """The transforms a copier applies to each subject, in order (the first that matches wins; an empty dest is
    no transform). Checked at create time, so compiling again cannot fail."""
    out: list[transform.Transform] = []
    for t in transforms_of(src):
        tr = transform.compile(t.src or "", t.dest or "")
        if tr is not None:
            out.append(tr)
    return out


def apply_transforms(trs: list[transform.Transform], subject: bytes) -> bytes:
    """The subject a copied message is stored under (processInbound*Msg: the first transform that matches)."""
    if not trs:
        return subject
    text = subject.decode(errors="replace")
    for tr in trs:
        out = tr.apply(text)
        if out is not None:
            return out.encode()
    return subject


def consumer_filters(src: StreamSource) -> dict[str, Any]:
    """The filter part of the copier's consumer config: `filter_subject`, or the transforms' sources (one as
    `filter_subject`, as nats-server turns a single one, several as `filter_subjects`)."""
    if isinstance(src.filter_subject, str):
        return {"filter_subject": src.filter_subject}
    sources = [t.src or "" for t in transforms_of(src)]
    if len(sources) == 1:
        return {"filter_subject": sources[0]} if sources[0] else {}
    if sources:
        return {"filter_subjects": [s or FWC for s in sources]}
    return {}


def _refuse_unserved(src: StreamSource) -> None:
    """Durable sourcing consumers are not served yet: refused by name, never dropped."""
    if src.consumer is not UNSET:
        raise _invalid("streamd does not support durable consumers for mirrors and sources")


def _check_filter(src: StreamSource, what: str) -> None:
    """An invalid filter fails the create (nats-server: addStream's error, 10049)."""
    filt = src.filter_subject
    if isinstance(filt, str) and not subjects.is_valid_subject(filt):
        raise errors.STREAM_CREATE(err=f"subject filter '{filt}' for {what}invalid subject")
    if isinstance(filt, str) and len(filt.encode()) > MAX_PREFIX:
        raise _invalid(f"subject filter is longer than {MAX_PREFIX} bytes, streamd cannot use it")
    if len(src.name.encode()) > subjects.MAX_NAME_LEN:
        raise _invalid(f"origin stream name is longer than {subjects.MAX_NAME_LEN} bytes, streamd cannot use it")


def _check_external(src: StreamSource) -> None:
    ext = src.external
    assert ext is not UNSET and ext is not None
    if len(ext.api.encode()) > MAX_PREFIX or len(ext.deliver.encode()) > MAX_PREFIX:
        # Subjects built on these go on SUB/PUB lines, which the server caps at 4 KiB.
        raise _invalid(f"stream external prefixes longer than {MAX_PREFIX} bytes are not supported by streamd")
    if ext.deliver and not subjects.is_valid_subject(ext.deliver, wildcards=False):
        raise errors.EXTERNAL_DELIVER_SUBJECT_INVALID(prefix=ext.deliver)
    if ext.api:
        if not subjects.is_valid_subject(ext.api, wildcards=False):
            raise _invalid(f'stream external api prefix "{ext.api}" must be a valid subject without wildcards')
        if subjects.collide(ext.api, API_PREFIX):
            raise errors.EXTERNAL_API_OVERLAP(prefix=ext.api, subject=API_PREFIX)


def _check_start(src: StreamSource) -> None:
    """opt_start_time must be an RFC 3339 time (Go refuses anything else while decoding)."""
    if isinstance(src.opt_start_time, str):
        try:
            timefmt.parse(src.opt_start_time)
        except ValueError:
            text = json.dumps(src.opt_start_time)  # Go: parsing time "<text>" as "<layout>": ...
            raise errors.INVALID_JSON(err=f'parsing time {text} as "2006-01-02T15:04:05Z07:00"') from None


def check_with_streams(c: StreamConfig, lookup: Lookup) -> None:
    """The rules that look at the origin when it is a stream here: message size, inherited mirror_direct, and
    cycles (a stream that, through mirrors and sources, would copy its own messages back into itself)."""
    m = c.mirror
    if isinstance(m, StreamSource) and m.external is UNSET:
        origin = lookup(m.name)
        if origin is not None:
            if 0 < c.max_msg_size < origin.max_msg_size:
                raise errors.MIRROR_MAX_MSG_SIZE()
            c.mirror_direct = origin.allow_direct
    for src in c.sources or ():
        if src.external is UNSET:
            origin = lookup(src.name)
            if origin is not None and 0 < c.max_msg_size < origin.max_msg_size:
                raise errors.SOURCE_MAX_MSG_SIZE()
    _check_cycle(c, lookup)


def _check_cycle(c: StreamConfig, lookup: Lookup) -> None:
    to_visit, visited = [c], set[str]()
    while to_visit:
        cfg = to_visit.pop(0)
        visited.add(cfg.name)
        for src in cfg.sources or ():
            if src.external is not UNSET:
                continue
            if src.name in visited:
                filt = src.filter_subject or ""
                if not filt or any(subjects.collide(s, filt) for s in cfg.subjects):
                    raise _invalid("detected cycle")
            elif (origin := lookup(src.name)) is not None:
                to_visit.append(origin)
        m = cfg.mirror
        if isinstance(m, StreamSource) and m.external is UNSET:
            if m.name in visited:
                raise _invalid("detected cycle")
            if (origin := lookup(m.name)) is not None:
                to_visit.append(origin)


def check_update(old: StreamConfig, new: StreamConfig) -> None:
    """A mirror's origin is fixed; removing it promotes the mirror to a normal stream (the server allows that)."""
    if new.mirror is not UNSET and new.mirror is not None:
        if msgspec.to_builtins(new.mirror) != msgspec.to_builtins(old.mirror):
            raise errors.MIRROR_NOT_UPDATABLE()


# ---- identity, headers --------------------------------------------------------------------------------------


def _hash(text: str) -> str:
    """nats-server's getHash: 8 characters of base64url(sha256)."""

    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).decode()[:8]


def index_name(src: StreamSource) -> str:
    """A source's identity (composeIName): stream (plus the external API's hash), filter, destination."""
    name = src.name
    if src.external is not UNSET and src.external is not None:
        name += ":" + _hash(src.external.api)
    trs = transforms_of(src)
    if not trs:
        filt = src.filter_subject if isinstance(src.filter_subject, str) and src.filter_subject else FWC
        return f"{name} {filt} {FWC}"
    filters = "\f".join(t.src or FWC for t in trs)  # as composeIName joins them, form feed and all
    dests = "\f".join(t.dest or FWC for t in trs)
    return f"{name} {filters} {dests}"


def api_prefix(src: StreamSource, domain_prefix: str = API_PREFIX) -> str:
    """Where the origin's API is: the external prefix, or this server's own."""
    if src.external is not UNSET and src.external is not None and src.external.api:
        return src.external.api
    return domain_prefix


def deliver_subject(src: StreamSource, kind: str, token: str) -> str:
    """The inbox a copying consumer delivers to (`$JS.M.<token>`; `<deliver prefix>.M.<token>` for external)."""
    ext = src.external
    if ext is not UNSET and ext is not None and ext.deliver:
        return f"{ext.deliver}.{kind}.{token}".replace("..", ".")
    return f"$JS.{kind}.{token}"


def source_header_value(iname: str, origin_seq: int) -> bytes:
    """`<stream> <seq> <filter> <destination>` as genSourceHeader writes it (the original subject follows)."""
    stream, filt, dest = iname.split(" ")
    return f"{stream} {origin_seq} {filt} {dest}".encode()


_DROPPED_PREFIXES = (b"nats-expected-", b"nats-batch-")


def sourced_headers(hdrs: bytes | None, iname: str, origin_seq: int, subject: bytes, ident: str = "") -> bytes:
    """A sourced message's header block: the origin's headers minus an earlier `Nats-Stream-Source` and the
    Nats-Expected-* / Nats-Batch-* ones (not to be checked again here), plus our own source header."""
    lines: list[bytes] = [b"NATS/1.0"]
    if hdrs:
        for line in hdrs.split(b"\r\n")[1:]:
            if not line:
                continue
            key = line.split(b":", 1)[0].strip().lower()
            if key == STREAM_SOURCE.lower() or key.startswith(_DROPPED_PREFIXES):
                continue
            lines.append(line)
    value = source_header_value(iname, origin_seq) + b" " + subject + (b" " + ident.encode() if ident else b"")
    lines.append(STREAM_SOURCE + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n"


# ---- the inbound decision -----------------------------------------------------------------------------------


class Verdict(enum.Enum):
    STORE = "store"
    IGNORE = "ignore"  # an old delivery, a redelivery, another consumer's
    RETRY = "retry"  # something was missed: recreate the consumer from the last stored sequence


class Tracker(msgspec.Struct):
    """Where one copier stands: origin seq last accepted, consumer seq last seen, the consumer it expects."""

    consumer: str = ""
    stream_seq: int = 0  # sseq: last origin sequence accepted (stored or queued for storing)
    delivered: int = 0  # dseq: last consumer sequence seen
    lag: int = 0
    started: bool = False  # a first delivery came from the current consumer


def on_message(
    t: Tracker, mirror: bool, consumer: str, num_delivered: int, sseq: int, dseq: int, pending: int
) -> Verdict:
    """processInboundMirrorMsg / processInboundSourceMsg: accept the next message, skip what we have, and ask
    for a new consumer when a delivery was lost (the consumer sequence jumped)."""
    if consumer != t.consumer or num_delivered > 1:
        return Verdict.IGNORE
    if sseq <= t.stream_seq:
        if dseq == t.delivered + 1:
            t.delivered = dseq
        return Verdict.IGNORE
    first = not t.started
    if dseq == t.delivered + 1 or first:
        # Mirror: a jump in the origin's sequence with no jump in ours means the origin deleted or expired
        # messages there; the mirror keeps the gap (it stores at the origin's sequence).
        t.started = True
        t.delivered, t.stream_seq = dseq, sseq
        t.lag = max(0, pending - 1) if pending else 0
        return Verdict.STORE
    return Verdict.RETRY


def on_heartbeat(t: Tracker, last_consumer_seq: int) -> Verdict:
    """An idle heartbeat names the consumer's last delivered sequence: a mismatch means we missed some."""
    if last_consumer_seq > 0 and last_consumer_seq != t.delivered:
        return Verdict.RETRY
    return Verdict.IGNORE


def start_point(src: StreamSource, last_copied: int) -> tuple[str, int, str]:
    """(deliver_policy, opt_start_seq, opt_start_time) for a new consumer: just past the last copied message,
    or the configured start the first time."""
    if last_copied:
        return "by_start_sequence", last_copied + 1, ""
    if isinstance(src.opt_start_seq, int) and src.opt_start_seq:
        return "by_start_sequence", src.opt_start_seq, ""
    if isinstance(src.opt_start_time, str):
        return "by_start_time", 0, src.opt_start_time
    return "all", 0, ""
