"""The `$JS.API.CONSUMER.*` handlers: create (all three subject forms), info, delete, names, list, pause, next."""

from __future__ import annotations

import time

import msgspec
from msgspec import UNSET

from streamd.api.handlers import _ENCODER, Context, Route, _decode, _require_empty, check_reply_fits, fit_page
from streamd.consumers import rules as consumer_rules
from streamd.consumers.manager import ConsumerManager
from streamd.wire import errors, timefmt
from streamd.wire.headers import NO_RESPONDERS
from streamd.wire.models import (
    API_PREFIX_TYPE,
    ConsumerCreateRequest,
    ConsumerCreateResponse,
    ConsumerInfo,
    ConsumerInfoResponse,
    ConsumerListResponse,
    ConsumerNamesResponse,
    PauseRequest,
    PauseResponse,
    StreamNamesRequest,
    SuccessResponse,
)

NAMES_LIMIT = 1024
LIST_LIMIT = 256


def _consumers(ctx: Context) -> ConsumerManager:
    if ctx.consumers is None:  # pragma: no cover - wired by the service
        raise errors.STREAM_GENERAL(err="consumers are not available")
    return ctx.consumers  # type: ignore[no-any-return]


def _create_request(data: bytes, stream: str) -> ConsumerCreateRequest:
    req: ConsumerCreateRequest = _decode(data, ConsumerCreateRequest, "CreateConsumerRequest")
    if req.stream_name != stream:
        raise errors.STREAM_NAME_MISMATCH()
    if req.action not in ("", "create", "update"):
        raise errors.INVALID_JSON(err=f"unknown consumer action {req.action!r}")
    return req


def _as_response(info: ConsumerInfo) -> ConsumerCreateResponse:
    return ConsumerCreateResponse(**msgspec.structs.asdict(info))


async def consumer_create(ctx: Context, names: list[str], data: bytes) -> ConsumerCreateResponse:
    """`CONSUMER.CREATE.<stream>[.<name>[.<filter…>]]`."""
    stream = names[0]
    req = _create_request(data, stream)
    cfg = req.config
    if len(names) == 1:  # legacy ephemeral: a generated name, not echoed in the config
        if cfg.durable_name:
            raise errors.EPHEMERAL_WITH_DURABLE()
        name = cfg.name if isinstance(cfg.name, str) and cfg.name else consumer_rules.random_name()
    else:
        name = names[1]  # the subject's name wins over the config's
        if cfg.durable_name and cfg.durable_name != name:
            raise errors.DURABLE_NAME_MISMATCH()
        if len(names) > 2:
            if cfg.filter_subjects:
                raise errors.MULTIPLE_FILTERS_NOT_ALLOWED()
            if ".".join(names[2:]) != (cfg.filter_subject or ""):
                raise errors.FILTER_MISMATCH()
        cfg.name = name
    check_reply_fits(ctx, cfg, "consumer")
    consumers = _consumers(ctx)
    c = await consumers.add(stream, cfg, req.action, name)
    return _as_response(consumers.info(c))


async def consumer_durable_create(ctx: Context, names: list[str], data: bytes) -> ConsumerCreateResponse:
    """`CONSUMER.DURABLE.CREATE.<stream>.<durable>` (legacy durable)."""
    stream, durable = names
    req = _create_request(data, stream)
    cfg = req.config
    if not cfg.durable_name:
        raise errors.DURABLE_NAME_NOT_SET()
    if cfg.durable_name != durable:
        raise errors.DURABLE_NAME_MISMATCH()
    cfg.name = durable
    check_reply_fits(ctx, cfg, "consumer")
    consumers = _consumers(ctx)
    c = await consumers.add(stream, cfg, req.action, durable)
    return _as_response(consumers.info(c))


