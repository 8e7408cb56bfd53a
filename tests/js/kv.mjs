// KV scenario (@nats-io/kv): bucket create, put/get, create/update preconditions, delete markers,
// keys(), history(), a watcher over initial values and a later put, and status().
import { Kvm } from "@nats-io/kv";
import { run } from "./common.mjs";

function entry(e) {
  if (e === null) return null;
  const r = {
    bucket: e.bucket,
    key: e.key,
    value: e.string(),
    revision: e.revision,
    operation: e.operation,
    length: e.length,
  };
  if (e.isUpdate !== undefined) r.isUpdate = e.isUpdate;
  return r;
}

function failure(err) {
  const d = { name: err?.name, message: err?.message };
  if (err?.code !== undefined) d.code = err.code;
  if (typeof err?.apiError === "function") {
    try {
      d.api_error = err.apiError();
    } catch {
      // not every error carries one
    }
  }
  return d;
}

/** Run `fn`, expecting it to reject: returns {ok: false, error} or {ok: true, value} if it did not. */
async function expectFailure(fn) {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    return { ok: false, error: failure(err) };
  }
}

async function collect(iter) {
  const out = [];
  for await (const x of iter) out.push(x);
  return out;
}

await run(async ({ nc, out, step }) => {
  step("new Kvm(nc)");
  const kvm = new Kvm(nc);
  step("kvm.create");
  const kv = await kvm.create("b", { history: 5 });

  step("put a");
  out.putA = await kv.put("a", "1");
  step("put c");
  out.putC = await kv.put("c", "x");
  step("get a");
  out.getA = entry(await kv.get("a"));

  step("create existing a");
  out.createExisting = await expectFailure(() => kv.create("a", "nope"));
  step("create n");
  out.createN = await kv.create("n", "new");

  step("update a with right revision");
  out.updateA = await kv.update("a", "2", out.putA);
  step("update a with stale revision");
  out.updateStale = await expectFailure(() => kv.update("a", "3", out.putA));
  step("get a after updates");
  out.getAUpdated = entry(await kv.get("a"));
  step("get a at revision");
  out.getARev1 = entry(await kv.get("a", { revision: out.putA }));

  step("delete n");
  await kv.delete("n");
  step("get n after delete");
  out.getDeleted = entry(await kv.get("n"));
  step("get missing");
  out.getMissing = entry(await kv.get("missing"));

  step("keys");
  out.keys = (await collect(await kv.keys())).sort();

  step("create n after delete");
  out.recreateN = await kv.create("n", "again");
  step("keys after re-create");
  out.keysAfter = (await collect(await kv.keys())).sort();

  step("history a");
  out.historyA = (await collect(await kv.history({ key: "a" }))).map(entry);
  step("history all");
  out.historyAll = (await collect(await kv.history())).map(entry);

  step("watch");
  const watcher = await kv.watch();
  const seen = [];
  let sawUpdate;
  const gotUpdate = new Promise((resolve) => {
    sawUpdate = resolve;
  });
  const loop = (async () => {
    for await (const e of watcher) {
      seen.push(entry(e));
      if (e.key === "a" && e.string() === "watched") sawUpdate();
    }
  })();
  step("watch: wait for initial values");
  const t0 = performance.now();
  while (seen.length < 3 && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
  out.watchInitial = seen.slice();
  step("watch: put a");
  out.putWatched = await kv.put("a", "watched");
  step("watch: wait for the update");
  const timedOut = await Promise.race([
    gotUpdate.then(() => false),
    new Promise((r) => setTimeout(() => r(true), 5000)),
  ]);
  out.watchTimedOut = timedOut;
  out.watchAll = seen.slice();
  watcher.stop();
  await loop;

  step("status");
  const st = await kv.status();
  out.status = {
    bucket: st.bucket,
    values: st.values,
    history: st.history,
    ttl: st.ttl,
    size: st.size,
    storage: st.storage,
    replicas: st.replicas,
    max_bytes: st.max_bytes,
    maxValueSize: st.maxValueSize,
    stream: st.streamInfo.config.name,
    subjects: st.streamInfo.config.subjects,
    allow_direct: st.streamInfo.config.allow_direct,
    allow_rollup_hdrs: st.streamInfo.config.allow_rollup_hdrs,
    deny_delete: st.streamInfo.config.deny_delete,
    discard: st.streamInfo.config.discard,
    max_msgs_per_subject: st.streamInfo.config.max_msgs_per_subject,
    messages: st.streamInfo.state.messages,
    last_seq: st.streamInfo.state.last_seq,
  };
});
