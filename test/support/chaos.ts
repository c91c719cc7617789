/**
 * The chaos test's pieces that are not the test itself (test/chaos.test.ts): a seeded PRNG and
 * its seed (`RELAYAPI_CHAOS_SEED=N` replays a schedule), the random plan of tokens, calls and
 * Redis outages, the mock provider's side (each call's first attempt misbehaves as planned,
 * later failover attempts of the same call answer normally; every attempt and every key strike
 * is recorded; "poison" answers are a normal 200 whose usage numbers are out of range), the
 * rate bound a token's `rpm` allows across instances and Redis outages, and a plain-text table
 * for the failure report.
 *
 * Calls carry their identity in headers the relay forwards (it strips only the token carriers
 * and hop-by-hop headers): `x-chaos-token` (token id), `x-chaos-call` (call number),
 * `x-chaos-proc` (which relay process it was sent to), `x-chaos-behaviour`, `x-chaos-model`,
 * `x-chaos-poison`.
 */
import type { Behaviour, MockProvider, RecordedRequest } from "./mock-provider.js";

// --- seed and PRNG ---------------------------------------------------------------------------

/** The run's seed: `RELAYAPI_CHAOS_SEED` when set (a decimal integer), else a random one. */
export function chaosSeed(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.RELAYAPI_CHAOS_SEED;
  if (raw !== undefined && raw !== "") {
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`RELAYAPI_CHAOS_SEED must be a non-negative integer, not ${JSON.stringify(raw)}`);
    return n >>> 0;
  }
  return Math.floor(Math.random() * 2 ** 32) >>> 0;
}

