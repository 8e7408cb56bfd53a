"""Making and closing the service's links: the embedded nats-server, the client connection, the leaf, the API
claim. Startup refusals an operator can fix become one-line ``StartupError``s; every close is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

import nats.errors

from streamd.server.claim import Claim, ClaimLost
from streamd.server.embedded import EmbeddedServer
from streamd.server.health import LinkWatch
from streamd.server.settings import ServiceConfig, redact
from streamd.server.state import StartupError
from streamd.transport.connection import RECONNECT_END_TIMEOUT, Connection
from streamd.transport.leaf import LeafConnection, LeafError

logger = logging.getLogger(__name__)

STEP_TIMEOUT = 2.0  # each network step of the stop path (flush, close)


class Connector:
    """Opens the links for a service (`stop` is its stop request: a wait for a server or a claim gives up on it)."""

    def __init__(self, cfg: ServiceConfig, watch: LinkWatch, stop: asyncio.Event) -> None:
        self._cfg = cfg
        self._watch = watch
        self._stop = stop
        self.url = ""  # the client connection's server: --server, or the embedded one

    async def start_embedded(self, stack: contextlib.AsyncExitStack, tg: asyncio.TaskGroup) -> EmbeddedServer | None:
        """Without --server, run our own nats-server; it is stopped after both connections are closed."""
        cfg = self._cfg
        if cfg.server:
            self.url = cfg.server
            return None
        embedded = EmbeddedServer(cfg.data, cfg.host, cfg.port, cfg.leaf_port)
        try:
            await embedded.start(tg=tg)
        except Exception as exc:
            raise StartupError(str(exc)) from None
        stack.push_async_callback(embedded.stop)
        self.url = embedded.url
        return embedded

    def _client_options(self) -> dict[str, Any]:
        cfg = self._cfg
        options: dict[str, Any] = {
            "servers": [self.url],
            "name": cfg.name,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 1,
            "allow_reconnect": True,
            "pending_size": 64 << 20,
            "error_cb": self._watch.on_error,
            "disconnected_cb": self._watch.on_disconnect,
            "reconnected_cb": self._watch.on_reconnect,
            "connect_timeout": 5,
            # a half-open TCP connection (peer gone without a FIN) is found within ~20 s, not nats-py's 4 min
            "ping_interval": 5,
            "max_outstanding_pings": 3,
        }
        if cfg.user:
            options["user"], options["password"] = cfg.user, cfg.password
        if cfg.token:
            options["token"] = cfg.token
        if cfg.creds:
            options["user_credentials"] = cfg.creds
        if cfg.nkey_seed:
            options["nkeys_seed"] = cfg.nkey_seed
        if cfg.tls_ca or cfg.tls_cert:
            ctx = ssl.create_default_context(cafile=cfg.tls_ca or None)
            if cfg.tls_cert:
                ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key or None)
            options["tls"] = ctx
        return options

    async def connect(self) -> Connection:
        # nats-py keeps retrying the first connection by itself (max_reconnect_attempts=-1); streamd waits for
        # it, but gives up at once on an authorization error or a stop request.
        conn = Connection()
        self._watch.auth_failed = asyncio.Event()
        connect = asyncio.ensure_future(conn.connect(**self._client_options()))
        refused = asyncio.ensure_future(self._watch.auth_failed.wait())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({connect, refused, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
            stopped.cancel()
        if connect.done() and connect.exception() is None:
            return conn
        conn.stop_reconnecting()  # its connect loop may miss the cancel below; with no server left it ends anyway
        connect.cancel()
        with contextlib.suppress(BaseException):
            await connect
        with contextlib.suppress(Exception):
            await conn.close()
        raise self._connect_failure(connect)

    def _connect_failure(self, connect: asyncio.Future[Any]) -> StartupError:
        url = redact(self.url)
        if self._watch.auth_failed.is_set():
            return StartupError(
                f"{url} refused streamd's credentials (authorization violation); "
                "check --user/--password, --token, --creds or --nkey-seed"
            )
        if connect.done() and not connect.cancelled() and connect.exception() is not None:
            return StartupError(f"could not connect to {url}: {connect.exception()}")
        return StartupError(f"stopped before a connection to {url} was made")

    def _leaf_url(self) -> str:
        cfg = self._cfg
        if cfg.leaf:
            return cfg.leaf
        if not cfg.server:
            return f"nats-leaf://{cfg.host}:{cfg.leaf_port}"
        host = urlsplit(cfg.server if "://" in cfg.server else "nats://" + cfg.server).hostname or "127.0.0.1"
        return f"nats-leaf://{host}:7422"

    async def connect_leaf(self, tg: asyncio.TaskGroup) -> LeafConnection:
        """The leafnode connection that carries consumer deliveries (see README: attaching to a server)."""
        cfg = self._cfg
        url = self._leaf_url()
        user = cfg.leaf_user or cfg.user
        password = cfg.leaf_password if cfg.leaf_user else cfg.password
        try:
            return await LeafConnection.connect(
                url,
                user=user,
                password=password,
                name=cfg.name,
                tg=tg,
                on_disconnect=self._watch.on_leaf_down,
                on_reconnect=self._watch.on_leaf_up,
            )
        except (LeafError, OSError, TimeoutError) as exc:
            if "authorization violation" in str(exc).lower():
                raise StartupError(
                    f"the leafnode listener at {redact(url)} refused streamd's leaf credentials ({exc}); check "
                    "--leaf-user/--leaf-password (STREAMD_LEAF_USER/STREAMD_LEAF_PASSWORD) against the server's "
                    "leafnodes authorization"
                ) from None
            raise StartupError(
                f"cannot open the leafnode connection to {redact(url)} ({exc}); consumers need it: add "
                "'leafnodes { listen: 127.0.0.1:7422 }' to the server config or pass --leaf nats-leaf://host:port"
            ) from None

    async def close_conn(self, conn: Connection) -> None:
        if conn.is_connected:
            await bounded(conn.flush(timeout=int(STEP_TIMEOUT)), STEP_TIMEOUT + 0.5, "flushing the NATS connection")
        conn.stop_reconnecting()  # first, and outside the bound: whatever happens next, no reconnect outlives this
        await bounded(conn.close(), STEP_TIMEOUT + RECONNECT_END_TIMEOUT, "closing the NATS connection")

    async def close_leaf(self, leaf: LeafConnection) -> None:
        await bounded(leaf.close(timeout=STEP_TIMEOUT / 2), STEP_TIMEOUT + 0.5, "closing the leaf connection")

    async def claim_api(self, conn: Connection) -> Claim:
        """Claim the API prefix through the server (streamd.server.claim: race-free on one server)."""
        claim = Claim(conn, self._cfg.api_prefix, self._cfg.claim_window)
        acquire = asyncio.ensure_future(claim.acquire())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not acquire.done():
            acquire.cancel()
            await claim.release()
            raise StartupError("stopped while claiming the API prefix")
        try:
            acquire.result()
        except ClaimLost as exc:
            raise StartupError(
                f"another streamd ({exc.rival.state}, claim {exc.rival.id}) serves {self._cfg.api_prefix} on "
                f"{redact(self.url)}; stop it, or run this one with --domain NAME"
            ) from None
        return claim

    async def check_api_free(self, conn: Connection) -> None:
        subject = f"{self._cfg.api_prefix}.INFO"
        try:
            await conn.request(subject, b"", timeout=1.0)
        except nats.errors.NoRespondersError:
            return
        except nats.errors.TimeoutError:
            raise StartupError(
                f"something subscribes to {subject} but does not answer; stop it or use --domain"
            ) from None
        raise StartupError(
            f"{subject} is already answered by another JetStream server or streamd on {redact(self.url)}; "
            "disable JetStream there, stop the other streamd, or run this one with --domain NAME"
        )


async def bounded(work: Any, timeout: float, what: str) -> None:
    """Await a stop step for at most `timeout` seconds; a step that fails or hangs is logged and skipped."""
    try:
        async with asyncio.timeout(timeout):
            await work
    except TimeoutError:
        logger.warning("shutdown: %s took over %.1fs; skipped", what, timeout)
    except Exception as exc:
        logger.warning("shutdown: %s failed: %s", what, exc)
