// Scenario 3: consume({max_messages: 100}) over 500 messages with acks, in order, exactly once; then stop.
import { AckPolicy } from "@nats-io/jetstream";
import { run, publishN, collectStatus } from "./common.mjs";

const N = 500;

await run(async ({ js, jsm, out, step }) => {
  step("jsm.streams.add");
  await jsm.streams.add({ name: "JSCONSUME", subjects: ["jsconsume.>"] });
  await publishN(js, "jsconsume.x", N, step);
  step("jsm.consumers.add");
  await jsm.consumers.add("JSCONSUME", { durable_name: "worker", ack_policy: AckPolicy.Explicit });
  step("js.consumers.get");
  const c = await js.consumers.get("JSCONSUME", "worker");
  step("consumer.consume");
  const messages = await c.consume({ max_messages: 100 });
  out.status = [];
  collectStatus(messages, out.status);
  out.seqs = [];
  out.badData = [];
  out.redelivered = 0;
  step("iterate consume()");
  for await (const m of messages) {
    const seq = m.info.streamSequence;
    out.seqs.push(seq);
    if (m.string() !== `m${seq - 1}`) out.badData.push({ seq, data: m.string() });
    if (m.info.redelivered) out.redelivered++;
    m.ack();
    if (out.seqs.length === N) {
      step("messages.stop");
      messages.stop();
    }
  }
  step("messages.closed");
  const closed = await messages.closed();
  out.closedWith = closed ? String(closed) : null;
  out.status = out.status.filter((s) => s.type !== "next" && s.type !== "heartbeat");
});
