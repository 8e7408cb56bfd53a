"""Shared machinery of the admin commands: where connection settings come from, the JetStream API session,
one-line errors, and parsing of durations and times."""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import functools
import inspect
import json
import os
import sys
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn

import msgspec
import nats
import nats.aio.client
import nats.errors
import typer
from typer.core import TyperCommand, TyperGroup

from streamd.server.settings import ServiceConfig, redact

DEFAULT_SERVER = "nats://127.0.0.1:4222"
REQUEST_TIMEOUT = 5.0

# settings a TOML file or a variable may give, with the variable naming each
_SETTINGS = {
    "server": "STREAMD_SERVER",
    "domain": "STREAMD_DOMAIN",
    "user": "STREAMD_USER",
    "password": "STREAMD_PASSWORD",
    "token": "STREAMD_TOKEN",
    "creds": "STREAMD_CREDS",
    "nkey_seed": "STREAMD_NKEY_SEED",
}
_SECRET = {"password", "token"}


class CliError(Exception):
    """A user-facing failure: printed as one line `streamd: <message>` on stderr, exit status 1."""


# --------------------------------------------------------------------------- connection settings


@dataclass
class Setting:
    value: str
    source: str  # "--server flag", "STREAMD_SERVER variable", "config file x.toml", "default"


@dataclass
class Settings:
    values: dict[str, Setting] = field(default_factory=dict)
    config_file: Setting | None = None

    def get(self, key: str) -> str:
        s = self.values.get(key)
        return s.value if s else ""

    @property
    def server(self) -> str:
        return self.get("server") or DEFAULT_SERVER

    @property
    def api_prefix(self) -> str:
        domain = self.get("domain")
        return f"$JS.{domain}.API" if domain else "$JS.API"

    def describe(self) -> list[tuple[str, str, str]]:
        """(setting, value, where it came from) rows, secrets hidden."""
        server = self.values.get("server", Setting(DEFAULT_SERVER, "default"))
        domain = self.values.get("domain")
        rows = [
            ("Server", redact(server.value), server.source),
            ("API prefix", self.api_prefix, domain.source if domain else "default (no domain)"),
        ]
        if self.config_file:
            rows.append(("Config file", self.config_file.value, self.config_file.source))
        labels = {"user": "User", "password": "Password", "token": "Token", "creds": "Credentials file"}
        labels["nkey_seed"] = "NKey seed file"
        for key, label in labels.items():
            s = self.values.get(key)
            if s:
                rows.append((label, "(hidden)" if key in _SECRET else s.value, s.source))
        if not any(k in self.values for k in labels):
            rows.append(("Authentication", "none", "no flag, variable or config file sets any"))
        return rows


def resolve_settings(flags: dict[str, str | None], config: Path | None, env: typing.Mapping[str, str]) -> Settings:
    """Flag > STREAMD_* variable > the TOML file given by --config or STREAMD_CONFIG > default."""
    settings = Settings()
    file_values: dict[str, object] = {}
    if config is not None:
        settings.config_file = Setting(str(config), "--config flag")
    elif env.get("STREAMD_CONFIG"):
        settings.config_file = Setting(env["STREAMD_CONFIG"], "STREAMD_CONFIG variable")
    if settings.config_file:
        path = Path(settings.config_file.value)
        try:
            raw = msgspec.toml.decode(path.read_bytes())
        except (OSError, msgspec.DecodeError) as exc:
            raise CliError(f"cannot read config file {path}: {exc} — give a readable TOML file to --config") from None
        if not isinstance(raw, dict):
            raise CliError(f"config file {path} is not a table of settings — see deploy/streamd.toml")
        check_config_keys(path, raw)
        file_values = raw
    for key, var in _SETTINGS.items():
        flag_value = flags.get(key)
        file_value = file_values.get(key.replace("_", "-"))
        if flag_value:
            settings.values[key] = Setting(flag_value, f"--{key.replace('_', '-')} flag")
        elif env.get(var):
            settings.values[key] = Setting(env[var], f"{var} variable")
        elif file_value:
            settings.values[key] = Setting(str(file_value), f"config file {settings.config_file.value}")  # type: ignore[union-attr]
    return settings


