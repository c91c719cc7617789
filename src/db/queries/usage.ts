/**
 * Writing usage: the compact rows of `usage_calls` with their roll-ups (and the counters a batch
 * adds to `tokens` and `upstream_keys`), and `usage_dead_letters`. Reports: usage-report.ts.
 * Each takes the db first.
 */
import { type SQL, sql } from "drizzle-orm";
import { PgDialect } from "drizzle-orm/pg-core";
import { Outcome } from "../../../gen/relayapi/v1/common_pb.js";
import type { Db } from "../client.js";
import { stringLiteral } from "../prepared.js";
import { usageDeadLetters } from "../schema/index.js";
import { COPY_COLUMNS, type ShapedBatch, shapeBatch } from "./usage-batch-shape.js";
import { labelIds } from "./usage-labels.js";

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
  /** The token's plan; "" or absent when none (issue 24). Absent too in spill files of older versions. */
  plan?: string;
  /** Prompt tokens read from the provider's cache; completion tokens spent reasoning. */
  cachedTokens?: number;
  reasoningTokens?: number;
  /** Micro-dollars; null (or absent) when the call's model has no price. Refunded calls: 0. */
  costMicroUsd?: number | null;
}

/** The largest bigint: a counter saturates there instead of failing the batch (SQLSTATE 22003). */
const BIGINT_MAX = "9223372036854775807";

/** What the embedded driver offers beyond drizzle: statements (several in one message) that can COPY from a blob. */
interface PgliteClient {
  transaction(fn: (tx: unknown) => Promise<unknown>): Promise<unknown>;
  exec(text: string, options?: { blob?: Blob }): Promise<unknown>;
}

const dialect = new PgDialect();

/**
 * Writes a batch: first the labels of strings not seen before (src/db/queries/usage-labels.ts),
 * then the compact rows with their hourly and daily roll-ups (upserts adding the batch's sums,
 * issue 23; cost and unpriced calls per plan too, issue 24), per token the metered LLM tokens
 * added to `tokens.tokens_used`, and per pool key its served calls (refunds excluded) and last
 * use. All of it commits or fails together, so a failed batch can be retried whole without
 * counting anything twice (labels are idempotent).
 *
 * PostgreSQL (and workers reaching PGlite through the primary): one statement, the rows as one
 * JSON parameter unpacked by `json_to_recordset` and grouped in SQL. PGlite in this process
 * (WASM on the event loop): the rows by COPY from a blob and one statement upserting the sums
 * computed in JS (src/db/queries/usage-batch-shape.ts), in one transaction. Measured A/B with
 * bench/usage-cost.ts (through the writer, 20,000 calls, 4 alternating rounds on a loaded 2-core
 * machine), µs of CPU per call, medians: PGlite 54 -> 40 with 5 tokens per batch and 68 -> 64
 * with 200 (~1.5 roll-up groups per call: the upserts dominate and stay). On PostgreSQL, JS sums
 * took ~2-10 µs more of the relay's CPU than they saved the server, so the server groups there.
 * Since then on PGlite: the rows in COPY's binary format, COPY and the sums in one message, no
 * ORDER BY, and a batch within one hour sends its hourly groups only (the statement adds each
 * to its day too): 24.0 -> 19.2 µs per call with 1 token, 40.9 -> 32.6 with 200 (8 pairs,
 * bench/README.md).
 */
