"""streamd's NATS client connection: nats-py, plus a raw path for the hot subscriptions and bulk replies.

nats-py turns every message into a ``Msg`` and parses its headers into a dict, which costs time and loses the
header block's exact bytes. Stream ingest needs neither, so subscriptions registered with ``subscribe_raw`` are
handed the subject, reply, header block and payload exactly as the parser read them. Replies go out through
``publish_many``: one buffer append for a whole commit's worth of PubAcks.

Reconnecting: nats-py reconnects after a read error or EOF, but on any server ``-ERR`` other than a stale connection
(max payload or protocol violations, slow consumer, authorization after a config reload...) it closes the client for
good, and a failure inside its parser ends the read loop without reconnecting. The server closes the connection
after every such error, so streamd treats them all as a lost connection and reconnects (``_process_err``), and
``check_reader`` restarts a reader that stopped by itself.

Closing is for good: nats-py's reconnect loop can miss the cancellation ``close`` sends it (Python 3.11's
``wait_for`` drops a cancel that lands as a connect attempt fails) and would then go on reconnecting every second
after the service stopped; ``close`` first leaves it no server to try, so it ends at its next turn, and then
cancels it until it has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.protocol.parser import PERMISSIONS_ERR

from streamd.transport.parser import BulkParser, RawHandler
from streamd.wire.headers import NO_RESPONDERS

logger = logging.getLogger(__name__)
_PROTOCOL_BREAKERS = (" ", "\t", "\r", "\n")
RECONNECT_END_TIMEOUT = 2.0  # close() waits this long for the reconnect loop to end, cancelling it again and again


class Connection(Client):
    def __init__(self) -> None:
        super().__init__()
        self._ps = BulkParser(self)
        self._raw_handlers: dict[int, RawHandler] = {}
        self._retired: set[int] = set()
        self.raw_handler_errors = 0
        self.last_server_error = ""

    async def _process_err(self, err_msg: str) -> None:
        """A server -ERR: reconnect instead of closing for good (see the module docstring). A permissions
        violation keeps the connection (nats-py passes it to error_cb) and so does an error while connecting
        (the connect loop handles it, e.g. refused credentials)."""
        if PERMISSIONS_ERR in err_msg or not self.is_connected:
            await super()._process_err(err_msg)
            return
        self.last_server_error = err_msg.strip("'")
        err = nats.errors.Error(f"server error '{self.last_server_error}', reconnecting")
        await self._error_cb(err)
        await self._process_op_err(err)

    def give_up_reconnecting(self) -> None:
        """No more connection attempts: the (re)connect loops find no server and give up at their next turn, even
        one that missed a cancellation."""
        self.options["allow_reconnect"] = False
        self.options["max_reconnect_attempts"] = 0  # (-1 makes the first connect retry an empty pool forever)
        self._server_pool.clear()

    def stop_reconnecting(self) -> None:
        """`give_up_reconnecting`, and cancel a reconnect under way."""
        self.give_up_reconnecting()
        task = self._reconnection_task
        if task is not None and not task.done():
            task.cancel()

    async def close(self) -> None:
        """Close for good, and return only once nats-py's reconnect task has ended (or RECONNECT_END_TIMEOUT has
        passed, which is logged: it would be a task that survives the connection)."""
        if asyncio.current_task() is self._reconnection_task:  # that loop itself, giving up: no server left
            await super().close()
            return
        self.stop_reconnecting()
        await super().close()
        task = self._reconnection_task
        deadline = time.monotonic() + RECONNECT_END_TIMEOUT
        while task is not None and not task.done() and time.monotonic() < deadline:
            task.cancel()
            await asyncio.wait({task}, timeout=0.05)
        if task is not None and not task.done():
            logger.warning("the NATS reconnect task did not end within %.0fs of close", RECONNECT_END_TIMEOUT)

    async def _process_op_err(self, e: Exception) -> None:
        """The connection is lost: a flush() waiting for a PONG fails now, as its timeout would later (nats-py drops
        those PINGs at the reconnect; a stop step that flushes as the server goes away would wait its whole bound)."""
        if not self.is_closed and not self.is_reconnecting:
            pongs, self._pongs = self._pongs, []
            for future in pongs:
                if not future.done():
                    future.set_exception(nats.errors.FlushTimeoutError())
                    future.exception()  # (retrieved: a keep-alive PING's future has nobody awaiting it)
        await super()._process_op_err(e)

    async def _process_pong(self) -> None:
        """As nats-py's, except for the PING of a flush() that was cancelled (a bounded wait given up, a stop): its
        future is cancelled already, and setting its result raised InvalidStateError, which ended the read loop."""
        if self._pongs:
            future = self._pongs.pop(0)
            if not future.done():
                future.set_result(True)
            self._pongs_received += 1
            self._pings_outstanding = 0

    async def check_reader(self) -> bool:
        """Reconnect when the connection says it is up but its read loop has ended (a parser failure ends it
        without a reconnect); True when a reconnect was started."""
        task = self._reading_task
        if not self.is_connected or task is None or not task.done():
            return False
        logger.warning("the NATS read loop stopped while connected; reconnecting")
        await self._process_op_err(ConnectionError("read loop stopped"))
        return True

    async def subscribe_raw(self, subject: str, handler: RawHandler, **kwargs: Any) -> Any:
        async def _unused(_msg: Any) -> None:  # nats-py requires a callback; raw messages never reach it
            return None

        if not subject or any(c in subject for c in _PROTOCOL_BREAKERS):
            raise ValueError(f"subject {subject!r} cannot be written on a SUB line")
        # nats-py's subscribe refuses subjects nats-server takes as literal (`A*`, `x.b>c`), which streams may
        # name: its check is skipped for this call (subject rules are streamd's own, see subjects.py).
        skip = self._skip_subject_validation
        self._skip_subject_validation = True
        try:
            sub = await self.subscribe(subject, cb=_unused, **kwargs)
        finally:
            self._skip_subject_validation = skip
        self._raw_handlers[sub._id] = handler
        return sub

    async def unsubscribe_raw(self, sub: Any) -> None:
        """Stop a raw subscription. Messages the server already routed to it get a 503 no-responders status,
        so a publisher learns at once that nothing was stored (the server does not order them after our UNSUB)."""
        self._raw_handlers.pop(sub._id, None)
        self._retired.add(sub._id)
        try:
            await sub.unsubscribe()
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionDrainingError,
            nats.errors.BadSubscriptionError,
        ):
            pass  # nothing left to stop: callers run after a committed change and must not fail on this

    def raw_handler(self, sid: int) -> RawHandler | None:
        return self._raw_handlers.get(sid)

    def run_raw(self, handler: RawHandler, subject: bytes, reply: bytes, data: bytes, hdrs: bytes | None) -> None:
        """Hand a message to its raw subscription's handler (synchronously, from the parser)."""
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        try:
            handler(subject, reply, data, hdrs)
        except Exception:
            # A raw handler runs inside the parser: letting this escape would drop the connection.
            self.raw_handler_errors += 1
            logger.exception("message on %r could not be handled", bytes(subject[:200]))

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        handler = self._raw_handlers.get(sid)
        if handler is not None:
            self.run_raw(handler, subject, reply, data, headers)
        elif sid in self._retired:
            if reply:  # routed to us before the server saw the UNSUB: answer as the server would now
                await self._write(_command(reply, b"", NO_RESPONDERS, b""))
        else:
            await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]

    async def publish_raw(self, subject: bytes, payload: bytes, hdrs: bytes | None = None, reply: bytes = b"") -> None:
        """Publish with a header block given as bytes (stored headers go back out byte for byte)."""
        await self._write(_command(subject, reply, hdrs, payload))

    async def publish_many(
        self, messages: list[tuple[bytes, bytes]], with_headers: list[tuple[bytes, bytes, bytes]] | None = None
    ) -> None:
        """Publish (subject, payload) pairs, without headers, as one write; `with_headers` (subject, header block,
        payload) go first in the same write."""
        cmds = b"".join(b"PUB %s %d\r\n%s\r\n" % (s, len(p), p) for s, p in messages)
        if with_headers:
            cmds = b"".join(_command(s, b"", h, p) for s, h, p in with_headers) + cmds
            self.stats["out_msgs"] += len(with_headers)
        await self._write(cmds)
        self.stats["out_msgs"] += len(messages)

    def send_soon(self, subject: bytes, payload: bytes, hdrs: bytes | None = None) -> None:
        """Publish without awaiting, for raw handlers: the command joins nats-py's pending buffer and its flusher
        task writes it on its next turn (as `publish` would, minus the coroutine)."""
        if self.is_closed:
            return
        cmd = _command(subject, b"", hdrs, payload)
        self._pending.append(cmd)
        self._pending_data_size += len(cmd)
        queue = self._flush_queue
        if queue is not None and queue.empty():
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(asyncio.get_running_loop().create_future())

    def write_pending(self) -> bool:
        """Write nats-py's pending commands now, in one call, rather than on its flusher task's next turn: what a
        read or a commit produced (DIRECT.GET answers, PubAcks) leaves a loop turn sooner. False when not
        connected: nats-py keeps them for its flusher (and sends them after a reconnect), as before."""
        transport = self._transport
        if not self._pending or transport is None or not self.is_connected:
            return False
        try:
            transport.writelines(self._pending)
        except (OSError, RuntimeError):  # a transport going away: the flusher meets the error and reconnects
            return False
        self._pending, self._pending_data_size = [], 0
        return True

    async def _write(self, cmd: bytes) -> None:
        if self.is_closed:
            return
        await self._send_command(cmd)
        transport = self._transport
        if self.write_pending() and transport is not None:
            with contextlib.suppress(OSError):  # (the read loop notices a lost connection and reconnects)
                await transport.drain()  # type: ignore[no-untyped-call]  # a slow server holds the writer back
        elif self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()


def _command(subject: bytes, reply: bytes, hdrs: bytes | None, payload: bytes) -> bytes:
    sep = b" " + reply if reply else b""
    if hdrs:
        return b"HPUB %s%s %d %d\r\n%s%s\r\n" % (subject, sep, len(hdrs), len(hdrs) + len(payload), hdrs, payload)
    return b"PUB %s%s %d\r\n%s\r\n" % (subject, sep, len(payload), payload)