def check_config_keys(path: Path, raw: dict[str, object]) -> None:
    """The file is the one `streamd serve` reads too: a key neither knows is a typo, refused as serve refuses it."""
    known = {f.encode_name for f in msgspec.structs.fields(ServiceConfig)}
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" — did you mean {close[0]!r}?" if close else " — see deploy/streamd.toml for the settings"
            raise CliError(f"config file {path}: unknown setting {key!r}{hint}")


# --------------------------------------------------------------------------- the API session


class Session:
    """A connection to the server and the JetStream API prefix to ask."""

    def __init__(self, nc: Any, settings: Settings, json_output: bool) -> None:
        self.nc = nc
        self.settings = settings
        self.prefix = settings.api_prefix
        self.json = json_output

    async def api(self, suffix: str, body: dict[str, Any] | None = None, hint: str = "") -> dict[str, Any]:
        """Ask `<prefix>.<suffix>`; a JetStream error becomes a CliError with a hint on what to do."""
        subject = f"{self.prefix}.{suffix}"
        payload = json.dumps(body).encode() if body is not None else b""
        try:
            msg = await self.nc.request(subject, payload, timeout=REQUEST_TIMEOUT)
        except nats.errors.NoRespondersError:
            raise CliError(
                f"nobody answers the JetStream API {self.prefix} at {redact(self.settings.server)} — "
                "start streamd (or nats-server -js) there, or check --server and --domain"
            ) from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise CliError(
                f"no answer from {subject} within {REQUEST_TIMEOUT:g}s — is streamd running and healthy? "
                "check --server and --domain"
            ) from None
        try:
            data = json.loads(msg.data)
        except ValueError:
            raise CliError(f"the answer to {subject} is not JSON — is {self.prefix} really a JetStream API?") from None
        if not isinstance(data, dict):
            raise CliError(f"the answer to {subject} is not a JSON object")
        if "error" in data:
            raise api_error(data["error"], hint)
        return data

    def emit(self, data: Any, text: Callable[[], None]) -> None:
        """Print `data` as JSON with --json, else call `text` to print the readable form."""
        if self.json:
            typer.echo(json.dumps(data, indent=2, sort_keys=True))
        else:
            text()


_HINTS = {
    10059: "list the streams with `streamd stream list`",
    10014: "list the consumers with `streamd consumer list STREAM`",
    10058: "change an existing stream with `streamd stream edit`",
    10065: "each subject may belong to one stream only; see `streamd stream list`",
    10037: "see the stream's first and last sequence with `streamd stream info STREAM`",
    10013: "pick another name, or delete the old one with `streamd consumer delete`",
    10148: "pick another name, or delete the old one with `streamd consumer delete`",
    10052: "fix the stream configuration values",
    10074: "streamd has one copy of each stream; leave out replicas",
    10084: "use --ack explicit on a workqueue stream",
    10098: "use --ack explicit on a workqueue stream",
    10101: "use --deliver all on a workqueue stream",
    10099: "give each consumer of a workqueue stream its own --filter",
    10100: "give each consumer of a workqueue stream its own --filter",
}


def api_error(err: Any, hint: str = "") -> CliError:
    if not isinstance(err, dict):
        return CliError(f"JetStream error {err!r}")
    code, err_code = err.get("code", 0), err.get("err_code", 0)
    what = hint or _HINTS.get(err_code, "check the values given (see --help)")
    return CliError(f"{err.get('description', 'error')} ({code}/{err_code}) — {what}")


