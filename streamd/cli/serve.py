"""`streamd serve`: run the service. The server (and lmdb) is imported only here, so admin commands start light."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from streamd import __version__
from streamd.cli.session import CliError, check_config_keys
from streamd.server.settings import ServiceConfig, SyncMode, build, load_toml, parse_listen, redact

_LEVELS = ("debug", "info", "warning", "error")


def _check_level(value: str) -> str:
    if value.lower() not in _LEVELS:
        raise typer.BadParameter(f"{value!r} is not a log level — use one of: {', '.join(_LEVELS)}")
    return value


def _check_exposure(cfg: ServiceConfig, insecure: bool) -> None:
    """The embedded nats-server has no authentication: beyond loopback anyone on the network could read and write
    every stream, so that takes an explicit --insecure (and is still logged as a warning); so does /metrics."""
    _check_metrics_exposure(cfg, insecure)
    if cfg.server or _is_loopback(cfg.host):
        return
    where = f"{cfg.host}:{cfg.port} (leafnodes :{cfg.leaf_port})"
    if not insecure:
        raise _fail(
            f"the embedded nats-server would listen on {where} with no authentication — anyone who can reach it "
            "could read and write every stream; keep host = 127.0.0.1, attach to your own server with --server, "
            "or pass --insecure"
        )
    logging.getLogger("streamd").warning(
        "INSECURE: the embedded nats-server listens on %s with no authentication (--insecure)", where
    )


def _check_metrics_exposure(cfg: ServiceConfig, insecure: bool) -> None:
    """/metrics and /healthz have no authentication either: stream names, rates and health for anyone who can
    connect, so a non-loopback address also takes --insecure."""
    if not cfg.metrics_listen:
        return
    host, port = parse_listen(cfg.metrics_listen)
    if _is_loopback(host):
        return
    if not insecure:
        raise _fail(
            f"metrics-listen {cfg.metrics_listen}: /metrics and /healthz would be open to anyone who can reach "
            f"{host}:{port} (no authentication) — use 127.0.0.1:{port}, or pass --insecure"
        )
    logging.getLogger("streamd").warning(
        "INSECURE: /metrics and /healthz listen on %s with no authentication (--insecure)", cfg.metrics_listen
    )


_SECRETS = {"password", "token", "leaf_password"}


def _log_settings(ctx: typer.Context, cfg: ServiceConfig, file_values: dict[str, object], config: Path | None) -> None:
    """Say what runs, on which data, and where each setting that is not a default came from (secrets hidden)."""
    log = logging.getLogger("streamd")
    log.info("streamd %s, data directory %s", __version__, cfg.data.resolve())
    given = []
    for field in msgspec.structs.fields(ServiceConfig):
        source = ctx.get_parameter_source(field.name) if field.name in ctx.params else None
        if source is not None and source.name == "COMMANDLINE":
            origin = f"--{field.encode_name}"
        elif source is not None and source.name == "ENVIRONMENT":
            origin = f"${'STREAMD_' + field.name.upper()}"
        elif field.encode_name in file_values:
            origin = f"config file {config}"
        else:
            continue
        value = getattr(cfg, field.name)
        shown = "(hidden)" if field.name in _SECRETS else redact(str(value)) if field.name == "server" else value
        given.append(f"{field.encode_name}={shown} ({origin})")
    log.info("settings: %s; everything else at its default", ", ".join(given) if given else "none given")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


_EARLY_SIGNALS: list[int] = []


def _stop_before_start(signum: int, _frame: object) -> None:
    """Until the service's own handlers are in (server/signals.py): the signal is noted, and the service stops as
    soon as it has them (before that nothing has started); a second one ends the process at once."""
    _EARLY_SIGNALS.append(signum)
    if len(_EARLY_SIGNALS) > 1:
        os._exit(1)


def _restore_handlers(previous: dict[signal.Signals, Any]) -> None:
    """Serve run in-process (tests) leaves the signals as it found them; the service's own handlers, once in, stay
    to the end of the process."""
    for sig, handler in previous.items():
        if signal.getsignal(sig) is _stop_before_start:
            signal.signal(sig, handler)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"streamd: {message}", err=True)
    return typer.Exit(1)


def serve(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            envvar="STREAMD_SERVER",
            help="Attach to this NATS server (nats://host:port). "
            "Without it streamd runs its own nats-server on 127.0.0.1.",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(envvar="STREAMD_CONFIG", help="TOML file with settings (kebab-case keys).")
    ] = None,
    data: Annotated[Path | None, typer.Option(envvar="STREAMD_DATA", help="Data directory [./streamd-data].")] = None,
    port: Annotated[int | None, typer.Option(help="Embedded server's client port [4222].")] = None,
    leaf_port: Annotated[int | None, typer.Option(help="Embedded server's leafnode port [7422].")] = None,
    domain: Annotated[
        str | None, typer.Option(envvar="STREAMD_DOMAIN", help="Serve $JS.<domain>.API instead of $JS.API.")
    ] = None,
    sync: Annotated[
        SyncMode | None,
        typer.Option(envvar="STREAMD_SYNC", help="Durability: fsync before acks (always), every interval, or never."),
    ] = None,
    sync_interval: Annotated[float | None, typer.Option(help="Seconds between fsyncs with batch-interval.")] = None,
    leaf: Annotated[
        str | None,
        typer.Option(
            envvar="STREAMD_LEAF",
            help="Leafnode URL for consumer deliveries (nats-leaf://host:port) [embedded one, or server host:7422].",
        ),
    ] = None,
    leaf_user: Annotated[str | None, typer.Option(envvar="STREAMD_LEAF_USER", help="Leafnode user.")] = None,
    leaf_password: Annotated[
        str | None, typer.Option(envvar="STREAMD_LEAF_PASSWORD", help="Leafnode password.")
    ] = None,
    user: Annotated[str | None, typer.Option(envvar="STREAMD_USER", help="User name for the server.")] = None,
    password: Annotated[str | None, typer.Option(envvar="STREAMD_PASSWORD", help="Password for the server.")] = None,
    token: Annotated[str | None, typer.Option(envvar="STREAMD_TOKEN", help="Auth token for the server.")] = None,
    creds: Annotated[str | None, typer.Option(envvar="STREAMD_CREDS", help="Credentials (.creds) file.")] = None,
    nkey_seed: Annotated[str | None, typer.Option(envvar="STREAMD_NKEY_SEED", help="NKey seed file.")] = None,
    tls_ca: Annotated[str | None, typer.Option(help="CA certificate file for TLS.")] = None,
    tls_cert: Annotated[str | None, typer.Option(help="Client certificate file for TLS.")] = None,
    tls_key: Annotated[str | None, typer.Option(help="Client key file for TLS.")] = None,
    log_level: Annotated[
        str, typer.Option(envvar="STREAMD_LOG_LEVEL", help="debug, info, warning or error.", callback=_check_level)
    ] = "info",
    metrics_listen: Annotated[
        str | None,
        typer.Option(
            envvar="STREAMD_METRICS_LISTEN",
            help="Serve /metrics (Prometheus) and /healthz on HOST:PORT, e.g. 127.0.0.1:9464 [off]. "
            "Unauthenticated: beyond loopback it needs --insecure.",
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Let the embedded server or the metrics endpoint listen beyond loopback with no authentication.",
        ),
    ] = False,
) -> None:
    """Run the streamd service until SIGINT or SIGTERM."""
    _EARLY_SIGNALS.clear()
    previous = {sig: signal.signal(sig, _stop_before_start) for sig in (signal.SIGINT, signal.SIGTERM)}
    ctx.call_on_close(lambda: _restore_handlers(previous))
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    overrides: dict[str, Any] = {
        "server": server,
        "data": str(data) if data else None,
        "port": port,
        "leaf_port": leaf_port,
        "domain": domain,
        "sync": sync.value if sync else None,
        "sync_interval": sync_interval,
        "user": user,
        "password": password,
        "token": token,
        "creds": creds,
        "nkey_seed": nkey_seed,
        "tls_ca": tls_ca,
        "tls_cert": tls_cert,
        "leaf": leaf,
        "leaf_user": leaf_user,
        "leaf_password": leaf_password,
        "tls_key": tls_key,
        "metrics_listen": metrics_listen,
    }
    try:
        file_values = load_toml(config) if config else {}
        if config:
            check_config_keys(config, file_values)
        cfg = build(file_values, overrides)
    except (OSError, ValueError, msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _fail(f"bad configuration: {exc}") from None
    except CliError as exc:
        raise _fail(str(exc)) from None
    _check_exposure(cfg, insecure)
    from streamd.server.state import StartupError

    if _EARLY_SIGNALS:
        return  # stopped before anything started
    try:
        run_event_loop(_serve(cfg, lambda: _log_settings(ctx, cfg, file_values, config)))
    except StartupError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        pass


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the service on uvloop where it is installed (the `fast` extra): its loop costs less per socket read,
    write and callback, which is most of what the publish and get hot paths do. STREAMD_EVENT_LOOP=asyncio keeps
    the standard loop (for comparison, or to rule uvloop out)."""
    if os.environ.get("STREAMD_EVENT_LOOP", "") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main)
            return
    asyncio.run(main)


async def _serve(cfg: ServiceConfig, log_settings: Callable[[], None]) -> None:
    """Signals are handled before the first line is logged: a supervisor may act on any line."""
    from streamd.server.service import Service
    from streamd.server.signals import end_leftover_tasks, install_signal_handlers
    from streamd.server.state import StartupError

    service = Service(cfg)
    install_signal_handlers(service, received=_EARLY_SIGNALS)
    log_settings()
    try:
        await service.run()
    except StartupError as exc:
        if not service.stop_requested:
            raise
        logging.getLogger("streamd").info("streamd stopped while starting (%s)", exc)  # as asked: status 0
    finally:
        await end_leftover_tasks()
