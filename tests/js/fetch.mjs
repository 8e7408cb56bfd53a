// Scenario 2: durable pull consumer via jsm.consumers.add, js.consumers.get, fetch 5 of 8 and ack.
import { AckPolicy } from "@nats-io/jetstream";
import { run, publishN, msgRecord, now } from "./common.mjs";

await run(async ({ js, jsm, out, step }) => {
  step("jsm.streams.add");
  await jsm.streams.add({ name: "JSFETCH", subjects: ["jsfetch.>"] });
  await publishN(js, (i) => `jsfetch.${i}`, 8, step);
  step("jsm.consumers.add");
  const ci = await jsm.consumers.add("JSFETCH", { durable_name: "dur", ack_policy: AckPolicy.Explicit });
  out.added = { name: ci.name, ack_policy: ci.config.ack_policy, num_pending: ci.num_pending };
  step("js.consumers.get");
  const c = await js.consumers.get("JSFETCH", "dur");
  step("consumer.fetch");
  const t0 = now();
  const iter = await c.fetch({ max_messages: 5, expires: 2000 });
  out.msgs = [];
  for await (const m of iter) {
    out.msgs.push(msgRecord(m));
    m.ack();
  }
  out.fetchMs = now() - t0;
});
