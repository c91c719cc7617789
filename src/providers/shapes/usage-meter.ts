/**
 * The shared part of usage metering: SSE streams are split into lines and only `data:` lines
 * that mention usage are parsed; JSON answers are kept (up to a bound) and parsed once at the
 * end. What a usage object looks like is the shape's business (`read`); every number it reads
 * goes through `usageOf`, which clamps what no real call reports (issue 18, finding 3).
 */
import { UsageFlag, type FlaggedUsage } from "../../usage/usage-flags.js";
import type { Usage, UsageMeter } from "../types.js";

/** Folds one parsed JSON value into the usage seen so far. */
export type UsageReader = (value: unknown, seen: Usage | undefined) => Usage | undefined;

const MAX_JSON_BYTES = 4 * 1024 * 1024;
const MAX_LINE = 1024 * 1024;

/** Says whether an SSE `data:` line may carry usage and is worth parsing. */
export type UsageLineFilter = (line: string) => boolean;

export function createUsageMeter(contentType: string | undefined, read: UsageReader, wants: UsageLineFilter): UsageMeter {
  if (contentType?.includes("text/event-stream")) return new SseMeter(read, wants);
  if (contentType?.includes("json")) return new JsonMeter(read);
  return NO_METER;
}

const NO_METER: UsageMeter = { feed() {}, result: () => undefined };

class SseMeter implements UsageMeter {
  #rest = "";
  #usage: Usage | undefined;
  constructor(
    private readonly read: UsageReader,
    private readonly wants: UsageLineFilter,
  ) {}

  feed(chunk: Buffer): void {
    const text = this.#rest + chunk.toString("utf8");
    let start = 0;
    for (let nl = text.indexOf("\n", start); nl !== -1; nl = text.indexOf("\n", start)) {
      this.#line(text.slice(start, nl));
      start = nl + 1;
    }
    this.#rest = text.length - start > MAX_LINE ? "" : text.slice(start);
  }

  #line(line: string): void {
    if (!line.startsWith("data:") || !this.wants(line)) return;
    try {
      this.#usage = this.read(JSON.parse(line.slice(5)), this.#usage);
    } catch {
      // A malformed event is the client's to see; metering just skips it.
    }
  }

  result(): Usage | undefined {
    return this.#usage;
  }
}

class JsonMeter implements UsageMeter {
  #chunks: Buffer[] = [];
  #size = 0;
  #done = false;
  #usage: Usage | undefined;
  constructor(private readonly read: UsageReader) {}

  feed(chunk: Buffer): void {
    this.#size += chunk.length;
    if (this.#size > MAX_JSON_BYTES) this.#chunks = [];
    else this.#chunks.push(chunk);
  }

  result(): Usage | undefined {
    if (!this.#done) {
      this.#done = true;
      if (this.#chunks.length > 0) {
        try {
          this.#usage = this.read(JSON.parse(Buffer.concat(this.#chunks).toString("utf8")), undefined);
        } catch {
          this.#usage = undefined;
        }
      }
      this.#chunks = [];
    }
    return this.#usage;
  }
}

/**
 * The most LLM tokens one call may report in one field. Far above any model's context window
 * (~2M today), far below what could overflow a sum: a batch of 500 such rows adds 5e9 to a
 * bigint counter.
 */
export const MAX_TOKENS_PER_FIELD = 10_000_000;

/**
 * The usage a provider reported, never trusted blindly: each count must be a safe integer in
 * [0, MAX_TOKENS_PER_FIELD]. A missing count (undefined, null) is 0; anything else out of range
 * (negative, fractional, a string, 1e300) is clamped and the usage flagged USAGE_OUT_OF_RANGE, so
 * budgets are charged the clamped number and the row says it was clamped. A total that is missing,
 * 0 or out of range is prompt + completion. `flags` carries bits already set on earlier events.
 */
export function usageOf(prompt: unknown, completion: unknown, total: unknown, flags = 0): Usage {
  const p = tokenCount(prompt);
  const c = tokenCount(completion);
  const t = tokenCount(total);
  let bad = p.bad || c.bad || t.bad;
  let totalTokens = t.bad || t.n === 0 ? p.n + c.n : t.n;
  if (totalTokens > MAX_TOKENS_PER_FIELD) {
    totalTokens = MAX_TOKENS_PER_FIELD;
    bad = true;
  }
  const usage: FlaggedUsage = { promptTokens: p.n, completionTokens: c.n, totalTokens };
  const all = flags | (bad ? UsageFlag.USAGE_OUT_OF_RANGE : 0);
  // Set only when non-zero: clean usage stays the plain three numbers.
  if (all !== 0) usage.flags = all;
  return usage;
}

/** One reported count: kept when sane, else clamped and `bad`. */
function tokenCount(v: unknown): { n: number; bad: boolean } {
  if (v === undefined || v === null) return { n: 0, bad: false };
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v <= MAX_TOKENS_PER_FIELD) return { n: v, bad: false };
  const n = typeof v === "number" && !Number.isNaN(v) ? Math.min(Math.max(Math.round(v), 0), MAX_TOKENS_PER_FIELD) : 0;
  return { n, bad: true };
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
