"""Single messages: `STREAM.MSG.GET`, `STREAM.MSG.DELETE`, and `DIRECT.GET`, which shares MSG.GET's selector
rules but answers with the stored message itself (or a status-only message) straight from the raw path."""

from __future__ import annotations

import logging

import msgspec

from streamd.api.context import GO_NAMES, Context, decode_request, max_reply
from streamd.store import reads
from streamd.wire import errors, gojson, headers, subjects, timefmt
from streamd.wire.models import (
    API_PREFIX_TYPE,
    MsgDeleteRequest,
    MsgGetRequest,
    MsgGetResponse,
    StoredMessage,
    SuccessResponse,
)

logger = logging.getLogger(__name__)


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
    found = find_message(ctx, names[0], decode_request(data, MsgGetRequest))
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
    req = decode_request(data, MsgDeleteRequest)
    await ctx.manager.delete_message(names[0], req.seq)
    return SuccessResponse(type=API_PREFIX_TYPE + "stream_msg_delete_response")


# ---- DIRECT.GET ----------------------------------------------------------------------------------------------


class _DirectError(Exception):
    """A DIRECT.GET refusal: a status line, not an API error object (clients read the status header)."""

    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text


def direct_get(ctx: Context, name: str, subject_tail: list[str], reply: bytes, data: bytes) -> None:
    """DIRECT.GET answers with the stored message itself, or a status-only message.

    Synchronous, from the raw subscription path: a read of committed data and one queued reply, no task hop."""
    if not reply:
        return
    ctx.stats.total += 1
    try:
        found = find_message(ctx, name, _direct_request(subject_tail, data))
        hdrs = _direct_headers(name, found)
        if len(hdrs) + len(found.data) > max_reply(ctx):
            raise _DirectError(413, "Message Size Exceeds Max Payload")
    except Exception as exc:
        ctx.stats.errors += 1
        _direct_status(ctx, reply, _direct_refusal(name, exc))
        return
    ctx.conn.send_soon(reply, found.data, hdrs)


def _direct_headers(name: str, found: reads.Found) -> bytes:
    extra = [
        ("Nats-Stream", name),
        ("Nats-Subject", found.subject.decode(errors="replace")),
        ("Nats-Sequence", str(found.seq)),
        ("Nats-Time-Stamp", timefmt.format_ns(found.ts_ns)),
    ]
    return headers.build(extra, found.hdrs or None)


def _direct_refusal(name: str, exc: Exception) -> _DirectError:
    """The status a failed DIRECT.GET answers: the selector's own, 408 for a bad request, else 404 (or 500)."""
    if isinstance(exc, _DirectError):
        return exc
    if isinstance(exc, errors.ApiError):
        bad = exc.err_code == errors.BAD_REQUEST.err_code
        return _DirectError(408, "Bad Request") if bad else _DirectError(404, "Message Not Found")
    logger.error("direct get on stream %r failed", name, exc_info=exc)
    return _DirectError(500, "Internal Server Error")


def _direct_request(subject_tail: list[str], data: bytes) -> MsgGetRequest:
    if subject_tail:
        if data.strip():
            raise _DirectError(408, "Bad Request")
        return MsgGetRequest(last_by_subj=".".join(subject_tail))
    if not data.strip():
        raise _DirectError(408, "Empty Request")
    try:
        req = gojson.decode(data, MsgGetRequest, GO_NAMES[MsgGetRequest])
    except (gojson.GoJsonError, msgspec.DecodeError):
        raise _DirectError(408, "Malformed Request") from None
    if not (req.seq or req.last_by_subj or req.next_by_subj or req.multi_last or req.start_time):
        raise _DirectError(408, "Empty Request")  # no selector at all: the server's wording
    return req


def _direct_status(ctx: Context, reply: bytes, exc: _DirectError) -> None:
    ctx.conn.send_soon(reply, b"", headers.status(exc.code, exc.text))
