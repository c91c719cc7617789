/**
 * What object ownership (issue 25, item 3) costs a call that names no stored object: 100k
 * calls of `check` then `tap`, as the engine makes them, on ~1 KB chat and Responses bodies
 * without a reference field or `store: true`. No database is reached on that path, so none is
 * given. `node bin/run-ts.js bench/ownership-cost.ts` prints nanoseconds per call.
 */
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import type { Db } from "../src/db/client.js";
import { openaiShape } from "../src/providers/shapes/openai.js";
import type { ProviderSpec } from "../src/providers/types.js";
import { ObjectOwnership } from "../src/relay/object-ownership.js";
import type { TokenMeta } from "../src/tokens/token-meta.js";

const CALLS = 100_000;

function body(fields: Record<string, unknown>, key: "messages" | "input"): Buffer {
  const turns: { role: string; content: string }[] = [];
  for (let i = 0; JSON.stringify({ ...fields, [key]: turns }).length < 1000; i++) {
    turns.push({ role: i % 2 ? "assistant" : "user", content: `The quick brown fox jumps over the lazy dog, turn ${i}.` });
  }
  return Buffer.from(JSON.stringify({ ...fields, [key]: turns }));
}

const cases: [string, string, Buffer][] = [
  ["chat 1 KB", "/v1/chat/completions", body({ model: "gpt-4o-mini", temperature: 0.2, stream: true, user: "u-123" }, "messages")],
  ["responses 1 KB", "/v1/responses", body({ model: "gpt-4o-mini", store: false, stream: true }, "input")],
  // Named objects are looked up (not measured here); the parse that finds them is.
  ["with file_id", "/v1/chat/completions", body({ model: "gpt-4o-mini", x: { file_id: "" } }, "messages")],
];

const ownership = new ObjectOwnership({} as Db, { ttlDays: 30, allowUnknown: false, pruneIntervalMs: 0, vacuum: false });
const provider = { id: "openai", shape: openaiShape } as ProviderSpec;
const token = { subject: "alice" } as TokenMeta;

/**
 * Nanoseconds per call. Each call gets its own copy of the body, as each request has its own
 * (the rules keep what they learn per body); the copy's cost is measured alone and taken off.
 */
async function run(path: string, bytes: Buffer, withOwnership: boolean): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < CALLS; i++) {
    const call = { method: "POST", path, body: Buffer.from(bytes), upload: undefined };
    if (!withOwnership) continue;
    // As the engine does: an answer is awaited only when there is one.
    const pending: Promise<void> | undefined = ownership.check(token, provider, call);
    if (pending !== undefined) await pending;
    ownership.tap(token.subject, provider, call);
  }
  return ((performance.now() - t0) * 1e6) / CALLS;
}

console.log(`node ${process.version}, load ${loadavg()[0]!.toFixed(1)}; ${CALLS} calls of check + tap, nanoseconds per call (best of 5)`);
for (const [name, path, bytes] of cases) {
  let best = Infinity;
  let copy = Infinity;
  for (let round = 0; round < 5; round++) {
    copy = Math.min(copy, await run(path, bytes, false));
    best = Math.min(best, await run(path, bytes, true));
  }
  console.log(`${name.padEnd(16)}${String(bytes.length).padStart(6)} B${(best - copy).toFixed(0).padStart(8)} ns`);
}
