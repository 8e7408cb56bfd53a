"""Reading the few JetStream headers streamd acts on straight from a raw NATS header block.

Headers are stored verbatim, so they are never re-encoded; this only looks values up. Keys are matched exactly,
as nats-server does.
"""

from __future__ import annotations

HDR_LINE = b"NATS/1.0"
NO_RESPONDERS = b"NATS/1.0 503\r\n\r\n"  # the status a request gets when nothing serves its subject
MSG_ID = b"Nats-Msg-Id"
EXPECTED_STREAM = b"Nats-Expected-Stream"
EXPECTED_LAST_SEQ = b"Nats-Expected-Last-Sequence"
EXPECTED_LAST_SUBJ_SEQ = b"Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJ_SEQ_SUBJ = b"Nats-Expected-Last-Subject-Sequence-Subject"
EXPECTED_LAST_MSG_ID = b"Nats-Expected-Last-Msg-Id"
ROLLUP = b"Nats-Rollup"
TTL = b"Nats-TTL"
INCR = b"Nats-Incr"
STREAM_SOURCE = b"Nats-Stream-Source"
REQUIRED_API_LEVEL = b"Nats-Required-Api-Level"
SCHEDULE = b"Nats-Schedule"  # the pattern; the message carrying it is a schedule (see wire/schedule.py)
SCHEDULE_TZ = b"Nats-Schedule-Time-Zone"
SCHEDULE_TTL = b"Nats-Schedule-TTL"
SCHEDULE_ROLLUP = b"Nats-Schedule-Rollup"
SCHEDULE_TARGET = b"Nats-Schedule-Target"
SCHEDULE_SOURCE = b"Nats-Schedule-Source"
SCHEDULER = b"Nats-Scheduler"  # on a produced message: the schedule's subject
SCHEDULE_NEXT = b"Nats-Schedule-Next"  # on a produced message: `purge` (one-shot) or the next fire time


def parse(block: bytes | None) -> dict[bytes, bytes]:
    """Return the `Nats-*` headers of a header block (first value wins); other keys are skipped cheaply."""
    if not block or b"Nats-" not in block:
        return {}
    out: dict[bytes, bytes] = {}
    for line in block.split(b"\r\n")[1:]:
        if not line.startswith(b"Nats-"):
            continue
        key, sep, value = line.partition(b":")
        if sep and key not in out:
            out[key.strip()] = value.strip()
    return out


def status(code: int, description: str, extra: dict[str, str] | None = None) -> bytes:
    """A header-only status block such as `NATS/1.0 404 Message Not Found`."""
    parts = [f"NATS/1.0 {code} {description}\r\n"]
    if extra:
        parts.extend(f"{k}: {v}\r\n" for k, v in extra.items())
    parts.append("\r\n")
    return "".join(parts).encode()


def build(pairs: list[tuple[str, str]], base: bytes | None = None) -> bytes:
    """Append `pairs` to a stored header block (or start one), keeping what was there byte for byte."""
    head = base[:-2] if base and base.endswith(b"\r\n\r\n") else HDR_LINE + b"\r\n"
    tail = "".join(f"{k}: {v}\r\n" for k, v in pairs).encode()
    return head + tail + b"\r\n"
