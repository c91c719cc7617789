/**
 * The shared part of usage metering (issue 18, findings 2 and 3). Every streaming shape the
 * built-in providers use is understood: server-sent events (OpenAI chat and Responses,
 * Anthropic, Gemini with alt=sse, Azure), a JSON array streamed element by element (Gemini
 * without alt=sse), NDJSON lines (Ollama's own API) and whole JSON answers; each frame is cut
 * from the bytes however they are split (src/providers/shapes/stream-frames.ts), and only
 * frames that may carry usage are parsed. What a usage object looks like is the shape's
 * business (`read`); every number it reads goes through `usageOf`, which clamps what no real
 * call reports.
 */
import { UsageFlag, usageFlags, type FlaggedUsage } from "../../usage/usage-flags.js";
import type { Usage, UsageMeter } from "../types.js";
import { JsonArrayElements, LineSplitter, SseEvents } from "./stream-frames.js";

/** Folds one parsed JSON value into the usage seen so far. */
export type UsageReader = (value: unknown, seen: Usage | undefined) => Usage | undefined;

/** Says whether a frame's text may carry usage and is worth parsing. */
export type UsageLineFilter = (text: string) => boolean;

/** A whole JSON answer, or one frame of a stream, is parsed up to this size. */
const MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** A usage object (`"usage":{`), not the `"usage":null` OpenAI sends on every chunk but the last. */
export const USAGE_OBJECT = { test: (text: string): boolean => text.includes('"usage"') && USAGE_OBJECT_RE.test(text) };
const USAGE_OBJECT_RE = /"usage"\s*:\s*\{/;

export function createUsageMeter(contentType: string | undefined, read: UsageReader, wants: UsageLineFilter): UsageMeter {
  const type = contentType?.toLowerCase();
  if (type === undefined) return NO_METER;
  if (type.includes("text/event-stream")) return new SseMeter(read, wants);
  if (type.includes("ndjson") || type.includes("jsonl")) return new NdjsonMeter(read, wants);
  if (type.includes("json")) return new JsonMeter(read, wants);
  return NO_METER;
}

/** Readers applied one after the other: each adds what it finds to what the others found. */
export function readAll(...readers: UsageReader[]): UsageReader {
  return (value, seen) => readers.reduce((acc, read) => read(value, acc), seen);
}

const NO_METER: UsageMeter = { feed() {}, result: () => undefined };

/** Parses `text` and folds it in; a frame that is not JSON is the client's to see, metering skips it. */
function fold(read: UsageReader, text: string, seen: Usage | undefined): Usage | undefined {
  try {
    return read(JSON.parse(text), seen);
  } catch {
    return seen;
  }
}

class SseMeter implements UsageMeter {
  #usage: Usage | undefined;
  readonly #events: SseEvents;
  #ended = false;

  constructor(read: UsageReader, wants: UsageLineFilter) {
    this.#events = new SseEvents(MAX_FRAME_BYTES, (data) => {
      const text = data.length === 1 ? data[0]! : data.join("\n");
      if (!wants(text)) return;
      const before = this.#usage;
      this.#usage = fold(read, text, before);
      // Servers that forget the blank line between events: each data line on its own.
      if (this.#usage === before && data.length > 1) for (const line of data) if (wants(line)) this.#usage = fold(read, line, this.#usage);
    });
  }

  feed(chunk: Buffer): void {
    this.#events.feed(chunk);
  }

  result(): Usage | undefined {
    if (!this.#ended) {
      this.#ended = true;
      this.#events.end();
    }
    return this.#usage;
  }
}

class NdjsonMeter implements UsageMeter {
  #usage: Usage | undefined;
  readonly #lines: LineSplitter;
  #ended = false;

  constructor(read: UsageReader, wants: UsageLineFilter) {
    this.#lines = new LineSplitter(MAX_FRAME_BYTES, (line) => {
      const text = line.toString("utf8");
      if (wants(text)) this.#usage = fold(read, text, this.#usage);
    });
  }

  feed(chunk: Buffer): void {
    this.#lines.feed(chunk);
  }

  result(): Usage | undefined {
    if (!this.#ended) {
      this.#ended = true;
      this.#lines.end();
    }
    return this.#usage;
  }
}

/**
 * A JSON answer: an array is read element by element as it streams (Gemini's JSON stream);
 * anything else is kept (up to the bound) and parsed once at the end.
 */
class JsonMeter implements UsageMeter {
  #chunks: Buffer[] = [];
  #size = 0;
  #done = false;
  #usage: Usage | undefined;
  readonly #elements: JsonArrayElements;