export async function insertUsageBatch(db: Db, rows: readonly UsageInsert[]): Promise<void> {
  if (rows.length === 0) return;
  const names = new Set<string>();
  for (const r of rows) {
    names.add(r.tokenId).add(r.subject).add(r.provider).add(r.model).add(r.keyId);
    if (r.plan) names.add(r.plan);
  }
  const id = await labelIds(db, names);
  const pglite = pgliteOf(db);
  if (pglite !== undefined) return insertCopying(pglite, id, rows);
  const json = JSON.stringify(
    rows.map((r) => ({
      at: new Date(r.at).toISOString(),
      t: id.get(r.tokenId),
      s: id.get(r.subject),
      p: id.get(r.provider),
      m: id.get(r.model),
      k: id.get(r.keyId),
      st: r.status,
      o: r.outcome,
      pt: r.promptTokens,
      ct: r.completionTokens,
      tt: r.totalTokens,
      b: r.bytes,
      l: r.latencyMs,
      a: r.attempts ?? "",
      f: r.flags ?? 0,
      // Plan 0: none (labels start at 1).
      pl: r.plan ? id.get(r.plan) : 0,
      ca: r.cachedTokens ?? 0,
      re: r.reasoningTokens ?? 0,
      c: r.costMicroUsd ?? null,
    })),
  );
  await db.execute(sql`
    with batch as (
      select * from json_to_recordset(${json}::json) as x(at timestamptz, t integer, s integer, p integer, m integer,
        k integer, st smallint, o smallint, pt integer, ct integer, tt integer, b bigint, l integer, a text, f smallint,
        pl integer, ca integer, re integer, c bigint)
    ), inserted as (
      insert into usage_calls (${sql.raw(COPY_COLUMNS)})
      select at, b, t, s, p, m, k, pt, ct, tt, l, st, o, coalesce(f, 0), coalesce(a, ''), coalesce(pl, 0), coalesce(ca, 0),
        coalesce(re, 0), c from batch
    ), rolled as (
      -- Hour and day in one upsert, in key order: two instances adding to the same roll-ups lock
      -- them in the same order (no deadlock). Epoch arithmetic, not date_trunc: no time zone.
      -- A call without a price adds to unpriced_calls, never to cost_micro_usd (issue 24); a
      -- refunded call reached no provider: never unpriced (the writer stores its cost as 0).
      -- The same sums as usage-batch-shape.ts computes for PGlite (test/usage-rollups.test.ts).
      insert into usage_rollups (start, period, token, subject, provider, model, plan, outcome, calls, prompt_tokens,
        completion_tokens, total_tokens, bytes, http_errors, latency_ms, cost_micro_usd, unpriced_calls)
      select to_timestamp((floor(extract(epoch from b.at) / w.period) * w.period)::float8), w.period, b.t, b.s, b.p, b.m,
        coalesce(b.pl, 0), b.o, count(*), sum(b.pt), sum(b.ct), sum(b.tt), sum(b.b), count(*) filter (where b.st >= 400), sum(b.l),
        coalesce(sum(b.c), 0), count(*) filter (where b.c is null and b.o <> ${Outcome.REFUNDED})
      from batch b cross join (values (3600), (86400)) as w(period)
      group by 1, 2, 3, 4, 5, 6, 7, 8 order by 1, 2, 3, 4, 5, 6, 7, 8
      ${ROLLUP_CONFLICT}
    ), metered as (
      ${METERED_UPDATE}
      from (
        select l.value as token_id, sum(b.tt) as n from batch b join usage_labels l on l.id = b.t
        group by l.value having sum(b.tt) > 0
      ) m
      where t.id = m.token_id and t.budget_tokens is null
    ), served as (
      update upstream_keys k set calls = k.calls + s.n, last_used_at = greatest(k.last_used_at, s.last_at)
      from (
        select l.value as key_id, count(*) as n, max(b.at) as last_at from batch b join usage_labels l on l.id = b.k
        where l.value <> '' and b.o <> ${Outcome.REFUNDED} group by l.value
      ) s
      where k.id = s.key_id
    )
    select 1`);
}

/**
 * PGlite: the rows by COPY from a blob, then one statement adding the sums computed here, sent
 * as one message of the simple protocol: its statements run in one implicit transaction (atomic
 * like the single statement above; https://www.postgresql.org/docs/current/protocol-flow.html,
 * "Multiple Statements in a Simple Query"). Each message PGlite is sent costs ~0.3 ms of its own
 * (a bare `select 1` through `query()`), and BEGIN, COPY, the sums and COMMIT were four, so the
 * sums' values are written as literals (quotes doubled: standard_conforming_strings is on, as
 * src/db/prepared.ts relies on too): ~1.5 ms less per batch (bench/README.md).
 */
async function insertCopying(pglite: PgliteClient, id: ReadonlyMap<string, number>, rows: readonly UsageInsert[]): Promise<void> {
  const batch = shapeBatch(id, rows);
  const format = typeof batch.calls === "string" ? "" : " with (format binary)";
  const { sql: sums } = dialect.sqlToQuery(sql`with ${sumsStatements(batch)} select 1`);
  await pglite.exec(`copy usage_calls (${COPY_COLUMNS}) from '/dev/blob'${format}; ${sums}`, { blob: new Blob([batch.calls]) });
}

/** Adds each roll-up group's sums to the row already there. */
const ROLLUP_CONFLICT = sql.raw(`on conflict (start, period, token, subject, provider, model, plan, outcome) do update set
        calls = usage_rollups.calls + excluded.calls,
        prompt_tokens = usage_rollups.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = usage_rollups.completion_tokens + excluded.completion_tokens,
        total_tokens = usage_rollups.total_tokens + excluded.total_tokens,
        bytes = usage_rollups.bytes + excluded.bytes,
        http_errors = usage_rollups.http_errors + excluded.http_errors,
        latency_ms = usage_rollups.latency_ms + excluded.latency_ms,
        cost_micro_usd = usage_rollups.cost_micro_usd + excluded.cost_micro_usd,
        unpriced_calls = usage_rollups.unpriced_calls + excluded.unpriced_calls`);

