/**
 * Writing usage: the compact rows of `usage_calls` with their roll-ups (and the counters a batch
 * adds to `tokens` and `upstream_keys`), and `usage_dead_letters`. Reports: usage-report.ts.
 * Each takes the db first.
 */
import { sql } from "drizzle-orm";
import { Outcome } from "../../../gen/relayapi/v1/common_pb.js";
import { type Db, isServedPglite } from "../client.js";
import { usageDeadLetters } from "../schema/index.js";
import { COPY_COLUMNS, shapeBatch, shapeBatchArrays } from "./usage-batch-shape.js";
import { labelIds } from "./usage-labels.js";
import { executeSums, inlineSums, METERED_UPDATE, ROLLUP_CONFLICT } from "./usage-sums.js";

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

/** What the embedded driver offers beyond drizzle: statements (several in one message) that can COPY from a blob. */
interface PgliteClient {
  transaction(fn: (tx: unknown) => Promise<unknown>): Promise<unknown>;
  exec(text: string, options?: { blob?: Blob }): Promise<unknown>;
}

/**
 * Writes a batch: first the labels of strings not seen before (src/db/queries/usage-labels.ts),
 * then the compact rows with their hourly and daily roll-ups (upserts adding the batch's sums,
 * issue 23; cost and unpriced calls per plan too, issue 24), per token the metered LLM tokens
 * added to `tokens.tokens_used`, and per pool key its served calls (refunds excluded) and last
 * use. All of it commits or fails together, so a failed batch can be retried whole without
 * counting anything twice (labels are idempotent).
 *
 * PostgreSQL: one statement, the rows as one JSON parameter unpacked by `json_to_recordset` and
 * grouped in SQL. PGlite in this process (WASM on the event loop): the rows by COPY from a blob
 * and one statement upserting the sums computed in JS (src/db/queries/usage-batch-shape.ts), in
 * one transaction. Workers of `serve --workers` reaching the primary's PGlite as PostgreSQL: the
 * same sums, and the rows from column arrays, in one statement (insertUnnesting). Measured A/B with
 * bench/usage-cost.ts (through the writer, 20,000 calls, 4 alternating rounds on a loaded 2-core
 * machine), µs of CPU per call, medians: PGlite 54 -> 40 with 5 tokens per batch and 68 -> 64
 * with 200 (~1.5 roll-up groups per call: the upserts dominate and stay). On PostgreSQL, JS sums
 * took ~2-10 µs more of the relay's CPU than they saved the server, so the server groups there.
 * Since then on PGlite: the rows in COPY's binary format, COPY and the sums in one message, no
 * ORDER BY, and a batch within one hour sends its hourly groups only (the statement adds each
 * to its day too): 24.0 -> 19.2 µs per call with 1 token, 40.9 -> 32.6 with 200 (8 pairs,
 * bench/README.md). Then the sums' statement PREPAREd once, and its tokens and keys read by
 * primary key (src/db/queries/usage-sums.ts): 16.3 -> 14.9 µs per call with 5 tokens, 38.4 ->
 * 27.9 with 200 of 20,000 stored (--stored-tokens); workers on the primary's PGlite sending
 * rows and sums as insertUnnesting does: the primary's CPU per relayed call 33.8 -> 23.0 µs
 * (`serve --workers 2`; medians of 6 and 5 alternating pairs on a shared 2-core machine).
 * Then the COPY names only the optional columns some row of the batch holds a value in
 * (src/db/queries/usage-copy-binary.ts) and the writer takes usage the meters bounded as it is:
 * 8.2 -> 7.3 µs per call with 1 token, 18.9 -> 16.9 with 200, batches interleaved in one
 * process after 10 warm-up batches (medians of 80 and 40 pairs, issue 22).
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
  if (isServedPglite(db)) return insertUnnesting(db, id, rows);
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
      ${sql.raw(ROLLUP_CONFLICT)}
    ), metered_sums as (
      select l.value as token_id, sum(b.tt) as n from batch b join usage_labels l on l.id = b.t
      group by l.value having sum(b.tt) > 0
    ), metered_locks as (
      -- The tokens' and keys' rows are locked in id order before they are updated, as the roll-ups
      -- are: an UPDATE ... FROM locks in its plan's order, and two instances' batches over the
      -- same tokens deadlocked, each holding a row the other waited for (calls then answered 503).
      select t.id from tokens t where t.id in (select token_id from metered_sums) and t.budget_tokens is null
      order by t.id for update
    ), metered as (
      ${sql.raw(METERED_UPDATE)}
      from metered_sums m
      where t.id = m.token_id and t.id in (select id from metered_locks)
    ), served_sums as (
      select l.value as key_id, count(*) as n, max(b.at) as last_at from batch b join usage_labels l on l.id = b.k
      where l.value <> '' and b.o <> ${Outcome.REFUNDED} group by l.value
    ), served_locks as (
      select k.id from upstream_keys k where k.id in (select key_id from served_sums) order by k.id for update
    ), served as (
      update upstream_keys k set calls = k.calls + s.n, last_used_at = greatest(k.last_used_at, s.last_at)
      from served_sums s
      where k.id = s.key_id and k.id in (select id from served_locks)
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
 * src/db/prepared.ts relies on too): ~1.5 ms less per batch (bench/README.md). The sums'
 * statement is PREPAREd once and EXECUTEd (src/db/queries/usage-sums.ts).
 */
