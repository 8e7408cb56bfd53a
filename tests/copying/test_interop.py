"""nats-server -js copying from streamd: a real JetStream server mirrors and sources a streamd stream through
streamd's domain API prefix, as it would any JetStream."""

from __future__ import annotations

from typing import Any

import nats

from tests.conformance.util import api
from tests.conftest import StartService
from tests.helpers import wait_for
from tests.natsd import NatsServer


async def test_jetstream_mirrors_and_sources_a_streamd_stream(hub: NatsServer, start_service: StartService) -> None:
    await start_service(server=hub.url, leaf=hub.leaf_url, domain="edge")
    nc = await nats.connect(hub.url)
    try:
        edge = nc.jetstream(domain="edge", timeout=5)
        await edge.add_stream(name="O", subjects=["o.>"])
        for i in range(30):
            await edge.publish(f"o.{i % 3}", b"m%d" % i, headers={"H": str(i)})
        await edge.delete_msg("O", 7)

        async def hub_api(what: str, body: Any = b"") -> dict[str, Any]:
            return await api(nc, f"$JS.hub.API.{what}", body, timeout=5)

        ext = {"api": "$JS.edge.API", "deliver": ""}
        assert "error" not in await hub_api("STREAM.CREATE.M", {"name": "M", "mirror": {"name": "O", "external": ext}})
        made = await hub_api("STREAM.CREATE.S", {"name": "S", "sources": [{"name": "O", "external": ext}]})
        assert "error" not in made

        async def copied() -> bool:
            m, s = await hub_api("STREAM.INFO.M"), await hub_api("STREAM.INFO.S")
            return bool(m["state"]["last_seq"] == 30 and s["state"]["messages"] == 29)

        await wait_for(copied, timeout=20)  # nats-server first asks for API level 4, then retries without
        hub_js = nc.jetstream(domain="hub", timeout=5)
        for seq in (1, 6, 8, 30):
            mine, theirs = await hub_js.get_msg("M", seq), await edge.get_msg("O", seq)
            assert (mine.subject, mine.data, mine.headers) == (theirs.subject, theirs.data, theirs.headers)
        assert (await hub_api("STREAM.INFO.M"))["state"]["num_deleted"] == 1
    finally:
        await nc.close()
