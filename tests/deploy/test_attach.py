"""deploy/nats-server.conf + deploy/streamd.toml as shipped: a real nats-server and a real `streamd serve` attach.

The only change to the shipped files is the two loopback ports (4222/7422 become free ones, so the test never meets
another server on this machine); the leaf password comes from STREAMD_LEAF_PASSWORD in both processes, as the files
say."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import msgspec
import pytest

from streamd.server.embedded import nats_server_binary
from streamd.server.settings import ServiceConfig, build, load_toml
from tests.deploy.procs import api_answers, clean_env, healthcheck, nats_server, round_trip, stop
from tests.deploy.shipped import DEPLOY, leaf_password, read, streamd_command, with_ports
from tests.natsd import free_port

pytestmark = pytest.mark.timeout(60)


class Deployment:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port, self.leaf_port = free_port(), free_port()
        self.password = leaf_password()
        ports = {4222: self.port, 7422: self.leaf_port}
        self.conf = workdir / "nats-server.conf"
        self.conf.write_text(with_ports(read("nats-server.conf"), ports))
        self.toml = workdir / "streamd.toml"
        self.toml.write_text(with_ports(read("streamd.toml"), ports))

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def streamd(self, password: str) -> asyncio.subprocess.Process:
        """`streamd serve --config deploy/streamd.toml` (data in the work dir), leaf password from the environment."""
        return await asyncio.create_subprocess_exec(
            *streamd_command(),
            "serve",
            "--config",
            str(self.toml),
            "--data",
            str(self.workdir / "data"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=clean_env(STREAMD_LEAF_PASSWORD=password),
        )


def test_streamd_toml_matches_server_conf() -> None:
    """The TOML attaches to the conf's listeners, names its leaf user, lists every setting and holds no secret."""
    values = load_toml(DEPLOY / "streamd.toml")
    cfg = build(values, {})
    assert cfg.server == "nats://127.0.0.1:4222" and "listen: 127.0.0.1:4222" in read("nats-server.conf")
    assert cfg.leaf == "nats-leaf://127.0.0.1:7422" and "listen: 127.0.0.1:7422" in read("nats-server.conf")
    assert cfg.leaf_user == "streamd" and "user: streamd" in read("nats-server.conf")
    assert "password: $STREAMD_LEAF_PASSWORD" in read("nats-server.conf")
    assert not cfg.leaf_password and not cfg.password and not cfg.token
    text = read("streamd.toml")
    for field in msgspec.structs.fields(ServiceConfig):
        assert f"\n{field.encode_name} = " in text or f"\n# {field.encode_name} = " in text, field.encode_name
    # every commented-out key is a valid setting at its documented value: uncommenting them all still loads
    uncommented = re.sub(r"(?m)^# ([a-z-]+ = )", r"\1", text)
    build(msgspec.toml.decode(uncommented.encode()), {})


async def test_nats_server_conf_has_no_default_password(tmp_path: Path) -> None:
    """Without STREAMD_LEAF_PASSWORD the shipped server config does not load: there is no fallback password."""
    dep = Deployment(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        nats_server_binary(),
        "-t",
        "-c",
        str(dep.conf),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=clean_env(),
    )
    out, _ = await proc.communicate()
    assert proc.returncode != 0
    assert b"STREAMD_LEAF_PASSWORD" in out


async def test_streamd_attaches_to_shipped_server(tmp_path: Path) -> None:
    dep = Deployment(tmp_path)
    async with nats_server(dep.conf, clean_env(STREAMD_LEAF_PASSWORD=dep.password)):
        # a wrong leaf password is refused by the server; streamd says so and exits 1
        wrong = await dep.streamd(leaf_password())
        async with asyncio.timeout(20):
            _, err = await wrong.communicate()
        assert wrong.returncode == 1, err.decode()
        assert b"leaf" in err and b"Authorization Violation" in err, err.decode()

        streamd = await dep.streamd(dep.password)
        assert streamd.stderr is not None
        log = asyncio.create_task(streamd.stderr.read())
        try:
            await api_answers(dep.url)
            await round_trip(dep.url, "DEPLOY")
            env = clean_env(STREAMD_SERVER=dep.url)
            assert await healthcheck(env) == (0, "streamd healthy: connected, leaf up, store writable\n")
            assert await healthcheck(env, "--live") == (0, "streamd answers\n")
        finally:
            code = await stop(streamd)
            text = (await log).decode(errors="replace")
        assert code == 0, text
        assert "leaf connection up" in text and "streamd stopped" in text, text
        assert dep.password not in text  # the secret is never logged
        # nobody answers now: the health check says so in one line and fails
        code, out = await healthcheck(env)
        assert code == 1 and out.startswith("streamd unhealthy: no $JS.API.INFO answer"), out