async def connect(settings: Settings) -> Any:
    options: dict[str, Any] = {
        "servers": [settings.server],
        "connect_timeout": 3,
        "allow_reconnect": False,
        "max_reconnect_attempts": 1,  # 0 would retry forever in nats-py 2.16
        "reconnect_time_wait": 0.1,
        "name": "streamd-cli",
    }
    if settings.get("user"):
        options["user"] = settings.get("user")
        options["password"] = settings.get("password")
    if settings.get("token"):
        options["token"] = settings.get("token")
    if settings.get("creds"):
        options["user_credentials"] = settings.get("creds")
    if settings.get("nkey_seed"):
        options["nkeys_seed"] = settings.get("nkey_seed")

    _check_files(settings)
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        errors.append(exc)

    nc = nats.aio.client.Client()
    try:
        await nc.connect(error_cb=remember, **options)
        return nc
    except Exception as exc:  # nats-py raises many kinds here; all mean the same to the user
        try:  # release the half-open socket before the event loop goes away
            await asyncio.wait_for(nc.close(), 2)
        except Exception:  # best effort: the connection never worked
            pass
        raise _connect_error(settings, [*errors, exc]) from None


def _check_files(settings: Settings) -> None:
    """A credentials file that cannot be read is named as such, not reported as a refused connection."""
    for key, what in (("creds", "credentials (.creds) file"), ("nkey_seed", "NKey seed file")):
        path = settings.get(key)
        if not path:
            continue
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def _connect_error(settings: Settings, errors: list[BaseException]) -> CliError:
    server = redact(settings.server)
    if any(
        isinstance(e, nats.errors.AuthorizationError) or "authorization violation" in str(e).lower() for e in errors
    ):
        given = any(settings.get(k) for k in ("user", "token", "creds", "nkey_seed"))
        what = "refused the credentials" if given else "requires credentials and none were given"
        return CliError(
            f"{server} {what} (authorization violation) — check --user/--password, --token, "
            "--creds or --nkey-seed (`streamd context` shows what is used)"
        )
    last = errors[0] if errors else None
    reason = (str(last) or type(last).__name__) if last else "unknown error"
    return CliError(
        f"cannot connect to {server}: {reason} — is the server running? "
        "check --server and the authentication options (`streamd context` shows what is used)"
    )


# --------------------------------------------------------------------------- commands with connection options


class OneLineErrorCommand(TyperCommand):
    """Bad flag values print one line (not a usage box) and exit 1."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except typer.TyperException as exc:  # click's UsageError and its kinds
            path = f"{parent.command_path} {info_name}" if parent else str(info_name)
            raise CliUsageError(exc.format_message(), path) from None


class CliUsageError(typer.TyperException):
    """A usage error already worded for one line, with the command whose --help explains it."""

    def __init__(self, message: str, command_path: str) -> None:
        super().__init__(message)
        self.command_path = command_path


class OneLineErrorGroup(TyperGroup):
    """The root command: every usage error anywhere (unknown command, missing argument, bad value) is one line
    with a pointer to the right --help, and exit 1, like every other error of the CLI."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except CliUsageError as exc:
            _fail(f"{exc.format_message().rstrip('.')} — see `{exc.command_path} --help`")
        except typer.TyperException as exc:  # click's UsageError (with the context of the failing command) and kin
            ctx = getattr(exc, "ctx", None)
            _fail(f"{exc.format_message().rstrip('.')} — see `{ctx.command_path if ctx else 'streamd'} --help`")
        except typer.Abort:
            _fail("aborted")
        sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> NoReturn:
    typer.echo(f"streamd: {message}", err=True)
    sys.exit(1)


_CONN_PARAMS: list[tuple[str, Any]] = [
    ("server", Annotated[str | None, typer.Option(help="NATS server URL [STREAMD_SERVER, nats://127.0.0.1:4222].")]),
    ("config", Annotated[Path | None, typer.Option(help="TOML file with server and auth keys [STREAMD_CONFIG].")]),
    ("user", Annotated[str | None, typer.Option(help="User name [STREAMD_USER].")]),
    ("password", Annotated[str | None, typer.Option(help="Password [STREAMD_PASSWORD].")]),
    ("token", Annotated[str | None, typer.Option(help="Auth token [STREAMD_TOKEN].")]),
    ("creds", Annotated[str | None, typer.Option(help="Credentials (.creds) file [STREAMD_CREDS].")]),
    ("nkey_seed", Annotated[str | None, typer.Option(help="NKey seed file [STREAMD_NKEY_SEED].")]),
    ("domain", Annotated[str | None, typer.Option(help="JetStream domain: use $JS.<domain>.API [STREAMD_DOMAIN].")]),
    ("json_output", Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]),
    ("verbose", Annotated[bool, typer.Option("--verbose", "-v", help="Print the connection settings on stderr.")]),
    ("debug", Annotated[bool, typer.Option(help="Show the full traceback of unexpected errors.")]),
]
_CONN_DEFAULTS: dict[str, Any] = {name: None for name, _ in _CONN_PARAMS}
_CONN_DEFAULTS.update(json_output=False, verbose=False, debug=False)

