/**
 * Budgets by "reserve, then settle" (issue 18, finding 2). A budget is a counter and a limit in
 * a ledger (today: a token's `tokens_used` and its budget in LLM tokens, in the database, so
 * every instance sees every reservation); the same two steps serve dollar budgets and plan
 * quotas later, each with its own ledger.
 *
 * THE RULE. A call is admitted only while the counter (settled charges plus the reservations
 * of calls in flight) is below the limit, and is then charged its whole maximum cost in the
 * same atomic statement. When it ends, its real charge replaces that reservation. A settle can
 * only lower the counter to what the call really cost, never below, so the counter never
 * passes `limit + the largest single maximum`; once every call has settled it is the spend.
 * Hence: spend < budget + one call's maximum, whatever the concurrency and however many
 * instances share the database. (A call admitted below the limit may cost more than what was
 * left: a budget smaller than one call's maximum still allows calls, and the call that
 * crosses it is the last.) The bound assumes the input estimate is not below the real prompt;
 * usage the provider reports replaces the estimate in every case.
 *
 * A call's maximum: its output bound (the body's output cap, else the token's, else
 * DEFAULT_OUTPUT_RESERVE) times its choices (`n`), plus its input estimate (JSON body bytes /
 * INPUT_BYTES_PER_TOKEN). A body that names input the relay cannot see (a stored response or
 * conversation, a file, an image URL, a cached context, server-side tools: each shape's
 * `policy.remoteInput`) is estimated at REMOTE_INPUT_TOKENS instead, so the bound holds for it too. A call without a
 * JSON body (GET, DELETE, uploads) has maximum 0.
 *
 * What a call is charged (chargeOf): its reported usage when its answer was read to the end; 0
 * when no byte left for the provider; for an error answer, what it reports or 0; otherwise
 * (no answer after the request left, a stream cut short, a client that left and a stream that
 * did not finish within the drain bounds, an answer without readable usage) its maximum.
 */
import type { Usage } from "../providers/types.js";
import { MAX_CHOICES } from "../policy/output-bound.js";
import { MAX_TOKENS_PER_FIELD } from "../providers/shapes/usage-meter.js";

/** Output tokens reserved for a call that names no output cap (and whose token has none). */
export const DEFAULT_OUTPUT_RESERVE = 4096;
/** Bytes of a JSON request body per input token, for the estimate (English text runs ~4). */
export const INPUT_BYTES_PER_TOKEN = 4;

/** Where a budget's counter lives. */
export interface BudgetLedger {
  /** Adds `amount` to the counter of `key` if it is below `limit`; the new count, or undefined when refused. */
  reserve(key: string, amount: number, limit: number): Promise<number | undefined>;
  /** Adds `delta` (negative: part of a reservation given back) to the counter. */
  adjust(key: string, delta: number): Promise<void>;
}

/**
 * Input tokens reserved for a call whose body names input the relay cannot count (the largest
 * context windows of the built-in providers' models are about a million tokens).
 */
export const REMOTE_INPUT_TOKENS = 1_000_000;

/** The needles of each shape's `policy.remoteInput` as bytes, and as names for a parsed body. */
const compiled = new WeakMap<readonly string[], { needles: Buffer[]; names: string[] }>();

