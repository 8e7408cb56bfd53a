// nats.js (v2) against nats-server -js: the same scenarios as scripts/bench_fast.py, for comparison only
// (issue 12 says nats.js is no fast client either; this measures by how much). ESM resolves "nats" next to the
// script, so run it from a scratch directory outside the repository:
//   mkdir /tmp/njs && cd /tmp/njs && npm install nats@2 && cp <repo>/scripts/loadgen/natsjs_bench.mjs .
//   node natsjs_bench.mjs nats://127.0.0.1:4222 100000     # a running `nats-server -js`; uses stream NJS
import { connect, AckPolicy } from "nats";
const url = process.argv[2], N = Number(process.argv[3] ?? 100000), G = 20000;
const nc = await connect({ servers: url });
const jsm = await nc.jetstreamManager();
try { await jsm.streams.delete("NJS"); } catch {}
await jsm.streams.add({ name: "NJS", subjects: ["njs.>"], allow_direct: true });
const js = nc.jetstream();
const payload = new Uint8Array(128);
const rate = (label, n, t0) => console.log(`${label}: ${Math.round(n / ((performance.now() - t0) / 1000))} msgs/s`);
let t0 = performance.now(), inflight = [];
for (let i = 0; i < N; i++) {
  inflight.push(js.publish("njs.x", payload));
  if (inflight.length >= 500) { await Promise.all(inflight); inflight = []; }
}
await Promise.all(inflight); rate("publish async (batches of 500)", N, t0);
for (const [name, label] of [["C", "pull consume"], ["F", "fetch"]]) {
  await jsm.consumers.add("NJS", { durable_name: name, ack_policy: AckPolicy.Explicit, max_ack_pending: 20000 });
  const c = await js.consumers.get("NJS", name);
  let n = 0; t0 = performance.now();
  if (name === "C") {
    const msgs = await c.consume({ max_messages: 500 });
    for await (const m of msgs) { m.ack(); if (++n === N) break; }
  } else {
    while (n < N) { const it = await c.fetch({ max_messages: 100, expires: 5000 }); for await (const m of it) { m.ack(); n++; } }
  }
  rate(label, n, t0);
}
{ const oc = await js.consumers.get("NJS"); let n = 0; t0 = performance.now();
  const msgs = await oc.consume(); for await (const m of msgs) { if (++n === N) break; } rate("ordered", n, t0); }
t0 = performance.now();
for (let i = 1; i <= G; i++) { await jsm.direct.getMessage("NJS", { seq: i }); }
rate("direct get one at a time", G, t0);
await nc.close();
