"""Every test here that takes `js` runs against the real JetStream and against streamd."""

from __future__ import annotations

from tests.differential import backend, js, nc, server_url  # noqa: F401
