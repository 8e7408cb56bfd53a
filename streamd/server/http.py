"""The metrics and health listener: a minimal HTTP/1.1 server on the event loop (no threads, no framework).

It is unauthenticated, so it binds loopback unless told otherwise, and it must never hurt streamd: the request
head is bounded in size (``MAX_HEAD``) and in time (``HEAD_TIMEOUT``, a whole-head deadline, so a slowloris
client is cut off however slowly it trickles), connections are bounded (``MAX_CONNECTIONS``; more are closed at
once), every answer is written with a deadline, and one connection carries one request (``Connection: close``).
Each connection is a task of the service's TaskGroup and can never fail it: whatever goes wrong is logged and the
connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streamd.server.metrics import Metrics, Observed, healthy
from streamd.server.settings import parse_listen
from streamd.server.state import ServiceState, StartupError

logger = logging.getLogger(__name__)

MAX_HEAD = 8192  # bytes of request line and headers
HEAD_TIMEOUT = 5.0  # seconds for the whole request head
WRITE_TIMEOUT = 10.0  # seconds for the whole answer
MAX_CONNECTIONS = 32
SLOW_SCRAPE = 2.0  # seconds: a scrape taking longer is logged

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_JSON = msgspec.json.Encoder()


class Answer(msgspec.Struct):
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    extra: str = ""  # more header lines, each ending in CRLF


async def serve_metrics(
    service: Observed, listen: str, tg: asyncio.TaskGroup, stack: contextlib.AsyncExitStack
) -> MetricsServer | None:
    """The listener for `metrics-listen` (None when that is empty), bound now and stopped by `stack`."""
    if not listen:
        return None
    host, port = parse_listen(listen)
    server = MetricsServer(host, port, service, Metrics(service))
    await server.start(tg)
    stack.push_async_callback(server.stop)
    return server


class MetricsServer:
    """`/metrics` and `/healthz` on one address; started and stopped by the service."""

    def __init__(self, host: str, port: int, service: Observed, metrics: Metrics) -> None:
        self._host, self._port = host, port
        self._service = service
        self.metrics = metrics
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address = ""  # host:port actually bound (port 0 picks a free one)

    async def start(self, tg: asyncio.TaskGroup) -> None:
        """Bind now, so a port in use fails the start with a clear error instead of a silent missing endpoint."""

        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if len(self._tasks) >= MAX_CONNECTIONS:
                writer.close()
                return
            try:
                task = tg.create_task(self._serve(reader, writer), name="streamd-http")
            except RuntimeError:  # the service is stopping
                writer.close()
                return
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        try:
            self._server = await asyncio.start_server(accept, self._host, self._port, limit=MAX_HEAD)
        except OSError as exc:
            raise StartupError(f"metrics-listen {self._host}:{self._port}: {exc.strerror or exc}") from None
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        logger.info("metrics on http://%s/metrics, health on http://%s/healthz", self.address, self.address)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                answer, head_only = await self._answer(reader)
            except ConnectionError:
                return
            except Exception:
                logger.exception("metrics/health request failed")
                answer, head_only = _text(500, "internal error (logged by streamd)\n"), False
            if answer is not None:
                await asyncio.wait_for(_write(writer, answer, head_only), WRITE_TIMEOUT)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[Answer | None, bool]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.IncompleteReadError:
            return None, False  # the client left before finishing its request
        except asyncio.LimitOverrunError:
            return _text(431, f"request head over {MAX_HEAD} bytes\n"), False
        except TimeoutError:
            return _text(408, f"request head not complete within {HEAD_TIMEOUT:g}s\n"), False
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _text(400, "expected an HTTP/1.x request line\n"), False
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        route = self._routes().get(target)
        if route is None:
            return _text(404, "not found: try /metrics or /healthz\n"), False
        if method not in (b"GET", b"HEAD"):
            return Answer(405, b"only GET and HEAD\n", extra="Allow: GET, HEAD\r\n"), False
        return await route(), method == b"HEAD"

    def _routes(self) -> dict[bytes, Callable[[], Awaitable[Answer]]]:
        return {b"/metrics": self._scrape, b"/healthz": self._health}

    async def _scrape(self) -> Answer:
        started = time.perf_counter()
        body = await self.metrics.render()
        took = time.perf_counter() - started
        if took > SLOW_SCRAPE:
            logger.warning("a /metrics scrape took %.0f ms (%d bytes)", took * 1000, len(body))
        return Answer(200, body, CONTENT_TYPE_LATEST)

    async def _health(self) -> Answer:
        """200 when connected, leaf up and store writable (and running); 503 with the same body otherwise."""
        service = self._service
        health = service.health()
        ok = healthy(health) and service.state == ServiceState.RUNNING
        report = {"status": "ok" if ok else "unavailable", "state": service.state.value}
        report.update(msgspec.structs.asdict(health))
        return Answer(200 if ok else 503, _JSON.encode(report) + b"\n", "application/json")


def _text(status: int, message: str) -> Answer:
    return Answer(status, message.encode())


async def _write(writer: asyncio.StreamWriter, answer: Answer, head_only: bool) -> None:
    head = (
        f"HTTP/1.1 {answer.status} {_REASONS[answer.status]}\r\n"
        f"Content-Type: {answer.content_type}\r\n"
        f"Content-Length: {len(answer.body)}\r\n"
        f"Cache-Control: no-store\r\n{answer.extra}"
        "Connection: close\r\n\r\n"
    ).encode()
    writer.write(head if head_only else head + answer.body)
    await writer.drain()
