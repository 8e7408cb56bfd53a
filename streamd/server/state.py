"""The words every part of the service shares: its lifecycle state and the startup error the CLI prints."""

from __future__ import annotations

import enum


class StartupError(RuntimeError):
    """A reason the service cannot start that the operator can fix; the CLI prints it as one line."""


class ServiceState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    CLOSED = "closed"
