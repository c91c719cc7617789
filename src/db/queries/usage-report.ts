/**
 * Usage reports (GetUsage, `relayapi usage`, the console): sums over a time window, by bucket
 * and one dimension, read from the cheapest source that answers exactly (issue 23). The window
 * is cut into pieces: whole days from the daily roll-ups, whole hours from the hourly ones, and
 * only the ragged edges (or buckets finer than an hour) from the raw rows. A report over months
 * reads a few rows per day, whatever the number of calls.
 *
 * Raw rows older than the raw retention are gone: an edge that lies wholly before the last
 * prune's cutoff is answered from the hourly roll-ups of the hours it touches instead (a window
 * starting at 10:20 a year ago counts from 10:00).
 */
import { sql, type SQL } from "drizzle-orm";
import { Outcome } from "../../../gen/relayapi/v1/common_pb.js";
import type { Db } from "../client.js";
import { resultRows } from "./usage-labels.js";

export type UsageDimension = "token" | "subject" | "provider" | "model" | "plan";

export interface UsageQuery {
  /** Inclusive. */
  start: Date;
  /** Exclusive. */
  end: Date;
  groupBy?: UsageDimension | undefined;
  /** Width of a time bucket; buckets are aligned to the Unix epoch. 0: one bucket from `start`. */
  bucketSeconds: number;
  limit: number;
}

export interface UsageAggregate {
  bucketStart: Date;
  /** The group's value; "" when not grouped. */
  key: string;
  /** Calls counted: refunded calls excluded. */
  calls: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** Calls that ended UPSTREAM_ERROR or TRUNCATED. */
  errors: number;
  /** Micro-dollars summed over the priced calls (issue 24). */
  costMicroUsd: number;
  /** Calls whose model had no price: their cost is unknown, not in costMicroUsd. */
  unpricedCalls: number;
}

/** A part of the window and where it is read from: 0 for raw rows, else a roll-up period in seconds. */
export interface ReportPiece {
  source: 0 | 3600 | 86400;
  startMs: number;
  endMs: number;
}

const HOUR_MS = 3_600_000;
/** `settings` row holding the cutoff (ISO time) of the last raw prune (src/usage/usage-pruner.ts). */
export const RAW_PRUNED_BEFORE = "usage.raw_pruned_before";

/**
 * Cuts [startMs, endMs) into pieces, coarsest first: a roll-up period serves only when buckets
 * are whole multiples of it (or there is one bucket), so every piece falls inside one bucket.
 */
export function planReport(startMs: number, endMs: number, bucketSeconds: number, rawSinceMs = -Infinity): ReportPiece[] {
  const periods = ([86400, 3600] as const).filter((p) => bucketSeconds === 0 || bucketSeconds % p === 0);
  const split = (s: number, e: number, level: number): ReportPiece[] => {
    if (s >= e) return [];
    const period = periods[level];
    if (period === undefined) {
      // Raw rows pruned there: the hours this edge touches, when hours fit the buckets.
      if (e <= rawSinceMs && periods.includes(3600))
        return [{ source: 3600, startMs: Math.floor(s / HOUR_MS) * HOUR_MS, endMs: Math.ceil(e / HOUR_MS) * HOUR_MS }];
      return [{ source: 0, startMs: s, endMs: e }];
    }
    const w = period * 1000;
    const a = Math.ceil(s / w) * w;
    const b = Math.floor(e / w) * w;
    if (a >= b) return split(s, e, level + 1);
    return [...split(s, a, level + 1), { source: period, startMs: a, endMs: b }, ...split(b, e, level + 1)];
  };
  return split(startMs, endMs, 0);
}

const DIMENSION: Record<UsageDimension, string> = { token: "token", subject: "subject", provider: "provider", model: "model", plan: "plan" };

