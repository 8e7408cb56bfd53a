"""Verbs a single nats-server answers that streamd does not serve: answered with the error the real server gives
in the same situation (or, past its own checks, the error it gives when it cannot do the work), never left to
time out. Cluster-only verbs (stepdown, peer remove/evacuate, cancel move) get 503/10010 as on a non-clustered
server; RESET is refused with the server's invalid-reset error (400/10204).
"""

from __future__ import annotations

import json
from typing import NoReturn

from streamd.api.context import Context, decode_request
from streamd.wire import errors
from streamd.wire.models import ResetRequest


async def cluster_only(_ctx: Context, _names: list[str], _data: bytes) -> NoReturn:
    """The server checks for clustering before anything else (even the required API level)."""
    raise errors.CLUSTER_REQUIRED()


def is_empty_request(data: bytes) -> bool:
    """nats-server's isEmptyRequest: nothing, `{}`, or any JSON object without members."""
    if not data or data == b"{}":
        return True
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and not value


async def consumer_reset(ctx: Context, names: list[str], data: bytes) -> NoReturn:
    """The real server's consumer answers RESET itself, so for a missing one it stays silent; streamd answers
    not found instead of leaving the client to time out."""
    _find_consumer(ctx, names)
    if data.strip():
        decode_request(data, ResetRequest, "JSApiConsumerResetRequest")
    raise errors.INVALID_RESET(err="streamd does not support consumer reset")


def _find_consumer(ctx: Context, names: list[str]) -> None:
    ctx.manager.get(names[0])
    if ctx.consumers is None or names[1] not in ctx.consumers.by_stream.get(names[0], {}):
        raise errors.CONSUMER_NOT_FOUND()
