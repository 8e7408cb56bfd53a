"""The `$JS.API.CONSUMER.*` handlers: create (all three subject forms), info, delete, names, list, pause, unpin.

MSG.NEXT is not here: pull requests take the raw path (server/api_intake.py) straight to the consumer manager."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from msgspec import UNSET

from streamd.api.context import (
    LIST_LIMIT,
    NAMES_LIMIT,
    Context,
    check_reply_fits,
    decode_request,
    fit_page,
    page_of,
    require_empty,
    with_server_metadata,
    without_server_metadata,
)
from streamd.consumers import rules as consumer_rules
from streamd.consumers.manager import ConsumerManager
from streamd.consumers.priority import GROUP_NAME
from streamd.wire import errors, timefmt
from streamd.wire.models import (
    API_PREFIX_TYPE,
    ConsumerCreateRequest,
    ConsumerCreateResponse,
    ConsumerInfo,
    ConsumerInfoResponse,
    ConsumerListResponse,
    ConsumerNamesResponse,
    ConsumerUnpinResponse,
    PauseRequest,
    PauseResponse,
    StreamNamesRequest,
    SuccessResponse,
    UnpinRequest,
)


def _consumers(ctx: Context) -> ConsumerManager:
    if ctx.consumers is None:  # pragma: no cover - wired by the service
        raise errors.STREAM_GENERAL(err="consumers are not available")
    return ctx.consumers


def _create_request(data: bytes, stream: str) -> ConsumerCreateRequest:
    req: ConsumerCreateRequest = decode_request(data, ConsumerCreateRequest, "CreateConsumerRequest")
    if req.stream_name != stream:
        raise errors.STREAM_NAME_MISMATCH()
    if req.action not in ("", "create", "update"):
        raise errors.INVALID_JSON(err=f"unknown consumer action {req.action!r}")
    req.config.metadata = without_server_metadata(req.config.metadata)
    return req


def _answered(info: ConsumerInfo, dynamic: bool = True) -> dict[str, Any]:
    """A consumer's info as nats-server answers it: its config with the `_nats.*` version metadata (a copy)."""
    cfg = info.config
    meta = with_server_metadata(cfg.metadata, consumer_rules.required_level(cfg), dynamic)
    out = msgspec.structs.asdict(info)
    out["config"] = msgspec.structs.replace(cfg, metadata=meta)
    return out


async def _add(ctx: Context, stream: str, req: ConsumerCreateRequest, name: str) -> ConsumerCreateResponse:
    """The create forms differ only in how the name is found and checked; adding it is the same."""
    if req.config.num_replicas > 1:  # a single server says so before it looks at the rest of the config
        raise errors.REPLICAS_NOT_SUPPORTED()
    check_reply_fits(ctx, req.config, "consumer")
    consumers = _consumers(ctx)
    c = await consumers.add(stream, req.config, req.action, name)
    return ConsumerCreateResponse(**_answered(consumers.info(c)))


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
    return await _add(ctx, stream, req, name)


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
    return await _add(ctx, stream, req, durable)


async def consumer_info(ctx: Context, names: list[str], _data: bytes) -> ConsumerInfoResponse:
    ctx.manager.get(names[0])
    consumers = _consumers(ctx)
    return ConsumerInfoResponse(**_answered(consumers.info(consumers.get(names[0], names[1]))))


async def consumer_delete(ctx: Context, names: list[str], data: bytes) -> SuccessResponse:
    require_empty(data)
    await _consumers(ctx).delete(names[0], names[1])
    return SuccessResponse(type=API_PREFIX_TYPE + "consumer_delete_response")


def _sorted_names(ctx: Context, stream: str) -> list[str]:
    ctx.manager.get(stream)
    return sorted(_consumers(ctx).by_stream.get(stream, {}))


async def consumer_names(ctx: Context, names: list[str], data: bytes) -> ConsumerNamesResponse:
    req = decode_request(data, StreamNamesRequest, "JSApiConsumersRequest")
    all_names = _sorted_names(ctx, names[0])
    offset, page = page_of(all_names, req.offset, NAMES_LIMIT)
    return ConsumerNamesResponse(total=len(all_names), offset=offset, limit=NAMES_LIMIT, consumers=page)


async def consumer_list(ctx: Context, names: list[str], data: bytes) -> ConsumerListResponse:
    req = decode_request(data, StreamNamesRequest, "JSApiConsumersRequest")
    consumers = _consumers(ctx)
    all_names = _sorted_names(ctx, names[0])
    offset, page = page_of(all_names, req.offset, LIST_LIMIT)
    infos = [ConsumerInfo(**_answered(consumers.info(consumers.get(names[0], n)), dynamic=False)) for n in page]
    resp = ConsumerListResponse(total=len(all_names), offset=offset, limit=LIST_LIMIT, consumers=infos)
    return fit_page(ctx, resp, "consumers")


async def consumer_pause(ctx: Context, names: list[str], data: bytes) -> PauseResponse:
    req = decode_request(data, PauseRequest, "JSApiConsumerPauseRequest")
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


async def consumer_unpin(ctx: Context, names: list[str], data: bytes) -> ConsumerUnpinResponse:
    """Release a priority group's pinned client (the next request without a pin id gets a new pin). The request is
    checked before the stream and consumer are looked up, as the server does."""
    if not data.strip():
        raise errors.INVALID_JSON(err="unexpected end of JSON input")
    req: UnpinRequest = decode_request(data, UnpinRequest, "JSApiConsumerUnpinRequest")
    if not req.group:
        raise errors.INVALID_JSON(err="consumer group not specified")
    if not GROUP_NAME.fullmatch(req.group):
        raise errors.INVALID_GROUP_NAME()
    ctx.manager.get(names[0])
    _consumers(ctx).unpin(names[0], names[1], req.group)
    return ConsumerUnpinResponse()
