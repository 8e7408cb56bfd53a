"""The `$JS.API.STREAM.*` handlers for a stream's life and listing: create, update, delete, info, names, list,
purge. Message reads and deletes are in messages.py."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from streamd.api.context import (
    ENCODER,
    LIST_LIMIT,
    NAMES_LIMIT,
    SUBJECTS_LIMIT,
    Context,
    check_reply_fits,
    decode_request,
    fit_page,
    max_reply,
    page_of,
    require_empty,
    with_server_metadata,
    without_server_metadata,
)
from streamd.streams import rules as config_rules
from streamd.wire import errors
from streamd.wire.models import (
    API_PREFIX_TYPE,
    AnsweredStreamConfig,
    PurgeResponse,
    StreamConfig,
    StreamConfigRequest,
    StreamCreateResponse,
    StreamInfo,
    StreamInfoRequest,
    StreamInfoResponse,
    StreamListResponse,
    StreamNamesRequest,
    StreamNamesResponse,
    StreamPurgeRequest,
    StreamUpdateResponse,
    SuccessResponse,
)


def _check_name(subject_name: str, cfg: StreamConfig) -> None:
    config_rules.check_name(subject_name)
    if cfg.name != subject_name:
        raise errors.STREAM_NAME_MISMATCH()


PERSIST_MODES = ("", "default", "async")


def decode_config(data: bytes) -> StreamConfig:
    """A CREATE/UPDATE body as the server decodes it (unknown fields refused, persist_mode one of its words)."""
    req: StreamConfigRequest = decode_request(data, StreamConfigRequest)
    if req.persist_mode is not msgspec.UNSET and req.persist_mode not in PERSIST_MODES:
        raw = json.dumps(req.persist_mode)  # Go: fmt.Errorf("can not unmarshal %q", <the raw JSON value>)
        raise errors.INVALID_JSON(err=f"can not unmarshal {json.dumps(raw)}")
    cfg = req.config()
    cfg.metadata = without_server_metadata(cfg.metadata)
    return cfg


def answered(cfg: StreamConfig, dynamic: bool = True) -> StreamConfig:
    """A stored config as nats-server answers it: with the `_nats.*` version metadata (a copy; never stored)."""
    meta = with_server_metadata(cfg.metadata, config_rules.required_level(cfg), dynamic)
    fields = msgspec.structs.asdict(cfg)
    fields["metadata"] = meta
    if not cfg.subjects:
        fields["subjects"] = msgspec.UNSET
    if not cfg.duplicate_window:
        fields["duplicate_window"] = msgspec.UNSET
    return AnsweredStreamConfig(**fields)


async def stream_create(ctx: Context, names: list[str], data: bytes) -> StreamCreateResponse:
    cfg = decode_config(data)
    _check_name(names[0], cfg)
    if cfg.sealed:
        raise errors.STREAM_INVALID_CONFIG(err="stream configuration for create can not be sealed")
    if cfg.mirror_direct and cfg.mirror in (msgspec.UNSET, None):
        raise errors.STREAM_INVALID_CONFIG(err="stream has no mirror but does have mirror direct")
    check_reply_fits(ctx, config_rules.normalize(cfg), "stream")
    stream, created = await ctx.manager.create(cfg)
    info = ctx.manager.info(stream)
    return StreamCreateResponse(**_info_fields(info), did_create=created)


def _info_fields(info: StreamInfo) -> dict[str, Any]:
    """What the create, update and info answers share: the stream's info, its config as answered."""
    return {
        "config": answered(info.config),
        "created": info.created,
        "state": info.state,
        "mirror": info.mirror,
        "sources": info.sources,
        "ts": info.ts,
    }


async def stream_update(ctx: Context, names: list[str], data: bytes) -> StreamUpdateResponse:
    cfg = decode_config(data)
    _check_name(names[0], cfg)
    ctx.manager.get(names[0])  # not found comes first, as on the server
    check_reply_fits(ctx, config_rules.normalize(cfg), "stream")
    stream = await ctx.manager.update(cfg)
    info = ctx.manager.info(stream)
    return StreamUpdateResponse(**_info_fields(info))


async def stream_delete(ctx: Context, names: list[str], data: bytes) -> SuccessResponse:
    require_empty(data)
    await ctx.manager.delete(names[0])
    return SuccessResponse(type=API_PREFIX_TYPE + "stream_delete_response")


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
        **_info_fields(info),
        total=total,
        offset=req.offset,
        limit=limit,
    )


async def stream_info(ctx: Context, names: list[str], data: bytes) -> StreamInfoResponse:
    req = decode_request(data, StreamInfoRequest)
    req.offset = max(req.offset, 0)
    return _fit_subjects(ctx, _stream_info_response(ctx, names[0], req))


def _fit_subjects(ctx: Context, resp: StreamInfoResponse) -> StreamInfoResponse:
    """A subjects page that would not fit in one message is halved until it does (the client pages on with
    offset); halving keeps the encoding work linear in the page size."""
    page = resp.state.subjects
    while page is not msgspec.UNSET and len(page) > 1 and len(ENCODER.encode(resp)) > max_reply(ctx):
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
    req = decode_request(data, StreamNamesRequest)
    names = _filtered_names(ctx, req.subject)
    offset, page = page_of(names, req.offset, NAMES_LIMIT)
    return StreamNamesResponse(total=len(names), offset=offset, limit=NAMES_LIMIT, streams=page or None)


async def stream_list(ctx: Context, _names: list[str], data: bytes) -> StreamListResponse:
    req = decode_request(data, StreamNamesRequest, "JSApiStreamListRequest")
    names = _filtered_names(ctx, req.subject)
    offset, page = page_of(names, req.offset, LIST_LIMIT)
    infos = [ctx.manager.info(ctx.manager.streams[n]) for n in page]
    for info in infos:
        info.config = answered(info.config, dynamic=False)
    resp = StreamListResponse(total=len(names), offset=offset, limit=LIST_LIMIT, streams=infos)
    return fit_page(ctx, resp, "streams")


async def stream_purge(ctx: Context, names: list[str], data: bytes) -> PurgeResponse:
    req = decode_request(data, StreamPurgeRequest)
    purged = await ctx.manager.purge(names[0], req.filter, req.seq, req.keep)
    return PurgeResponse(purged=purged)
