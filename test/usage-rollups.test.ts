/**
 * Usage roll-ups (issue 23) on PGlite and PostgreSQL: the hourly and daily roll-ups written in
 * the same statement as the raw rows equal the sums of the raw rows they cover (a property test
 * over random calls at random times, written in random batches), and reports over random windows,
 * buckets and groupings (read piecewise from daily, hourly and raw rows) equal the same sums
 * computed here from the calls themselves.
 */
import { sql } from "drizzle-orm";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { openDatabase, type Database } from "../src/db/client.js";
import { migrateDatabase, MIGRATIONS_FOLDER } from "../src/db/migrate.js";
import { aggregateUsage, insertUsageBatch, type UsageDimension, type UsageInsert } from "../src/db/queries/usage.js";
import { resultRows } from "../src/db/queries/usage-labels.js";
import { planReport } from "../src/db/queries/usage-report.js";
import { postgresAvailable, useMigratedDatabase, useServedPglite } from "./support/databases.js";

// Not use-relay's availableDrivers(): these tests need the database layer only, not the server.
const drivers = (await postgresAvailable()) ? (["pglite", "served PGlite", "postgres"] as const) : (["pglite", "served PGlite"] as const);
const HOUR = 3_600_000;
const DAY = 86_400_000;

/** A small deterministic generator (mulberry32): a failing seed can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const OUTCOMES = [Outcome.COMPLETE, Outcome.COMPLETE, Outcome.COMPLETE, Outcome.TRUNCATED, Outcome.UPSTREAM_ERROR, Outcome.REFUNDED];

function randomCalls(rnd: () => number, n: number, from: number, spanMs: number, tag: string): UsageInsert[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  return Array.from({ length: n }, () => {
    const prompt = Math.floor(rnd() * 5000);
    const completion = Math.floor(rnd() * 2000);
    return {
      at: from + Math.floor(rnd() * spanMs),
      tokenId: `tok_${tag}_${Math.floor(rnd() * 6)}`,
      subject: pick(["", "alice", "bob"]),
      provider: pick(["openai", "anthropic"]),
      model: pick(["gpt-4o-mini", "claude-3-5-haiku", ""]),
      keyId: pick(["", "key_a", "key_b"]),
      status: pick([200, 200, 429, 500]),
      outcome: pick(OUTCOMES),
      promptTokens: prompt,
      completionTokens: completion,
      totalTokens: prompt + completion + (rnd() < 0.1 ? 7 : 0),
      bytes: Math.floor(rnd() * 100_000),
      latencyMs: Math.floor(rnd() * 30_000),
      plan: pick(["", "free", "pro"]),
      cachedTokens: Math.floor(prompt / 3),
      reasoningTokens: Math.floor(completion / 4),
      // One call in five unpriced (cost unknown); the rest up to $0.10.
      costMicroUsd: rnd() < 0.2 ? null : Math.floor(rnd() * 100_000),
    };
  });
}

/** Writes the calls in random-sized batches, in random order (a late spill replay, say). */
async function writeInBatches(db: Database["db"], calls: UsageInsert[], rnd: () => number): Promise<void> {
  const shuffled = [...calls].sort(() => rnd() - 0.5);
  for (let i = 0; i < shuffled.length; ) {
    const n = 1 + Math.floor(rnd() * 300);
    await insertUsageBatch(db, shuffled.slice(i, i + n));
    i += n;
  }
}

/** Every hourly and daily roll-up equals the sums of the raw rows it covers, and none is missing. */
async function expectRollupsMatch(db: Database["db"], seed: number): Promise<void> {
  for (const period of [3600, 86400]) {
    const mismatches = resultRows<Record<string, unknown>>(
      await db.execute(sql`
        with raw as (
          select to_timestamp((floor(extract(epoch from at) / ${period}::integer) * ${period}::integer)::float8) as start,
            token, subject, provider, model, plan, outcome, count(*)::bigint as calls, sum(prompt_tokens)::bigint as prompt,
            sum(completion_tokens)::bigint as completion, sum(total_tokens)::bigint as total, sum(bytes)::bigint as bytes,
            (count(*) filter (where status >= 400))::bigint as http_errors, sum(latency_ms)::bigint as latency,
            coalesce(sum(cost_micro_usd), 0)::bigint as cost, (count(*) filter (where cost_micro_usd is null and outcome <> ${Outcome.REFUNDED}))::bigint as unpriced
          from usage_calls group by 1, 2, 3, 4, 5, 6, 7
        ), rolled as (
          select start, token, subject, provider, model, plan, outcome, calls, prompt_tokens as prompt, completion_tokens as completion,
            total_tokens as total, bytes, http_errors, latency_ms as latency, cost_micro_usd as cost, unpriced_calls as unpriced
          from usage_rollups where period = ${period}::integer
        )
        select * from ((select * from raw except select * from rolled) union all (select * from rolled except select * from raw)) d`),
    );
    expect(mismatches, `seed ${seed}, period ${period}`).toEqual([]);
  }
}

