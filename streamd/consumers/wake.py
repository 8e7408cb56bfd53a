"""The event a consumer's task waits on, which also starts the task when it had ended.

Idle consumers (no timer due, nothing waiting) keep no task: 100k of them cost memory only. Work for one calls
`set`, which starts a new task if needed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Wake:
    """An event whose `set` also (re)starts the consumer's task when it had ended (idle consumers).

    One waiter only (the consumer's task), so a single future replaces asyncio.Event's deque of waiters: with
    100k consumers that deque alone would be ~75 MB."""

    __slots__ = ("_flag", "_future", "_start")

    def __init__(self, start: Callable[[], None]) -> None:
        self._flag = False
        self._future: asyncio.Future[None] | None = None
        self._start = start

    def set(self) -> None:
        self._flag = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        self._start()

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self) -> None:
        if self._flag:
            return
        self._future = asyncio.get_running_loop().create_future()
        try:
            await self._future
        finally:
            self._future = None
