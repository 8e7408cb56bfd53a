"""Differential fixtures: every test in this package runs once against the real JetStream and once against streamd.

The expectations in the tests are the real server's observed behaviour (nats-server 2.15.1 -js); the `jetstream`
run proves them, the `streamd` run checks that streamd matches. Only nats-py's JetStream API and raw `$JS.API`
requests are used, i.e. exactly what a client can observe.
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


# `nc` and `js` shadow the streamd-only fixtures of tests/conftest.py inside this package.
@pytest.fixture
async def nc(server_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(server_url)
    yield client
    with contextlib.suppress(Exception):
        await client.close()


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    return nc.jetstream(timeout=5)
