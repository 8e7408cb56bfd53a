"""deploy/container (the image file, its ignore file, the health check) and deploy/compose.

No container engine runs here (docker's daemon is absent on the development machine and `docker compose` is not
installed), so the image is checked as a file, the compose file against the Compose Specification's JSON schema
(check-jsonschema's vendored copy) and by structure, and the compose file's moving parts run as real processes:
leaf-secret.py makes the password, nats-server loads compose/nats-server.conf with the generated include, and streamd
starts through the compose entrypoint (with `sh`) with the compose environment, hosts pointed at loopback ports."""

from __future__ import annotations

import asyncio
import fnmatch
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.procs import api_answers, clean_env, healthcheck, nats_server, round_trip, stop
from tests.deploy.shipped import DEPLOY, HEALTHCHECK, ROOT, literal_secrets, read, streamd_command
from tests.natsd import free_port

COMPOSE = DEPLOY / "compose"


def instructions(text: str) -> list[tuple[str, str]]:
    """A Containerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule, for the simple patterns used here: the last matching line wins."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.removeprefix("!").rstrip("/")
        if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/") or fnmatch.fnmatch(path, pat.replace("**/", "")):
            result = not negate
    return result


def test_containerfile() -> None:
    text = read("container/Containerfile")
    steps = instructions(text)
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [arg for word, arg in steps if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image must not run as root"
    assert ("VOLUME", '["/data"]') in steps
    assert ("ENV", "STREAMD_DATA=/data") in steps
    (health,) = [arg for word, arg in steps if word == "HEALTHCHECK"]
    assert health.endswith('CMD ["streamd-healthcheck"]') and "--interval=" in health
    assert steps[-1] == ("ENTRYPOINT", '["streamd", "serve"]')
    assert literal_secrets(text) == []
    # everything COPY takes exists in the build context (the repository root) and survives the ignore file
    patterns = [
        ln.strip() for ln in read("container/Containerfile.dockerignore").splitlines() if ln.strip() and ln[0] != "#"
    ]
    sources = [src for word, arg in steps if word == "COPY" for src in arg.split()[:-1] if not src.startswith("--")]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not ignored(src, patterns), f"{src} is excluded by Containerfile.dockerignore"
    for unwanted in (".venv", "streamd-data", "tests/conftest.py", ".git"):
        assert ignored(unwanted, patterns), unwanted
    assert ignored("streamd/__pycache__", patterns)


def test_healthcheck_settings_follow_streamd() -> None:
    """The health check finds the server as streamd does: variables over the TOML file named by STREAMD_CONFIG."""
    spec = importlib.util.spec_from_file_location("healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    hc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hc)
    assert hc.settings({}) == {"server": "nats://127.0.0.1:4222"}
    toml = DEPLOY / "streamd.toml"
    assert hc.settings({"STREAMD_CONFIG": str(toml)}) == {"server": "nats://127.0.0.1:4222"}
    env = {"STREAMD_CONFIG": str(toml), "STREAMD_SERVER": "nats://nats:4222", "STREAMD_DOMAIN": "hub"}
    assert hc.settings(env) == {"server": "nats://nats:4222", "domain": "hub"}
    assert hc.verdict({"error": {"code": 503}}, False)[0] is False
    assert hc.verdict({"api": {}}, True) == (
        False,
        "$JS.API.INFO is answered, but not by streamd (a JetStream server?)",
    )
    down = {"streamd": {"health": {"connected": True, "leaf_connected": False, "store_writable": True}}}
    assert hc.verdict(down, True) == (True, "streamd answers")
    assert hc.verdict(down, False) == (False, "streamd unhealthy: leaf connection down (consumer deliveries wait)")


def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (the test extra has it)")
    loaded = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_schema() -> None:
    """The Compose Specification's own JSON schema (as vendored by check-jsonschema)."""
    pytest.importorskip("check_jsonschema", reason="check-jsonschema is not installed (the test extra has it)")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_structure() -> None:
    doc = compose()
    services: dict[str, Any] = doc["services"]
    assert set(services) == {"leaf-secret", "nats", "streamd"}
    assert services["nats"]["image"].split(":")[0] == "nats"  # the official image
    build = services["streamd"]["build"]
    assert (COMPOSE / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "container" / "Containerfile"
    # every named volume used is declared, every bind-mounted file exists
    declared = set(doc["volumes"])
    used = set()
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source, target = mount.split(":")[:2]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name}: {source}"
            else:
                used.add(source)
            assert target.startswith("/")
    assert used == declared == {"leaf-secret", "streamd-data"}
    assert "streamd-data:/data" in services["streamd"]["volumes"]
    # the secret is made before either server starts, and only published on loopback
    for name in ("nats", "streamd"):
        assert services[name]["depends_on"]["leaf-secret"] == {"condition": "service_completed_successfully"}
    for service in services.values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port
    assert "7422" not in json.dumps(services["nats"].get("ports", []))
    for name in ("compose.yaml", "nats-server.conf"):
        assert literal_secrets((COMPOSE / name).read_text()) == []
    assert not any("PASSWORD" in key for key in services["streamd"]["environment"])