/** Sums usage over [start, end) by time bucket and one dimension, ordered by bucket then key. */
export async function aggregateUsage(db: Db, q: UsageQuery): Promise<UsageAggregate[]> {
  const pieces = planReport(q.start.getTime(), q.end.getTime(), q.bucketSeconds, await rawPrunedBefore(db));
  if (pieces.length === 0) return [];
  const width = q.bucketSeconds;
  const column = q.groupBy === undefined ? undefined : sql.raw(DIMENSION[q.groupBy]);
  const parts = pieces.map((p) => (p.source === 0 ? rawPiece(p, width, column) : rollupPiece(p, width, column)));
  const rows = resultRows<Record<string, string | number | bigint>>(
    await db.execute(sql`
      select bucket, key, sum(calls) as calls, sum(prompt) as prompt, sum(completion) as completion, sum(total) as total,
        sum(errors) as errors, sum(cost) as cost, sum(unpriced) as unpriced
      from (${sql.join(parts, sql` union all `)}) pieces
      group by 1, 2 order by 1, 2 limit ${q.limit}`),
  );
  return rows.map((r) => ({
    bucketStart: width > 0 ? new Date(Number(r.bucket) * 1000) : q.start,
    key: String(r.key ?? ""),
    calls: Number(r.calls ?? 0),
    promptTokens: Number(r.prompt ?? 0),
    completionTokens: Number(r.completion ?? 0),
    totalTokens: Number(r.total ?? 0),
    errors: Number(r.errors ?? 0),
    costMicroUsd: Number(r.cost ?? 0),
    unpricedCalls: Number(r.unpriced ?? 0),
  }));
}

/** The cutoff of the last raw prune, epoch ms; -Infinity when none ran. */
async function rawPrunedBefore(db: Db): Promise<number> {
  const [row] = resultRows<{ value: string }>(await db.execute(sql`select value from settings where name = ${RAW_PRUNED_BEFORE}`));
  const ms = row === undefined ? NaN : Date.parse(row.value);
  return Number.isFinite(ms) ? ms : -Infinity;
}

/** `floor(epoch / width) * width` rather than `date_bin`: the same SQL on every supported version. */
function bucketOf(time: SQL, width: number): SQL {
  return width > 0 ? sql`floor(extract(epoch from ${time}) / ${width}::integer)::bigint * ${width}::integer` : sql`0::bigint`;
}

/** A left join: `plan` 0 (no plan) has no label and groups as "". */
function keyOf(alias: string, column: SQL | undefined): { key: SQL; join: SQL } {
  if (column === undefined) return { key: sql`''`, join: sql`` };
  return { key: sql`coalesce(g.value, '')`, join: sql`left join usage_labels g on g.id = ${sql.raw(alias)}.${column}` };
}

const ERRORS = sql.raw(`${Outcome.UPSTREAM_ERROR}, ${Outcome.TRUNCATED}`);

function rawPiece(p: ReportPiece, width: number, column: SQL | undefined): SQL {
  const { key, join } = keyOf("c", column);
  return sql`(select ${bucketOf(sql`c.at`, width)} as bucket, ${key} as key,
      count(*) filter (where c.outcome <> ${Outcome.REFUNDED}) as calls, sum(c.prompt_tokens) as prompt,
      sum(c.completion_tokens) as completion, sum(c.total_tokens) as total,
      count(*) filter (where c.outcome in (${ERRORS})) as errors,
      coalesce(sum(c.cost_micro_usd), 0) as cost, count(*) filter (where c.cost_micro_usd is null and c.outcome <> ${Outcome.REFUNDED}) as unpriced
    from usage_calls c ${join}
    where c.at >= ${new Date(p.startMs).toISOString()}::timestamptz and c.at < ${new Date(p.endMs).toISOString()}::timestamptz
    group by 1, 2)`;
}

function rollupPiece(p: ReportPiece, width: number, column: SQL | undefined): SQL {
  const { key, join } = keyOf("r", column);
  return sql`(select ${bucketOf(sql`r.start`, width)} as bucket, ${key} as key,
      coalesce(sum(r.calls) filter (where r.outcome <> ${Outcome.REFUNDED}), 0) as calls, sum(r.prompt_tokens) as prompt,
      sum(r.completion_tokens) as completion, sum(r.total_tokens) as total,
      coalesce(sum(r.calls) filter (where r.outcome in (${ERRORS})), 0) as errors,
      sum(r.cost_micro_usd) as cost, sum(r.unpriced_calls) as unpriced
    from usage_rollups r ${join}
    where r.period = ${p.source}::integer and r.start >= ${new Date(p.startMs).toISOString()}::timestamptz
      and r.start < ${new Date(p.endMs).toISOString()}::timestamptz
    group by 1, 2)`;
}
