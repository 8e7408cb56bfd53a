"""`$JS.API.INFO`: the account's usage and API counters, plus streamd's own block (drops, queue, health)."""

from __future__ import annotations

import msgspec

from streamd.api.context import API_LEVEL, Context
from streamd.wire.models import AccountInfoResponse, ApiStats, StreamdStats


async def account_info(ctx: Context, _names: list[str], _data: bytes) -> AccountInfoResponse:
    storage = sum(s.committed.total_bytes for s in ctx.manager.streams.values())
    return AccountInfoResponse(
        storage=storage,
        streams=len(ctx.manager.streams),
        consumers=ctx.consumers.count() if ctx.consumers is not None else 0,
        domain=ctx.domain or msgspec.UNSET,
        api=ApiStats(level=API_LEVEL, total=ctx.stats.total, errors=ctx.stats.errors),
        streamd=StreamdStats(
            ingest_dropped=ctx.stats.ingest_dropped,
            slow_consumer_events=ctx.stats.slow_consumer_events,
            pending_writes=ctx.manager.writer.pending,
            health=ctx.health() if ctx.health is not None else msgspec.UNSET,
        ),
    )
