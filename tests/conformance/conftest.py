"""Differential fixtures: every test in this package runs once against the real JetStream and once against streamd.

The expectations in the tests are the real server's observed behaviour (nats-server 2.15.1 -js); the `jetstream`
run proves them, the `streamd` run checks that streamd matches. Only nats-py's JetStream API and raw `$JS.API`
requests are used, i.e. exactly what a client can observe.
"""

from __future__ import annotations

from tests.differential import BACKENDS, backend, js, nc, server_url  # noqa: F401
