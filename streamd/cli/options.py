"""Command arguments and options that several command groups share, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

StreamName = Annotated[str, typer.Argument(help="Stream name.", show_default=False)]
ConsumerName = Annotated[str, typer.Argument(help="Consumer name.", show_default=False)]
Force = Annotated[bool, typer.Option("--force", "-f", help="Do not ask for confirmation.")]
