"""Attaching to a server: authentication, waiting for it, reconnecting, advisories on the wire."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats
import pytest

from tests.conftest import StartService
from tests.helpers import start_streamd_process, wait_for
from tests.natsd import NatsServer, free_port, run_nats_server

LEAF_AUTH = 'authorization { user: leaf, password: "leaf-pw" }'
LEAF_CREDS = {"leaf_user": "leaf", "leaf_password": "leaf-pw"}


@pytest.mark.parametrize(
    ("auth_conf", "client_auth", "service_auth"),
    [
        pytest.param(
            'authorization { user: app, password: "pw-123" }',
            {"user": "app", "password": "pw-123"},
            {"user": "app", "password": "pw-123"},
            id="user-password",
        ),
        pytest.param(
            'authorization { token: "tok-456" }',
            {"token": "tok-456"},
            {"token": "tok-456", **LEAF_CREDS},
            id="token",
        ),
    ],
)
async def test_authenticated_server(
    start_service: StartService,
    tmp_path: Path,
    auth_conf: str,
    client_auth: dict[str, str],
    service_auth: dict[str, str],
) -> None:
    leaf_auth = LEAF_AUTH if "leaf_user" in service_auth else ""
    async with run_nats_server(tmp_path / "auth", extra=auth_conf + "\n", leaf_auth=leaf_auth) as server:
        await start_service(server=server.url, leaf=server.leaf_url, **service_auth)
        nc = await nats.connect(server.url, **client_auth)
        js = nc.jetstream(timeout=5)
        await js.add_stream(name="AUTH", subjects=["auth.>"])
        assert (await js.publish("auth.x", b"1")).seq == 1
        await nc.close()


async def test_wrong_credentials_fail_fast_with_one_line(tmp_path: Path) -> None:
    async with run_nats_server(tmp_path / "auth", extra='authorization { user: app, password: "right" }\n') as server:
        proc = await start_streamd_process(
            "--server", server.url, "--data", str(tmp_path / "d"), "--user", "app", "--password", "pw-Zq81-secret"
        )
        _out, err = await asyncio.wait_for(proc.communicate(), 20)
    text = err.decode()
    assert proc.returncode == 1, text
    lines = [line for line in text.splitlines() if line.startswith("streamd:")]
    assert len(lines) == 1 and "credentials" in lines[0] and "Traceback" not in text
    assert "pw-Zq81-secret" not in text, "the password must never be logged"


async def test_waits_for_a_server_that_is_not_up_yet(start_service: StartService, tmp_path: Path) -> None:
    port, leaf_port = free_port(), free_port()
    starting = asyncio.create_task(
        start_service(server=f"nats://127.0.0.1:{port}", leaf=f"nats-leaf://127.0.0.1:{leaf_port}")
    )
    await asyncio.sleep(0)  # let it begin connecting before the server exists
    async with run_nats_server(tmp_path / "late", port=port, leaf_port=leaf_port) as server:
        await asyncio.wait_for(starting, 30)
        nc = await nats.connect(server.url)
        await nc.jetstream(timeout=5).add_stream(name="LATE", subjects=["late"])
        await nc.close()


async def test_reconnects_and_keeps_serving_after_the_server_restarts(
    start_service: StartService, tmp_path: Path
) -> None:
    port, leaf_port = free_port(), free_port()
    url = f"nats://127.0.0.1:{port}"
    async with run_nats_server(tmp_path / "first", port=port, leaf_port=leaf_port):
        await start_service(server=url, leaf=f"nats-leaf://127.0.0.1:{leaf_port}")
        nc = await nats.connect(url)
        js = nc.jetstream(timeout=5)
        await js.add_stream(name="RC", subjects=["rc.>"])
        assert (await js.publish("rc.1", b"before")).seq == 1
        await nc.close()
    async with run_nats_server(tmp_path / "second", port=port, leaf_port=leaf_port):
        nc = await nats.connect(url)
        js = nc.jetstream(timeout=2)

        async def published() -> int:
            return (await js.publish("rc.2", b"after")).seq

        assert await wait_for(published, timeout=30) == 2
        assert (await js.get_msg("RC", 1)).data == b"before"
        await nc.close()


async def test_stream_advisories(nc: nats.NATS, nats_server: NatsServer) -> None:
    seen: list[tuple[str, dict[str, object]]] = []

    async def on_advisory(msg: nats.aio.msg.Msg) -> None:
        seen.append((msg.subject, json.loads(msg.data)))

    await nc.subscribe("$JS.EVENT.ADVISORY.STREAM.>", cb=on_advisory)
    await nc.flush()
    js = nc.jetstream(timeout=5)
    await js.add_stream(name="ADV", subjects=["adv"])
    await js.update_stream(name="ADV", subjects=["adv"], max_msgs=5)
    await js.delete_stream("ADV")
    await wait_for(lambda: len(seen) == 3)
    assert [s for s, _ in seen] == [
        "$JS.EVENT.ADVISORY.STREAM.CREATED.ADV",
        "$JS.EVENT.ADVISORY.STREAM.UPDATED.ADV",
        "$JS.EVENT.ADVISORY.STREAM.DELETED.ADV",
    ]
    for (_subject, body), action in zip(seen, ("create", "modify", "delete"), strict=True):
        assert body["type"] == "io.nats.jetstream.advisory.v1.stream_action"
        assert body["stream"] == "ADV" and body["action"] == action
        assert body["id"] and str(body["timestamp"]).endswith("Z")


async def test_per_message_ttl_expires_only_that_message(nc: nats.NATS) -> None:
    js = nc.jetstream(timeout=5)
    await js.add_stream(name="TTL", subjects=["ttl.>"], allow_msg_ttl=True)
    await js.publish("ttl.short", b"goes", headers={"Nats-TTL": "1s"})
    await js.publish("ttl.keep", b"stays")
    await js.publish("ttl.never", b"stays too", headers={"Nats-TTL": "never"})

    async def one_left() -> bool:
        return (await js.stream_info("TTL")).state.messages == 2

    await wait_for(one_left, timeout=10)
    assert (await js.get_msg("TTL", 2)).data == b"stays"
    with pytest.raises(nats.js.errors.NotFoundError):
        await js.get_msg("TTL", 1)


async def test_nkey_authentication(start_service: StartService, tmp_path: Path) -> None:
    import os

    import nkeys

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(seed).public_key.decode()
    seed_file = tmp_path / "streamd.nk"
    seed_file.write_bytes(seed)
    seed_file.chmod(0o600)
    auth = f"authorization {{ users: [ {{ nkey: {public} }} ] }}\n"
    async with run_nats_server(tmp_path / "nk", extra=auth, leaf_auth=LEAF_AUTH) as srv:
        await start_service(server=srv.url, leaf=srv.leaf_url, nkey_seed=str(seed_file), **LEAF_CREDS)
        nc = await nats.connect(srv.url, nkeys_seed=str(seed_file))
        js = nc.jetstream(timeout=5)
        await js.add_stream(name="NK", subjects=["nk"])
        assert (await js.publish("nk", b"1")).seq == 1
        await nc.close()


def _make_tls(dir_: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl command."""
    import subprocess

    ca_key, ca, key, csr, cert = (dir_ / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = dir_ / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            ca_key,
            "-out",
            ca,
            "-days",
            "1",
            "-subj",
            "/CN=t",
        ],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "1",
            "-extfile",
            ext,
        ],
    ]
    for args in run:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    return ca, cert, key


async def test_tls_server(start_service: StartService, tmp_path: Path) -> None:
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    ca, cert, key = _make_tls(tmp_path)
    conf = f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\n'
    async with run_nats_server(tmp_path / "tls", extra=conf) as server:
        await start_service(server=server.url, leaf=server.leaf_url, tls_ca=str(ca))
        ctx = ssl.create_default_context(cafile=str(ca))
        nc = await nats.connect(server.url, tls=ctx)
        js = nc.jetstream(timeout=5)
        await js.add_stream(name="TLS", subjects=["tls"])
        assert (await js.publish("tls", b"1")).seq == 1
        await nc.close()
