/**
 * A batch of usage records shaped for PGlite in one pass (src/db/queries/usage.ts): the rows of
 * `usage_calls` in COPY's binary format (in this process) or as column arrays (workers reaching
 * the primary's PGlite: usage-row-arrays.ts), and the batch's sums computed here, so the
 * database upserts the roll-up groups and counters instead of grouping every row (issue 22).
 * Sums are exact: a sum past 2^53 continues as a bigint.
 *
 * Binary rather than text: PGlite (WASM, Liftoff only) spent ~3.5 of its ~9.5 µs per copied row
 * parsing the text (the timestamp most), and JS ~1 µs building it; binary fields are read as
 * they are (bench/usage-cost.ts, bench/README.md).
 */
import { Outcome } from "../../../gen/relayapi/v1/common_pb.js";
import { BinaryRows, copyColumns, optionalColumns, type UsageRowWriter } from "./usage-copy-binary.js";
import { ArrayRows } from "./usage-row-arrays.js";
import type { UsageInsert } from "./usage.js";

/** A batch's sums, computed in JS (the statement adding them: src/db/queries/usage-sums.ts). */
export interface ShapedSums {
  /**
   * Hourly and daily roll-up groups, one PostgreSQL array literal per column (ROLLUP_COLUMNS),
   * in key order (byKey). Hourly ones only when `daysFromHours`.
   */
  rollups: string[];
  /** The batch lies within one hour: each daily group is an hourly one, for the statement to add to both. */
  daysFromHours: boolean;
  /** Metered LLM tokens per token id (sum > 0), sorted: array literals of ids and sums. */
  meteredIds: string;
  meteredSums: string;
  /** Served calls per pool key (refunds and "" excluded), sorted: ids, counts, last call (ISO). */
  servedIds: string;
  servedCalls: string;
  servedLast: string;
}

export interface ShapedBatch extends ShapedSums {
  /**
   * The rows, columns as `columns`: in COPY's binary format, or in its text format when a value
   * does not fit its column's binary form (then the database refuses it, as it would any such
   * row: the writer bisects the batch).
   */
  calls: Uint8Array<ArrayBuffer> | string;
  /**
   * The COPY's column list: COPY_COLUMNS in text; in binary without the optional columns that
   * hold their default in every row (src/db/queries/usage-copy-binary.ts).
   */
  columns: string;
}

/** A batch shaped for `unnest`: the rows as one array literal per column (ArrayRows). */
export interface ShapedArrays extends ShapedSums {
  calls: string[];
}

/** Where shape() writes each row; false: a value it cannot hold (the batch then goes as text). */
interface RowSink {
  row: UsageRowWriter;
}

/** The columns of `usage_calls` in the order of the COPY text. */
export const COPY_COLUMNS =
  "at, bytes, token, subject, provider, model, key, prompt_tokens, completion_tokens, total_tokens, latency_ms, status, outcome, flags, attempts, plan, cached_tokens, reasoning_tokens, cost_micro_usd";

type Sum = number | bigint;

/** One roll-up group: the key (start in epoch seconds, period, label ids, outcome), then the sums. */
interface Group {
  start: number;
  period: number;
  token: number;
  subject: number;
  provider: number;
  model: number;
  plan: number;
  outcome: number;
  /** The token's id (its label's value): metered tokens are summed from the groups. */
  tokenId: string;
  calls: number;
  promptTokens: Sum;
  completionTokens: Sum;
  totalTokens: Sum;
  bytes: Sum;
  httpErrors: number;
  latencyMs: Sum;
  costMicroUsd: Sum;
  unpricedCalls: number;
}

const HOUR_MS = 3_600_000;
const DAY_S = 86_400;

/** `a + b`, exact: past 2^53 it continues as a bigint (bytes and cost may each be up to 2^53). */
function add(a: Sum, b: number): Sum {
  if (typeof a === "bigint") return a + BigInt(b);
  const s = a + b;
  return Number.isSafeInteger(s) || !Number.isSafeInteger(a) || !Number.isSafeInteger(b) ? s : BigInt(a) + BigInt(b);
}

function addSums(a: Sum, b: Sum): Sum {
  return typeof b === "bigint" ? BigInt(a) + b : add(a, b);
}

/**
 * Labels every row (`id`: from labelIds) and computes the batch's sums in one pass. A value that
 * is not a storable integer (NaN, a fraction, out of range) is passed on as it is, for the
 * database to refuse with a data error as it would the row itself (the batch is then bisected).
 */
