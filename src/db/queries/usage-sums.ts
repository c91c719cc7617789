/**
 * The statement adding a usage batch's sums computed in JS (src/db/queries/usage-batch-shape.ts)
 * on PGlite: roll-ups, metered tokens, served calls. In this process it is PREPAREd once and
 * EXECUTEd after each batch's COPY, in the same message (src/db/queries/usage.ts insertCopying):
 * parsing and planning it was ~0.7 of its ~2 ms per batch of 1000 calls with 5 tokens (~1 of
 * ~8.7 with 200). Workers reaching the primary's PGlite as PostgreSQL send it inline, its values
 * as literals (insertUnnesting): they share one session, so a name one prepared is no other's.
 */
import { stringLiteral } from "../prepared.js";
import type { ShapedSums } from "./usage-batch-shape.js";

/** The largest bigint: a counter saturates there instead of failing the batch (SQLSTATE 22003). */
const BIGINT_MAX = "9223372036854775807";

/** Adds each roll-up group's sums to the row already there. */
export const ROLLUP_CONFLICT = `on conflict (start, period, token, subject, provider, model, plan, outcome) do update set
        calls = usage_rollups.calls + excluded.calls,
        prompt_tokens = usage_rollups.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = usage_rollups.completion_tokens + excluded.completion_tokens,
        total_tokens = usage_rollups.total_tokens + excluded.total_tokens,
        bytes = usage_rollups.bytes + excluded.bytes,
        http_errors = usage_rollups.http_errors + excluded.http_errors,
        latency_ms = usage_rollups.latency_ms + excluded.latency_ms,
        cost_micro_usd = usage_rollups.cost_micro_usd + excluded.cost_micro_usd,
        unpriced_calls = usage_rollups.unpriced_calls + excluded.unpriced_calls`;

/**
 * Saturates (numeric, then capped) rather than overflowing bigint: a full counter must not make
 * every later batch that meters the same token fail. A token with a budget is charged by its
 * reservations instead, as each call ends (src/tokens/budget-reservations.ts).
 */
export const METERED_UPDATE = `update tokens t set tokens_used = least(t.tokens_used::numeric + m.n, ${BIGINT_MAX}::numeric)::bigint`;

/** The sums' values, in the order sumsCtes numbers them: roll-up columns, metered, served. */
function sumsValues(b: ShapedSums): string[] {
  return [...b.rollups, b.meteredIds, b.meteredSums, b.servedIds, b.servedCalls, b.servedLast];
}

/**
 * The CTEs adding a batch's sums; `v(i)` is the SQL of the i-th of sumsValues (a literal or a
 * parameter). The roll-ups come sorted from JS; no ORDER BY: PGlite has one session, so no other
 * transaction can hold their locks in another order (workers of `serve --workers` reach it
 * through that one session too), and the sort in SQL took ~2-3 of the statement's ~20 ms for
 * 800 groups. `id = any(...)` beside each join: the tokens (and keys) are then read by their
 * primary key whatever the planner expects of the join, in a custom plan or a generic one.
 * Without it, from ~100 tokens in a batch it hashed the whole `tokens` table instead: with
 * 20,000 tokens stored, a batch of 200 tokens' calls took 20.6 ms of PGlite's CPU, 11.7 with it.
 */
function sumsCtes(daysFromHours: boolean, v: (i: number) => string): string {
  // Hourly groups only: each also adds to its day (epoch arithmetic, not date_trunc: no time zone).
  const [period, periods] = daysFromHours
    ? ["to_timestamp(floor(x.start / w.period::float8) * w.period), w.period", "cross join (values (3600), (86400)) as w(period)"]
    : ["to_timestamp(x.start), x.period", ""];
  return `rolled as (
      insert into usage_rollups (start, period, token, subject, provider, model, plan, outcome, calls, prompt_tokens,
        completion_tokens, total_tokens, bytes, http_errors, latency_ms, cost_micro_usd, unpriced_calls)
      select ${period}, x.t, x.s, x.p, x.m, x.pl, x.o, x.n, x.pt, x.ct, x.tt, x.b, x.he, x.l, x.c, x.u
      from unnest(${v(0)}::bigint[], ${v(1)}::integer[], ${v(2)}::integer[], ${v(3)}::integer[], ${v(4)}::integer[],
        ${v(5)}::integer[], ${v(6)}::integer[], ${v(7)}::smallint[], ${v(8)}::bigint[], ${v(9)}::bigint[], ${v(10)}::bigint[],
        ${v(11)}::bigint[], ${v(12)}::bigint[], ${v(13)}::bigint[], ${v(14)}::bigint[], ${v(15)}::bigint[], ${v(16)}::bigint[])
        as x(start, period, t, s, p, m, pl, o, n, pt, ct, tt, b, he, l, c, u) ${periods}
      ${ROLLUP_CONFLICT}
    ), metered as (
      ${METERED_UPDATE}
      from unnest(${v(17)}::text[], ${v(18)}::numeric[]) as m(token_id, n)
      where t.id = any(${v(17)}::text[]) and t.id = m.token_id and t.budget_tokens is null
    ), served as (
      update upstream_keys k set calls = k.calls + s.n, last_used_at = greatest(k.last_used_at, s.last_at)
      from unnest(${v(19)}::text[], ${v(20)}::bigint[], ${v(21)}::timestamptz[]) as s(key_id, n, last_at)
      where k.id = any(${v(19)}::text[]) and k.id = s.key_id
    )`;
}

/** The CTEs with the batch's values written in as literals. */
export function inlineSums(batch: ShapedSums): string {
  const values = sumsValues(batch).map(literal);
  return sumsCtes(batch.daysFromHours, (i) => values[i]!);
}

/** What runs SQL on PGlite in this process (its `exec`). */
export interface SqlExec {
  exec(text: string): Promise<unknown>;
}

const prepared = new WeakMap<SqlExec, Map<boolean, Promise<unknown>>>();

/**
 * `execute <name>(<the batch's values>)`, the sums' statement PREPAREd on `pglite` first if it
 * is not yet: once per client, for either form (with or without the daily groups). Its plan
 * cannot come to depend on table sizes (every join is by primary key; src/db/prepared.ts).
 */
export async function executeSums(pglite: SqlExec, batch: ShapedSums): Promise<string> {
  const name = batch.daysFromHours ? "usage_batch_sums_hours" : "usage_batch_sums";
  const mine = prepared.get(pglite) ?? new Map<boolean, Promise<unknown>>();
  prepared.set(pglite, mine);
  let ready = mine.get(batch.daysFromHours);
  if (ready === undefined) {
    const text = `prepare ${name} as with ${sumsCtes(batch.daysFromHours, (i) => `$${i + 1}`)} select 1`;
    ready = pglite.exec(text).catch((e: unknown) => {
      mine.delete(batch.daysFromHours);
      throw e;
    });
    mine.set(batch.daysFromHours, ready);
  }
  await ready;
  return `execute ${name}(${sumsValues(batch).map(literal).join(", ")})`;
}

/**
 * A value of the sums' statement as a SQL string literal. The arrays hold numbers and label
 * values, which the labels' own statement has already refused if they held a NUL.
 */
function literal(text: string): string {
  if (text.includes("\0")) throw new TypeError("a usage value holds a NUL");
  return stringLiteral(text);
}
