/**
 * A usage batch on PGlite copies only the optional columns some of its rows hold a value in
 * (src/db/queries/usage-copy-binary.ts, issue 22): the rows stored are the same whichever
 * columns the COPY named, the defaults filling the others.
 */
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { insertUsageBatch, type UsageInsert } from "../src/db/queries/usage.js";
import { COPY_COLUMNS, shapeBatch } from "../src/db/queries/usage-batch-shape.js";
import { ALL_OPTIONAL, copyColumns, optionalColumns } from "../src/db/queries/usage-copy-binary.js";
import { resultRows } from "../src/db/queries/usage-labels.js";
import { useMigratedDatabase } from "./support/databases.js";
import { storedOptional, USAGE_LABEL_IDS, usageCall } from "./support/usage-call.js";

const call = usageCall;

const id = USAGE_LABEL_IDS;

describe("the optional columns of a usage batch's COPY", () => {
  it("names every column, in COPY_COLUMNS order, when each optional one holds a value", () => {
    expect(copyColumns(ALL_OPTIONAL)).toBe(COPY_COLUMNS);
  });

  it("leaves out each optional column that holds its default in every row", () => {
    const required = copyColumns(0);
    expect(shapeBatch(id, [call("tok"), call("tok", { costMicroUsd: null, attempts: "", flags: 0, plan: "", cachedTokens: 0 })]).columns).toBe(required);
    expect(shapeBatch(id, [call("tok"), call("tok", { costMicroUsd: 0 })]).columns).toBe(`${required}, cost_micro_usd`);
    expect(shapeBatch(id, [call("tok", { plan: "pro" }), call("tok", { reasoningTokens: 2 })]).columns).toBe(`${required}, plan, reasoning_tokens`);
    expect(optionalColumns([call("tok", { flags: 1, attempts: "k:429", cachedTokens: 1 })])).toBe(1 | 2 | 8);
  });

  it("sends a value that is not its column's default as text with every column (NaN is none)", () => {
    for (const bad of [{ flags: Number.NaN }, { cachedTokens: Number.NaN }, { reasoningTokens: Number.NaN }]) {
      const batch = shapeBatch(id, [call("tok"), call("tok", bad)]);
      expect(typeof batch.calls).toBe("string");
      expect(batch.columns).toBe(COPY_COLUMNS);
    }
  });
});

describe("usage rows stored through a COPY of some optional columns, on PGlite", () => {
  const database = useMigratedDatabase("pglite");

  it("stores every column as given, the defaults in the columns left out", async () => {
    const batches: UsageInsert[][] = [
      [call("tok_none"), call("tok_none", { costMicroUsd: null, attempts: "", flags: 0, plan: "", cachedTokens: 0, reasoningTokens: 0 })],
      [call("tok_cost", { costMicroUsd: 0 }), call("tok_cost", { costMicroUsd: 9 }), call("tok_cost")],
      [
        call("tok_some", { plan: "pro", reasoningTokens: 3 }),
        call("tok_some", { attempts: "key_a:429,key_b:200", flags: 1 }),
        call("tok_some", { cachedTokens: 4 }),
      ],
    ];
    for (const batch of batches) await insertUsageBatch(database.db, batch);
    const stored = resultRows<Record<string, unknown>>(
      await database.db.execute(sql`select token_id, attempts, flags, plan, cached_tokens::text as cached, reasoning_tokens::text as reasoning,
        cost_micro_usd::text as cost from usage_events where token_id like 'tok_%' order by id`),
    );
    expect(stored.map((r) => ({ ...r, flags: Number(r.flags) }))).toEqual(
      batches.flat().map((g) => ({
        token_id: g.tokenId,
        ...storedOptional(g),
      })),
    );
  });
});
