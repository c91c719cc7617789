/**
 * The storage layer on both drivers (PGlite and PostgreSQL): migrations, token queries, and the
 * exact count: 500 concurrent uses of a max-50 token succeed exactly 50 times, through the
 * query alone and end-to-end through the HTTP layer.
 */
import { describe, expect, it } from "vitest";
import { migrateDatabase } from "../src/db/migrate.js";
import { CallCounter } from "../src/db/queries/call-counter.js";
import { findTokenById, insertToken, listTokens, revokeToken } from "../src/db/queries/tokens.js";
import { burstChats } from "./support/http.js";
import { availableDrivers, useRelay } from "./support/use-relay.js";

const drivers = await availableDrivers();

describe.each(drivers)("storage on %s", (driver) => {
  const { relay, mock } = useRelay({ driver });

  const row = (id: string, maxCalls: number | null, expiresInMs = 3_600_000) => ({
    id,
    kind: 1,
    secretHash: `hash-${id}`,
    provider: "openai",
    maxCalls,
    expiresAt: new Date(Date.now() + expiresInMs),
  });

  it("runs on the expected driver, and migrating again is a no-op", async () => {
    expect(relay.app.database.driver).toBe(driver);
    await migrateDatabase(relay.app.database);
    await migrateDatabase(relay.app.database);
  });

  it("counts, refuses past the cap, refunds and revokes", async () => {
    const db = relay.app.database.db;
    const counter = new CallCounter(db);
    const useCall = (id: string, n = 1) => counter.use(id, n);
    const refundCall = (id: string, n = 1) => counter.refund(id, n);
    await insertToken(db, row("tok_q1", 2));
    expect(await useCall("tok_q1")).toEqual({ used: 1, maxCalls: 2 });
    expect(await useCall("tok_q1")).toEqual({ used: 2, maxCalls: 2 });
    expect(await useCall("tok_q1")).toBeUndefined();
    expect(await refundCall("tok_q1")).toEqual({ used: 1, maxCalls: 2 });
    expect(await useCall("tok_q1")).toEqual({ used: 2, maxCalls: 2 });
    const revoked = await revokeToken(db, "tok_q1");
    expect(revoked?.revokedAt).toBeInstanceOf(Date);
    await refundCall("tok_q1");
    expect(await useCall("tok_q1")).toBeUndefined();
    // A block is taken whole or not at all.
    await insertToken(db, row("tok_blk", 5));
    expect(await useCall("tok_blk", 4)).toEqual({ used: 4, maxCalls: 5 });
    expect(await useCall("tok_blk", 2)).toBeUndefined();
    expect(await useCall("tok_blk", 1)).toEqual({ used: 5, maxCalls: 5 });
    expect(await refundCall("tok_blk", 3)).toEqual({ used: 2, maxCalls: 5 });
    // A refund never takes the counter below zero.
    await insertToken(db, row("tok_q2", null));
    expect(await refundCall("tok_q2")).toBeUndefined();
    expect((await findTokenById(db, "tok_q2"))?.used).toBe(0);
  });

  it("refuses an expired token in the same statement", async () => {
    const db = relay.app.database.db;
    await insertToken(db, row("tok_exp", 10, -1000));
    expect(await new CallCounter(db).use("tok_exp", 1)).toBeUndefined();
  });

  it("lists by keyset, newest first, with status filters", async () => {
    const db = relay.app.database.db;
    const all = await listTokens(db, {}, 100);
    const ids = all.map((t) => t.id);
    expect(new Set(ids).size).toBe(ids.length);
    const firstPage = await listTokens(db, {}, 2);
    const next = await listTokens(db, {}, 100, { createdAt: firstPage[1]!.createdAt, id: firstPage[1]!.id });
    expect([...firstPage, ...next].map((t) => t.id)).toEqual(ids);
    expect((await listTokens(db, { status: "revoked" }, 100)).map((t) => t.id)).toContain("tok_q1");
    expect((await listTokens(db, { status: "expired" }, 100)).map((t) => t.id)).toEqual(["tok_exp"]);
  });

  it("500 concurrent uses of a max-50 token succeed exactly 50 times", async () => {
    const db = relay.app.database.db;
    await insertToken(db, row("tok_race", 50));
    const counter = new CallCounter(db);
    const results = await Promise.all(Array.from({ length: 500 }, () => counter.use("tok_race", 1)));
    expect(results.filter(Boolean)).toHaveLength(50);
    expect((await findTokenById(db, "tok_race"))?.used).toBe(50);
  });

  it("500 concurrent HTTP calls on a max-50 token forward exactly 50; the rest get 429", async () => {
    const { secret, id } = await relay.issue({ limits: { maxCalls: 50n } });
    mock.reset();
    const responses = await burstChats(relay.url, secret, 500);
    const ok = responses.filter((r) => r.status === 200);
    const limited = responses.filter((r) => r.status === 429);
    expect(ok).toHaveLength(50);
    expect(responses.filter((r) => r.status !== 200 && r.status !== 429).map((r) => [r.status, r.json])).toEqual([]);
    expect(limited).toHaveLength(450);
    expect(mock.requests.filter((r) => r.path.endsWith("/chat/completions"))).toHaveLength(50);
    for (const r of limited) expect(r.json.error).toMatchObject({ type: "insufficient_quota", code: "calls_exhausted" });
    const token = await relay.tokens.getToken({ id });
    expect(token.token?.callsUsed).toBe(50n);
    expect(token.token?.callsLeft).toBe(0n);
  });
});
