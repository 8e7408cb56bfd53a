"""The write path of copied messages: a mirror stores each at the origin's sequence and time; a source appends
through the ordinary publish path (headers already carry `Nats-Stream-Source`) and records how far it got.

Runs on the writer thread inside a batch (``Writer.call``), like stream.py; kept apart from the publish hot path.
Each source's progress is a meta record written in the same transaction as the messages it covers, so after a
crash the resume point is exactly what was committed: no gap, no duplicate.
"""

from __future__ import annotations

import lmdb
import msgspec

from streamd.store import stream as streams
from streamd.store.layout import SEQ, pack_message, seek_last, stored_size, unpack_message
from streamd.wire import errors
from streamd.wire.models import Discard


class Copied(msgspec.Struct, gc=False, array_like=True):
    """One message as delivered by the origin's consumer."""

    origin_seq: int
    ts_ns: int
    subject: bytes
    hdrs: bytes | None
    data: bytes


def _source_key(stream_id: int, iname: str) -> bytes:
    return b"srcstate:%d:" % stream_id + iname.encode()


def store_mirrored(b: streams.Batch, stream: streams.Stream, msgs: list[Copied]) -> int:
    """Append origin messages at their own sequences (a jump leaves the gap as deleted sequences, as the origin
    has it); messages at or below the last stored sequence are already here and skipped. -> messages stored."""
    if stream.deleted:
        raise errors.STREAM_NOT_FOUND()
    c, dbs, cfg = stream.counters, stream.dbs, stream.config
    stored = 0
    for m in msgs:
        if m.origin_seq <= c.last_seq or m.origin_seq > streams.MAX_SEQ:
            continue
        size = stored_size(len(m.subject), len(m.hdrs or b""), len(m.data))
        if cfg.discard == Discard.NEW and (
            (cfg.max_msgs > 0 and c.messages + 1 > cfg.max_msgs)
            or (cfg.max_bytes > 0 and c.total_bytes + size > cfg.max_bytes)
        ):
            raise errors.STORE_FAILED(err="maximum messages exceeded")
        b.touch(stream)
        b.txn.put(dbs.mkey(m.origin_seq), pack_message(m.subject, m.hdrs, m.data, m.ts_ns), db=dbs.msgs)
        b.txn.put(dbs.skey(m.subject), SEQ.pack(m.origin_seq), db=dbs.subjects, dupdata=True)
        b.stored.append((stream, m.origin_seq, m.subject))
        if c.messages == 0:
            c.first_seq, c.first_ns = m.origin_seq, m.ts_ns
        c.messages += 1
        c.total_bytes += size
        c.last_seq, c.last_ns = m.origin_seq, m.ts_ns
        cur = b.txn.cursor(db=dbs.subjects)
        if cur.set_key(dbs.skey(m.subject)) and cur.count() == 1:
            c.num_subjects += 1
        if cfg.max_msgs_per_subject > 0:
            streams.trim_subject(b, stream, m.subject, cfg.max_msgs_per_subject)
        if cfg.discard != Discard.NEW:
            streams.trim_front(b, stream)
        stored += 1
    return stored


def store_sourced(
    b: streams.Batch, stream: streams.Stream, iname: str, msgs: list[Copied], ident: str = ""
) -> errors.ApiError | None:
    """Append sourced messages (headers built by streams.copying.sourced_headers) and record the last origin
    sequence stored, with the origin's identity (`ident`, "" when it sends none), in this transaction. A message
    this stream refuses (limits with discard new, a sealed stream) stops the batch there, as nats-server retries
    from it rather than skipping it: -> that refusal, and the copier recreates its consumer from the recorded
    sequence."""
    last, refusal = 0, None
    for m in msgs:
        try:
            # A duplicate Nats-Msg-Id counts as stored; schedule headers were checked by the origin.
            streams.store_message(b, stream, m.subject, m.hdrs, m.data, sourced=True)
        except errors.StoreFull:
            raise
        except errors.ApiError as exc:
            refusal = exc
            break
        last = m.origin_seq
    if last:
        b.txn.put(_source_key(stream.id, iname), SEQ.pack(last) + ident.encode(), db=b.store.meta)
    return refusal


def source_progress(txn: lmdb.Transaction, store_meta: lmdb._Database, stream_id: int, iname: str) -> tuple[int, str]:
    """The last origin sequence a source recorded and the origin's identity then ((0, ""): none recorded)."""
    raw = txn.get(_source_key(stream_id, iname), db=store_meta)
    if raw is None:
        return 0, ""
    raw = bytes(raw)
    return int(SEQ.unpack(raw[: SEQ.size])[0]), raw[SEQ.size :].decode(errors="replace")


def scan_source_headers(
    txn: lmdb.Transaction, stream: streams.Stream, wanted: set[str], limit: int = 100_000
) -> dict[str, tuple[int, str]]:
    """The newest origin sequence and identity per source index name found in `Nats-Stream-Source` headers
    (`<stream> <seq> <filter> <dest> <subject> [<identity>]`), walking the stream backwards over at most `limit`
    messages: the resume point of sources whose progress record is missing (a stream restored from a backup)."""
    found: dict[str, tuple[int, str]] = {}
    cur = txn.cursor(db=stream.dbs.msgs)
    if not seek_last(cur, stream.dbs.prefix):
        return found
    for _ in range(limit):
        if not bytes(cur.key()).startswith(stream.dbs.prefix):
            break
        _subject, hdrs, _data, _ts = unpack_message(cur.value())
        for line in bytes(hdrs).split(b"\r\n") if hdrs else ():
            if line.lower().startswith(b"nats-stream-source:"):
                fields = line.split(b":", 1)[1].decode(errors="replace").strip(" ").split(" ")  # not \f: see index_name
                if len(fields) >= 4 and fields[1].isdigit():
                    iname = f"{fields[0]} {fields[2]} {fields[3]}"
                    if iname in wanted and iname not in found:
                        found[iname] = int(fields[1]), fields[5] if len(fields) > 5 else ""
        if len(found) == len(wanted) or not cur.prev():
            break
    return found


__all__ = ["Copied", "scan_source_headers", "source_progress", "store_mirrored", "store_sourced"]
