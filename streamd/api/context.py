"""What every `$JS.API` handler shares: the context it runs in, the route record, request decoding and paging.

Handlers are plain async functions from decoded request to response Struct; they raise ``errors.ApiError`` to
refuse. They live in account.py, streams.py, messages.py and consumers.py, all of which import only this module,
so the route table (routes.py) and the dispatcher (dispatch.py) can import them without an import circle.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from streamd.consumers.manager import ConsumerManager
from streamd.streams.manager import StreamManager
from streamd.transport.connection import Connection
from streamd.wire import errors, gojson, headers
from streamd.wire.models import (
    Health,
    MsgDeleteRequest,
    MsgGetRequest,
    StreamConfig,
    StreamConfigRequest,
    StreamInfoRequest,
    StreamNamesRequest,
    StreamPurgeRequest,
)

# 2 since 2.12's atomic batch publish, counters and message schedules; level 2's async persist is refused by
# name when asked for (see streams/rules).
API_LEVEL = 2
ENCODER = msgspec.json.Encoder()

# ---- the `_nats.*` metadata nats-server adds to every stream and consumer config it returns ----
META_REQUIRED = "_nats.req.level"  # the API level the asset needs (computed from its config)
META_VERSION = "_nats.ver"  # the server's version: streamd's own here
META_LEVEL = "_nats.level"  # the server's API level
SERVER_METADATA = (META_REQUIRED, META_VERSION, META_LEVEL)
try:
    VERSION = importlib.metadata.version("streamd")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a tree that is not installed
    VERSION = "0.0.0"


def level_too_high(hdrs: bytes | None) -> bool:
    """A Nats-Required-Api-Level this server does not reach (or that is not a number): nats-server's
    errorOnRequiredApiLevel, for the JSON API (412/10185) and the status paths (`412 Required Api Level`)."""
    level = headers.parse(hdrs).get(headers.REQUIRED_API_LEVEL)
    return level is not None and (not level.strip().isdigit() or int(level) > API_LEVEL)


def without_server_metadata(metadata: dict[str, str] | UnsetType) -> dict[str, str] | UnsetType:
    """A request's metadata without the server-managed keys (a client may echo a config it was given); they are
    recomputed for every answer and never stored, as nats-server does."""
    if metadata is UNSET or not any(k in metadata for k in SERVER_METADATA):
        return metadata
    kept = {k: v for k, v in metadata.items() if k not in SERVER_METADATA}
    return kept or UNSET


def with_server_metadata(metadata: dict[str, str] | UnsetType, required: int, dynamic: bool = True) -> dict[str, str]:
    """The metadata of a config as answered: the stored user keys plus the `_nats.*` ones, sorted as Go sorts a
    map. LIST pages carry only the required level (`dynamic=False`), as nats-server's do."""
    out = dict(metadata) if metadata is not UNSET else {}
    out[META_REQUIRED] = str(required)
    if dynamic:
        out.update({META_VERSION: VERSION, META_LEVEL: str(API_LEVEL)})
    return dict(sorted(out.items()))


# ---- paging: the page sizes nats-server answers with; a LIST page is also cut to what fits in one message ----
NAMES_LIMIT = 1024  # STREAM.NAMES, CONSUMER.NAMES
LIST_LIMIT = 256  # STREAM.LIST, CONSUMER.LIST
SUBJECTS_LIMIT = 100_000  # STREAM.INFO's subjects_filter
PAGED: dict[str, Any] = {"total": 0, "offset": 0, "limit": 0}  # what a paged error answer carries besides `error`
REPLY_OVERHEAD = 2048  # what an info reply adds to the config it echoes (state, timestamps, type), generously


@dataclass
class Counters:
    """The service's request and drop counts, reported in INFO (api, streamd blocks); one object, shared."""

    total: int = 0
    errors: int = 0
    ingest_dropped: int = 0
    slow_consumer_events: int = 0


@dataclass
class Context:
    """Everything a handler may touch; built once by the service, so handlers stay plain functions."""

    manager: StreamManager
    conn: Connection
    domain: str = ""
    stats: Counters = field(default_factory=Counters)
    consumers: ConsumerManager | None = None
    health: Callable[[], Health] | None = None  # the service's health report, shown in INFO's streamd block
    restoring: set[str] = field(default_factory=set)  # streams with a STREAM.RESTORE in flight: one at a time


PageT = TypeVar("PageT", bound=msgspec.Struct)
Handler = Callable[[Context, list[str], bytes], Awaitable[msgspec.Struct | None]]


@dataclass(frozen=True)
class Route:
    """One verb: its answer's type, the handler, and the keys nats-server adds to that verb's error answer."""

    kind: str  # response `type` suffix
    handler: Handler
    name_tokens: int  # asset tokens that must follow the verb (-1: one or more)
    error_extra: dict[str, Any] = field(default_factory=dict)
    level_first: bool = True  # Nats-Required-Api-Level is checked before the handler (not by cluster-only verbs)


# The Go request type nats-server decodes each request into: its name is part of the "invalid JSON" wording.
GO_NAMES: dict[type[Any], str] = {
    StreamConfig: "StreamConfigRequest",
    StreamConfigRequest: "StreamConfigRequest",
    StreamInfoRequest: "JSApiStreamInfoRequest",
    StreamNamesRequest: "JSApiStreamNamesRequest",
    StreamPurgeRequest: "JSApiStreamPurgeRequest",
    MsgGetRequest: "JSApiMsgGetRequest",
    MsgDeleteRequest: "JSApiMsgDeleteRequest",
}


def decode_request(data: bytes, typ: type[Any], go_name: str = "") -> Any:
    """Decode a request as the server would, integer ranges included; any refusal is 400/10025."""
    if not data.strip():
        return typ()
    try:
        return gojson.decode(data, typ, go_name or GO_NAMES.get(typ, typ.__name__))
    except (gojson.GoJsonError, msgspec.DecodeError) as exc:
        raise errors.INVALID_JSON(err=str(exc)) from None


def require_empty(data: bytes) -> None:
    """DELETE verbs take no body; the server refuses anything but nothing or `{}`."""
    body = data.strip()
    if body and body.replace(b" ", b"") != b"{}":
        raise errors.NOT_EMPTY_REQUEST()


def max_reply(ctx: Context) -> int:
    """The largest message (header + payload) the server takes from streamd: its INFO max_payload."""
    return int(ctx.conn.max_payload)


def check_reply_fits(ctx: Context, config: msgspec.Struct, what: str) -> None:
    """Refuse, before anything is committed, a config whose info reply could not be sent (it would answer an
    error after the change was made)."""
    if len(ENCODER.encode(config)) + REPLY_OVERHEAD > max_reply(ctx):
        raise errors.STREAM_INVALID_CONFIG(err=f"{what} configuration is too large for the server's max_payload")


def page_of(names: list[str], offset: int, limit: int) -> tuple[int, list[str]]:
    """The server reads a negative offset as 0; returns that offset and the page of `names` it starts."""
    offset = max(offset, 0)
    return offset, names[offset : offset + limit]


def fit_page(ctx: Context, resp: PageT, field: str) -> PageT:
    """A LIST page (`field`, a list) that would not fit in one message is halved until it does; the client
    pages on with offset. One entry that alone does not fit is left to dispatch's size check."""
    page = getattr(resp, field)
    while len(page) > 1 and len(ENCODER.encode(resp)) > max_reply(ctx):
        page = page[: len(page) // 2]
        setattr(resp, field, page)
        setattr(resp, "limit", len(page))  # noqa: B010 (any paged response)
    return resp
