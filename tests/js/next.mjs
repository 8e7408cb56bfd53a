// Scenario 6: next({expires}) on an empty consumer resolves null after the expiry, then returns published messages.
import { AckPolicy } from "@nats-io/jetstream";
import { run, msgRecord, now } from "./common.mjs";

await run(async ({ js, jsm, out, step }) => {
  step("jsm.streams.add");
  await jsm.streams.add({ name: "JSNEXT", subjects: ["jsnext.>"] });
  step("jsm.consumers.add");
  await jsm.consumers.add("JSNEXT", { durable_name: "nx", ack_policy: AckPolicy.Explicit });
  const c = await js.consumers.get("JSNEXT", "nx");

  step("next() on empty consumer");
  let t0 = now();
  const empty = await c.next({ expires: 1000 });
  out.emptyMs = now() - t0;
  out.empty = empty === null ? null : msgRecord(empty);

  step("js.publish one");
  await js.publish("jsnext.one", "one");
  step("next() after publish");
  const m1 = await c.next({ expires: 2000 });
  out.afterPublish = m1 === null ? null : msgRecord(m1);
  m1?.ack();

  // a next() already waiting is woken by a publish
  step("next() waiting, then js.publish two");
  t0 = now();
  const waiting = c.next({ expires: 5000 });
  await js.publish("jsnext.two", "two");
  const m2 = await waiting;
  out.waitingMs = now() - t0;
  out.waiting = m2 === null ? null : msgRecord(m2);
  m2?.ack();
});
