"""The ack protocol on the wire: ack payloads (`+ACK`, `-NAK`, `+WPI`, `+NXT`, `+TERM`) and ack reply subjects.

Pure and never raising on foreign input: any client on the server may publish to `$JS.ACK.>`.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from streamd.wire import durations

__all__ = [
    "Ack",
    "AckInfo",
    "AckKind",
    "ack_prefix",
    "ack_subject",
    "parse_ack",
    "parse_ack_subject",
    "parse_delivered_ack_subject",
]


# ---- ack payloads -----------------------------------------------------------------------------------------------


class AckKind(enum.StrEnum):
    ACK = "ack"
    NAK = "nak"
    PROGRESS = "progress"
    TERM = "term"
    NEXT = "next"  # ack, then treat the ack's reply subject as a pull request with `next_request` as its body
    UNKNOWN = "unknown"


class Ack(msgspec.Struct, frozen=True):
    """A parsed ack payload. `delay_ns` is set for `-NAK` with a valid delay (may be <= 0: redeliver now)."""

    kind: AckKind
    delay_ns: int | None = None
    reason: str = ""
    next_request: bytes = b""


class _NakOptions(msgspec.Struct):
    delay: int = 0


_NAK_OPTIONS: Final = msgspec.json.Decoder(_NakOptions)


def parse_ack(payload: bytes) -> Ack:
    """Classify an ack payload the way nats-server's `processAck` does; never raises on foreign input."""
    if payload in (b"", b"+ACK", b"+OK"):
        return Ack(AckKind.ACK)
    if payload.startswith(b"+NXT"):
        return Ack(AckKind.NEXT, next_request=payload[4:].strip())
    if payload.startswith(b"-NAK"):
        return Ack(AckKind.NAK, delay_ns=_nak_delay(payload[4:].strip()))
    if payload == b"+WPI":
        return Ack(AckKind.PROGRESS)
    if payload.startswith(b"+TERM"):
        return Ack(AckKind.TERM, reason=payload[5:].strip().decode(errors="replace"))
    return Ack(AckKind.UNKNOWN)


def _nak_delay(arg: bytes) -> int | None:
    """`{"delay": ns}` or a Go duration; None (a plain NAK) when absent or unparsable, as the server does."""
    if not arg:
        return None
    if arg.startswith(b"{"):
        try:
            return _NAK_OPTIONS.decode(arg).delay
        except msgspec.DecodeError:
            return None
    try:
        return durations.parse(arg.decode())
    except ValueError:  # UnicodeDecodeError included
        return None


# ---- ack subjects -----------------------------------------------------------------------------------------------


class AckInfo(msgspec.Struct, frozen=True):
    """The metadata in an ack reply subject; `domain`/`account_hash` only in the v2 form ("_" domain → "")."""

    stream: str
    consumer: str
    num_delivered: int
    stream_seq: int
    consumer_seq: int
    timestamp_ns: int
    num_pending: int
    domain: str = ""
    account_hash: str = ""


_MAX_UINT64: Final = 2**64 - 1


def ack_subject(stream: str, consumer: str, delivered: int, sseq: int, cseq: int, ts_ns: int, pending: int) -> str:
    """The v1 ack reply subject nats-server 2.15 sends (9 tokens; clients index tokens 5 and 6 directly)."""
    return f"{ack_prefix(stream, consumer)}{delivered}.{sseq}.{cseq}.{ts_ns}.{pending}"


def ack_prefix(stream: str, consumer: str) -> str:
    """The part of `ack_subject` that is the same for every delivery of a consumer (delivery builds it once)."""
    return f"$JS.ACK.{stream}.{consumer}."


def parse_ack_subject(subject: str) -> AckInfo | None:
    """Parse a v1 (9 tokens) or v2 (11+ tokens) ack subject, as nats-server's `ackReplyInfo`; None if it is not one."""
    tokens = subject.split(".")
    if len(tokens) < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        return None
    if len(tokens) == 9:
        names, numbers, domain, account_hash = tokens[2:4], tokens[4:9], "", ""
    elif len(tokens) >= 11:
        names, numbers, domain, account_hash = tokens[2:6], tokens[6:11], tokens[2], tokens[3]
    else:
        return None
    if not all(names):
        return None
    stream, consumer = names[-2:]
    values = [_uint(tok) for tok in numbers]
    if any(v is None for v in values):
        return None
    dc, sseq, cseq, ts, pending = (v for v in values if v is not None)
    domain = "" if domain == "_" else domain
    return AckInfo(stream, consumer, dc, sseq, cseq, ts, pending, domain=domain, account_hash=account_hash)


def _uint(token: str) -> int | None:
    """A decimal uint64 token: ASCII digits only (int() would also take "+1", "1_0", " 1" and other scripts)."""
    if not token or len(token) > 20 or not token.isascii() or not token.isdigit():
        return None
    value = int(token)
    return value if value <= _MAX_UINT64 else None


def parse_delivered_ack_subject(subject: bytes) -> AckInfo | None:
    """The v1 ack subject every delivery from streamd carries, parsed without the general path's checks; None when
    it is another form (then `parse_ack_subject` decides)."""
    p = subject.split(b".")
    if len(p) != 9 or p[1] != b"ACK" or not b"".join(p[4:9]).isdigit() or not p[2] or not p[3]:
        return None
    return AckInfo(p[2].decode(), p[3].decode(), int(p[4]), int(p[5]), int(p[6]), int(p[7]), int(p[8]))