export function shapeBatch(id: ReadonlyMap<string, number>, rows: readonly UsageInsert[]): ShapedBatch {
  const optional = optionalColumns(rows);
  const out = new BinaryRows(rows.length, optional);
  const { sums, complete } = shape(id, rows, out);
  return complete ? { ...sums, calls: out.finish(), columns: copyColumns(optional) } : { ...sums, calls: copyTextRows(id, rows), columns: COPY_COLUMNS };
}

/** As shapeBatch, with the rows as one array literal per column (src/db/queries/usage-row-arrays.ts). */
export function shapeBatchArrays(id: ReadonlyMap<string, number>, rows: readonly UsageInsert[]): ShapedArrays {
  const out = new ArrayRows();
  return { ...shape(id, rows, out).sums, calls: out.finish() };
}

/** The sums, and each row handed to `out` until it refuses one (`complete` false). */
function shape(id: ReadonlyMap<string, number>, rows: readonly UsageInsert[], out: RowSink): { sums: ShapedSums; complete: boolean } {
  const hours: Group[] = [];
  const byToken = new Map<number, Group[]>();
  const served = new Map<number, { keyId: string; calls: number; last: number }>();
  let binary = true;
  for (const r of rows) {
    const token = id.get(r.tokenId)!;
    const subject = id.get(r.subject)!;
    const provider = id.get(r.provider)!;
    const model = id.get(r.model)!;
    const key = id.get(r.keyId)!;
    // Plan 0: none (labels start at 1).
    const plan = r.plan ? id.get(r.plan)! : 0;
    const cost = r.costMicroUsd ?? null;
    const attempts = r.attempts ?? "";
    const flags = r.flags ?? 0;
    const cached = r.cachedTokens ?? 0;
    const reasoning = r.reasoningTokens ?? 0;
    if (binary) binary = out.row(r, token, subject, provider, model, key, flags, attempts, plan, cached, reasoning, cost);
    // Epoch arithmetic, not date_trunc: no time zone.
    const start = Math.floor(r.at / HOUR_MS) * 3600;
    // A token has a few groups in a batch: found by a scan of its own, no key string per row.
    let own = byToken.get(token);
    if (own === undefined) byToken.set(token, (own = []));
    let g: Group | undefined;
    for (const x of own) {
      if (x.start === start && x.subject === subject && x.provider === provider && x.model === model && x.plan === plan && x.outcome === r.outcome) {
        g = x;
        break;
      }
    }
    if (g === undefined) {
      g = {
        start,
        period: 3600,
        token,
        subject,
        provider,
        model,
        plan,
        outcome: r.outcome,
        tokenId: r.tokenId,
        calls: 0,
        promptTokens: 0,
        completionTokens: 0,
        totalTokens: 0,
        bytes: 0,
        httpErrors: 0,
        latencyMs: 0,
        costMicroUsd: 0,
        unpricedCalls: 0,
      };
      own.push(g);
      hours.push(g);
    }
    g.calls++;
    g.promptTokens = add(g.promptTokens, r.promptTokens);
    g.completionTokens = add(g.completionTokens, r.completionTokens);
    g.totalTokens = add(g.totalTokens, r.totalTokens);
    g.bytes = add(g.bytes, r.bytes);
    if (r.status >= 400) g.httpErrors++;
    g.latencyMs = add(g.latencyMs, r.latencyMs);
    // A call without a price adds to unpriced_calls, never to cost (issue 24); a refunded call
    // reached no provider: never unpriced (the writer stores its cost as 0).
    if (cost !== null) g.costMicroUsd = add(g.costMicroUsd, cost);
    else if (r.outcome !== Outcome.REFUNDED) g.unpricedCalls++;
    if (r.keyId !== "" && r.outcome !== Outcome.REFUNDED) {
      const s = served.get(key);
      if (s === undefined) served.set(key, { keyId: r.keyId, calls: 1, last: r.at });
      else {
        s.calls++;
        if (r.at > s.last) s.last = r.at;
      }
    }
  }
  // Nearly every batch lies within one hour: its daily groups are then its hourly ones, which
  // the statement doubles, so half the groups are built here and parsed there.
  const daysFromHours = hours.every((h) => h.start === hours[0]!.start);
  const groups = [...hours];
  const days = new Map<string, Group>();
  const metered = new Map<string, Sum>();
  for (const h of hours) {
    metered.set(h.tokenId, addSums(metered.get(h.tokenId) ?? 0, h.totalTokens));
    if (daysFromHours) continue;
    const start = Math.floor(h.start / DAY_S) * DAY_S;
    const dayKey = `${start},${h.token},${h.subject},${h.provider},${h.model},${h.plan},${h.outcome}`;
    const d = days.get(dayKey);
    if (d === undefined) {
      const day = { ...h, start, period: DAY_S };
      days.set(dayKey, day);
      groups.push(day);
      continue;
    }
    d.calls += h.calls;
    d.promptTokens = addSums(d.promptTokens, h.promptTokens);
    d.completionTokens = addSums(d.completionTokens, h.completionTokens);
    d.totalTokens = addSums(d.totalTokens, h.totalTokens);
    d.bytes = addSums(d.bytes, h.bytes);
    d.httpErrors += h.httpErrors;
    d.latencyMs = addSums(d.latencyMs, h.latencyMs);
    d.costMicroUsd = addSums(d.costMicroUsd, h.costMicroUsd);
    d.unpricedCalls += h.unpricedCalls;
  }
  const meteredIds = [...metered.keys()].filter((t) => metered.get(t)! > 0).sort();
  const servedKeys = [...served.values()].sort((a, b) => (a.keyId < b.keyId ? -1 : a.keyId > b.keyId ? 1 : 0));
  const sums = {
    rollups: rollupColumns(groups.sort(byKey)),
    daysFromHours,
    meteredIds: textArray(meteredIds),
    meteredSums: `{${meteredIds.map((t) => metered.get(t)).join(",")}}`,
    servedIds: textArray(servedKeys.map((k) => k.keyId)),
    servedCalls: `{${servedKeys.map((k) => k.calls).join(",")}}`,
    servedLast: `{${servedKeys.map((k) => new Date(k.last).toISOString()).join(",")}}`,
  };
  return { sums, complete: binary };
}

