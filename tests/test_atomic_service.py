"""Atomic batches in a running service: the atomic-* settings, the timeout of an idle batch (advised when it
fires, not when the next message comes), and a restart, which abandons open batches (they live in memory)."""

from __future__ import annotations

import json

import nats

from tests.conftest import StartService
from tests.natsd import NatsServer


async def test_timeout_limits_and_restart(start_service: StartService, nats_server: NatsServer) -> None:
    service = await start_service(atomic_timeout=0.2, atomic_max_msgs=2)
    nc = await nats.connect(nats_server.url)
    try:
        cfg = {"name": "A", "subjects": ["a.>"], "allow_atomic": True}
        assert "error" not in json.loads((await nc.request("$JS.API.STREAM.CREATE.A", json.dumps(cfg).encode())).data)
        advisories = await nc.subscribe("$JS.EVENT.ADVISORY.STREAM.BATCH_ABANDONED.A")

        async def send(bid: str, seq: int, commit: bool = False) -> bytes:
            h = {"Nats-Batch-Id": bid, "Nats-Batch-Sequence": str(seq)}
            if commit:
                h["Nats-Batch-Commit"] = "1"
            return bytes((await nc.request("a.x", b"m", timeout=2, headers=h)).data)

        assert await send("idle", 1) == b""
        adv = json.loads((await advisories.next_msg(timeout=5)).data)  # the expiry loop's, with nothing sent
        assert (adv["batch"], adv["reason"]) == ("idle", "timeout")
        assert json.loads(await send("idle", 2, commit=True))["error"]["err_code"] == 10176

        assert await send("big", 1) == b""
        assert await send("big", 2) == b""
        too_large = json.loads(await send("big", 3, commit=True))["error"]
        assert (too_large["err_code"], too_large["description"]) == (10199, "atomic publish batch is too large: 2")
        assert json.loads((await advisories.next_msg(timeout=2)).data)["reason"] == "large"

        assert await send("open", 1) == b""
        await service.stop()
        await start_service(atomic_timeout=0.2, atomic_max_msgs=2)
        assert json.loads(await send("open", 2, commit=True))["error"]["err_code"] == 10176
        info = json.loads((await nc.request("$JS.API.STREAM.INFO.A", b"")).data)
        assert info["state"]["messages"] == 0
    finally:
        await nc.close()
