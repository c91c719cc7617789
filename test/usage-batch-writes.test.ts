import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { isServedPglite } from "../src/db/client.js";
import { insertUsageBatch, type UsageInsert } from "../src/db/queries/usage.js";
import { shapeBatch, shapeBatchArrays } from "../src/db/queries/usage-batch-shape.js";
import { labelIds, resultRows } from "../src/db/queries/usage-labels.js";
import { executeSums, type SqlExec } from "../src/db/queries/usage-sums.js";
import { isDataError } from "../src/usage/usage-batches.js";
import { postgresAvailable, useMigratedDatabase, useServedPglite } from "./support/databases.js";
import { storedOptional, USAGE_AT as AT, USAGE_LABEL_IDS, usageCall } from "./support/usage-call.js";

const drivers = (await postgresAvailable()) ? (["pglite", "served PGlite", "postgres"] as const) : (["pglite", "served PGlite"] as const);
/** The batch tests' calls are priced (a cost of 7 micro-dollars) unless overridden. */
function call(tokenId: string, over: Partial<UsageInsert> = {}): UsageInsert {
  return usageCall(tokenId, { costMicroUsd: 7, ...over });
}

describe.each(drivers)("usage batch writes on %s", (driver) => {
  const database = driver === "served PGlite" ? useServedPglite() : useMigratedDatabase(driver);
  const rows = async <T>(query: ReturnType<typeof sql>): Promise<T[]> => resultRows<T>(await database.db.execute(query));

  it("knows a database reached as PostgreSQL that is PGlite served by a primary", () => {
    expect(isServedPglite(database.db)).toBe(driver === "served PGlite");
  });

  it("a batch that fails after its rows went in leaves none of them, and fails as a data error", async () => {
    await insertUsageBatch(database.db, [call("tok_atomic")]);
    // The next batch's roll-up overflows bigint: its rows are copied first, then the upsert fails.
    await database.db.execute(sql`update usage_rollups set bytes = 9223372036854775807 - 1
      where token = (select id from usage_labels where value = 'tok_atomic')`);
    const failed = await insertUsageBatch(database.db, [call("tok_atomic"), call("tok_atomic"), call("tok_other")]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failed).toBeDefined();
    expect(isDataError(failed)).toBe(true);
    const calls = await rows<{ n: number | string }>(sql`select count(*) as n from usage_events where token_id in ('tok_atomic', 'tok_other')`);
    expect(Number(calls[0]!.n)).toBe(1);
    const other = await rows<{ n: number | string }>(sql`select count(*) as n from usage_rollups r join usage_labels l on l.id = r.token
      where l.value = 'tok_other'`);
    expect(Number(other[0]!.n)).toBe(0);
  });

  it("sums bytes and cost exactly past 2^53, hour and day", async () => {
    const max = Number.MAX_SAFE_INTEGER;
    await insertUsageBatch(database.db, [
      call("tok_big", { bytes: max, costMicroUsd: max }),
      call("tok_big", { bytes: max, costMicroUsd: max, at: AT + 60_000 }),
      call("tok_big", { bytes: 3, costMicroUsd: null }),
    ]);
    const sums = await rows<{ period: number; bytes: string; cost: string; unpriced: string; calls: string }>(sql`
      select r.period, r.bytes::text as bytes, r.cost_micro_usd::text as cost, r.unpriced_calls::text as unpriced, r.calls::text as calls
      from usage_rollups r join usage_labels l on l.id = r.token where l.value = 'tok_big' order by r.period`);
    const exact = (2n * BigInt(max)).toString();
    expect(sums).toEqual([
      { period: 3600, bytes: (2n * BigInt(max) + 3n).toString(), cost: exact, unpriced: "1", calls: "3" },
      { period: 86400, bytes: (2n * BigInt(max) + 3n).toString(), cost: exact, unpriced: "1", calls: "3" },
    ]);
  });

  it("stores every column exactly as given", async () => {
    const max = Number.MAX_SAFE_INTEGER;
    const given = [
      call("tok_exact", {
        at: AT + 123,
        keyId: "key_é",
        status: 999,
        outcome: Outcome.TRUNCATED,
        promptTokens: 2_147_483_647,
        completionTokens: 0,
        totalTokens: 2_147_483_647,
        bytes: max,
        latencyMs: 2_147_483_647,
        attempts: "key_é:429,key_😀:200",
        flags: 3,
        plan: "pro",
        cachedTokens: 12,
        reasoningTokens: 34,
        costMicroUsd: max,
      }),
      call("tok_exact", { at: Date.UTC(1999, 11, 31, 23, 59, 59, 999), bytes: 0, latencyMs: 0, costMicroUsd: null }),
      call("tok_exact", { costMicroUsd: 0 }),
    ];
    await insertUsageBatch(database.db, given);
    const stored = await rows<Record<string, unknown>>(sql`select extract(epoch from at)::numeric * 1000 as at_ms, key_id, status, outcome,
      prompt_tokens::text as pt, completion_tokens::text as ct, total_tokens::text as tt, bytes::text as bytes, latency_ms, attempts,
      flags, plan, cached_tokens::text as cached, reasoning_tokens::text as reasoning, cost_micro_usd::text as cost
      from usage_events where token_id = 'tok_exact' order by id`);
    expect(
      stored.map((r) => ({
        ...r,
        at_ms: Number(r.at_ms),
        status: Number(r.status),
        outcome: Number(r.outcome),
        latency_ms: Number(r.latency_ms),
        flags: Number(r.flags),
      })),
    ).toEqual(
      given.map((g) => ({
        at_ms: g.at,
        key_id: g.keyId,
        status: g.status,
        outcome: g.outcome,
        pt: String(g.promptTokens),
        ct: String(g.completionTokens),
        tt: String(g.totalTokens),
        bytes: String(g.bytes),
        latency_ms: g.latencyMs,
        ...storedOptional(g),
      })),
    );
  });

  it("refuses a value its column cannot hold as a data error, writing none of the batch", async () => {
    const failed = await insertUsageBatch(database.db, [call("tok_range"), call("tok_range", { promptTokens: 2 ** 31 })]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isDataError(failed)).toBe(true);
    const calls = await rows<{ n: number | string }>(sql`select count(*) as n from usage_events where token_id = 'tok_range'`);
    expect(Number(calls[0]!.n)).toBe(0);
  });

  it("meters the token and counts the key whatever their ids hold (quotes, backslashes)", async () => {
    const tokenId = "tok_o'q\\\"{x}";
    const keyId = "key_o'q\\\"{x}";
    await database.db.execute(sql`insert into key_pools (name, provider, strategy) values ('quotes', 'openai', 1)`);
    await database.db.execute(sql`insert into upstream_keys (id, pool, key_enc, key_hash, masked) values (${keyId}, 'quotes', 'x', 'h', 'm')`);
    await database.db.execute(sql`insert into tokens (id, kind, provider, expires_at) values (${tokenId}, 1, 'openai', now() + interval '1 day')`);
    await insertUsageBatch(database.db, [call(tokenId, { keyId }), call(tokenId, { keyId, at: AT + 1000 })]);
    const [token] = await rows<{ used: string }>(sql`select tokens_used::text as used from tokens where id = ${tokenId}`);
    expect(token?.used).toBe("30");
    const [key] = await rows<{ calls: string; last: string }>(sql`select calls::text as calls, last_used_at as last from upstream_keys where id = ${keyId}`);
    expect(key?.calls).toBe("2");
    expect(new Date(key!.last).getTime()).toBe(AT + 1000);
  });

  it("keeps attempts text with tabs, newlines, backslashes and quotes as it was", async () => {
    const attempts = 'key_a:429,\tkey_b\\:5"03\nkey_c:\r200,{x}';
    await insertUsageBatch(database.db, [call("tok_text", { attempts }), call("tok_text", { attempts: "" })]);
    const stored = await rows<{ attempts: string }>(sql`select attempts from usage_events where token_id = 'tok_text' order by id`);
    expect(stored.map((r) => r.attempts)).toEqual([attempts, ""]);
  });
});

