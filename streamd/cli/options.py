"""Command arguments and options that several command groups share, declared once and checked before anything is
sent: a name the server would refuse (or could never answer for, like `my.stream`) is one clear line here."""

from __future__ import annotations

from typing import Annotated

import typer

from streamd.wire.subjects import MAX_NAME_LEN, is_valid_name


def check_name(value: str) -> str:
    """Stream and consumer names as JetStream defines them: they become subject tokens."""
    if value is not None and not is_valid_name(value):
        raise typer.BadParameter(
            f"{value!r} is not a valid name — use up to {MAX_NAME_LEN} characters without spaces, '.', '*', '>', "
            "'/' or '\\'"
        )
    if value is not None and len(value.encode()) > MAX_NAME_LEN:
        raise typer.BadParameter(f"{value!r} is longer than {MAX_NAME_LEN} bytes")
    return value


StreamName = Annotated[str, typer.Argument(help="Stream name.", show_default=False, callback=check_name)]
ConsumerName = Annotated[str, typer.Argument(help="Consumer name.", show_default=False, callback=check_name)]
Force = Annotated[bool, typer.Option("--force", "-f", help="Do not ask for confirmation.")]
