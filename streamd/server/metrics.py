"""Prometheus metrics: one CollectorRegistry per Service (several services in one process stay apart).

Stream, consumer and link state is read from the live objects when scraped (``_StateCollector``), never updated
per message, so a stream or consumer that is removed is gone from the next scrape and the label sets are exactly
the streams and consumers that exist. The only per-event work is in the writer (one histogram observation per
batch) and on refusals (a dict increment). A stream's stored-messages counter is its last sequence: sequences
are given one per stored message and purges never lower it, so it counts every message ever stored (across
restarts too) at no cost.
"""

from __future__ import annotations

from collections.abc import Iterator
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

# writer batches: 1 item (an idle publisher) up to max-batch-msgs (10,000 by default)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, float("inf"))
# commits: ~50 us without fsync, ~1-20 ms with one on an SSD, far more on a busy disk
COMMIT_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    float("inf"),
)
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


class Metrics:
    """The service's registry: histograms fed by the writer, everything else collected at scrape time."""

    def __init__(self, service: Observed) -> None:
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
        self.registry.register(_StateCollector(service))

    def on_batch(self, items: int, seconds: float) -> None:
        """The writer's hook, once per committed batch."""
        self.batch_items.observe(items)
        self.commit_seconds.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of everything (on the loop: the collector reads live objects)."""
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, service: Observed) -> None:
        self._s = service

    def collect(self) -> Iterator[Metric]:
        yield from self._streams()
        yield from self._consumers()
        yield from self._service()

    def _streams(self) -> Iterator[Metric]:
        labels = ["stream"]
        messages = GaugeMetricFamily("streamd_stream_messages", "Messages in the stream.", labels=labels)
        size = GaugeMetricFamily("streamd_stream_bytes", "Bytes stored by the stream.", labels=labels)
        first = GaugeMetricFamily("streamd_stream_first_seq", "First sequence in the stream.", labels=labels)
        last = GaugeMetricFamily("streamd_stream_last_seq", "Last sequence given out.", labels=labels)
        stored = CounterMetricFamily(
            "streamd_stream_stored_messages",
            "Messages stored since the stream was created (rate() of this is the publish rate).",
            labels=labels,
        )
        for name, stream in list(self._s.registry.items()):
            c = stream.committed
            start = stream.config.first_seq if isinstance(stream.config.first_seq, int) else 1
            messages.add_metric([name], c.messages)
            size.add_metric([name], c.total_bytes)
            first.add_metric([name], c.first_seq)
            last.add_metric([name], c.last_seq)
            stored.add_metric([name], max(0, c.last_seq - max(start, 1) + 1))
        yield from (messages, size, first, last, stored)

    def _consumers(self) -> Iterator[Metric]:
        labels = ["stream", "consumer"]
        pending = GaugeMetricFamily("streamd_consumer_num_pending", "Messages not yet delivered.", labels=labels)
        ack_pending = GaugeMetricFamily(
            "streamd_consumer_num_ack_pending", "Messages delivered and not yet acknowledged.", labels=labels
        )
        redelivered = GaugeMetricFamily(
            "streamd_consumer_num_redelivered", "Unacknowledged messages delivered more than once.", labels=labels
        )
        waiting = GaugeMetricFamily("streamd_consumer_num_waiting", "Pull requests waiting.", labels=labels)
        ctx = self._s.ctx
        groups = list(ctx.consumers.by_stream.items()) if ctx is not None and ctx.consumers is not None else []
        for stream, group in groups:
            for name, c in list(group.items()):
                if c.deleted:
                    continue
                key = [stream, name]
                pending.add_metric(key, c.num_pending)
                ack_pending.add_metric(key, acks.num_ack_pending(c.state))
                redelivered.add_metric(key, acks.num_redelivered(c.state))
                waiting.add_metric(key, len(c.waiting))
        yield from (pending, ack_pending, redelivered, waiting)

    def _service(self) -> Iterator[Metric]:
        s = self._s
        stats, conn, leaf, writer = s.stats, s.conn, s.leaf, s.writer
        health = s.health()
        yield _gauge(
            "streamd_up",
            "1 while streamd serves (running, connected, leaf up, store writable).",
            healthy(health) and s.state == ServiceState.RUNNING,
        )
        yield _gauge("streamd_nats_connected", "1 while the client connection to NATS is up.", health.connected)
        yield _gauge(
            "streamd_leaf_connected", "1 while the leafnode connection (deliveries) is up.", health.leaf_connected
        )
        yield _gauge("streamd_store_writable", "1 while the last LMDB commit succeeded.", health.store_writable)
        yield _counter(
            "streamd_nats_reconnects",
            "Reconnects of the client connection to NATS.",
            int(conn.stats["reconnects"]) if conn is not None else 0,
        )
        yield _counter(
            "streamd_leaf_reconnects",
            "Reconnects of the leafnode connection.",
            leaf.reconnects if leaf is not None else 0,
        )
        yield _counter("streamd_api_requests", "JetStream API requests answered.", stats.total)
        yield _counter("streamd_api_errors", "JetStream API requests answered with an error.", stats.errors)
        yield _counter(
            "streamd_slow_consumer_events",
            "Messages the NATS client dropped (slow consumer).",
            stats.slow_consumer_events,
        )
        yield _gauge("streamd_streams", "Streams.", len(s.registry))
        ctx = s.ctx
        yield _gauge(
            "streamd_consumers",
            "Consumers.",
            ctx.consumers.count() if ctx is not None and ctx.consumers is not None else 0,
        )
        yield _gauge(
            "streamd_writer_pending_items", "Writes queued for the writer.", writer.pending if writer is not None else 0
        )
        refused = CounterMetricFamily(
            "streamd_ingest_refused", "Published messages refused, by reason.", labels=["reason"]
        )
        refused.add_metric([QUEUE_FULL], stats.ingest_dropped)
        for code, count in sorted(dict(writer.refused if writer is not None else {}).items()):
            refused.add_metric([_REASONS.get(code, str(code))], count)
        yield refused


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=float(value))