export interface Rng {
  /** [0, 1) */
  next(): number;
  /** An integer in [min, max]. */
  int(min: number, max: number): number;
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  /** One key of `weights`, with probability proportional to its weight. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K;
}

/** mulberry32: small, fast, good enough for schedules, and the same on every platform. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    chance: (p) => next() < p,
    pick: (items) => items[Math.floor(next() * items.length)]!,
    weighted(weights) {
      const entries = Object.entries(weights) as [keyof typeof weights, number][];
      let r = next() * entries.reduce((s, [, w]) => s + w, 0);
      for (const [k, w] of entries) {
        r -= w;
        if (r < 0) return k;
      }
      return entries[entries.length - 1]![0];
    },
  };
}

// --- the plan --------------------------------------------------------------------------------

/** What the provider does with a call's first attempt. */
export type ProviderBehaviour = "json" | "sse" | "slow-head" | "reset-after-body" | "5xx" | "429" | "403" | "mid-stream-reset" | "poison";
/** How a poison answer's usage is out of range (issue 18, finding 3). */
export type PoisonKind = "huge" | "negative" | "strings" | "fraction";
export const POISON_KINDS: readonly PoisonKind[] = ["huge", "negative", "strings", "fraction"];
/** What the client does. */
export type ClientMode = "normal" | "abort-early" | "abort-mid-stream" | "slow-read";
/** A: the instance killed mid-run (then restarted); B: the one that stays up. */
export type Route = "A" | "B";

export interface PlannedToken {
  index: number;
  name: string;
  cap: number;
  /** On the key pool (else an inline upstream key). */
  pool: boolean;
  /** Which instance its calls go to: only A, only B, or either at random. */
  group: "A" | "B" | "AB";
  /** Requests per minute (a token bucket of burst rpm, shared through Redis), if limited. */
  rpm?: number;
  /** Budget in LLM tokens, if any. */
  budget?: number;
}

export interface PlannedCall {
  id: number;
  token: number;
  route: Route;
  behaviour: ProviderBehaviour;
  /** For `5xx`: the provider's status. */
  status5xx: 502 | 503;
  client: ClientMode;
  stream: boolean;
  model: string;
  /** When it is sent, from the start of the run (ms). */
  startAtMs: number;
  /** For `abort-early`: when the client gives up (ms after sending). */
  abortAfterMs: number;
  /** For `poison`: which numbers are wrong. */
  poison: PoisonKind;
}

/** Redis taken away from both instances: `cut` (connections reset) or `freeze` (no answers). */
export interface RedisFault {
  kind: "cut" | "freeze";
  atMs: number;
  forMs: number;
}

export interface ChaosPlan {
  seed: number;
  tokens: PlannedToken[];
  calls: PlannedCall[];
  redis: RedisFault[];
}

export interface PlanOptions {
  tokens?: number;
  /** Caps are drawn from [1, maxCap]. */
  maxCap?: number;
  /** Calls per token: cap + [extraMin, extraMax]. */
  extraMin?: number;
  extraMax?: number;
  /** Calls start spread over [0, spreadMs]. */
  spreadMs?: number;
  models?: readonly string[];
  /** Extra tokens with a small `rpm` (and a cap they cannot reach), many calls each. */
  rpmTokens?: number;
}

export const CHAOS_MODELS = ["gpt-chaos-a", "gpt-chaos-b", "gpt-chaos-c"] as const;

const BEHAVIOURS: Record<ProviderBehaviour, number> = {
  json: 20,
  sse: 16,
  "slow-head": 10,
  "reset-after-body": 10,
  "5xx": 10,
  "429": 8,
  "403": 8,
  "mid-stream-reset": 10,
  poison: 10,
};

export function planChaos(seed: number, opts: PlanOptions = {}): ChaosPlan {
  const r = rng(seed);
  const n = opts.tokens ?? 20;
  const models = opts.models ?? CHAOS_MODELS;
  const spread = opts.spreadMs ?? 9000;
  const groups = ["B", "A", "AB"] as const;
  const tokens: PlannedToken[] = Array.from({ length: n }, (_, i) => ({
    index: i,
    name: `t${i}`,
    cap: r.int(1, opts.maxCap ?? 8),
    pool: i % 2 === 1,
    group: groups[i % 3]!,
  }));
  // A fifth of the capped tokens (pool and inline alike) also have a budget: a few calls' worth
  // (a call meters 15), far less than one poison answer (clamped to 10M).
  for (const t of tokens) if (t.index % 5 === 3) t.budget = r.int(20, 120);
  // Two Redis outages, one before and one after the kill of A1 (3.5 s), each long enough for
  // every instance to notice (a frozen Redis takes 1 s to be declared unreachable).
  const redis: RedisFault[] = [
    { kind: r.pick(["cut", "freeze"] as const), atMs: r.int(800, 2000), forMs: r.int(1200, 1800) },
    { kind: r.pick(["cut", "freeze"] as const), atMs: r.int(4500, 6000), forMs: r.int(1200, 1800) },
  ];
  const rpmCount = opts.rpmTokens ?? 3;
  for (let i = 0; i < rpmCount; i++) {
    tokens.push({ index: n + i, name: `r${i}`, cap: 60, pool: i % 2 === 1, group: "AB", rpm: r.pick([1, 2] as const) });
  }
  const calls: PlannedCall[] = [];
  for (const t of tokens) {
    const limited = t.rpm !== undefined;
    const count = limited ? r.int(14, 18) : t.cap + r.int(opts.extraMin ?? 2, opts.extraMax ?? 6);
    for (let k = 0; k < count; k++) {
      const behaviour = r.weighted(BEHAVIOURS);
      // Poison answers are JSON (the mock answers a `body` as JSON): a non-streamed call.
      const stream = behaviour === "sse" || behaviour === "mid-stream-reset" ? true : behaviour === "json" || behaviour === "poison" ? false : r.chance(0.3);
      const client: ClientMode = stream
        ? r.weighted({ normal: 50, "abort-early": 15, "abort-mid-stream": 15, "slow-read": 20 })
        : r.weighted({ normal: 80, "abort-early": 20 });
      // Half of a rate-limited token's calls land in an outage, when each instance decides alone.
      const fault = limited && k % 2 === 0 ? r.pick(redis) : undefined;
      calls.push({
        id: 0,
        token: t.index,
        route: t.group === "AB" ? r.pick(["A", "B"] as const) : t.group,
        behaviour,
        status5xx: r.pick([502, 503] as const),
        client,
        stream,
        model: r.pick(models),
        startAtMs: fault ? fault.atMs + r.int(0, fault.forMs) : r.int(0, spread),
        abortAfterMs: r.int(20, 400),
        poison: r.pick(POISON_KINDS),
      });
    }
  }
  calls.sort((x, y) => x.startAtMs - y.startAtMs || x.token - y.token);
  calls.forEach((c, i) => (c.id = i + 1));
  return { seed, tokens, calls, redis };
}

/** A span of the run, in ms from its start. */
export interface Span {
  from: number;
  to: number;
}

/** The spans merged where they overlap, in order. */
export function mergeSpans(spans: readonly Span[]): Span[] {
  const sorted = [...spans].filter((s) => s.to > s.from).sort((a, b) => a.from - b.from);
  const out: Span[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.from <= last.to) last.to = Math.max(last.to, s.to);
    else out.push({ ...s });
  }
  return out;
}

