/**
 * Queries on `usage_events` (and the counters a batch of them adds to `tokens` and
 * `upstream_keys`) and `usage_dead_letters`. Each takes the db first and returns explicit columns.
 */
import { and, gte, lt, sql, type SQL } from "drizzle-orm";
import type { AnyPgColumn } from "drizzle-orm/pg-core";
import { Outcome } from "../../../gen/relayapi/v1/common_pb.js";
import type { Db } from "../client.js";
import { usageDeadLetters, usageEvents } from "../schema/index.js";

/** One usage record as written; strings already cleaned (src/usage/usage-writer.ts). */
export interface UsageInsert {
  /** When the call ended, epoch milliseconds (a number: cheaper than a Date on the hot path). */
  at: number;
  tokenId: string;
  subject: string;
  provider: string;
  model: string;
  /** "" when no pool key served the call. */
  keyId: string;
  status: number;
  outcome: Outcome;
  promptTokens: number;
  completionTokens: number;
  /** Metered LLM tokens: added to the token's `tokens_used` (unless it has a budget: reservations charge those). */
  totalTokens: number;
  bytes: number;
  latencyMs: number;
  /** Failover attempts, `key_id:status,...` ("" for a single attempt). */
  attempts?: string;
  /** UsageFlag bits (src/usage/usage-flags.ts); 0 when absent. */
  flags?: number;
}

/** The largest bigint: a counter saturates there instead of failing the batch (SQLSTATE 22003). */
const BIGINT_MAX = "9223372036854775807";

/**
 * Writes a batch in ONE statement: the rows, plus per token the metered LLM tokens added to
 * `tokens.tokens_used`, plus per pool key its served calls (refunds excluded) and last use. One
 * statement is atomic, so a failed batch can be retried whole without counting anything twice.
 *
 * The rows travel as one JSON parameter unpacked by `json_to_recordset`: on PGlite (WASM on the
 * event loop) that took ~40-45 µs of main-thread CPU per row in batches of 500-1000, against
 * ~110 µs for drizzle's VALUES list of 13 parameters per row plus a separate counter update
 * (measured side by side on one loaded machine), and it never nears the 65535-parameter limit.
 */
export async function insertUsageBatch(db: Db, rows: readonly UsageInsert[]): Promise<void> {
  if (rows.length === 0) return;
  const json = JSON.stringify(
    rows.map((r) => ({
      at: new Date(r.at).toISOString(),
      token_id: r.tokenId,
      subject: r.subject,
      provider: r.provider,
      model: r.model,
      key_id: r.keyId,
      status: r.status,
      outcome: r.outcome,
      prompt_tokens: r.promptTokens,
      completion_tokens: r.completionTokens,
      total_tokens: r.totalTokens,
      bytes: r.bytes,
      latency_ms: r.latencyMs,
      attempts: r.attempts ?? "",
      flags: r.flags ?? 0,
    })),
  );
  await db.execute(sql`
    with batch as (
      select * from json_to_recordset(${json}::json) as x(
        at timestamptz, token_id text, subject text, provider text, model text, key_id text,
        status smallint, outcome smallint, prompt_tokens bigint, completion_tokens bigint,
        total_tokens bigint, bytes bigint, latency_ms integer, attempts text, flags smallint)
    ), inserted as (
      insert into usage_events (at, token_id, subject, provider, model, key_id, status, outcome,
        prompt_tokens, completion_tokens, total_tokens, bytes, latency_ms, attempts, flags)
      select at, token_id, subject, provider, model, key_id, status, outcome,
        prompt_tokens, completion_tokens, total_tokens, bytes, latency_ms, coalesce(attempts, ''), coalesce(flags, 0)
      from batch
    ), metered as (
      -- Saturates (numeric, then capped) rather than overflowing bigint: a full counter must not
      -- make every later batch that meters the same token fail. A token with a budget is
      -- charged by its reservations instead, as each call ends (src/tokens/budget-reservations.ts).
      update tokens t set tokens_used = least(t.tokens_used::numeric + m.n, ${BIGINT_MAX}::numeric)::bigint
      from (select token_id, sum(total_tokens) as n from batch group by token_id having sum(total_tokens) > 0) m
      where t.id = m.token_id and t.budget_tokens is null
    ), served as (
      update upstream_keys k set calls = k.calls + s.n, last_used_at = greatest(k.last_used_at, s.last_at)
      from (
        select key_id, count(*) as n, max(at) as last_at from batch
        where key_id <> '' and outcome <> ${Outcome.REFUNDED} group by key_id
      ) s
      where k.id = s.key_id
    )
    select 1`);
}

/**
 * Keeps a usage record the database refused (a data error: SQLSTATE class 22 or 23), as JSON
 * text with the error, so one poison row never blocks the queue and is never silently lost.
 */
export async function insertUsageDeadLetter(db: Db, record: string, error: string): Promise<void> {
  await db.execute(sql`insert into ${usageDeadLetters} (record, error) values (${record}, ${error})`);
}

export type UsageDimension = "token" | "subject" | "provider" | "model";

const DIMENSION_COLUMN = {
  token: usageEvents.tokenId,
  subject: usageEvents.subject,
  provider: usageEvents.provider,
  model: usageEvents.model,
} as const;

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
}

/**
 * Sums usage over [start, end) by time bucket and one dimension, ordered by bucket then key.
 * Buckets use `floor(epoch / width)` arithmetic rather than `date_bin` so the same SQL runs on
 * every PostgreSQL version the relay supports.
 */
export async function aggregateUsage(db: Db, q: UsageQuery): Promise<UsageAggregate[]> {
  const width = q.bucketSeconds;
  const bucket =
    width > 0 ? sql<number>`floor(extract(epoch from ${usageEvents.at}) / ${width}::integer)::bigint * ${width}::integer` : sql<number>`0`;
  const key = q.groupBy ? sql<string>`${DIMENSION_COLUMN[q.groupBy]}` : sql<string>`''`;
  const count = (where: SQL) => sql<number>`count(*) filter (where ${where})`.mapWith(Number);
  const total = (column: AnyPgColumn) => sql<number>`coalesce(sum(${column}), 0)`.mapWith(Number);
  const rows = await db
    .select({
      bucket: bucket.mapWith(Number),
      key: key.mapWith(String),
      calls: count(sql`${usageEvents.outcome} <> ${Outcome.REFUNDED}`),
      promptTokens: total(usageEvents.promptTokens),
      completionTokens: total(usageEvents.completionTokens),
      totalTokens: total(usageEvents.totalTokens),
      errors: count(sql`${usageEvents.outcome} in (${Outcome.UPSTREAM_ERROR}, ${Outcome.TRUNCATED})`),
    })
    .from(usageEvents)
    .where(and(gte(usageEvents.at, q.start), lt(usageEvents.at, q.end)))
    // By position: the bucket expression carries parameters, which GROUP BY could not match.
    .groupBy(sql`1`, sql`2`)
    .orderBy(sql`1`, sql`2`)
    .limit(q.limit);
  return rows.map(({ bucket: b, ...r }) => ({ bucketStart: width > 0 ? new Date(b * 1000) : q.start, ...r }));
}
