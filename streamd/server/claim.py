"""One streamd per API prefix: a claim made through the NATS server before the API is served.

Protocol, on subject ``$STREAMD.CLAIM.<api prefix>``:

1. subscribe to the claim subject and flush (the server has then registered the subscription);
2. announce ``{"id", "started", "state": "starting"}`` and wait ``window`` seconds, collecting the others' messages;
3. a *running* instance answers every announcement with ``state: "running"``: the newcomer loses;
   a *starting* instance answers a rival's first announcement with its own, so both learn of each other;
4. after the window, lose to any running instance and to any starting one with a smaller ``(started, id)``;
   the loser unsubscribes and stops with a StartupError; the winner keeps the subscription (and answers) while it runs.

Why two instances starting at the same instant on one server cannot both win: a server handles one connection's
commands in order and delivers a message to every subscription registered before it processes the publish. Each
instance's SUB is processed before its own announcement. Of two announcements, the one processed first (A) came after
A's SUB, so A's SUB precedes B's announcement too: A receives B's announcement and answers it; B's SUB precedes B's
announcement, hence A's answer, so B receives it. Both then know both keys and apply the same tie-break; exactly one
wins. What the window must cover is only delivery and answering latency: the rival's round trip and its event loop's
turn (both instances are idle in their window; a running instance answers from its loop like any API request, and
a newcomer also runs the $JS.API.INFO probe, which a serving instance answers or at least holds up).

Across a cluster the ordering argument does not hold: interest propagates between servers asynchronously, so a SUB
made on one server may not yet be known on another when a rival announces there. The window (default 0.5 s) then
also has to cover route interest propagation (normally milliseconds); that makes a double start unlikely but is not a
guarantee (that would need consensus, e.g. a JetStream KV, which a core server does not have).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import msgspec

from streamd.transport.connection import Connection

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = 0.5
STARTING = "starting"
RUNNING = "running"


class Announcement(msgspec.Struct):
    id: str
    started: int  # time.time_ns() when the claim began
    state: str = STARTING

    def key(self) -> tuple[int, str]:
        return (self.started, self.id)


class ClaimLost(Exception):
    """Another streamd serves (or is starting to serve) the same API prefix and has priority."""

    def __init__(self, rival: Announcement) -> None:
        super().__init__(f"another streamd ({rival.state}, claim {rival.id}) holds it")
        self.rival = rival


def claim_subject(api_prefix: str) -> str:
    return f"$STREAMD.CLAIM.{api_prefix}"


def winner(me: Announcement, rivals: list[Announcement]) -> Announcement:
    """Who holds the prefix: a running rival, else the smallest (started, id) among those starting."""
    running = [r for r in rivals if r.state == RUNNING]
    if running:
        return running[0]
    return min([me, *rivals], key=Announcement.key)


class Claim:
    """This instance's claim on an API prefix (see the module docstring)."""

    def __init__(self, conn: Connection, api_prefix: str, window: float = DEFAULT_WINDOW) -> None:
        self.conn = conn
        self.subject = claim_subject(api_prefix)
        self.window = window
        self.me = Announcement(id=secrets.token_hex(8), started=time.time_ns())
        self.rivals: dict[str, Announcement] = {}
        self._sub: Any = None
        self._encode = msgspec.json.Encoder().encode
        self._decode = msgspec.json.Decoder(Announcement).decode

    async def acquire(self) -> None:
        """Announce and wait the window; raises ClaimLost (after unsubscribing) when another instance wins."""
        self._sub = await self.conn.subscribe(self.subject, cb=self._on_message)
        await self.conn.flush()
        await self.conn.publish(self.subject, self._encode(self.me))
        await self.conn.flush()
        await asyncio.sleep(self.window)
        best = winner(self.me, list(self.rivals.values()))
        if best.id != self.me.id:
            await self.release()
            raise ClaimLost(best)
        self.me.state = RUNNING
        logger.debug("claim %s on %s won", self.me.id, self.subject)

    async def release(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_message(self, msg: Any) -> None:
        try:
            other = self._decode(msg.data)
        except msgspec.DecodeError:
            return
        if other.id == self.me.id:
            return  # our own, echoed
        first = other.id not in self.rivals
        self.rivals[other.id] = other
        if self.me.state == RUNNING:
            if other.state == STARTING:
                await self._announce()
            else:
                logger.error("another streamd (claim %s) says it serves %s too", other.id, self.subject)
        elif first:
            await self._announce()  # a rival that subscribed after our announcement learns of us now

    async def _announce(self) -> None:
        with contextlib.suppress(Exception):
            await self.conn.publish(self.subject, self._encode(self.me))
