"""What a consumer's runtime needs from whoever hosts it.

The runtime (``consumer``) sits below the manager that creates it; it reaches its host only through this
interface, so the two modules do not import each other and the runtime can be hosted by anything that provides
these few services (a test, a benchmark)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from streamd.consumers.acks import MaxDeliveriesEvent
from streamd.store.env import Store
from streamd.transport.leaf import LeafConnection
from streamd.wire.ack_protocol import AckInfo

C_contra = TypeVar("C_contra", contravariant=True)


class ConsumerHost(Protocol[C_contra]):
    """The services of a consumer's host; `C_contra` is the consumer type it hosts."""

    @property
    def store(self) -> Store: ...

    @property
    def leaf(self) -> LeafConnection: ...

    def mark_dirty(self, c: C_contra) -> None:
        """The consumer's state changed: persist it soon."""

    def want_messages(self, c: C_contra) -> None:
        """The consumer has a pull request waiting: wake it when a matching message is stored."""

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None:
        """Run the consumer's delivery task in the host's task group (None: the host is stopping)."""

    def consumed(self, c: C_contra, seq: int) -> None:
        """An ack-none delivery from a workqueue stream: the message goes once no other consumer needs it."""

    def advise_nak(self, c: C_contra, info: AckInfo) -> None: ...

    def advise_term(self, c: C_contra, info: AckInfo, reason: str) -> None: ...

    def advise_max_deliveries(self, c: C_contra, event: MaxDeliveriesEvent) -> None: ...

    def advise_pinned(self, c: C_contra, group: str, pin_id: str) -> None: ...

    def advise_unpinned(self, c: C_contra, group: str, reason: str) -> None: ...