  constructor(
    private readonly read: UsageReader,
    wants: UsageLineFilter,
  ) {
    this.#elements = new JsonArrayElements(MAX_FRAME_BYTES, (element) => {
      const text = element.toString("utf8");
      if (wants(text)) this.#usage = fold(read, text, this.#usage);
    });
  }

  feed(chunk: Buffer): void {
    this.#elements.feed(chunk);
    if (!this.#elements.notArray || this.#size > MAX_FRAME_BYTES) return;
    this.#size += chunk.length;
    if (this.#size > MAX_FRAME_BYTES) this.#chunks = [];
    else this.#chunks.push(chunk);
  }

  result(): Usage | undefined {
    if (!this.#done && this.#elements.notArray) {
      this.#done = true;
      // Most answers arrive in one chunk: decoded in place, not copied first.
      const chunks = this.#chunks;
      if (chunks.length > 0) this.#usage = fold(this.read, (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString("utf8"), undefined);
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
 * The parts of a prompt and a completion a provider reports separately, for prices (issue 24),
 * as the shape read them (unchecked). Each is a part OF the prompt (`cached`, `cacheWrite`,
 * `audioIn`) or of the completion (`reasoning`, `audioOut`): the shape's reader makes the
 * prompt and completion counts include them (src/providers/shapes/usage-parts.ts).
 */
export interface UsageParts {
  cached?: unknown;
  cacheWrite?: unknown;
  reasoning?: unknown;
  audioIn?: unknown;
  audioOut?: unknown;
}

/**
 * The usage a provider reported, never trusted blindly: each count must be a safe integer in
 * [0, MAX_TOKENS_PER_FIELD]. A missing count (undefined, null) is 0; anything else out of range
 * (negative, fractional, a string, 1e300) is clamped and the usage flagged USAGE_OUT_OF_RANGE, so
 * budgets are charged the clamped number and the row says it was clamped. A total that is missing,
 * 0 or out of range is prompt + completion. `flags` carries bits already set on earlier events.
 * `parts` are checked the same way and each is capped to its side (a cached count above the
 * prompt is out of range too); they are set on the usage only when non-zero.
 */
export function usageOf(prompt: unknown, completion: unknown, total: unknown, flags = 0, parts?: UsageParts): Usage {
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
  if (parts !== undefined) {
    const part = (v: unknown, side: number, set: (n: number) => void): void => {
      const x = tokenCount(v);
      if (x.bad || x.n > side) bad = true;
      const n = Math.min(x.n, side);
      if (n > 0) set(n);
    };
    part(parts.cached, p.n, (n) => (usage.cachedTokens = n));
    part(parts.cacheWrite, p.n, (n) => (usage.cacheWriteTokens = n));
    part(parts.audioIn, p.n, (n) => (usage.audioInputTokens = n));
    part(parts.reasoning, c.n, (n) => (usage.reasoningTokens = n));
    part(parts.audioOut, c.n, (n) => (usage.audioOutputTokens = n));
  }
  const all = flags | (bad ? UsageFlag.USAGE_OUT_OF_RANGE : 0);
  // Set only when non-zero: clean usage stays the plain three numbers.
  if (all !== 0) usage.flags = all;
  return usage;
}

/** The parts a usage already carries, to pass back through usageOf (which checks them again). */
export function partsOf(u: Usage | undefined): UsageParts | undefined {
  if (u === undefined) return undefined;
  return { cached: u.cachedTokens, cacheWrite: u.cacheWriteTokens, reasoning: u.reasoningTokens, audioIn: u.audioInputTokens, audioOut: u.audioOutputTokens };
}

const PART_KEYS = ["cachedTokens", "cacheWriteTokens", "reasoningTokens", "audioInputTokens", "audioOutputTokens"] as const;

/** Two usage reports added up (a session's turns), the parts included; flags are kept. */
export function sumUsage(a: Usage | undefined, b: Usage | undefined): Usage | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  const sum: FlaggedUsage = {
    promptTokens: a.promptTokens + b.promptTokens,
    completionTokens: a.completionTokens + b.completionTokens,
    totalTokens: a.totalTokens + b.totalTokens,
  };
  for (const k of PART_KEYS) {
    const n = (a[k] ?? 0) + (b[k] ?? 0);
    if (n > 0) sum[k] = n;
  }
  const flags = usageFlags(a) | usageFlags(b);
  if (flags !== 0) sum.flags = flags;
  return sum;
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