describe("the usage sums' statement on PGlite", () => {
  const database = useMigratedDatabase("pglite");

  it("reads metered tokens by primary key however many are stored (never a scan of the table)", async () => {
    await database.db.execute(sql`insert into tokens (id, kind, provider, expires_at)
      select 'tok_plan_' || g, 1, 'openai', now() + interval '1 day' from generate_series(1, 20000) g`);
    await database.db.execute(sql`analyze tokens`);
    const calls = Array.from({ length: 300 }, (_, i) => call(`tok_plan_${i + 1}`));
    const id = await labelIds(database.db, new Set(calls.flatMap((c) => [c.tokenId, c.subject, c.provider, c.model, c.keyId])));
    const pglite = (database.db as unknown as { $client: SqlExec }).$client;
    const statement = await executeSums(pglite, shapeBatch(id, calls));
    const explain = async () =>
      resultRows<{ "QUERY PLAN": string }>(await database.db.execute(sql.raw(`explain ${statement}`)))
        .map((r) => r["QUERY PLAN"])
        .join("\n");
    // The plan of the first executions (custom), then the one PostgreSQL may keep for good after
    // five (generic): an index scan or a bitmap of index hits, by the ids, in both.
    const plans = [await explain()];
    await database.db.execute(sql`set plan_cache_mode = force_generic_plan`);
    try {
      plans.push(await explain());
    } finally {
      await database.db.execute(sql`reset plan_cache_mode`);
    }
    for (const plan of plans) {
      expect(plan).toMatch(/Index Scan (using|on) tokens_pkey/);
      expect(plan).not.toContain("Seq Scan on tokens");
    }
  });
});

