"""Differential fixtures: a test that takes `js` (or `nc`, `server_url`) from here runs once against the real
JetStream (nats-server -js, which proves the expectation) and once against streamd on a core nats-server.

Import them where wanted (`from tests.differential import backend, js, nc, server_url  # noqa: F401`); inside such a
module or package they shadow the streamd-only `nc`/`js` of tests/conftest.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

BACKENDS = ["jetstream", "streamd"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server_url(backend: str, request: pytest.FixtureRequest) -> str:
    """URL of a NATS server whose `$JS.API` is answered by the backend under test."""
    if backend == "jetstream":
        return str(request.getfixturevalue("jetstream_server").url)
    request.getfixturevalue("streamd")  # in-process streamd attached to the core `nats_server`
    return str(request.getfixturevalue("nats_server").url)


@pytest.fixture
async def nc(server_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(server_url)
    yield client
    with contextlib.suppress(Exception):
        await client.close()


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    return nc.jetstream(timeout=5)