/** The report computed from the calls themselves: what aggregateUsage must answer. */
function expected(calls: UsageInsert[], start: number, end: number, bucketSeconds: number, groupBy: UsageDimension | undefined) {
  type Sum = { bucket: number; key: string; calls: number; prompt: number; completion: number; total: number; errors: number; cost: number; unpriced: number };
  const sums = new Map<string, Sum>();
  const field = { token: "tokenId", subject: "subject", provider: "provider", model: "model", plan: "plan" } as const;
  for (const c of calls) {
    if (c.at < start || c.at >= end) continue;
    const bucket = bucketSeconds > 0 ? Math.floor(c.at / (bucketSeconds * 1000)) * bucketSeconds * 1000 : start;
    const key = groupBy === undefined ? "" : (c[field[groupBy]] ?? "");
    const id = `${bucket}|${key}`;
    const s = sums.get(id) ?? { bucket, key, calls: 0, prompt: 0, completion: 0, total: 0, errors: 0, cost: 0, unpriced: 0 };
    if (c.outcome !== Outcome.REFUNDED) s.calls++;
    s.prompt += c.promptTokens;
    s.completion += c.completionTokens;
    s.total += c.totalTokens;
    if (c.outcome === Outcome.UPSTREAM_ERROR || c.outcome === Outcome.TRUNCATED) s.errors++;
    if (c.costMicroUsd !== null && c.costMicroUsd !== undefined) s.cost += c.costMicroUsd;
    else if (c.outcome !== Outcome.REFUNDED) s.unpriced++;
    sums.set(id, s);
  }
  return [...sums.values()].sort((a, b) => a.bucket - b.bucket || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

describe("planReport", () => {
  it("reads whole days and hours from roll-ups and only the ragged edges from raw rows", () => {
    const day = Date.UTC(2026, 0, 10);
    const pieces = planReport(day - 90 * 60_000, day + 2 * DAY + 150 * 60_000, 0);
    expect(pieces).toEqual([
      { source: 0, startMs: day - 90 * 60_000, endMs: day - HOUR },
      { source: 3600, startMs: day - HOUR, endMs: day },
      { source: 86400, startMs: day, endMs: day + 2 * DAY },
      { source: 3600, startMs: day + 2 * DAY, endMs: day + 2 * DAY + 2 * HOUR },
      { source: 0, startMs: day + 2 * DAY + 2 * HOUR, endMs: day + 2 * DAY + 150 * 60_000 },
    ]);
    // Minute buckets: raw rows only; an edge older than the raw retention: its whole hour.
    expect(planReport(day, day + 2 * HOUR, 60)).toEqual([{ source: 0, startMs: day, endMs: day + 2 * HOUR }]);
    expect(planReport(day + 10 * 60_000, day + 3 * HOUR, 3600, day + DAY)).toEqual([
      { source: 3600, startMs: day, endMs: day + HOUR },
      { source: 3600, startMs: day + HOUR, endMs: day + 3 * HOUR },
    ]);
  });
});

describe.each(drivers)("usage roll-ups on %s", (driver) => {
  const database = driver === "served PGlite" ? useServedPglite() : useMigratedDatabase(driver);
  const seedOffset = { pglite: 0, postgres: 1, "served PGlite": 2 }[driver];

  it("roll-ups equal the sums of the raw rows they cover (random calls, times and batches)", async () => {
    const seed = 23_000 + seedOffset;
    const rnd = random(seed);
    const from = Date.UTC(2026, 2, 1) + Math.floor(rnd() * DAY);
    const calls = randomCalls(rnd, 3000, from, 9 * DAY, "p");
    await writeInBatches(database.db, calls, rnd);
    await expectRollupsMatch(database.db, seed);
    const [count] = resultRows<{ n: string | number }>(await database.db.execute(sql`select count(*) as n from usage_events`));
    expect(Number(count!.n)).toBe(calls.length);
  });

  it("roll-ups equal the sums of the raw rows when most batches lie within one hour (calls in time order)", async () => {
    const seed = 23_100 + seedOffset;
    const rnd = random(seed);
    const from = Date.UTC(2026, 3, 1) - 2 * HOUR + Math.floor(rnd() * 4 * HOUR);
    const calls = randomCalls(rnd, 3000, from, 5 * HOUR, "h").sort((a, b) => a.at - b.at);
    for (let i = 0; i < calls.length; ) {
      const n = 1 + Math.floor(rnd() * 300);
      await insertUsageBatch(database.db, calls.slice(i, i + n));
      i += n;
    }
    await expectRollupsMatch(database.db, seed);
  });

  it("reports over random windows, buckets and groupings equal the sums of the calls", async () => {
    const seed = 2323 + seedOffset;
    const rnd = random(seed);
    const from = Date.UTC(2026, 5, 1);
    const calls = randomCalls(rnd, 2000, from, 20 * DAY, "r");
    await writeInBatches(database.db, calls, rnd);
    const dims: (UsageDimension | undefined)[] = [undefined, "token", "subject", "provider", "model", "plan"];
    for (let i = 0; i < 25; i++) {
      const start = from - DAY + Math.floor(rnd() * 12 * DAY);
      const end = start + Math.floor(rnd() * 10 * DAY) + 1;
      const bucketSeconds = [0, 60, 3600, 7200, 86400, 86400 * 7][Math.floor(rnd() * 6)]!;
      const groupBy = dims[Math.floor(rnd() * dims.length)];
      const got = await aggregateUsage(database.db, { start: new Date(start), end: new Date(end), bucketSeconds, groupBy, limit: 100_000 });
      // Only this test's tokens (the first test wrote other calls, at other times).
      const mine = groupBy === "token" ? got.filter((r) => r.key.startsWith("tok_r_")) : got;
      const want = expected(calls, start, end, bucketSeconds, groupBy);
      expect(
        mine.map((r) => ({
          bucket: r.bucketStart.getTime(),
          key: r.key,
          calls: r.calls,
          prompt: r.promptTokens,
          completion: r.completionTokens,
          total: r.totalTokens,
          errors: r.errors,
          cost: r.costMicroUsd,
          unpriced: r.unpricedCalls,
        })),
        `seed ${seed}, window ${new Date(start).toISOString()}..${new Date(end).toISOString()}, bucket ${bucketSeconds}, by ${groupBy}`,
      ).toEqual(want);
    }
  });
});

describe("upgrading a database that has usage rows of the old shape (PGlite)", () => {
  it("moves them into the compact table with their roll-ups; the usage_events view shows them as before", async () => {
    const dir = mkdtempSync(join(tmpdir(), "relayapi-upgrade-"));
    // The migrations as they were before issue 23: the journal cut after 0005.
    const before = join(dir, "drizzle");
    cpSync(MIGRATIONS_FOLDER, before, { recursive: true });
    const journalFile = join(before, "meta", "_journal.json");
    const journal = JSON.parse(readFileSync(journalFile, "utf8")) as { entries: { tag: string }[] };
    journal.entries = journal.entries.filter((e) => e.tag < "0006");
    writeFileSync(journalFile, JSON.stringify(journal));
    const database = await openDatabase({ dataDir: join(dir, "data") });
    try {
      const { migrate } = await import("drizzle-orm/pglite/migrator");
      await migrate(database.db as never, { migrationsFolder: before });
      const at = Date.UTC(2026, 0, 5, 10, 30);
      await database.db.execute(sql`insert into usage_events (at, token_id, subject, provider, model, key_id, status, outcome,
          prompt_tokens, completion_tokens, total_tokens, bytes, latency_ms, attempts, flags)
        values (${new Date(at).toISOString()}, 'tok_old', 'alice', 'openai', 'gpt-4o', 'key_1', 200, 1, 10, 5, 15, 100, 40, '', 0),
               (${new Date(at + 60_000).toISOString()}, 'tok_old', 'alice', 'openai', 'gpt-4o', '', 429, 3, 0, 0, 0, 50, 10, 'key_1:429,key_2:429', 0),
               (${new Date(at + 2 * HOUR).toISOString()}, 'tok_old2', '', 'anthropic', '', '', 200, 1, 7, 3, 10, 20, 5, '', 2)`);
      await migrateDatabase(database);
      const rows = resultRows<Record<string, unknown>>(
        await database.db.execute(sql`select token_id, subject, provider, model, key_id, status, outcome, prompt_tokens::int as p,
          attempts, flags from usage_events order by id`),
      );
      expect(rows).toEqual([
        { token_id: "tok_old", subject: "alice", provider: "openai", model: "gpt-4o", key_id: "key_1", status: 200, outcome: 1, p: 10, attempts: "", flags: 0 },
        {
          token_id: "tok_old",
          subject: "alice",
          provider: "openai",
          model: "gpt-4o",
          key_id: "",
          status: 429,
          outcome: 3,
          p: 0,
          attempts: "key_1:429,key_2:429",
          flags: 0,
        },
        { token_id: "tok_old2", subject: "", provider: "anthropic", model: "", key_id: "", status: 200, outcome: 1, p: 7, attempts: "", flags: 2 },
      ]);
      const [day] = await aggregateUsage(database.db, {
        start: new Date(Date.UTC(2026, 0, 5)),
        end: new Date(Date.UTC(2026, 0, 6)),
        bucketSeconds: 86400,
        limit: 10,
      });
      expect(day).toMatchObject({ calls: 3, promptTokens: 17, completionTokens: 8, totalTokens: 25, errors: 1 });
      // New calls go on numbering after the old ones.
      await insertUsageBatch(database.db, [{ ...randomCalls(random(1), 1, Date.now(), 1, "new")[0]! }]);
      const [last] = resultRows<{ id: string | number }>(await database.db.execute(sql`select max(id) as id from usage_calls`));
      expect(Number(last!.id)).toBe(4);
    } finally {
      await database.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