AdminFunc = Callable[..., Awaitable[None]]


def admin_command(
    target: typer.Typer, name: str, *, connected: bool = True
) -> Callable[[AdminFunc], Callable[..., None]]:
    """Register an async `func(session, ...)` as a command that also takes every connection option.

    A parameter annotated with a dataclass is an option group: its fields become the command's options (so commands
    that share settings, like `stream add` and `stream edit`, declare them once) and the function gets one instance.
    """

    def register(func: AdminFunc) -> Callable[..., None]:
        params, groups = _command_params(func)
        conn_names = [n for n, _ in _CONN_PARAMS]

        @functools.wraps(func)
        def command(**kwargs: Any) -> None:
            conn = {n: kwargs.pop(n) for n in conn_names}
            for arg, (cls, fields) in groups.items():
                kwargs[arg] = cls(**{f: kwargs.pop(f) for f in fields})
            run_admin(func, kwargs, conn, connected)

        del command.__wrapped__  # typer must see the new signature, not the wrapped one
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        target.command(name, cls=OneLineErrorCommand)(command)
        return command

    return register


def _command_params(func: AdminFunc) -> tuple[list[inspect.Parameter], dict[str, tuple[type, list[str]]]]:
    """The command's own parameters (option groups spread into their fields), then the connection options."""
    hints = typing.get_type_hints(func, include_extras=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, list[str]]] = {}
    for p in list(inspect.signature(func).parameters.values())[1:]:
        cls = hints[p.name]
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            params.append(p.replace(annotation=cls))
            continue
        field_hints = typing.get_type_hints(cls, include_extras=True)
        fields = dataclasses.fields(cls)
        groups[p.name] = (cls, [f.name for f in fields])
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params += [inspect.Parameter(f.name, kind, annotation=field_hints[f.name], default=f.default) for f in fields]
    params += [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=_CONN_DEFAULTS[n])
        for n, a in _CONN_PARAMS
    ]
    return params, groups


def run_admin(func: AdminFunc, kwargs: dict[str, Any], conn: dict[str, Any], connected: bool) -> None:
    debug = bool(conn["debug"])
    try:
        flags = {k: conn[k] for k in _SETTINGS}
        settings = resolve_settings(flags, conn["config"], os.environ)
        if conn["verbose"]:
            for label, value, source in settings.describe():
                typer.echo(f"{label}: {value}  (from {source})", err=True)
        asyncio.run(_run(func, kwargs, settings, bool(conn["json_output"]), connected))
    except CliError as exc:
        if debug:
            raise
        typer.echo(f"streamd: {exc}", err=True)
        raise typer.Exit(1) from None
    except (typer.Exit, typer.Abort):
        raise
    except BrokenPipeError:  # the reader went away (`| head`): nothing left to say, and no traceback at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(1) from None
    except Exception as exc:
        if debug:
            raise
        typer.echo(f"streamd: unexpected error: {exc!r} — run again with --debug for the traceback", err=True)
        raise typer.Exit(1) from None


async def _run(func: AdminFunc, kwargs: dict[str, Any], settings: Settings, json_output: bool, connected: bool) -> None:
    if not connected:
        await func(Session(None, settings, json_output), **kwargs)
        return
    nc = await connect(settings)
    try:
        await func(Session(nc, settings, json_output), **kwargs)
    finally:
        try:
            await asyncio.wait_for(nc.close(), 5)
        except Exception:  # closing is best effort; the command's outcome is already decided
            pass
