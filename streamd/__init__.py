"""streamd: JetStream-compatible persistent streams for any core NATS deployment, stored in LMDB.

The server's names are loaded on first use, so that `import streamd.client.jobs` (nats-py only) never loads the
server, its store or lmdb.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from streamd.server.service import Service, ServiceState, StartupError
    from streamd.server.settings import ServiceConfig, SyncMode

__all__ = ["Service", "ServiceConfig", "ServiceState", "StartupError", "SyncMode", "__version__"]

_LAZY = {
    "Service": "streamd.server.service",
    "ServiceState": "streamd.server.service",
    "StartupError": "streamd.server.service",
    "ServiceConfig": "streamd.server.settings",
    "SyncMode": "streamd.server.settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamd' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
