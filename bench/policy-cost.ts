/**
 * What a token's request policy costs per call: scanTopLevel, and the whole policy (scan +
 * checks + an inserted cap) against JSON.parse, on a 3 KB chat body and two 4 MB bodies (one
 * base64 image, many text messages). `npm run bench` reports the 3 KB row (issue 9: <= 10 µs);
 * `node bin/run-ts.js bench/policy-cost.ts` prints all three.
 */
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { scanTopLevel } from "../src/policy/json-scan.js";
import { applyRequestPolicy, type RequestPolicy } from "../src/policy/request-policy.js";
import { openaiShape } from "../src/providers/shapes/openai.js";

function chatBody(targetBytes: number): Buffer {
  const messages: { role: string; content: string }[] = [{ role: "system", content: "You are a helpful assistant. Answer briefly and cite sources.\n" }];
  const line = 'The quick brown fox jumps over the lazy dog, and then asks: "what\'s next?" ';
  for (let i = 0, size = 200; size < targetBytes; i++) {
    const m = { role: i % 2 ? "assistant" : "user", content: `${line.repeat(1 + (i % 4))}\n#${i}` };
    size += JSON.stringify(m).length + 1;
    messages.push(m);
  }
  return Buffer.from(JSON.stringify({ model: "gpt-4o-mini", messages, temperature: 0.2, stream: true, user: "u-123" }));
}

function imageBody(targetBytes: number): Buffer {
  const b64 = Buffer.alloc(Math.floor(((targetBytes - 400) * 3) / 4), 7).toString("base64");
  const content = [
    { type: "text", text: "What is in this image?" },
    { type: "image_url", image_url: { url: `data:image/png;base64,${b64}` } },
  ];
  return Buffer.from(JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content }], max_tokens: 300 }));
}

/** Best-of-rounds microseconds per call of `fn`, over at least `minMs`. */
function bestMicros(fn: () => unknown, minMs: number): number {
  let iters = 1;
  for (;;) {
    const t0 = performance.now();
    for (let k = 0; k < iters; k++) fn();
    if (performance.now() - t0 > 2) break;
    iters *= 2;
  }
  let best = Infinity;
  const until = performance.now() + minMs;
  while (performance.now() < until) {
    const t0 = performance.now();
    for (let k = 0; k < iters; k++) fn();
    best = Math.min(best, ((performance.now() - t0) * 1000) / iters);
  }
  return best;
}

/** Every rule on: a model pin, an output cap (inserted: the body has none), `n`, no tools, usage forced. */
const POLICY: RequestPolicy = { models: new Set(["gpt-4o-mini", "gpt-4o"]), maxOutputTokens: 512, maxN: 1, toolsAllowed: false, forceStreamUsage: true };

export interface PolicyCost {
  body: string;
  bytes: number;
  /** Microseconds per call. */
  scanUs: number;
  policyUs: number;
  parseUs: number;
  decodeParseUs: number;
}

export function measurePolicyCost(which: "3kb" | "all" = "3kb"): PolicyCost[] {
  const cases: [string, Buffer][] = [["3 KB chat", chatBody(3 * 1024)]];
  if (which === "all") cases.push(["4 MB image", imageBody(4 * 1024 * 1024)], ["4 MB text", chatBody(4 * 1024 * 1024)]);
  return cases.map(([body, bytes]) => {
    const text = bytes.toString("utf8");
    const ms = bytes.length > 100_000 ? 3000 : 1500;
    return {
      body,
      bytes: bytes.length,
      scanUs: bestMicros(() => scanTopLevel(bytes), ms),
      policyUs: bestMicros(
        () => applyRequestPolicy({ shape: openaiShape.policy, path: "/v1/chat/completions", body: bytes, scan: scanTopLevel(bytes) }, POLICY),
        ms,
      ),
      parseUs: bestMicros(() => JSON.parse(text), ms),
      decodeParseUs: bestMicros(() => JSON.parse(bytes.toString("utf8")), ms),
    };
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const fmt = (us: number): string => (us < 10 ? us.toFixed(2) : us < 1000 ? us.toFixed(1) : us.toFixed(0)).padStart(9);
  console.log(`node ${process.version}, load ${loadavg()[0]!.toFixed(1)}; microseconds per call (best of rounds)`);
  console.log(`${"body".padEnd(12)}${"bytes".padStart(9)}${"scan".padStart(9)}${"scan+pol".padStart(9)}${"parse".padStart(9)}${"decode+parse".padStart(13)}`);
  for (const r of measurePolicyCost("all")) {
    console.log(`${r.body.padEnd(12)}${String(r.bytes).padStart(9)}${fmt(r.scanUs)}${fmt(r.policyUs)}${fmt(r.parseUs)}${fmt(r.decodeParseUs).padStart(13)}`);
  }
}
