"""Single messages: `STREAM.MSG.GET`, `STREAM.MSG.DELETE`, and `DIRECT.GET`, which shares MSG.GET's selector
rules but answers with the stored message itself (or a status-only message) straight from the raw path."""

from __future__ import annotations

import logging

import msgspec

from streamd.api.context import GO_NAMES, Context, decode_request, level_too_high, max_reply
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
    stream = ctx.manager.get(names[0])
    if req.seq == 0 and not (stream.config.sealed or stream.config.deny_delete):
        raise errors.MSG_DELETE_FAILED(err="no message found")  # the server looks sequence 0 up, finds nothing
    await ctx.manager.delete_message(names[0], req.seq)
    return SuccessResponse(type=API_PREFIX_TYPE + "stream_msg_delete_response")


# ---- DIRECT.GET ----------------------------------------------------------------------------------------------


class _DirectError(Exception):
    """A DIRECT.GET refusal: a status line, not an API error object (clients read the status header)."""

    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text


def direct_get(
    ctx: Context, name: str, subject_tail: list[str], reply: bytes, data: bytes, hdrs: bytes | None = None
) -> None:
    """DIRECT.GET answers with the stored message itself, or a status-only message; a `batch` request with up to
    that many messages and an EOB status.

    Synchronous, from the raw subscription path: a read of committed data and queued replies, no task hop."""
    if not reply:
        return
    ctx.stats.total += 1
    try:
        if level_too_high(hdrs):
            raise _DirectError(412, "Required Api Level")
        req = _direct_request(subject_tail, data)
        if req.batch and not req.multi_last:  # any non-zero batch is a batch request (a negative one: only EOB)
            _direct_batch(ctx, name, reply, req)
            return
        if req.start_time:  # the first message stored at or after it
            with ctx.manager.store.read() as txn:
                req.seq = reads.first_seq_at_or_after(txn, ctx.manager.get(name), _time_ns(req.start_time))
        found = find_message(ctx, name, req)
        hdrs = None if req.no_hdr else _direct_headers(name, found)
        if len(hdrs or b"") + len(found.data) > max_reply(ctx):
            raise _DirectError(413, "Message Size Exceeds Max Payload")
    except Exception as exc:
        ctx.stats.errors += 1
        _direct_status(ctx, reply, _direct_refusal(name, exc))
        return
    ctx.conn.send_soon(reply, found.data, hdrs)


DEFAULT_BATCH_BYTES = 64 << 20  # a batch without max_bytes stops here, as the server stops at its max_pending
# A batch is read and framed on the event loop (~30 us a message): more than this many in one answer would hold
# every other client up (200,000 took 6.4 s). It ends early as max_bytes does: EOB's Nats-Num-Pending says the rest.
MAX_BATCH_MSGS = 2_000


def _direct_batch(ctx: Context, name: str, reply: bytes, req: MsgGetRequest) -> None:
    """`batch` messages from `seq` (or `start_time`), on `next_by_subj` if given, each with Nats-Num-Pending and
    Nats-Last-Sequence, then `204 EOB`; max_bytes stops it early (after the message that reaches it). Nothing
    found at all: 404, no EOB (nats-server's getDirectRequest)."""
    stream = ctx.manager.get(name)
    filter_subject = req.next_by_subj or ">"
    if req.next_by_subj and not subjects.is_valid_subject(req.next_by_subj):
        raise errors.NO_MESSAGE_FOUND()
    limit = req.max_bytes if req.max_bytes > 0 else DEFAULT_BATCH_BYTES
    out: list[tuple[bytes, bytes | None]] = []
    with ctx.manager.store.read() as txn:
        seq = req.seq
        if req.start_time:
            seq = reads.first_seq_at_or_after(txn, stream, _time_ns(req.start_time))
        pending = reads.count_after(txn, stream, [filter_subject], max(seq, 1) - 1)
        last, sent_bytes = 0, 0
        for _ in range(min(req.batch, MAX_BATCH_MSGS)):
            found = reads.next_by_subject(txn, stream, filter_subject, seq)
            if found is None:
                if not out:
                    raise errors.NO_MESSAGE_FOUND()
                break
            seq = found.seq + 1
            if not req.no_hdr:  # the server counts down only while it writes the header (so does its EOB)
                pending = max(pending - 1, 0)
            extra = [("Nats-Num-Pending", str(pending)), ("Nats-Last-Sequence", str(last))]
            hdrs = None if req.no_hdr else _direct_headers(name, found, extra)
            if len(hdrs or b"") + len(found.data) > max_reply(ctx):
                if not out:
                    raise _DirectError(413, "Message Size Exceeds Max Payload")
                break
            out.append((found.data, hdrs))
            last = found.seq
            sent_bytes += len(found.subject) + len(found.hdrs) + len(found.data)
            if sent_bytes >= limit:
                break
    for payload, hdrs in out:
        ctx.conn.send_soon(reply, payload, hdrs)
    eob = {"Nats-Num-Pending": str(pending), "Nats-Last-Sequence": str(last)}
    ctx.conn.send_soon(reply, b"", headers.status(204, "EOB", eob))


def _time_ns(text: str) -> int:
    try:
        return timefmt.parse(text)
    except ValueError:
        raise _DirectError(408, "Malformed Request") from None


def _direct_headers(name: str, found: reads.Found, batch: list[tuple[str, str]] | None = None) -> bytes:
    extra = [
        ("Nats-Stream", name),
        ("Nats-Subject", found.subject.decode(errors="replace")),
        ("Nats-Sequence", str(found.seq)),
        ("Nats-Time-Stamp", timefmt.format_ns(found.ts_ns)),
        *(batch or []),
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
    last, multi = bool(req.last_by_subj), bool(req.multi_last)
    if (
        (req.seq and (last or req.start_time))
        or (req.start_time and last)
        or (last and (req.next_by_subj or req.batch > 0 or multi))
        or (req.next_by_subj and multi)
        or (req.up_to_seq and req.up_to_time)
    ):
        raise _DirectError(408, "Bad Request")  # conflicting selectors, as the server lists them
    return req


def _direct_status(ctx: Context, reply: bytes, exc: _DirectError) -> None:
    ctx.conn.send_soon(reply, b"", headers.status(exc.code, exc.text))
