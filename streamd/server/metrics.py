"""Prometheus metrics: one CollectorRegistry per Service (several services in one process stay apart).

Stream, consumer and link state is read from the live objects when scraped, never updated per message, so a
stream or consumer that is removed is gone from the next scrape and the label sets are exactly the streams and
consumers that exist. The only per-event work is in the writer (one histogram observation per batch) and on
refusals (a dict increment). A stream's stored-messages counter is its last sequence: sequences are given one per
stored message and purges never lower it, so it counts every message ever stored (across restarts too) for free.

A scrape is split in two because formatting is slow in prometheus-client (measured ~1 s for 1,000 streams and
10,000 consumers, 2.8 MB): the live objects are read on the loop into plain tuples (``Snapshot``, ~20 ms in steps
of ~1 ms), and the families are built and formatted in a thread, so the loop keeps serving meanwhile (see
scripts/bench_metrics.py). Concurrent scrapes share one rendering, so a burst of them costs one.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from streamd.api.context import Context, Counters
from streamd.consumers import acks
from streamd.server.state import ServiceState
from streamd.store import stream as streams
from streamd.store.writer import Writer
from streamd.transport.connection import Connection
from streamd.transport.leaf import LeafConnection
from streamd.wire import errors
from streamd.wire.models import Health

INF = float("inf")
# writer batches: 1 item (an idle publisher) up to max-batch-msgs (10,000 by default)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, INF)
# commits: ~50 us without fsync, ~1-20 ms with one on an SSD, far more on a busy disk
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, INF)
YIELD_EVERY = 500  # rows read between two yields to the loop while taking a snapshot
QUEUE_FULL = "writer_queue_full"  # refused by ingest before storing: the writer's pending limits were reached

# err_code -> a readable reason label ("stream_store_failed"); bounded by the error table
_REASONS = {
    kind.err_code: name.lower() for name, kind in reversed(vars(errors).items()) if isinstance(kind, errors.ErrorKind)
}


class Observed(Protocol):
    """What the collector reads from the service (None until made)."""

    state: ServiceState
    registry: dict[str, streams.Stream]
    stats: Counters
    conn: Connection | None
    leaf: LeafConnection | None
    writer: Writer | None
    ctx: Context | None

    def health(self) -> Health: ...


def healthy(health: Health) -> bool:
    return health.connected and health.leaf_connected and health.store_writable


@dataclass
class Snapshot:
    """What a scrape reports, read on the loop; plain values, safe to format on another thread."""

    streams: list[tuple[str, int, int, int, int, int]] = field(default_factory=list)  # name, msgs, bytes, seqs..
    consumers: list[tuple[str, str, int, int, int, int]] = field(default_factory=list)  # stream, name, counts
    service: list[Metric] = field(default_factory=list)


class Metrics:
    """The service's registry: histograms fed by the writer, the rest read at scrape time (``render``)."""

    def __init__(self, service: Observed) -> None:
        self._service = service
        self.registry = CollectorRegistry(auto_describe=False)
        self.batch_items = Histogram(
            "streamd_writer_batch_items",
            "Writes (publishes and other changes) per write transaction.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "streamd_writer_commit_seconds",
            "Time to apply and commit one write transaction (fsync included under --sync always).",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self._state = _SnapshotCollector()
        self.registry.register(self._state)
        self._rendering: asyncio.Future[bytes] | None = None

    def on_batch(self, items: int, seconds: float) -> None:
        """The writer's hook, once per committed batch."""
        self.batch_items.observe(items)
        self.commit_seconds.observe(seconds)

    async def render(self) -> bytes:
        """The Prometheus text exposition: read on the loop, formatted on a thread; one rendering at a time."""
        if self._rendering is not None:
            return await asyncio.shield(self._rendering)
        done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._rendering = done
        try:
            snapshot = await take_snapshot(self._service)
            body = await asyncio.to_thread(self._format, snapshot)
        except BaseException as exc:
            done.set_exception(exc if isinstance(exc, Exception) else RuntimeError("scrape cancelled"))
            done.exception()  # retrieved: a scrape that nobody else waited for must not warn
            raise
        finally:
            self._rendering = None
        done.set_result(body)
        return body

    def _format(self, snapshot: Snapshot) -> bytes:
        self._state.snapshot = snapshot  # only one rendering at a time sets it
        # Formatting allocates ~10 objects per sample; with the collector on, that triggers full collections
        # whose pauses stop the loop too (API p99 ~200 ms during scrapes of 10,000 consumers, ~30 ms without).
        # Everything allocated here is freed by reference counting when the body is made; cycles wait ~0.5 s.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return generate_latest(self.registry)
        finally:
            if was_enabled:
                gc.enable()


class _SnapshotCollector(Collector):
    """The families of the latest snapshot (built here, on the formatting thread: that is the slow part)."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        yield from _stream_families(snap.streams)
        yield from _consumer_families(snap.consumers)
        yield from snap.service


async def take_snapshot(s: Observed) -> Snapshot:
    """Everything a scrape reports, from the live objects (on the loop, where they change), letting other work in
    every ``YIELD_EVERY`` rows (10,000 consumers take ~20 ms)."""
    snap = Snapshot()
    for i, (name, stream) in enumerate(list(s.registry.items())):
        c = stream.committed
        first = stream.config.first_seq if isinstance(stream.config.first_seq, int) else 1
        stored = max(0, c.last_seq - max(first, 1) + 1)
        snap.streams.append((name, c.messages, c.total_bytes, c.first_seq, c.last_seq, stored))
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
    ctx = s.ctx
    consumers = ctx.consumers if ctx is not None else None
    groups = [(n, list(g.items())) for n, g in consumers.by_stream.items()] if consumers is not None else []
    for stream_name, group in groups:
        for name, con in group:
            if not con.deleted:  # removed meanwhile: gone from this scrape as well
                st = con.state
                row = (con.num_pending, acks.num_ack_pending(st), acks.num_redelivered(st), len(con.waiting))
                snap.consumers.append((stream_name, name, *row))
                if len(snap.consumers) % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
    snap.service = list(_service_families(s, len(snap.consumers)))
    return snap


def _stream_families(rows: list[tuple[str, int, int, int, int, int]]) -> Iterator[Metric]:
    labels = ["stream"]
    families: list[Metric] = [
        GaugeMetricFamily("streamd_stream_messages", "Messages in the stream.", labels=labels),
        GaugeMetricFamily("streamd_stream_bytes", "Bytes stored by the stream.", labels=labels),
        GaugeMetricFamily("streamd_stream_first_seq", "First sequence in the stream.", labels=labels),
        GaugeMetricFamily("streamd_stream_last_seq", "Last sequence given out.", labels=labels),
        CounterMetricFamily(
            "streamd_stream_stored_messages",
            "Messages stored since the stream was created (rate() of this is the publish rate).",
            labels=labels,
        ),
    ]
    for name, *values in rows:
        for family, value in zip(families, values, strict=True):
            family.add_metric([name], value)  # type: ignore[attr-defined]
    return iter(families)


def _consumer_families(rows: list[tuple[str, str, int, int, int, int]]) -> Iterator[Metric]:
    labels = ["stream", "consumer"]
    families = [
        GaugeMetricFamily("streamd_consumer_num_pending", "Messages not yet delivered.", labels=labels),
        GaugeMetricFamily(
            "streamd_consumer_num_ack_pending", "Messages delivered and not yet acknowledged.", labels=labels
        ),
        GaugeMetricFamily(
            "streamd_consumer_num_redelivered", "Unacknowledged messages delivered more than once.", labels=labels
        ),
        GaugeMetricFamily("streamd_consumer_num_waiting", "Pull requests waiting.", labels=labels),
    ]
    for stream, name, *values in rows:
        key = [stream, name]
        for family, value in zip(families, values, strict=True):
            family.add_metric(key, value)
    return iter(families)


def _service_families(s: Observed, consumers: int) -> Iterator[Metric]:
    stats, conn, leaf, writer = s.stats, s.conn, s.leaf, s.writer
    health = s.health()
    up = healthy(health) and s.state == ServiceState.RUNNING
    yield _gauge("streamd_up", "1 while streamd serves (running, connected, leaf up, store writable).", up)
    yield _gauge("streamd_nats_connected", "1 while the client connection to NATS is up.", health.connected)
    yield _gauge("streamd_leaf_connected", "1 while the leafnode connection (deliveries) is up.", health.leaf_connected)
    yield _gauge("streamd_store_writable", "1 while the last LMDB commit succeeded.", health.store_writable)
    reconnects = int(conn.stats["reconnects"]) if conn is not None else 0
    yield _counter("streamd_nats_reconnects", "Reconnects of the client connection to NATS.", reconnects)
    leaf_reconnects = leaf.reconnects if leaf is not None else 0
    yield _counter("streamd_leaf_reconnects", "Reconnects of the leafnode connection.", leaf_reconnects)
    yield _counter("streamd_api_requests", "JetStream API requests answered.", stats.total)
    yield _counter("streamd_api_errors", "JetStream API requests answered with an error.", stats.errors)
    slow = stats.slow_consumer_events
    yield _counter("streamd_slow_consumer_events", "Messages the NATS client dropped (slow consumer).", slow)
    yield _gauge("streamd_streams", "Streams.", len(s.registry))
    yield _gauge("streamd_consumers", "Consumers.", consumers)
    yield _gauge("streamd_writer_pending_items", "Writes queued for the writer.", writer.pending if writer else 0)
    refused = CounterMetricFamily("streamd_ingest_refused", "Published messages refused, by reason.", labels=["reason"])
    refused.add_metric([QUEUE_FULL], stats.ingest_dropped)
    for code, count in sorted(dict(writer.refused if writer is not None else {}).items()):
        refused.add_metric([_REASONS.get(code, str(code))], count)
    yield refused


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=float(value))
