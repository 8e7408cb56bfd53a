"""Differential fixtures for the key-value and object-store tests: each test that takes `js` runs once against the
real JetStream (nats-server -js, which proves the expectation) and once against streamd on a core nats-server.

Tests that need streamd itself (restarts) use `nats_server` and `start_service` from tests/conftest.py directly.
"""

from __future__ import annotations

from tests.differential import BACKENDS, backend, js, nc, server_url  # noqa: F401
