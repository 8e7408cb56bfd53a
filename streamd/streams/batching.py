"""Staging of atomic batch publishes (nats-server's `Nats-Batch-*` headers), before their one commit.

A pure state machine run on the event loop: messages 1..n-1 of a batch are held in memory here, bounded by the
limits below (as nats-server's JetStream limits: inflight batches per stream and in total, messages per batch, plus
staged bytes in total, which nats-server bounds on disk instead); the commit message hands the whole batch to the
writer. Time is passed in, so abandoned batches expire without timers: on their next message, or when a new batch
needs their slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamd.wire import errors, headers

BATCH_ID = b"Nats-Batch-Id"
BATCH_SEQ = b"Nats-Batch-Sequence"
BATCH_COMMIT = b"Nats-Batch-Commit"
MAX_ID = 64
Staged = tuple[bytes, bytes | None, bytes]  # (subject, headers, data)


@dataclass(frozen=True, slots=True)
class Limits:
    inflight_per_stream: int = 50
    inflight_total: int = 1000
    max_msgs: int = 1000
    max_bytes: int = 64 << 20  # staged headers and payloads of all open batches
    timeout_ns: int = 10_000_000_000


@dataclass(slots=True)
class _Open:
    stream: str
    deadline: int
    msgs: list[Staged] = field(default_factory=list)
    size: int = 0


@dataclass(frozen=True, slots=True)
class Commit:
    """A complete batch for the writer: its messages in order; `count` goes into the PubAck."""

    batch_id: str
    msgs: list[Staged]


STAGED = None  # offer's answer for a message held for a later commit (its reply is an empty message)


def batch_id(hdrs: bytes | None) -> bytes:
    """The Nats-Batch-Id of a header block, b"" when there is none: the only per-message cost on the publish path
    is a substring test on messages that carry headers."""
    if not hdrs or BATCH_ID not in hdrs:
        return b""
    return headers.parse(hdrs).get(BATCH_ID, b"")


class Stager:
    def __init__(self, api_level: int, limits: Limits | None = None) -> None:
        self.api_level = api_level  # a batch message asking for more is refused, and its batch abandoned
        self.limits = limits or Limits()
        self._open: dict[tuple[str, bytes], _Open] = {}
        self._per_stream: dict[str, int] = {}
        self.bytes = 0
        # (stream, batch id, reason) of batches abandoned since the caller last took them: for the
        # BATCH_ABANDONED advisory, with nats-server's reasons (timeout, large, incomplete, unsupported).
        self.abandoned: list[tuple[str, str, str]] = []

    def __len__(self) -> int:
        return len(self._open)

    def offer(self, stream: str, bid: bytes, subject: bytes, hdrs: bytes, data: bytes, now: int) -> Commit | None:
        """Stage one message of batch `bid` (the stream allows atomic publish). -> STAGED, or the Commit;
        raises the ApiError to answer (a batch refused part-way is abandoned whole)."""
        h = headers.parse(hdrs)
        if len(bid) > MAX_ID:
            raise errors.ATOMIC_INVALID_ID()
        seq = _seq(h.get(BATCH_SEQ))
        commit = h.get(BATCH_COMMIT)
        eob = commit == b"eob"
        key = (stream, bid)
        b = self._open.get(key)
        if b is not None and b.deadline <= now:
            self._drop(key, "timeout")  # what comes next finds no batch
            b = None
        if b is None:
            b = self._begin(key, seq, eob, now)
        if commit is not None and not eob and commit != b"1":
            self._drop(key)
            raise errors.ATOMIC_INVALID_COMMIT()
        level = h.get(headers.REQUIRED_API_LEVEL)
        if level is not None and (not level.strip().isdigit() or int(level) > self.api_level):
            self._drop(key, "unsupported")
            raise errors.REQUIRED_API_LEVEL()
        if level is not None:
            hdrs = _without(hdrs, headers.REQUIRED_API_LEVEL)  # met: the header is not stored, as in nats-server
        if seq != len(b.msgs) + 1 or (seq == 1 and eob):
            self._drop(key, "incomplete")
            raise errors.ATOMIC_INCOMPLETE()
        if seq - eob > self.limits.max_msgs:
            self._drop(key, "large")
            raise errors.ATOMIC_TOO_LARGE(size=self.limits.max_msgs)
        b.deadline = now + self.limits.timeout_ns
        if eob:
            return self._finish(key, bid, eob)
        size = len(subject) + len(hdrs) + len(data)
        if self.bytes + size > self.limits.max_bytes:
            self._drop(key)
            raise errors.ATOMIC_TOO_MANY_INFLIGHT()
        b.msgs.append((subject, hdrs, data))
        b.size += size
        self.bytes += size
        return self._finish(key, bid, False) if commit is not None else STAGED

    def _begin(self, key: tuple[str, bytes], seq: int, eob: bool, now: int) -> _Open:
        if seq != 1:
            if seq - eob > self.limits.max_msgs:
                raise errors.ATOMIC_TOO_LARGE(size=self.limits.max_msgs)
            raise errors.ATOMIC_INCOMPLETE()
        stream = key[0]
        if self._per_stream.get(stream, 0) >= self.limits.inflight_per_stream or len(self._open) >= (
            self.limits.inflight_total
        ):
            self.expire(now)
        if self._per_stream.get(stream, 0) >= self.limits.inflight_per_stream:
            raise errors.ATOMIC_TOO_MANY_INFLIGHT()
        if len(self._open) >= self.limits.inflight_total:
            raise errors.ATOMIC_TOO_MANY_INFLIGHT()
        b = self._open[key] = _Open(stream, now + self.limits.timeout_ns)
        self._per_stream[stream] = self._per_stream.get(stream, 0) + 1
        return b

    def _finish(self, key: tuple[str, bytes], bid: bytes, eob: bool) -> Commit:
        b = self._open[key]
        self._drop(key)
        if eob:  # the end-of-batch marker is not stored: the last message carries the commit, as nats-server's
            subject, hdrs, data = b.msgs[-1]
            b.msgs[-1] = (subject, headers.build([(BATCH_COMMIT.decode(), "1")], hdrs), data)
        return Commit(bid.decode(errors="replace"), b.msgs)

    def _drop(self, key: tuple[str, bytes], reason: str = "") -> None:
        b = self._open.pop(key, None)
        if b is None:
            return
        if reason:
            self.abandoned.append((b.stream, key[1].decode(errors="replace"), reason))
        self.bytes -= b.size
        left = self._per_stream[b.stream] - 1
        if left:
            self._per_stream[b.stream] = left
        else:
            del self._per_stream[b.stream]

    def expire(self, now: int) -> int:
        """Drop the batches whose timeout passed; -> how many."""
        gone = [k for k, b in self._open.items() if b.deadline <= now]
        for k in gone:
            self._drop(k, "timeout")
        return len(gone)

    def forget_stream(self, stream: str) -> None:
        """A deleted stream's open batches go with it."""
        for k in [k for k in self._open if k[0] == stream]:
            self._drop(k)


def _seq(raw: bytes | None) -> int:
    if raw is None or not raw.strip().isdigit():
        raise errors.ATOMIC_MISSING_SEQ()
    return int(raw)


def _without(block: bytes, name: bytes) -> bytes:
    """The header block minus the lines of header `name`."""
    lines = block.split(b"\r\n")
    return b"\r\n".join(line for line in lines if line.partition(b":")[0].strip() != name)