describe("usage batch shape (PGlite)", () => {
  const id = USAGE_LABEL_IDS;

  it("copies the rows in COPY's binary format", () => {
    const { calls } = shapeBatch(id, [call("tok"), call("tok", { attempts: "key_a:429,key_b:200", costMicroUsd: null })]);
    expect(calls).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(calls as Uint8Array).subarray(0, 11)).toEqual(Buffer.from("PGCOPY\n\xff\r\n\0", "latin1"));
  });

  it("sends only the hourly roll-up groups of a batch within one hour (the statement adds each to its day too), in key order", () => {
    const within = shapeBatch(id, [call("tok"), call("tok", { at: AT + 60_000, outcome: Outcome.TRUNCATED })]);
    expect(within.daysFromHours).toBe(true);
    expect(within.rollups[1]).toBe("{3600,3600}");
    const across = shapeBatch(id, [call("tok"), call("tok", { at: AT + 3_600_000 })]);
    expect(across.daysFromHours).toBe(false);
    expect(across.rollups[1]).toBe("{86400,3600,3600}");
    expect(across.rollups[8]).toBe("{2,1,1}");
  });

  it("gives served PGlite the rows as one array literal per column: `at` in epoch ms, text quoted and escaped, no cost as NULL", () => {
    const { calls, rollups } = shapeBatchArrays(id, [
      call("tok", { at: AT + 0.7 }),
      call("tok", { attempts: 'key_a:429,"x"\\y', costMicroUsd: null, promptTokens: 1.5 }),
    ]);
    expect(calls).toHaveLength(19);
    expect(calls[0]).toBe(`{${AT},${AT}}`);
    expect(calls[2]).toBe("{1,1}");
    // A value its column cannot hold goes as it is, for the database to refuse.
    expect(calls[7]).toBe("{10,1.5}");
    expect(calls[14]).toBe('{"","key_a:429,\\"x\\"\\\\y"}');
    expect(calls[18]).toBe("{7,NULL}");
    expect(rollups).toEqual(shapeBatch(id, [call("tok"), call("tok", { costMicroUsd: null, promptTokens: 1.5 })]).rollups);
  });

  it("falls back to text for a value binary cannot hold exactly, for the database to judge", () => {
    for (const bad of [{ promptTokens: 2 ** 31 }, { latencyMs: 1.5 }, { status: 40_000 }, { bytes: 2 ** 53 }, { at: AT + 0.5 }, { attempts: "a\0b" }]) {
      expect(typeof shapeBatch(id, [call("tok"), call("tok", bad)]).calls).toBe("string");
    }
  });
});

describe.runIf(drivers.includes("postgres" as never))("usage batches of several instances on one PostgreSQL", () => {
  const database = useMigratedDatabase("postgres");

  /**
   * Holds `later`'s row of `table` in another transaction while a batch naming both rows runs;
   * the batch then waits for `later`: it must hold `earlier` already (id order), or two batches
   * could each hold a row the other waits for. What a NOWAIT lock on `earlier` meets.
   */
  async function whileBatchWaits(table: "tokens" | "upstream_keys", later: string, earlier: string, batch: UsageInsert[]): Promise<string> {
    const { db } = database;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let holding!: () => void;
    const holds = new Promise<void>((r) => (holding = r));
    const holder = db.transaction(async (tx) => {
      await tx.execute(sql`select id from ${sql.raw(table)} where id = ${later} for update`);
      holding();
      await held;
    });
    await holds;
    const writing = insertUsageBatch(db, batch);
    await new Promise((r) => setTimeout(r, 300));
    const probe = await db.execute(sql`select id from ${sql.raw(table)} where id = ${earlier} for update nowait`).then(
      () => `${earlier} was free`,
      (e: unknown) => String((e as { cause?: { code?: string } }).cause?.code ?? (e as { code?: string }).code ?? e),
    );
    release();
    await holder;
    await writing;
    return probe;
  }

  it("locks the tokens it meters and the keys it counts in id order: deadlocks between instances' batches were 503s", { timeout: 30_000 }, async () => {
    const { db } = database;
    // Stored later id first, so neither table's own order is the id order.
    for (const id of ["tok_order_b", "tok_order_a"])
      await db.execute(sql`insert into tokens (id, kind, provider, expires_at) values (${id}, 1, 'openai', now() + interval '1 day')`);
    expect(await whileBatchWaits("tokens", "tok_order_b", "tok_order_a", [call("tok_order_b"), call("tok_order_a")])).toBe("55P03");
    await db.execute(sql`insert into key_pools (name, provider, strategy) values ('order', 'openai', 1)`);
    for (const id of ["key_order_b", "key_order_a"])
      await db.execute(sql`insert into upstream_keys (id, pool, key_enc, key_hash, masked) values (${id}, 'order', 'x', ${id}, 'm')`);
    const keyed = [call("tok_order_none", { keyId: "key_order_b" }), call("tok_order_none", { keyId: "key_order_a" })];
    expect(await whileBatchWaits("upstream_keys", "key_order_b", "key_order_a", keyed)).toBe("55P03");
  });
});
