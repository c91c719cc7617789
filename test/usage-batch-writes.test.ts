/**
 * How a batch of usage records is written (src/db/queries/usage.ts, issue 22), on PGlite (rows
 * by COPY, then the sums' statement, in one transaction) and PostgreSQL (one statement): a batch
 * that fails after its rows were copied leaves nothing behind and fails as a data error (so the
 * writer bisects it); sums computed in JS stay exact past 2^53; text survives COPY's escaping.
 */
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { insertUsageBatch, type UsageInsert } from "../src/db/queries/usage.js";
import { resultRows } from "../src/db/queries/usage-labels.js";
import { isDataError } from "../src/usage/usage-batches.js";
import { postgresAvailable, useMigratedDatabase } from "./support/databases.js";

const drivers = (await postgresAvailable()) ? (["pglite", "postgres"] as const) : (["pglite"] as const);
const AT = Date.UTC(2026, 0, 15, 10, 30);

function call(tokenId: string, over: Partial<UsageInsert> = {}): UsageInsert {
  return {
    at: AT,
    tokenId,
    subject: "alice",
    provider: "openai",
    model: "gpt-4o-mini",
    keyId: "",
    status: 200,
    outcome: Outcome.COMPLETE,
    promptTokens: 10,
    completionTokens: 5,
    totalTokens: 15,
    bytes: 100,
    latencyMs: 20,
    costMicroUsd: 7,
    ...over,
  };
}

describe.each(drivers)("usage batch writes on %s", (driver) => {
  const database = useMigratedDatabase(driver);
  const rows = async <T>(query: ReturnType<typeof sql>): Promise<T[]> => resultRows<T>(await database.db.execute(query));

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

  it("keeps attempts text with tabs, newlines, backslashes and quotes as it was", async () => {
    const attempts = 'key_a:429,\tkey_b\\:5"03\nkey_c:\r200,{x}';
    await insertUsageBatch(database.db, [call("tok_text", { attempts }), call("tok_text", { attempts: "" })]);
    const stored = await rows<{ attempts: string }>(sql`select attempts from usage_events where token_id = 'tok_text' order by id`);
    expect(stored.map((r) => r.attempts)).toEqual([attempts, ""]);
  });
});
