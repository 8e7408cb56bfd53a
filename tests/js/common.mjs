// Shared harness for the nats.js scenarios run by tests/consumers/test_nodejs.py.
//
// Each scenario script is `node <script>.mjs <server-url>`. It prints exactly one JSON
// object on stdout: the scenario's results on success (exit 0), or
// {error, step, partial} on failure (exit 1) or when the watchdog fires (exit 2),
// so the Python side can report which nats.js call failed or hung and with what.
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";

const WATCHDOG_MS = Number(process.env.STREAMD_JS_WATCHDOG_MS ?? 25000);

function describe(err) {
  if (!(err instanceof Error)) return { message: String(err) };
  const d = { name: err.name, message: err.message };
  if (err.code !== undefined) d.code = err.code;
  if (typeof err.apiError === "function") {
    try {
      d.api_error = err.apiError();
    } catch {
      // not every JetStreamApiError carries one
    }
  }
  if (err.cause) d.cause = describe(err.cause);
  return d;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

/** Run `scenario(ctx)`; ctx.step(name) labels the call in progress, ctx.out collects results. */
export async function run(scenario) {
  const url = process.argv[2];
  if (!url) {
    console.error("usage: node <scenario>.mjs <nats-url>");
    process.exit(64);
  }
  const out = {};
  let current = "connect";
  const step = (name) => {
    current = name;
  };
  const watchdog = setTimeout(() => {
    emit({ error: { name: "Watchdog", message: `no progress: still in step '${current}' after ${WATCHDOG_MS} ms` }, step: current, partial: out });
    process.exit(2);
  }, WATCHDOG_MS);
  let nc;
  try {
    nc = await connect({ servers: url, timeout: 5000, reconnect: false });
    step("jetstreamManager");
    const jsm = await jetstreamManager(nc, { timeout: 5000 });
    const js = jetstream(nc, { timeout: 5000 });
    await scenario({ nc, js, jsm, out, step, args: process.argv.slice(3) });
    step("drain");
    await nc.drain();
  } catch (err) {
    console.error(err);
    emit({ error: describe(err), step: current, partial: out });
    process.exit(1);
  }
  clearTimeout(watchdog);
  emit(out);
  process.exit(0);
}

/** The fields of a JsMsg the tests look at. */
export function msgRecord(m) {
  return {
    subject: m.subject,
    data: m.string(),
    stream: m.info.stream,
    consumer: m.info.consumer,
    streamSequence: m.info.streamSequence,
    deliverySequence: m.info.deliverySequence,
    deliveryCount: m.info.deliveryCount,
    redelivered: m.info.redelivered,
    msgRedelivered: m.redelivered,
    pending: m.info.pending,
  };
}

/** Collect a ConsumerMessages' status notifications (heartbeats missed, limits, debug...) into `into`. */
export function collectStatus(messages, into) {
  (async () => {
    for await (const s of messages.status()) {
      into.push(s);
    }
  })().catch((err) => into.push({ type: "status_iterator_error", error: describe(err) }));
}

export async function publishN(js, subject, n, step) {
  const acks = [];
  for (let i = 0; i < n; i++) {
    step?.(`js.publish #${i}`);
    const pa = await js.publish(typeof subject === "function" ? subject(i) : subject, `m${i}`);
    acks.push({ stream: pa.stream, seq: pa.seq, duplicate: pa.duplicate });
  }
  return acks;
}

export const now = () => performance.now();
