"""Mirror and source tests: the differential fixtures (each test runs against nats-server -js and streamd)."""

from __future__ import annotations

from tests.differential import BACKENDS, backend, js, nc, server_url  # noqa: F401
