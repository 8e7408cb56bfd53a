// Scenario 1: jsm.streams.add, 10 x js.publish (PubAck seqs), jsm.streams.info.
import { run, publishN } from "./common.mjs";

await run(async ({ js, jsm, out, step }) => {
  step("jsm.streams.add");
  const si = await jsm.streams.add({ name: "JSPUB", subjects: ["jspub.>"] });
  out.created = { name: si.config.name, subjects: si.config.subjects, messages: si.state.messages };
  out.acks = await publishN(js, (i) => `jspub.${i % 3}`, 10, step);
  step("jsm.streams.info");
  const info = await jsm.streams.info("JSPUB");
  out.state = {
    messages: info.state.messages,
    first_seq: info.state.first_seq,
    last_seq: info.state.last_seq,
    num_subjects: info.state.num_subjects,
  };
  step("jsm.streams.names");
  const names = [];
  for await (const n of jsm.streams.names()) names.push(n);
  out.names = names;
});
