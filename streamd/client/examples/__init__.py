"""Runnable examples: `python -m streamd.client.examples.jobs`, `python -m streamd.client.examples.projection`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def run(main: Callable[[str], Coroutine[Any, Any, None]], description: str | None) -> None:
    """The examples' command line: `--server URL` (default nats://127.0.0.1:4222), then `main(server)`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--server", default="nats://127.0.0.1:4222")
    asyncio.run(main(parser.parse_args().server))
