"""The API layer's local rules: the route table, request decoding, paging and the error answer's shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from streamd.api import context as api_context
from streamd.api.account import account_info
from streamd.api.context import Context, decode_request, fit_page, page_of, require_empty
from streamd.api.dispatch import RequestQueue, error_body, resolve
from streamd.api.routes import ROUTES
from streamd.server.api_intake import CONSUMER_VERBS
from streamd.store.env import Store
from streamd.store.writer import Frames, Replies, Writer
from streamd.streams.manager import StreamManager
from streamd.transport.connection import Connection
from streamd.wire import errors
from streamd.wire.models import StreamNamesRequest


class Page(msgspec.Struct):
    limit: int
    items: list[str]


async def _no_replies(_replies: Replies, _frames: Frames) -> None:
    return None


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[Context]:
    """A context on a temporary LMDB store, with an unconnected client (its max_payload is nats-py's 1 MiB)."""
    store = Store.open(tmp_path / "data", sync=False)
    registry: dict = {}
    writer = Writer(store, registry, _no_replies)
    try:
        yield Context(manager=StreamManager(store, registry, writer, ""), conn=Connection())
    finally:
        store.close()


def test_every_subscribed_api_verb_has_a_route_and_msg_next_has_none() -> None:
    verbs = {"INFO", "STREAM"} | {f"CONSUMER.{v}" for v in CONSUMER_VERBS}
    for verb in ROUTES:
        assert any(verb == v or verb.startswith(v + ".") for v in verbs), verb
    assert "CONSUMER.MSG.NEXT" not in ROUTES  # served by the raw path (server/api_intake.py) only
    assert resolve("CONSUMER.MSG.NEXT.S.C".split(".")) is None


def test_resolve_checks_the_asset_name_count() -> None:
    found = resolve(["STREAM", "MSG", "GET", "S"])
    assert found is not None and found[0] is ROUTES["STREAM.MSG.GET"] and found[1] == ["S"]
    assert resolve(["STREAM", "INFO"]) is None  # a name is due
    assert resolve(["STREAM", "INFO", "S", "X"]) is None  # one name only
    assert resolve(["STREAM", "INFO", ""]) is None  # empty token
    create = resolve(["CONSUMER", "CREATE", "S", "C", "f", "x"])
    assert create is not None and create[1] == ["S", "C", "f", "x"]  # one or more
    assert resolve(["INFO"]) is not None and resolve(["NOPE"]) is None


def test_error_body_carries_the_routes_extra_keys() -> None:
    body = json.loads(error_body(ROUTES["STREAM.NAMES"], errors.STREAM_NOT_FOUND()))
    assert body == {
        "type": "io.nats.jetstream.api.v1.stream_names_response",
        "error": {"code": 404, "err_code": 10059, "description": "stream not found"},
        "total": 0,
        "offset": 0,
        "limit": 0,
        "streams": None,
    }


def test_decode_request_empty_default_and_go_wording() -> None:
    assert decode_request(b"  ", StreamNamesRequest) == StreamNamesRequest()
    assert decode_request(b'{"offset": 3}', StreamNamesRequest).offset == 3
    with pytest.raises(errors.ApiError) as refused:
        decode_request(b"{", StreamNamesRequest)
    assert refused.value.err_code == errors.INVALID_JSON.err_code


def test_require_empty() -> None:
    for body in (b"", b"  ", b"{}", b" { } "):
        require_empty(body)
    with pytest.raises(errors.ApiError) as refused:
        require_empty(b'{"a":1}')
    assert refused.value.err_code == errors.NOT_EMPTY_REQUEST.err_code


def test_page_of_reads_a_negative_offset_as_zero() -> None:
    names = [f"n{i}" for i in range(5)]
    assert page_of(names, -7, 2) == (0, ["n0", "n1"])
    assert page_of(names, 4, 2) == (4, ["n4"])
    assert page_of(names, 9, 2) == (9, [])


async def test_fit_page_halves_until_the_reply_fits(ctx: Context) -> None:
    resp = fit_page(ctx, Page(limit=2000, items=["x" * 1100] * 2000), "items")
    assert resp.limit == len(resp.items) == 500
    assert len(api_context.ENCODER.encode(resp)) <= ctx.conn.max_payload
    one = fit_page(ctx, Page(limit=1, items=["x" * (2 << 20)]), "items")
    assert len(one.items) == 1  # one entry that alone does not fit is dispatch's to refuse


async def test_account_info_on_an_empty_store(ctx: Context) -> None:
    info = await account_info(ctx, [], b"")
    assert (info.streams, info.consumers, info.storage) == (0, 0, 0)
    assert info.api.level == api_context.API_LEVEL


async def test_request_queue_bounds_count_and_bytes() -> None:
    queue = RequestQueue(max_msgs=2, max_bytes=10)
    assert queue.offer((b"s", b"r", b"1234", None))
    assert not queue.offer((b"s", b"r", b"123456", b"h"))  # 6 + 9 bytes would be over
    assert queue.offer((b"s", b"r", b"", None))
    assert not queue.offer((b"s", b"r", b"", None))  # a third message
    assert (await queue.take())[2] == b"1234" and queue.pending_bytes == 2
