"""streamd: JetStream-compatible persistent streams for any core NATS deployment, stored in LMDB."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import ServiceConfig, SyncMode
from .service import Service, ServiceState, StartupError

__all__ = ["Service", "ServiceConfig", "ServiceState", "StartupError", "SyncMode", "__version__"]
