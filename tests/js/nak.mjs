// Scenario 4: nak() -> redelivered with deliveryCount 2, then ack; nak(500) -> not back before ~500 ms.
import { AckPolicy } from "@nats-io/jetstream";
import { run, msgRecord, now } from "./common.mjs";

async function fetchOne(c, expires) {
  const got = [];
  for await (const m of await c.fetch({ max_messages: 1, expires })) got.push(m);
  return got;
}

await run(async ({ js, jsm, out, step }) => {
  step("jsm.streams.add");
  await jsm.streams.add({ name: "JSNAK", subjects: ["jsnak.>"] });
  step("js.publish first");
  await js.publish("jsnak.a", "first");
  step("jsm.consumers.add");
  await jsm.consumers.add("JSNAK", { durable_name: "nk", ack_policy: AckPolicy.Explicit, ack_wait: 30_000_000_000 });
  const c = await js.consumers.get("JSNAK", "nk");

  // nak() without delay: the only message comes straight back
  step("fetch #1");
  const [m1] = await fetchOne(c, 2000);
  out.first = m1 && msgRecord(m1);
  m1.nak();
  step("fetch #2 (after nak)");
  const [m2] = await fetchOne(c, 3000);
  out.afterNak = m2 ? msgRecord(m2) : null;
  m2?.ack();

  // nak(500): the message must not come back before the delay
  step("js.publish second");
  await js.publish("jsnak.b", "second");
  step("fetch #3");
  const [m3] = await fetchOne(c, 2000);
  out.second = m3 && msgRecord(m3);
  const t0 = now();
  m3.nak(500);
  step("fetch #4 (after nak(500))");
  const [m4] = await fetchOne(c, 4000);
  out.afterDelayedNakMs = now() - t0;
  out.afterDelayedNak = m4 ? msgRecord(m4) : null;
  m4?.ack();
});
