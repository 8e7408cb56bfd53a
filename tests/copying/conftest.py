"""Mirror and source tests: the differential fixtures (each test runs against nats-server -js and streamd)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.differential import BACKENDS, backend, js, nc, server_url  # noqa: F401
from tests.natsd import NatsServer, run_nats_server


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """nats-server -js in JetStream domain `hub` (its API also answers on `$JS.hub.API`)."""
    store = tmp_path / "hub" / "js"
    async with run_nats_server(tmp_path / "hub", extra=f'jetstream {{ store_dir: "{store}", domain: hub }}\n') as s:
        yield s