/**
 * Roll-up groups in key order: no lock order to keep on PGlite, but the new ones (a new hour or
 * day) then go into the primary key's B-tree in order, filling its pages instead of splitting
 * them in half (unsorted, the roll-ups took ~5% more space).
 */
function byKey(a: Group, b: Group): number {
  return (
    a.start - b.start ||
    a.period - b.period ||
    a.token - b.token ||
    a.subject - b.subject ||
    a.provider - b.provider ||
    a.model - b.model ||
    a.plan - b.plan ||
    a.outcome - b.outcome
  );
}

/** One array literal per roll-up column, built in one pass over the groups. */
function rollupColumns(groups: readonly Group[]): string[] {
  const cols = ROLLUP_FIELDS.map(() => "");
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    const sep = i === 0 ? "" : ",";
    for (let j = 0; j < ROLLUP_FIELDS.length; j++) cols[j] += sep + String(g[ROLLUP_FIELDS[j]!]);
  }
  return cols.map((c) => `{${c}}`);
}

/** The roll-up columns in the order of ShapedBatch.rollups. */
const ROLLUP_FIELDS = [
  "start",
  "period",
  "token",
  "subject",
  "provider",
  "model",
  "plan",
  "outcome",
  "calls",
  "promptTokens",
  "completionTokens",
  "totalTokens",
  "bytes",
  "httpErrors",
  "latencyMs",
  "costMicroUsd",
  "unpricedCalls",
] as const satisfies readonly (keyof Group)[];

/** The rows in COPY's text format: for a batch with a value binary cannot hold (see BinaryRows). */
function copyTextRows(id: ReadonlyMap<string, number>, rows: readonly UsageInsert[]): string {
  let copy = "";
  for (const r of rows) {
    const attempts = r.attempts ?? "";
    const cost = r.costMicroUsd ?? null;
    copy += `${new Date(r.at).toISOString()}\t${r.bytes}\t${id.get(r.tokenId)}\t${id.get(r.subject)}\t${id.get(r.provider)}\t${id.get(r.model)}\t${id.get(r.keyId)}\t${r.promptTokens}\t${r.completionTokens}\t${r.totalTokens}\t${r.latencyMs}\t${r.status}\t${r.outcome}\t${r.flags ?? 0}\t${attempts === "" ? "" : copyText(attempts)}\t${r.plan ? id.get(r.plan) : 0}\t${r.cachedTokens ?? 0}\t${r.reasoningTokens ?? 0}\t${cost ?? "\\N"}\n`;
  }
  return copy;
}

/** A PostgreSQL text[] literal: every element quoted, `"` and `\` escaped. */
export function textArray(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(/["\\]/g, "\\$&")}"`).join(",")}}`;
}

/** A text field of COPY's text format: backslash, tab, newline and carriage return escaped. */
export function copyText(s: string): string {
  return s.replace(/[\\\t\n\r]/g, (c) => (c === "\\" ? "\\\\" : c === "\t" ? "\\t" : c === "\n" ? "\\n" : "\\r"));
}
