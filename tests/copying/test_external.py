"""A streamd mirror and source of a stream on a real nats-server -js, reached through its domain's API prefix."""

from __future__ import annotations

from typing import Any

import nats

from tests.conformance.util import api
from tests.conftest import StartService
from tests.helpers import wait_for
from tests.natsd import NatsServer


async def test_mirror_and_source_of_a_jetstream_stream(hub: NatsServer, start_service: StartService) -> None:
    await start_service(server=hub.url, leaf=hub.leaf_url, domain="edge")
    nc = await nats.connect(hub.url)
    try:
        js = nc.jetstream(timeout=5)
        await js.add_stream(name="O", subjects=["o.>"])
        for i in range(20):
            await js.publish(f"o.{i % 2}", b"m%d" % i, headers={"H": str(i)})
        await js.delete_msg("O", 3)

        async def edge(what: str, body: Any = b"") -> dict[str, Any]:
            return await api(nc, f"$JS.edge.API.{what}", body, timeout=5)

        ext = {"api": "$JS.hub.API", "deliver": ""}
        made = await edge("STREAM.CREATE.M", {"name": "M", "mirror": {"name": "O", "external": ext}})
        assert made["config"]["mirror"] == {"name": "O", "external": ext}
        await edge(
            "STREAM.CREATE.S", {"name": "S", "sources": [{"name": "O", "filter_subject": "o.1", "external": ext}]}
        )
        transforms = [{"src": "o.0", "dest": "zero"}, {"src": "o.1", "dest": "one"}]
        st = {"name": "ST", "sources": [{"name": "O", "subject_transforms": transforms, "external": ext}]}
        await edge("STREAM.CREATE.ST", st)
        await js.publish("o.1", b"late")

        async def copied() -> bool:
            m, s = await edge("STREAM.INFO.M"), await edge("STREAM.INFO.S")
            t = await edge("STREAM.INFO.ST")
            return bool(m["state"]["last_seq"] == 21 and s["state"]["messages"] == 11 and t["state"]["messages"] == 20)

        await wait_for(copied)
        info = await edge("STREAM.INFO.M")
        assert info["state"]["num_deleted"] == 1 and info["state"]["messages"] == 20
        assert info["mirror"]["external"] == ext and info["mirror"]["lag"] == 0
        edge_js = nc.jetstream(domain="edge", timeout=5)
        for seq in (1, 2, 4, 21):
            mine, theirs = await edge_js.get_msg("M", seq), await js.get_msg("O", seq)
            assert (mine.subject, mine.data, mine.headers) == (theirs.subject, theirs.data, theirs.headers)
        last = await edge_js.get_msg("S", 11)
        assert last.data == b"late" and last.headers["Nats-Stream-Source"].startswith("O:")
        renamed = [await edge_js.get_msg("ST", seq) for seq in (1, 2, 20)]
        assert [(m.subject, m.data) for m in renamed] == [("zero", b"m0"), ("one", b"m1"), ("one", b"late")]
        sources = (await edge("STREAM.INFO.S"))["sources"]
        assert [(s["name"], s["filter_subject"], s["external"]) for s in sources] == [("O", "o.1", ext)]
        # A workqueue origin takes the copier's consumer too: it is a `direct` one, as nats-server's own are.
        await js.add_stream(name="W", subjects=["w.>"], retention="workqueue")
        for i in range(3):
            await js.publish("w.x", b"w%d" % i)
        await edge("STREAM.CREATE.MW", {"name": "MW", "mirror": {"name": "W", "external": ext}})

        async def work_copied() -> bool:
            return bool((await edge("STREAM.INFO.MW"))["state"]["messages"] == 3)

        await wait_for(work_copied)  # (the server then drops them from W: an ack-none delivery is a removal there)

        # An origin deleted and created again under its name: 2.15 tells by its identity, the source starts over.
        await js.add_stream(name="R", subjects=["r.>"])
        for i in range(3):
            await js.publish("r.x", b"old%d" % i)
        await edge("STREAM.CREATE.RS", {"name": "RS", "sources": [{"name": "R", "external": ext}]})

        async def count(n: int) -> bool:
            return bool((await edge("STREAM.INFO.RS"))["state"]["messages"] == n)

        await wait_for(lambda: count(3))
        old = (await edge_js.get_msg("RS", 3)).headers or {}
        await js.delete_stream("R")
        await js.add_stream(name="R", subjects=["r.>"])
        for i in range(2):
            await js.publish("r.x", b"new%d" % i)
        await wait_for(lambda: count(5))
        new = [await edge_js.get_msg("RS", seq) for seq in (4, 5)]
        assert [m.data for m in new] == [b"new0", b"new1"]
        fields = [(m.headers or {})["Nats-Stream-Source"].split(" ") for m in new]
        assert [f[1] for f in fields] == ["1", "2"]  # the new stream's sequences, from its start
        assert fields[0][5] != old["Nats-Stream-Source"].split(" ")[5]  # under the new stream's identity
    finally:
        await nc.close()