/**
 * Saturates (numeric, then capped) rather than overflowing bigint: a full counter must not make
 * every later batch that meters the same token fail. A token with a budget is charged by its
 * reservations instead, as each call ends (src/tokens/budget-reservations.ts).
 */
const METERED_UPDATE = sql.raw(`update tokens t set tokens_used = least(t.tokens_used::numeric + m.n, ${BIGINT_MAX}::numeric)::bigint`);

/**
 * The CTEs adding a shaped batch's sums: roll-ups, metered tokens, served calls. The roll-ups
 * come sorted from JS; no ORDER BY: PGlite has one session, so no other transaction can hold
 * their locks in another order (workers of `serve --workers` reach it as PostgreSQL, through the
 * statement above), and the sort in SQL took ~2-3 of the statement's ~20 ms for 800 groups.
 */
function sumsStatements(batch: ShapedBatch): SQL {
  const r = batch.rollups.map(literal);
  // Hourly groups only: each also adds to its day (epoch arithmetic, as above).
  const [period, periods] = batch.daysFromHours
    ? [sql.raw("to_timestamp(floor(x.start / w.period::float8) * w.period), w.period"), sql.raw("cross join (values (3600), (86400)) as w(period)")]
    : [sql.raw("to_timestamp(x.start), x.period"), sql``];
  return sql`rolled as (
      insert into usage_rollups (start, period, token, subject, provider, model, plan, outcome, calls, prompt_tokens,
        completion_tokens, total_tokens, bytes, http_errors, latency_ms, cost_micro_usd, unpriced_calls)
      select ${period}, x.t, x.s, x.p, x.m, x.pl, x.o, x.n, x.pt, x.ct, x.tt, x.b, x.he, x.l, x.c, x.u
      from unnest(${r[0]}::bigint[], ${r[1]}::integer[], ${r[2]}::integer[], ${r[3]}::integer[], ${r[4]}::integer[],
        ${r[5]}::integer[], ${r[6]}::integer[], ${r[7]}::smallint[], ${r[8]}::bigint[], ${r[9]}::bigint[], ${r[10]}::bigint[],
        ${r[11]}::bigint[], ${r[12]}::bigint[], ${r[13]}::bigint[], ${r[14]}::bigint[], ${r[15]}::bigint[], ${r[16]}::bigint[])
        as x(start, period, t, s, p, m, pl, o, n, pt, ct, tt, b, he, l, c, u) ${periods}
      ${ROLLUP_CONFLICT}
    ), metered as (
      ${METERED_UPDATE}
      from unnest(${literal(batch.meteredIds)}::text[], ${literal(batch.meteredSums)}::numeric[]) as m(token_id, n)
      where t.id = m.token_id and t.budget_tokens is null
    ), served as (
      update upstream_keys k set calls = k.calls + s.n, last_used_at = greatest(k.last_used_at, s.last_at)
      from unnest(${literal(batch.servedIds)}::text[], ${literal(batch.servedCalls)}::bigint[], ${literal(batch.servedLast)}::timestamptz[]) as s(key_id, n, last_at)
      where k.id = s.key_id
    )`;
}

/**
 * A value of the sums' statement as a SQL string literal. The arrays hold numbers and label
 * values, which the labels' own statement has already refused if they held a NUL.
 */
function literal(text: string): SQL {
  if (text.includes("\0")) throw new TypeError("a usage value holds a NUL");
  return sql.raw(stringLiteral(text));
}

/** The PGlite client under `db` (drizzle keeps it as `$client`); undefined on postgres.js or a fake. */
function pgliteOf(db: Db): PgliteClient | undefined {
  const client = (db as { $client?: Partial<PgliteClient> }).$client;
  return typeof client?.transaction === "function" && typeof client.exec === "function" ? (client as PgliteClient) : undefined;
}

/**
 * Keeps a usage record the database refused (a data error: SQLSTATE class 22 or 23), as JSON
 * text with the error, so one poison row never blocks the queue and is never silently lost.
 */
export async function insertUsageDeadLetter(db: Db, record: string, error: string): Promise<void> {
  await db.execute(sql`insert into ${usageDeadLetters} (record, error) values (${record}, ${error})`);
}

export { aggregateUsage, type UsageAggregate, type UsageDimension, type UsageQuery } from "./usage-report.js";