async def consumer_info(ctx: Context, names: list[str], _data: bytes) -> ConsumerInfoResponse:
    ctx.manager.get(names[0])
    consumers = _consumers(ctx)
    return ConsumerInfoResponse(**msgspec.structs.asdict(consumers.info(consumers.get(names[0], names[1]))))


async def consumer_delete(ctx: Context, names: list[str], data: bytes) -> SuccessResponse:
    _require_empty(data)
    await _consumers(ctx).delete(names[0], names[1])
    return SuccessResponse(type=API_PREFIX_TYPE + "consumer_delete_response")


def _sorted_names(ctx: Context, stream: str) -> list[str]:
    ctx.manager.get(stream)
    return sorted(_consumers(ctx).by_stream.get(stream, {}))


async def consumer_names(ctx: Context, names: list[str], data: bytes) -> ConsumerNamesResponse:
    req = _decode(data, StreamNamesRequest, "JSApiConsumersRequest")
    req.offset = max(req.offset, 0)  # the server reads a negative offset as 0
    all_names = _sorted_names(ctx, names[0])
    page = all_names[req.offset : req.offset + NAMES_LIMIT]
    return ConsumerNamesResponse(total=len(all_names), offset=req.offset, limit=NAMES_LIMIT, consumers=page)


async def consumer_list(ctx: Context, names: list[str], data: bytes) -> ConsumerListResponse:
    req = _decode(data, StreamNamesRequest, "JSApiConsumersRequest")
    req.offset = max(req.offset, 0)  # the server reads a negative offset as 0
    consumers = _consumers(ctx)
    all_names = _sorted_names(ctx, names[0])
    page = all_names[req.offset : req.offset + LIST_LIMIT]
    infos = [consumers.info(consumers.get(names[0], n)) for n in page]
    resp = ConsumerListResponse(total=len(all_names), offset=req.offset, limit=LIST_LIMIT, consumers=infos)
    return fit_page(ctx, resp, "consumers")


async def consumer_pause(ctx: Context, names: list[str], data: bytes) -> PauseResponse:
    req = _decode(data, PauseRequest, "JSApiConsumerPauseRequest")
    ctx.manager.get(names[0])
    try:
        until = timefmt.parse(req.pause_until) if req.pause_until else 0
    except ValueError:
        raise errors.BAD_REQUEST() from None
    c = await _consumers(ctx).pause(names[0], names[1], until, req.pause_until)
    now = time.time_ns()
    paused = c.paused(now)
    return PauseResponse(
        paused=paused,
        pause_until=req.pause_until or timefmt.ZERO_TIME,
        pause_remaining=c.paused_until_ns - now if paused else UNSET,
    )


async def consumer_next(ctx: Context, names: list[str], data: bytes, reply: str) -> None:
    """MSG.NEXT: queue the pull request; unknown consumers get a 503 status, as no responders would."""
    if not reply:
        return
    consumers = _consumers(ctx)
    if not consumers.pull_request(names[0], names[1], reply, data):
        await ctx.conn.publish_raw(reply.encode(), b"", NO_RESPONDERS)


_PAGED = {"total": 0, "offset": 0, "limit": 0}

ROUTES: dict[str, Route] = {
    "CONSUMER.CREATE": Route("consumer_create_response", consumer_create, -1),
    "CONSUMER.DURABLE.CREATE": Route("consumer_create_response", consumer_durable_create, 2),
    "CONSUMER.INFO": Route("consumer_info_response", consumer_info, 2),
    "CONSUMER.DELETE": Route("consumer_delete_response", consumer_delete, 2),
    "CONSUMER.NAMES": Route("consumer_names_response", consumer_names, 1, {**_PAGED, "consumers": []}),
    "CONSUMER.LIST": Route("consumer_list_response", consumer_list, 1, {**_PAGED, "consumers": []}),
    "CONSUMER.PAUSE": Route(
        "consumer_pause_response", consumer_pause, 2, {"paused": False, "pause_until": timefmt.ZERO_TIME}
    ),
}
_ = _ENCODER