/** One relay process: when it could admit calls, and when it may have decided rates alone. */
export interface ProcessSpans {
  life: Span;
  /** Redis unreachable for it (from the fault until sharing was back); the whole run without Redis. */
  local: readonly Span[];
}

/**
 * The most calls a token of `rpm` can be admitted over a run of `runMs`, as README "Limits"
 * documents it: a token bucket of burst = floor(rpm) refilled at rpm a minute, shared by every
 * instance through Redis; while Redis is unreachable each instance decides alone from its own
 * bucket, which starts from the shared state it last saw (at most a burst; empty for a key it
 * never saw) and refills at rpm. So: one shared bucket over the run, plus for every process and
 * every span it decided alone at most a burst and its refill over that span. Local admissions
 * are not charged to the shared bucket, hence the sum. Without Redis (`shared` false, local
 * spans over the whole run) it is one full bucket per process.
 */
export function rpmBound(rpm: number, runMs: number, processes: readonly ProcessSpans[], shared = true): number {
  const burst = Math.max(1, Math.floor(rpm));
  const refill = (ms: number): number => (rpm * Math.max(0, ms)) / 60_000;
  let bound = shared ? burst + refill(runMs) : 0;
  for (const p of processes) {
    for (const o of p.local) {
      const overlap = Math.min(o.to, p.life.to) - Math.max(o.from, p.life.from);
      if (overlap > 0) bound += burst + refill(overlap);
    }
  }
  return Math.floor(bound);
}

// --- the provider's side ---------------------------------------------------------------------

export const CHAOS_ERROR_CODE = "chaos_upstream";
/** Longer than the relay's upstream headers timeout in the test (400 ms). */
export const SLOW_HEAD_MS = 1200;
export const SSE_CHUNKS = 5;
export const SSE_CHUNK_DELAY_MS = 30;

/** What the mock answered one attempt (an HTTP status, or what it did instead). */
export type Answer = number | "slow-head" | "reset-after-body" | "mid-stream-reset" | "no-body";

export interface Attempt {
  callId: number;
  tokenId: string;
  proc: string;
  /** The upstream credential the relay sent (`authorization`). */
  key: string;
  model: string;
  answer: Answer;
  /** When the mock decided the answer (performance.now()). */
  at: number;
}

export interface ChaosProvider {
  /** Every attempt whose body the mock read, in order, by call id. */
  attempts: Map<number, Attempt[]>;
  /** 403 and 429 answers per key: when, and for which model. */
  strikes: { key: string; model: string; status: number; at: number }[];
  /** Requests that reached the mock for a token (`x-chaos-token`), on arrival of their head. */
  arrivals(tokenId: string): RecordedRequest[];
}

const header = (rec: RecordedRequest, name: string): string => {
  const v = rec.headers[name];
  return Array.isArray(v) ? v.join(",") : (v ?? "");
};

function errorBody(status: number): unknown {
  return { error: { message: `chaos ${status}`, type: status >= 500 ? "server_error" : "invalid_request_error", param: null, code: CHAOS_ERROR_CODE } };
}

/** Numbers a provider should never report: each kind is clamped and flagged by the relay. */
const POISON_USAGE: Record<PoisonKind, Record<string, unknown>> = {
  huge: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 1e300 },
  negative: { prompt_tokens: -10, completion_tokens: 5, total_tokens: -5 },
  strings: { prompt_tokens: "10", completion_tokens: "5", total_tokens: "15" },
  fraction: { prompt_tokens: 10.5, completion_tokens: 5, total_tokens: 15.5 },
};