async function insertCopying(pglite: PgliteClient, id: ReadonlyMap<string, number>, rows: readonly UsageInsert[]): Promise<void> {
  const batch = shapeBatch(id, rows);
  const format = typeof batch.calls === "string" ? "" : " with (format binary)";
  const sums = await executeSums(pglite, batch);
  await pglite.exec(`copy usage_calls (${batch.columns}) from '/dev/blob'${format}; ${sums}`, { blob: new Blob([batch.calls]) });
}

/**
 * Workers of `serve --workers` on the embedded database (src/cluster/embedded-db-server.ts):
 * PGlite reached as PostgreSQL, so no COPY from a blob, and grouping in SQL is what PGlite does
 * slowest. One statement (atomic as the one above): the rows from column arrays
 * (src/db/queries/usage-row-arrays.ts, `at` in epoch ms: an ISO timestamp's parse was a quarter
 * of a row's cost) and the sums computed in the worker, as insertCopying sends them. PGlite runs
 * one statement at a time for all workers, so no two batches ever wait for each other's locks.
 */
async function insertUnnesting(db: Db, id: ReadonlyMap<string, number>, rows: readonly UsageInsert[]): Promise<void> {
  const batch = shapeBatchArrays(id, rows);
  const c = batch.calls;
  await db.execute(sql`with calls as (
      insert into usage_calls (${sql.raw(COPY_COLUMNS)})
      select to_timestamp(x.at / 1000) + (x.at % 1000) * interval '1 ms', x.b, x.t, x.s, x.p, x.m, x.k, x.pt, x.ct, x.tt, x.l, x.st,
        x.o, x.f, x.a, x.pl, x.ca, x.re, x.c
      from unnest(${c[0]}::bigint[], ${c[1]}::bigint[], ${c[2]}::integer[], ${c[3]}::integer[], ${c[4]}::integer[], ${c[5]}::integer[],
        ${c[6]}::integer[], ${c[7]}::integer[], ${c[8]}::integer[], ${c[9]}::integer[], ${c[10]}::integer[], ${c[11]}::smallint[],
        ${c[12]}::smallint[], ${c[13]}::smallint[], ${c[14]}::text[], ${c[15]}::integer[], ${c[16]}::integer[], ${c[17]}::integer[],
        ${c[18]}::bigint[]) as x(at, b, t, s, p, m, k, pt, ct, tt, l, st, o, f, a, pl, ca, re, c)
    ), ${sql.raw(inlineSums(batch))}
    select 1`);
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
