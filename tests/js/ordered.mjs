// Scenario 5: ordered consumers (js.consumers.get(stream) without a name), read with consume() and with fetch().
import { run, publishN, msgRecord, collectStatus } from "./common.mjs";

const N = 50;

await run(async ({ js, jsm, out, step }) => {
  step("jsm.streams.add");
  await jsm.streams.add({ name: "JSORDERED", subjects: ["jsordered.>"] });
  await publishN(js, (i) => `jsordered.${i % 5}`, N, step);

  step("js.consumers.get (ordered, for consume)");
  const oc = await js.consumers.get("JSORDERED");
  step("ordered consume()");
  const messages = await oc.consume();
  out.consumeStatus = [];
  collectStatus(messages, out.consumeStatus);
  out.consumed = [];
  step("iterate ordered consume()");
  for await (const m of messages) {
    out.consumed.push(msgRecord(m));
    if (out.consumed.length === N) messages.stop();
  }
  await messages.closed();
  out.consumeStatus = out.consumeStatus.filter((s) => s.type !== "next" && s.type !== "heartbeat");

  step("js.consumers.get (ordered, for fetch)");
  const of = await js.consumers.get("JSORDERED", { filter_subjects: ["jsordered.1"] });
  step("ordered fetch()");
  out.fetched = [];
  for await (const m of await of.fetch({ max_messages: N, expires: 1000 })) {
    out.fetched.push(msgRecord(m));
  }
});