/** A chat completion whose usage is poison (`x-chaos-poison` says which kind). */
export function poisonAnswer(kind: PoisonKind, model: string): unknown {
  return {
    id: `chatcmpl-poison-${kind}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message: { role: "assistant", content: "poison" }, finish_reason: "stop" }],
    usage: POISON_USAGE[kind],
  };
}

/** The mock answer for a call's first attempt. */
function misbehave(rec: RecordedRequest): { behaviour: Behaviour; answer: Answer } {
  const b = header(rec, "x-chaos-behaviour") as ProviderBehaviour;
  const sse = { chunks: SSE_CHUNKS, chunkDelayMs: SSE_CHUNK_DELAY_MS };
  switch (b) {
    case "slow-head":
      return { behaviour: { headersDelayMs: SLOW_HEAD_MS, ...sse }, answer: "slow-head" };
    case "reset-after-body":
      return { behaviour: { reset: "after-body" }, answer: "reset-after-body" };
    case "5xx": {
      const status = Number(header(rec, "x-chaos-status")) || 502;
      return { behaviour: { status, body: errorBody(status) }, answer: status };
    }
    case "429":
      return { behaviour: { status: 429, body: errorBody(429), headers: { "retry-after": "86400" } }, answer: 429 };
    case "403":
      return { behaviour: { status: 403, body: errorBody(403) }, answer: 403 };
    case "mid-stream-reset":
      return { behaviour: { reset: "mid-stream", ...sse }, answer: "mid-stream-reset" };
    case "poison": {
      const kind = (POISON_KINDS as readonly string[]).includes(header(rec, "x-chaos-poison")) ? (header(rec, "x-chaos-poison") as PoisonKind) : "huge";
      return { behaviour: { status: 200, body: poisonAnswer(kind, header(rec, "x-chaos-model")) }, answer: 200 };
    }
    default:
      return { behaviour: sse, answer: 200 };
  }
}

/** Installs the chaos behaviour on `mock` (replacing any other) and records what it did. */
export function chaosProvider(mock: MockProvider): ChaosProvider {
  const attempts = new Map<number, Attempt[]>();
  const strikes: ChaosProvider["strikes"] = [];
  mock.behave((rec) => {
    const callId = Number(header(rec, "x-chaos-call"));
    if (!callId) return undefined;
    const list = attempts.get(callId) ?? [];
    attempts.set(callId, list);
    // Only the first attempt misbehaves: a failover to another key gets a normal answer.
    const { behaviour, answer } =
      list.length === 0 ? misbehave(rec) : { behaviour: { chunks: SSE_CHUNKS, chunkDelayMs: SSE_CHUNK_DELAY_MS }, answer: 200 as Answer };
    const attempt: Attempt = {
      callId,
      tokenId: header(rec, "x-chaos-token"),
      proc: header(rec, "x-chaos-proc"),
      key: header(rec, "authorization"),
      model: header(rec, "x-chaos-model"),
      answer,
      at: performance.now(),
    };
    list.push(attempt);
    if (answer === 403 || answer === 429) strikes.push({ key: attempt.key, model: attempt.model, status: answer, at: attempt.at });
    return behaviour;
  });
  return {
    attempts,
    strikes,
    arrivals: (tokenId) => mock.requests.filter((r) => header(r, "x-chaos-token") === tokenId),
  };
}

// --- report ----------------------------------------------------------------------------------

/** Rows of cells as a fixed-width text table, with a header line. */
export function table(columns: string[], rows: (string | number)[][]): string {
  const cells = [columns, ...rows.map((r) => r.map(String))];
  const widths = columns.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return [line(cells[0]!), line(widths.map((w) => "-".repeat(w))), ...cells.slice(1).map(line)].join("\n");
}

/** `{a: 3, b: 1}` as `a×3 b` (sorted by key). */
export function tally(items: string[]): string {
  const counts = new Map<string, number>();
  for (const i of items) counts.set(i, (counts.get(i) ?? 0) + 1);
  return [...counts.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => (n === 1 ? k : `${k}×${n}`))
    .join(" ");
}
