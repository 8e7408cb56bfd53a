"""A stream's subject transform (applied to each message's subject before it is stored) and republish (each stored
message sent on to a mapped subject once its commit succeeded), compiled once per config.

The write path keeps one per stream (`routing_of` in stream.py): None for a stream with neither, so such a stream pays
one identity check per message. The republished copy carries the original headers plus Nats-Stream, Nats-Subject,
Nats-Sequence, Nats-Time-Stamp and Nats-Last-Sequence (the previous sequence stored on the same subject, 0 for
none), and with headers_only no payload but Nats-Msg-Size, exactly as nats-server writes them.
"""

from __future__ import annotations

import lmdb

from streamd.store.layout import SEQ, StreamDbs
from streamd.wire import subjects, timefmt, transform
from streamd.wire.models import RePublish, StreamConfig, SubjectTransformConfig

Frame = tuple[bytes, bytes, bytes]  # (subject, header block, payload) to publish after the commit


class Routing:
    """The compiled subject_transform and republish of one stream config."""

    __slots__ = ("_ingest", "_republish", "_headers_only", "_stamp")

    def __init__(self, cfg: StreamConfig) -> None:
        st, rp = cfg.subject_transform, cfg.republish
        self._ingest = (
            transform.compile(st.src or "", st.dest or "") if isinstance(st, SubjectTransformConfig) else None
        )
        self._republish = transform.compile(rp.src or ">", rp.dest or "") if isinstance(rp, RePublish) else None
        self._headers_only = isinstance(rp, RePublish) and rp.headers_only is True
        self._stamp = (0, b"")  # (ns, Nats-Time-Stamp): a batch's messages share one time

    @property
    def active(self) -> bool:
        return self._ingest is not None or self._republish is not None

    def stored_subject(self, subject: bytes) -> bytes:
        """The subject to store: transformed when it matches the transform's source, else as published."""
        if self._ingest is None:
            return subject
        try:
            mapped = self._ingest.apply(subject.decode())
        except UnicodeDecodeError:
            return subject  # refused as not UTF-8 right after
        return subject if mapped is None else mapped.encode(errors="surrogateescape")

    def republish_to(self, subject: bytes) -> bytes | None:
        """Where a message stored on `subject` is republished; None for nowhere (no match, or a mapped subject one
        cannot publish to, which nats-server suppresses too)."""
        if self._republish is None:
            return None
        mapped = self._republish.apply(subject.decode(errors="surrogateescape"))
        if mapped is None or (not self._republish.plain and not subjects.is_valid_subject(mapped, wildcards=False)):
            return None
        return mapped.encode(errors="surrogateescape")

    def frame(
        self,
        txn: lmdb.Transaction,
        dbs: StreamDbs,
        name: bytes,
        now_ns: int,
        target: bytes,
        seq: int,
        subject: bytes,
        hdrs: bytes | None,
        data: bytes,
    ) -> Frame:
        """The republished message, built before `subject`'s new message is written so that Nats-Last-Sequence is
        the one stored before it: the original headers plus the Nats-* fields; headers_only sends no payload but
        its size in Nats-Msg-Size."""
        fields = b"Nats-Stream: %s\r\nNats-Subject: %s\r\nNats-Sequence: %d\r\nNats-Time-Stamp: %s\r\n" % (
            name,
            subject,
            seq,
            self._time_stamp(now_ns),
        )
        fields += b"Nats-Last-Sequence: %d\r\n" % _last_seq(txn, dbs, subject)
        if self._headers_only:
            fields += b"Nats-Msg-Size: %d\r\n" % len(data)
        base = hdrs[:-2] if hdrs else b"NATS/1.0\r\n"
        return target, base + fields + b"\r\n", b"" if self._headers_only else data

    def _time_stamp(self, now_ns: int) -> bytes:
        if self._stamp[0] != now_ns:
            self._stamp = (now_ns, timefmt.format_ns(now_ns).encode())
        return self._stamp[1]


def _last_seq(txn: lmdb.Transaction, dbs: StreamDbs, subject: bytes) -> int:
    cur = txn.cursor(db=dbs.subjects)
    if cur.set_key(dbs.skey(subject)) and cur.last_dup():
        return int(SEQ.unpack(cur.value())[0])
    return 0