function compile(remoteInput: readonly string[]): { needles: Buffer[]; names: string[] } {
  let c = compiled.get(remoteInput);
  if (c === undefined) {
    // `"prompt":{` names the key `prompt`; `"web_search` the start of a value or key.
    const names = remoteInput.map((k) => k.replace(/^"/, "").replace(/"(:\s*\{)?$/, ""));
    compiled.set(remoteInput, (c = { needles: remoteInput.map((k) => Buffer.from(k)), names }));
  }
  return c;
}

/**
 * Whether a JSON body names input it does not hold, by its shape's `policy.remoteInput`
 * (src/policy/shape-policy.ts): then its estimate is REMOTE_INPUT_TOKENS.
 */
export function namesRemoteInput(body: Buffer, remoteInput: readonly string[]): boolean {
  if (remoteInput.length === 0) return false;
  const { needles, names } = compile(remoteInput);
  for (const needle of needles) if (body.includes(needle)) return true;
  // An escaped key (`"file\u005fid"`) is the same key to a JSON parser: such a body is parsed.
  if (!body.includes(ESCAPED)) return false;
  try {
    return hasRemoteKey(JSON.parse(body.toString("utf8")), names, 0);
  } catch {
    return true;
  }
}

const ESCAPED = Buffer.from("\\u");

/** A remote-input key at any depth, or a string value starting with one (a tool's `type`). */
function hasRemoteKey(v: unknown, names: readonly string[], depth: number): boolean {
  if (typeof v === "string") return depth > 0 && names.some((n) => v.startsWith(n));
  if (depth > 64 || v === null || typeof v !== "object") return false;
  if (Array.isArray(v)) return v.some((e) => hasRemoteKey(e, names, depth + 1));
  for (const [k, e] of Object.entries(v)) if (names.includes(k) || hasRemoteKey(e, names, depth + 1)) return true;
  return false;
}

/** What a call's request allows it to cost at most. */
export interface CallShape {
  /** The request carries a JSON body (anything else generates nothing the relay can bound). */
  json: boolean;
  bodyBytes: number;
  /** The output cap in force (the body's, or the token's inserted one); undefined when none. */
  outputCap: number | undefined;
  /** Choices generated (`n`, `candidateCount`); 1 when not asked. */
  choices: number;
  /** The body names input it does not hold (namesRemoteInput). */
  remoteInput?: boolean;
}

export function callMaximum(call: CallShape): number {
  const { input, output } = callBounds(call);
  return Math.min(input + output, MAX_TOKENS_PER_FIELD);
}

/** The input estimate and the output bound of a call, apart: prices differ (src/pricing). */
export function callBounds(call: CallShape): { input: number; output: number } {
  if (!call.json) return { input: 0, output: 0 };
  const output = Math.min(call.outputCap ?? DEFAULT_OUTPUT_RESERVE, MAX_TOKENS_PER_FIELD) * Math.max(1, Math.min(call.choices, MAX_CHOICES));
  const input = Math.ceil(call.bodyBytes / INPUT_BYTES_PER_TOKEN);
  return { input: call.remoteInput ? Math.max(input, REMOTE_INPUT_TOKENS) : input, output: Math.min(output, MAX_TOKENS_PER_FIELD) };
}

/** How a call ended, as far as its charge is concerned. */
export type CallEnd =
  /** No byte of the request left for any provider (refunded): nothing to charge. */
  | { kind: "refunded" }
  /** The request may have reached the provider, but no answer came (timeout, reset, client gone first). */
  | { kind: "unanswered" }
  /** An answer: its status, whether it was read to its end, the usage the meter found in it. */
  | { kind: "answered"; status: number; whole: boolean; usage: Usage | undefined };

/**
 * What a call is charged; see the module comment. In LLM tokens by default; `measure` reads
 * another unit from the reported usage (micro-dollars: src/tokens/call-charges.ts).
 */
export function chargeOf(maximum: number, end: CallEnd, measure: (usage: Usage) => number | undefined = (u) => u.totalTokens): number {
  if (end.kind === "refunded") return 0;
  if (end.kind === "unanswered") return maximum;
  const reported = end.usage === undefined ? undefined : measure(end.usage);
  // Providers bill no generation for an error answer.
  if (end.status >= 400) return reported ?? 0;
  if (end.whole && reported !== undefined) return reported;
  return Math.max(maximum, reported ?? 0);
}

/** One admitted call's hold on a budget. */
export class Reservation {
  #settled = false;

  constructor(
    private readonly ledger: BudgetLedger,
    readonly key: string,
    /** What was reserved: the call's maximum. */
    readonly amount: number,
    private readonly onError: (err: unknown) => void,
    /** The largest charge one call can settle to (its unit's clamp). */
    private readonly most: number = MAX_TOKENS_PER_FIELD,
  ) {}

  /**
   * Replaces the reservation by the call's real charge; once (later calls do nothing); never
   * throws. A settle the ledger refuses is tried again once, off the call's path; if that
   * fails too the whole maximum stays charged: a lost settle can over-charge, never under.
   */
  async settle(charge: number): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    const delta = Math.min(Math.max(Math.round(charge), 0), this.most) - this.amount;
    if (delta === 0 || Number.isNaN(delta)) return;
    try {
      await this.ledger.adjust(this.key, delta);
    } catch {
      const retry = setTimeout(() => void this.ledger.adjust(this.key, delta).catch(this.onError), SETTLE_RETRY_MS);
      retry.unref();
    }
  }
}

const SETTLE_RETRY_MS = 1000;

export class BudgetReservations {
  constructor(
    private readonly ledger: BudgetLedger,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  /** Reserves `maximum` against `limit`; undefined when the budget is spent (used + reserved >= limit). */
  async reserve(key: string, maximum: number, limit: number, most: number = MAX_TOKENS_PER_FIELD): Promise<Reservation | undefined> {
    const amount = Math.min(Math.max(Math.ceil(maximum), 0), most);
    const count = await this.ledger.reserve(key, amount, limit);
    return count === undefined ? undefined : new Reservation(this.ledger, key, amount, this.onError, most);
  }
}
