"""The `streamd` command line."""

from __future__ import annotations

from typing import Annotated

import typer

from streamd import __version__
from streamd.cli import backup, jobs, serve, streaming, tools
from streamd.cli.consumers import consumer_app
from streamd.cli.session import OneLineErrorGroup
from streamd.cli.streams import stream_app

app = typer.Typer(
    name="streamd",
    help="Persistent JetStream-compatible streams for any core NATS server, stored in LMDB.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=OneLineErrorGroup,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"streamd {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """streamd: durable streams, consumers and the JetStream API on a core NATS server."""


app.command()(serve.serve)
app.add_typer(stream_app, name="stream")
app.add_typer(consumer_app, name="consumer")
app.add_typer(jobs.jobs_app, name="jobs")
streaming.register(app)
backup.register(app)
app.registered_commands.extend(tools.top_app.registered_commands)


def main() -> None:
    app()
