"""Helpers shared by the conformance tests."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext

ZERO_TIME = "0001-01-01T00:00:00Z"

ErrorShape = tuple[str, int | None, int | None, str | None]

STREAM_NOT_FOUND: ErrorShape = ("NotFoundError", 404, 10059, "stream not found")
NO_MESSAGE_FOUND: ErrorShape = ("NotFoundError", 404, 10037, "no message found")
ALREADY_IN_USE: ErrorShape = (
    "BadRequestError",
    400,
    10058,
    "stream name already in use with a different configuration",
)


async def api(nc: Client, subject: str, body: Any = b"", timeout: float = 2) -> dict[str, Any]:
    """Raw `$JS.API` request; `body` is bytes (sent as is) or a JSON-able value. Returns the decoded reply."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg = await nc.request(subject, data, timeout=timeout)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


def err(exc: BaseException) -> ErrorShape:
    """The observable parts of a nats-py JetStream API error: class, code, err_code, description."""
    return (
        type(exc).__name__,
        getattr(exc, "code", None),
        getattr(exc, "err_code", None),
        getattr(exc, "description", None),
    )


async def api_error(aw: Awaitable[Any]) -> ErrorShape:
    """Await `aw`, which must raise; return `err()` of what it raised."""
    try:
        result = await aw
    except Exception as exc:
        return err(exc)
    raise AssertionError(f"expected an error, got {result!r}")


def error_of(reply: dict[str, Any]) -> tuple[int, int, str]:
    """(code, err_code, description) of a raw API error reply; fails if the reply is not an error."""
    assert "error" in reply, f"expected an error reply, got {reply!r}"
    e = reply["error"]
    return e["code"], e.get("err_code"), e.get("description")


async def info(nc: Client, stream: str, body: Any = b"") -> dict[str, Any]:
    """Raw STREAM.INFO (gives fields nats-py drops: first_ts, num_subjects, ...); fails on an error reply."""
    reply = await api(nc, f"$JS.API.STREAM.INFO.{stream}", body)
    assert "error" not in reply, reply
    return reply


async def state(nc: Client, stream: str) -> dict[str, Any]:
    s: dict[str, Any] = (await info(nc, stream))["state"]
    return s


async def counts(nc: Client, stream: str) -> tuple[int, int, int]:
    """(messages, first_seq, last_seq) of a stream."""
    s = await state(nc, stream)
    return s["messages"], s["first_seq"], s["last_seq"]


async def publish_n(js: JetStreamContext, subjects: list[str], payload: bytes = b"x") -> list[int]:
    """Publish one message per subject (in order); return the acked sequences."""
    return [(await js.publish(subject, payload)).seq for subject in subjects]


def user_metadata(config: dict[str, Any]) -> dict[str, str]:
    """Stream metadata without the `_nats.*` keys the real server adds (version/api level: cosmetic)."""
    return {k: v for k, v in (config.get("metadata") or {}).items() if not k.startswith("_nats.")}
