"""The `$JS.API` request handlers for accounts and streams, and the dispatcher that decodes, routes and answers.

Handlers are plain async functions from decoded request to response Struct; they raise ``errors.ApiError`` to
refuse. ``dispatch`` does decoding, the error object, stats and the reply, so no handler touches the wire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from streamd.store import reads
from streamd.streams import rules as config_rules
from streamd.streams.manager import StreamManager
from streamd.transport.connection import Connection
from streamd.wire import errors, gojson, headers, subjects, timefmt
from streamd.wire.models import (
    API_PREFIX_TYPE,
    AccountInfoResponse,
    ApiStats,
    Health,
    MsgDeleteRequest,
    MsgGetRequest,
    MsgGetResponse,
    PurgeResponse,
    StoredMessage,
    StreamConfig,
    StreamCreateResponse,
    StreamdStats,
    StreamInfoRequest,
    StreamInfoResponse,
    StreamListResponse,
    StreamNamesRequest,
    StreamNamesResponse,
    StreamPurgeRequest,
    StreamUpdateResponse,
    SuccessResponse,
)

logger = logging.getLogger(__name__)

API_LEVEL = 1  # 2.11 features: per-message TTL and subject delete markers
NAMES_LIMIT = 1024
LIST_LIMIT = 256
SUBJECTS_LIMIT = 100_000
_ENCODER = msgspec.json.Encoder()


@dataclass
class Counters:
    total: int = 0
    errors: int = 0
    ingest_dropped: int = 0
    slow_consumer_events: int = 0


@dataclass
class Context:
    manager: StreamManager
    conn: Connection
    domain: str = ""
    stats: Counters = field(default_factory=Counters)
    consumers: Any = None  # ConsumerManager (typed loosely: it imports this module)
    health: Callable[[], Health] | None = None  # the service's health report, shown in INFO's streamd block


PageT = TypeVar("PageT", bound=msgspec.Struct)
Handler = Callable[[Context, list[str], bytes], Awaitable[msgspec.Struct | None]]


@dataclass(frozen=True)
class Route:
    kind: str  # response `type` suffix
    handler: Handler
    name_tokens: int  # asset tokens that must follow the verb (-1: one or more)
    error_extra: dict[str, Any] = field(default_factory=dict)


# The Go request type nats-server decodes each request into: its name is part of the "invalid JSON" wording.
GO_NAMES: dict[type[Any], str] = {
    StreamConfig: "StreamConfigRequest",
    StreamInfoRequest: "JSApiStreamInfoRequest",
    StreamNamesRequest: "JSApiStreamNamesRequest",
    StreamPurgeRequest: "JSApiStreamPurgeRequest",
    MsgGetRequest: "JSApiMsgGetRequest",
    MsgDeleteRequest: "JSApiMsgDeleteRequest",
}


def _decode(data: bytes, typ: type[Any], go_name: str = "") -> Any:
    """Decode a request as the server would, integer ranges included; any refusal is 400/10025."""
    if not data.strip():
        return typ()
    try:
        return gojson.decode(data, typ, go_name or GO_NAMES.get(typ, typ.__name__))
    except (gojson.GoJsonError, msgspec.DecodeError) as exc:
        raise errors.INVALID_JSON(err=str(exc)) from None


def _stream_info_response(ctx: Context, name: str, req: StreamInfoRequest) -> StreamInfoResponse:
    stream = ctx.manager.get(name)
    info = ctx.manager.info(stream, req.subjects_filter, req.deleted_details)
    total, limit = 0, 0
    if req.subjects_filter and info.state.subjects is not msgspec.UNSET:
        subjects_map = info.state.subjects
        total, limit = len(subjects_map), SUBJECTS_LIMIT
        if req.offset or total > SUBJECTS_LIMIT:
            keys = sorted(subjects_map)[req.offset : req.offset + SUBJECTS_LIMIT]
            info.state.subjects = {k: subjects_map[k] for k in keys}
    return StreamInfoResponse(
        config=info.config,
        created=info.created,
        state=info.state,
        ts=info.ts,
        total=total,
        offset=req.offset,
        limit=limit,
    )


# ---- handlers ------------------------------------------------------------------------------------------------


async def account_info(ctx: Context, _names: list[str], _data: bytes) -> AccountInfoResponse:
    storage = sum(s.committed.total_bytes for s in ctx.manager.streams.values())
    return AccountInfoResponse(
        storage=storage,
        streams=len(ctx.manager.streams),
        consumers=ctx.consumers.count() if ctx.consumers is not None else 0,
        domain=ctx.domain or msgspec.UNSET,
        api=ApiStats(level=API_LEVEL, total=ctx.stats.total, errors=ctx.stats.errors),
        streamd=StreamdStats(
            ingest_dropped=ctx.stats.ingest_dropped,
            slow_consumer_events=ctx.stats.slow_consumer_events,
            pending_writes=ctx.manager.writer.pending,
            health=ctx.health() if ctx.health is not None else msgspec.UNSET,
        ),
    )


def _check_name(subject_name: str, cfg: StreamConfig) -> None:
    config_rules.check_name(subject_name)
    if cfg.name != subject_name:
        raise errors.STREAM_NAME_MISMATCH()


def _require_empty(data: bytes) -> None:
    body = data.strip()
    if body and body.replace(b" ", b"") != b"{}":
        raise errors.NOT_EMPTY_REQUEST()


REPLY_OVERHEAD = 2048  # what an info reply adds to the config it echoes (state, timestamps, type), generously


def check_reply_fits(ctx: Context, config: msgspec.Struct, what: str) -> None:
    """Refuse, before anything is committed, a config whose info reply could not be sent (it would answer an
    error after the change was made)."""
    if len(_ENCODER.encode(config)) + REPLY_OVERHEAD > max_reply(ctx):
        raise errors.STREAM_INVALID_CONFIG(err=f"{what} configuration is too large for the server's max_payload")


async def stream_create(ctx: Context, names: list[str], data: bytes) -> StreamCreateResponse:
    cfg = _decode(data, StreamConfig)
    _check_name(names[0], cfg)
    check_reply_fits(ctx, config_rules.normalize(cfg), "stream")
    stream, created = await ctx.manager.create(cfg)
    info = ctx.manager.info(stream)
    return StreamCreateResponse(
        config=info.config, created=info.created, state=info.state, ts=info.ts, did_create=created
    )


async def stream_update(ctx: Context, names: list[str], data: bytes) -> StreamUpdateResponse:
    cfg = _decode(data, StreamConfig)
    _check_name(names[0], cfg)
    ctx.manager.get(names[0])  # not found comes first, as on the server
    check_reply_fits(ctx, config_rules.normalize(cfg), "stream")
    stream = await ctx.manager.update(cfg)
    info = ctx.manager.info(stream)
    return StreamUpdateResponse(config=info.config, created=info.created, state=info.state, ts=info.ts)


async def stream_delete(ctx: Context, names: list[str], data: bytes) -> SuccessResponse:
    _require_empty(data)
    await ctx.manager.delete(names[0])
    return SuccessResponse(type=API_PREFIX_TYPE + "stream_delete_response")


async def stream_info(ctx: Context, names: list[str], data: bytes) -> StreamInfoResponse:
    req = _decode(data, StreamInfoRequest)
    req.offset = max(req.offset, 0)
    return _fit_subjects(ctx, _stream_info_response(ctx, names[0], req))


def fit_page(ctx: Context, resp: PageT, field: str) -> PageT:
    """A LIST page (`field`, a list) that would not fit in one message is halved until it does; the client
    pages on with offset. One entry that alone does not fit is left to dispatch's size check."""
    page = getattr(resp, field)
    while len(page) > 1 and len(_ENCODER.encode(resp)) > max_reply(ctx):
        page = page[: len(page) // 2]
        setattr(resp, field, page)
        setattr(resp, "limit", len(page))  # noqa: B010 (any paged response)
    return resp


def _fit_subjects(ctx: Context, resp: StreamInfoResponse) -> StreamInfoResponse:
    """A subjects page that would not fit in one message is halved until it does (the client pages on with
    offset); halving keeps the encoding work linear in the page size."""
    page = resp.state.subjects
    while page is not msgspec.UNSET and len(page) > 1 and len(_ENCODER.encode(resp)) > max_reply(ctx):
        page = dict(list(page.items())[: len(page) // 2])
        resp.state.subjects = page
        resp.limit = len(page)
    return resp


def _filtered_names(ctx: Context, subject: str) -> list[str]:
    wanted = ctx.manager.names_overlapping(subject) if subject else None  # the subject index, not a scan
    out = []
    for name, stream in ctx.manager.streams.items():
        if stream.deleted or (wanted is not None and name not in wanted):
            continue
        out.append(name)
    return sorted(out)


async def stream_names(ctx: Context, _names: list[str], data: bytes) -> StreamNamesResponse:
    req = _decode(data, StreamNamesRequest)
    req.offset = max(req.offset, 0)  # the server reads a negative offset as 0
    names = _filtered_names(ctx, req.subject)
    page = names[req.offset : req.offset + NAMES_LIMIT]
    return StreamNamesResponse(total=len(names), offset=req.offset, limit=NAMES_LIMIT, streams=page or None)


async def stream_list(ctx: Context, _names: list[str], data: bytes) -> StreamListResponse:
    req = _decode(data, StreamNamesRequest, "JSApiStreamListRequest")
    req.offset = max(req.offset, 0)  # the server reads a negative offset as 0
    names = _filtered_names(ctx, req.subject)
    page = names[req.offset : req.offset + LIST_LIMIT]
    infos = [ctx.manager.info(ctx.manager.streams[n]) for n in page]
    resp = StreamListResponse(total=len(names), offset=req.offset, limit=LIST_LIMIT, streams=infos)
    return fit_page(ctx, resp, "streams")


async def stream_purge(ctx: Context, names: list[str], data: bytes) -> PurgeResponse:
    req = _decode(data, StreamPurgeRequest)
    purged = await ctx.manager.purge(names[0], req.filter, req.seq, req.keep)
    return PurgeResponse(purged=purged)


def find_message(ctx: Context, name: str, req: MsgGetRequest) -> reads.Found:
    """The MSG.GET / DIRECT.GET selector rules: exactly one of seq, last_by_subj, next_by_subj (+ seq)."""
    stream = ctx.manager.get(name)
    if req.last_by_subj and (req.seq or req.next_by_subj):
        raise errors.BAD_REQUEST()
    if not (req.seq or req.last_by_subj or req.next_by_subj):
        raise errors.BAD_REQUEST()
    for subj in (req.last_by_subj, req.next_by_subj):
        if subj and not subjects.is_valid_subject(subj):
            raise errors.NO_MESSAGE_FOUND()  # as the server: an invalid subject matches nothing
    with ctx.manager.store.read() as txn:
        if req.last_by_subj:
            found = reads.last_by_subject(txn, stream, req.last_by_subj)
        elif req.next_by_subj:
            found = reads.next_by_subject(txn, stream, req.next_by_subj, req.seq)
        else:
            found = reads.load(txn, stream, req.seq)
    if found is None:
        raise errors.NO_MESSAGE_FOUND()
    return found


async def stream_msg_get(ctx: Context, names: list[str], data: bytes) -> MsgGetResponse:
    found = find_message(ctx, names[0], _decode(data, MsgGetRequest))
    return MsgGetResponse(
        message=StoredMessage(
            subject=found.subject.decode(),
            seq=found.seq,
            hdrs=found.hdrs or msgspec.UNSET,
            data=found.data or msgspec.UNSET,
            time=timefmt.format_ns(found.ts_ns),
        )
    )


async def stream_msg_delete(ctx: Context, names: list[str], data: bytes) -> SuccessResponse:
    req = _decode(data, MsgDeleteRequest)
    await ctx.manager.delete_message(names[0], req.seq)
    return SuccessResponse(type=API_PREFIX_TYPE + "stream_msg_delete_response")


_PAGED = {"total": 0, "offset": 0, "limit": 0}

ROUTES: dict[str, Route] = {
    "INFO": Route("account_info_response", account_info, 0),
    "STREAM.CREATE": Route("stream_create_response", stream_create, 1),
    "STREAM.UPDATE": Route("stream_update_response", stream_update, 1),
    "STREAM.DELETE": Route("stream_delete_response", stream_delete, 1),
    "STREAM.INFO": Route("stream_info_response", stream_info, 1, _PAGED),
    "STREAM.NAMES": Route("stream_names_response", stream_names, 0, {**_PAGED, "streams": None}),
    "STREAM.LIST": Route("stream_list_response", stream_list, 0, {**_PAGED, "streams": []}),
    "STREAM.PURGE": Route("stream_purge_response", stream_purge, 1, {"success": False, "purged": 0}),
    "STREAM.MSG.GET": Route("stream_msg_get_response", stream_msg_get, 1),
    "STREAM.MSG.DELETE": Route("stream_msg_delete_response", stream_msg_delete, 1, {"success": False}),
}


Request = tuple[bytes, bytes, bytes, bytes | None]  # subject, reply, payload, header block


class RequestQueue:
    """API requests waiting for their turn, bounded by count and by bytes as nats-py's pending limits were:
    a flood is refused (counted, logged by the caller) instead of growing without limit."""

    def __init__(self, max_msgs: int, max_bytes: int) -> None:
        self._queue: asyncio.Queue[Request] = asyncio.Queue()
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        self.pending_bytes = 0

    def offer(self, item: Request) -> bool:
        size = len(item[0]) + len(item[1]) + len(item[2]) + len(item[3] or b"")
        if self._queue.qsize() >= self.max_msgs or self.pending_bytes + size > self.max_bytes:
            return False
        self.pending_bytes += size
        self._queue.put_nowait(item)
        return True

    async def take(self) -> Request:
        item = await self._queue.get()
        self.pending_bytes -= len(item[0]) + len(item[1]) + len(item[2]) + len(item[3] or b"")
        return item


def resolve(tokens: list[str]) -> tuple[Route, list[str]] | None:
    """Find the longest verb that prefixes `tokens` and check the asset-name count; None for unknown subjects."""
    for n in (3, 2, 1):
        route = ROUTES.get(".".join(tokens[:n]))
        if route is None:
            continue
        names = tokens[n:]
        count_ok = len(names) >= 1 if route.name_tokens == -1 else route.name_tokens == len(names)
        if not count_ok or not all(names):
            return None
        return route, names
    return None


def error_body(route: Route, exc: errors.ApiError) -> bytes:
    return _ENCODER.encode({"type": API_PREFIX_TYPE + route.kind, "error": exc.as_dict(), **route.error_extra})


def _check_door(subject: bytes, reply: bytes, hdrs: bytes | None) -> None:
    """Subjects, replies and header blocks are text to every later step: bytes that are not UTF-8 stop here."""
    for part in (subject, reply, hdrs or b""):
        if not part.isascii():
            try:
                part.decode()
            except UnicodeDecodeError:
                raise errors.BAD_REQUEST() from None


def _check_api_level(hdrs: bytes | None) -> None:
    level = headers.parse(hdrs).get(headers.REQUIRED_API_LEVEL)
    if level is not None and (not level.strip().isdigit() or int(level) > API_LEVEL):
        raise errors.REQUIRED_API_LEVEL()


async def dispatch(ctx: Context, subject: bytes, reply: bytes, data: bytes, hdrs: bytes | None) -> None:
    """Decode, run, encode, answer; no exception escapes (a handler bug answers 500 and is logged).

    `subject` is the request subject after the API prefix, as received; everything arrives as bytes."""
    found = resolve(subject.decode(errors="replace").split("."))
    if found is None or not reply:
        return  # the real server stays silent on unknown API subjects
    route, names = found
    ctx.stats.total += 1
    try:
        _check_door(subject, reply, hdrs)
        if route.kind == "consumer_next":
            from streamd.api.consumers import consumer_next

            await consumer_next(ctx, names, data, reply.decode())
            return
        _check_api_level(hdrs)
        resp = await route.handler(ctx, names, data)
        body = _ENCODER.encode(resp)
        if len(body) > max_reply(ctx):
            raise errors.MESSAGE_TOO_BIG()
    except errors.ApiError as exc:
        ctx.stats.errors += 1
        body = error_body(route, exc)
    except Exception:
        ctx.stats.errors += 1
        logger.exception("API request %r failed", subject[:200])
        body = error_body(route, errors.STREAM_GENERAL(err="internal error"))
    await ctx.conn.publish_raw(reply, body)


def max_reply(ctx: Context) -> int:
    """The largest message (header + payload) the server takes from streamd: its INFO max_payload."""
    return int(ctx.conn.max_payload)


def direct_get(ctx: Context, name: str, subject_tail: list[str], reply: bytes, data: bytes) -> None:
    """DIRECT.GET answers with the stored message itself, or a status-only message.

    Synchronous, from the raw subscription path: a read of committed data and one queued reply, no task hop."""
    if not reply:
        return
    ctx.stats.total += 1
    try:
        found = find_message(ctx, name, _direct_request(subject_tail, data))
        extra = [
            ("Nats-Stream", name),
            ("Nats-Subject", found.subject.decode(errors="replace")),
            ("Nats-Sequence", str(found.seq)),
            ("Nats-Time-Stamp", timefmt.format_ns(found.ts_ns)),
        ]
        hdrs = headers.build(extra, found.hdrs or None)
        if len(hdrs) + len(found.data) > max_reply(ctx):
            raise _DirectError(413, "Message Size Exceeds Max Payload")
    except errors.ApiError as exc:
        ctx.stats.errors += 1
        bad = exc.err_code == errors.BAD_REQUEST.err_code
        _direct_status(ctx, reply, _DirectError(408, "Bad Request") if bad else _DirectError(404, "Message Not Found"))
        return
    except _DirectError as exc:
        ctx.stats.errors += 1
        _direct_status(ctx, reply, exc)
        return
    except Exception:
        ctx.stats.errors += 1
        logger.exception("direct get on stream %r failed", name)
        _direct_status(ctx, reply, _DirectError(500, "Internal Server Error"))
        return
    ctx.conn.send_soon(reply, found.data, hdrs)


def _direct_request(subject_tail: list[str], data: bytes) -> MsgGetRequest:
    if subject_tail:
        if data.strip():
            raise _DirectError(408, "Bad Request")
        return MsgGetRequest(last_by_subj=".".join(subject_tail))
    if not data.strip():
        raise _DirectError(408, "Empty Request")
    try:
        return gojson.decode(data, MsgGetRequest, GO_NAMES[MsgGetRequest])
    except (gojson.GoJsonError, msgspec.DecodeError):
        raise _DirectError(408, "Malformed Request") from None


def _direct_status(ctx: Context, reply: bytes, exc: _DirectError) -> None:
    ctx.conn.send_soon(reply, b"", headers.status(exc.code, exc.text))


class _DirectError(Exception):
    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text


def install_consumer_routes() -> None:
    """Add the consumer verbs (a separate module, so stream handlers do not import the consumer layer)."""
    from streamd.api.consumers import ROUTES as CONSUMER_ROUTES

    ROUTES.update(CONSUMER_ROUTES)
    ROUTES["CONSUMER.MSG.NEXT"] = Route("consumer_next", account_info, 2)