def compose_entrypoint(secrets_dir: Path) -> list[str]:
    """The streamd service's entrypoint as compose would run it: `$$` is a literal `$`; /secrets is `secrets_dir`."""
    entry = [
        part.replace("$$", "$").replace("/secrets/", f"{secrets_dir}/")
        for part in compose()["services"]["streamd"]["entrypoint"]
    ]
    assert entry[:2] == ["sh", "-c"] and entry[2].endswith('exec streamd serve "$@"')
    # `streamd` there is the image's console script: here, this environment's
    entry[2] = entry[2].replace("exec streamd serve", "exec " + " ".join(streamd_command()) + " serve")
    return entry


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck is not installed (Debian package shellcheck)"
)
def test_compose_entrypoint_shellcheck(tmp_path: Path) -> None:
    script = tmp_path / "entrypoint.sh"
    script.write_text(compose()["services"]["streamd"]["entrypoint"][2].replace("$$", "$") + "\n")
    shellcheck = shutil.which("shellcheck")
    assert shellcheck is not None
    done = subprocess.run(
        [shellcheck, "--shell=sh", str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh to run the compose entrypoint")
async def test_compose_parts_run(tmp_path: Path) -> None:
    doc = compose()
    # leaf-secret: first start writes the password, later starts keep it
    secrets_dir = tmp_path / "nats" / "secrets"  # nats-server.conf includes secrets/leaf-password.conf beside it
    cmd = doc["services"]["leaf-secret"]["command"]
    assert cmd[:3] == ["python", "/leaf-secret.py", "/secrets"]
    for _ in range(2):
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(COMPOSE / "leaf-secret.py"), str(secrets_dir)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    assert "kept" in done.stdout
    password = (secrets_dir / "leaf-password").read_text()
    assert re.fullmatch(r"sd[0-9a-f]{48}", password) and password not in done.stdout
    assert (secrets_dir / "leaf-password").stat().st_mode & 0o777 == 0o400

    port, leaf_port = free_port(), free_port()
    conf = tmp_path / "nats" / "nats-server.conf"
    text = read("compose/nats-server.conf")
    assert text.count("0.0.0.0:4222") == 1 and text.count("0.0.0.0:7422") == 1
    conf.write_text(text.replace("0.0.0.0:4222", f"127.0.0.1:{port}").replace("0.0.0.0:7422", f"127.0.0.1:{leaf_port}"))

    env = {k: str(v) for k, v in doc["services"]["streamd"]["environment"].items()}
    assert env["STREAMD_SERVER"] == "nats://nats:4222" and env["STREAMD_LEAF"] == "nats-leaf://nats:7422"
    env["STREAMD_SERVER"] = f"nats://127.0.0.1:{port}"
    env["STREAMD_LEAF"] = f"nats-leaf://127.0.0.1:{leaf_port}"
    env["STREAMD_DATA"] = str(tmp_path / "data")
    url = env["STREAMD_SERVER"]
    async with nats_server(conf, clean_env()):
        streamd = await asyncio.create_subprocess_exec(
            *compose_entrypoint(secrets_dir),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=clean_env(**env),
        )
        assert streamd.stderr is not None
        log = asyncio.create_task(streamd.stderr.read())
        try:
            await api_answers(url)
            await round_trip(url, "COMPOSED")
            # the image's HEALTHCHECK runs with the container's environment
            assert await healthcheck(clean_env(**env)) == (0, "streamd healthy: connected, leaf up, store writable\n")
        finally:
            code = await stop(streamd)
            output = (await log).decode(errors="replace")
        assert code == 0, output
        assert "leaf connection up" in output and password not in output


async def test_healthcheck_without_server_fails_fast() -> None:
    """No server at all: one line naming the refusal, at once (nats-py alone would retry its first connect forever)."""
    started = time.monotonic()
    code, out = await healthcheck(clean_env(STREAMD_SERVER=f"nats://127.0.0.1:{free_port()}"))
    assert code == 1 and "ConnectionRefusedError" in out, out
    assert time.monotonic() - started < 5
