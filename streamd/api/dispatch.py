"""From raw request to reply: the bounded request queue, route lookup, the door checks, and `dispatch`, which
decodes, runs, encodes and answers so that no handler touches the wire."""

from __future__ import annotations

import asyncio
import logging

from streamd.api.context import ENCODER, Context, Route, level_too_high, max_reply
from streamd.api.routes import ROUTES
from streamd.wire import errors
from streamd.wire.models import API_PREFIX_TYPE

logger = logging.getLogger(__name__)

Request = tuple[bytes, bytes, bytes, bytes | None]  # subject, reply, payload, header block


def _size(item: Request) -> int:
    return len(item[0]) + len(item[1]) + len(item[2]) + len(item[3] or b"")


class RequestQueue:
    """API requests waiting for their turn, bounded by count and by bytes as nats-py's pending limits were:
    a flood is refused (counted, logged by the caller) instead of growing without limit."""

    def __init__(self, max_msgs: int, max_bytes: int) -> None:
        self._queue: asyncio.Queue[Request] = asyncio.Queue()
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        self.pending_bytes = 0

    def offer(self, item: Request) -> bool:
        size = _size(item)
        if self._queue.qsize() >= self.max_msgs or self.pending_bytes + size > self.max_bytes:
            return False
        self.pending_bytes += size
        self._queue.put_nowait(item)
        return True

    async def take(self) -> Request:
        item = await self._queue.get()
        self.pending_bytes -= _size(item)
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
    return ENCODER.encode({"type": API_PREFIX_TYPE + route.kind, "error": exc.as_dict(), **route.error_extra})


def _check_door(subject: bytes, reply: bytes, hdrs: bytes | None) -> None:
    """Subjects, replies and header blocks are text to every later step: bytes that are not UTF-8 stop here."""
    for part in (subject, reply, hdrs or b""):
        if not part.isascii():
            try:
                part.decode()
            except UnicodeDecodeError:
                raise errors.BAD_REQUEST() from None


def _check_api_level(hdrs: bytes | None) -> None:
    if level_too_high(hdrs):
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
        if route.level_first:
            _check_api_level(hdrs)
        resp = await route.handler(ctx, names, data)
        body = ENCODER.encode(resp)
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
