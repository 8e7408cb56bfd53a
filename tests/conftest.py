from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from streamd import Service, ServiceConfig
from tests.helpers import wait_for
from tests.natsd import NatsServer, run_nats_server


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A core NATS server (no JetStream) with a loopback leafnode listener."""
    async with run_nats_server(tmp_path / "natsd") as server:
        yield server


@pytest.fixture
async def jetstream_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A real nats-server -js, the reference behaviour streamd is compared against."""
    async with run_nats_server(tmp_path / "natsd-js", jetstream=True) as server:
        yield server


class RunningService:
    def __init__(self, service: Service, task: asyncio.Task[None]) -> None:
        self.service = service
        self.task = task

    async def stop(self) -> None:
        self.service.stop()
        async with asyncio.timeout(30):
            await self.task


StartService = Callable[..., Awaitable[RunningService]]


@pytest.fixture
async def start_service(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[StartService]:
    """Start streamd in-process on a temp data dir; every one started is stopped (and must stop) at teardown."""
    running: list[RunningService] = []

    async def start(**overrides: Any) -> RunningService:
        settings: dict[str, Any] = {
            "server": nats_server.url,
            "leaf": nats_server.leaf_url,
            "data": tmp_path / "data",
            # one instance per test: the claim only has to see that nobody objects on this loopback server (the
            # claim tests set the production window)
            "claim_window": 0.05,
            **overrides,
        }
        service = Service(ServiceConfig(**settings))
        task = asyncio.create_task(service.run())
        ready = asyncio.create_task(service.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()
        assert ready in done, "streamd did not become ready"
        if not any(settings.get(k) for k in ("user", "token", "nkey_seed", "creds", "tls_ca")):
            await _api_answers(str(settings["server"]), str(settings.get("domain") or ""))
        handle = RunningService(service, task)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        if not handle.task.done():
            await handle.stop()


async def _api_answers(url: str, domain: str) -> None:
    """Right after a restart the server may, for a few ms, still report no responders: wait that out."""
    prefix = f"$JS.{domain}.API" if domain else "$JS.API"
    probe = await nats.connect(url)
    try:

        async def answered() -> bool:
            try:
                await probe.request(f"{prefix}.INFO", b"", timeout=1)
            except nats.errors.NoRespondersError:
                return False
            return True

        await wait_for(answered, timeout=10)
    finally:
        await probe.close()


@pytest.fixture
async def streamd(start_service: StartService) -> RunningService:
    return await start_service()


@pytest.fixture
async def nc(nats_server: NatsServer, streamd: RunningService) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    with contextlib.suppress(Exception):
        await client.close()


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    return nc.jetstream(timeout=5)
