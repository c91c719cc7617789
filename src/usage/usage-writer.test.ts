/**
 * UsageWriter against a fake database: batching by size and by time, one write at a time,
 * retries that keep rows, the queue bound, the live feed, close(). The SQL itself runs on real
 * databases in test/usage.test.ts.
 */
import { PgDialect } from "drizzle-orm/pg-core";
import type { SQL } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import type { Db } from "../db/client.js";
import type { CallRecord } from "../relay/engine.js";
import { UsageWriter, type UsageEvent } from "./usage-writer.js";

const dialect = new PgDialect();
const turn = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface StoredRow {
  token_id: string;
  model: string;
  latency_ms: number;
  total_tokens: number;
}

/** A Db whose execute() decodes the batch statement's JSON rows; `failures` makes the next N calls fail. */
function fakeDb(opts: { failures?: number; delayMs?: number } = {}) {
  const batches: StoredRow[][] = [];
  let failures = opts.failures ?? 0;
  let running = 0;
  let maxRunning = 0;
  const db = {
    async execute(query: SQL) {
      running++;
      maxRunning = Math.max(maxRunning, running);
      try {
        if (opts.delayMs) await sleep(opts.delayMs);
        if (failures > 0) {
          failures--;
          throw new Error("database down");
        }
        const { params } = dialect.sqlToQuery(query);
        batches.push(JSON.parse(String(params[0])) as StoredRow[]);
        return [];
      } finally {
        running--;
      }
    },
  };
  return {
    db: db as unknown as Db,
    batches,
    rows: () => batches.flat(),
    maxRunning: () => maxRunning,
    fail: (n: number) => void (failures = n),
  };
}

function call(i: number, over: Partial<CallRecord> = {}): CallRecord {
  return {
    tokenId: `tok_${i}`,
    subject: "s",
    provider: "openai",
    model: "gpt-mock",
    keyId: undefined,
    status: 200,
    outcome: Outcome.COMPLETE,
    usage: { promptTokens: 10, completionTokens: 5, totalTokens: 15 },
    bytes: 100,
    latencyMs: 12.7,
    ...over,
  };
}

describe("UsageWriter", () => {
  it("writes in batches of batchSize, in order, one statement at a time", async () => {
    const fake = fakeDb({ delayMs: 5 });
    const w = new UsageWriter(fake.db, { batchSize: 500, intervalMs: 60_000 });
    for (let i = 0; i < 1200; i++) w.record(call(i));
    expect(w.queueDepth).toBe(1200);
    await w.flush();
    expect(fake.batches.map((b) => b.length)).toEqual([500, 500, 200]);
    expect(fake.rows().map((r) => r.token_id)).toEqual(Array.from({ length: 1200 }, (_, i) => `tok_${i}`));
    expect(fake.maxRunning()).toBe(1);
    expect(w.queueDepth).toBe(0);
    await w.close();
  });

  it("writes a full batch on a later turn without flush(), and a partial one within the interval", async () => {
    const fake = fakeDb();
    const full = new UsageWriter(fake.db, { batchSize: 10, intervalMs: 60_000 });
    for (let i = 0; i < 10; i++) full.record(call(i));
    expect(fake.batches).toHaveLength(0); // never inside record()
    for (let i = 0; i < 5 && fake.batches.length === 0; i++) await turn();
    expect(fake.batches.map((b) => b.length)).toEqual([10]);
    await full.close();

    const timed = fakeDb();
    const w = new UsageWriter(timed.db, { batchSize: 500, intervalMs: 20 });
    w.record(call(1));
    w.record(call(2));
    const started = Date.now();
    while (timed.batches.length === 0 && Date.now() - started < 2000) await sleep(5);
    expect(timed.batches.map((b) => b.length)).toEqual([2]);
    await w.close();
  });

  it("keeps a failed batch, retries it, and writes every row exactly once", async () => {
    const fake = fakeDb({ failures: 2 });
    const w = new UsageWriter(fake.db, { batchSize: 4, intervalMs: 60_000 });
    for (let i = 0; i < 10; i++) w.record(call(i));
    await expect(w.flush()).rejects.toThrow("database down");
    expect(w.queueDepth).toBe(10);
    await expect(w.flush()).rejects.toThrow("database down");
    w.record(call(10));
    await w.flush();
    expect(fake.rows().map((r) => r.token_id)).toEqual(Array.from({ length: 11 }, (_, i) => `tok_${i}`));
    expect(w.dropped).toBe(0);
    await w.close();
  });

  it("retries on its own after a failure, with backoff", async () => {
    const fake = fakeDb({ failures: 1 });
    const w = new UsageWriter(fake.db, { batchSize: 500, intervalMs: 10 });
    w.record(call(1));
    const started = Date.now();
    while (fake.batches.length === 0 && Date.now() - started < 3000) await sleep(5);
    expect(fake.rows().map((r) => r.token_id)).toEqual(["tok_1"]);
    await w.close();
  });

  it("bounds the queue while the database is down and counts what it drops", async () => {
    const fake = fakeDb({ failures: 100 });
    const w = new UsageWriter(fake.db, { batchSize: 3, intervalMs: 60_000, maxQueue: 5 });
    for (let i = 0; i < 8; i++) w.record(call(i));
    expect(w.queueDepth).toBe(5);
    expect(w.dropped).toBe(3);
    await expect(w.flush()).rejects.toThrow();
    expect(w.queueDepth).toBe(5);
    fake.fail(0);
    await w.close();
    expect(fake.rows().map((r) => r.token_id)).toEqual(["tok_0", "tok_1", "tok_2", "tok_3", "tok_4"]);
  });

  it("close() writes what is left; later records are counted as dropped", async () => {
    const fake = fakeDb();
    const w = new UsageWriter(fake.db, { intervalMs: 60_000 });
    w.record(call(1));
    await w.close();
    expect(fake.rows()).toHaveLength(1);
    w.record(call(2));
    expect(w.dropped).toBe(1);
    expect(w.queueDepth).toBe(0);
  });

  it("feeds listeners at once, by provider, and survives a throwing listener", async () => {
    const w = new UsageWriter(fakeDb().db, { intervalMs: 60_000 });
    const all: UsageEvent[] = [];
    const gemini: UsageEvent[] = [];
    w.subscribe(() => {
      throw new Error("broken listener");
    });
    const stop = w.subscribe((e) => all.push(e));
    w.subscribe((e) => gemini.push(e), { provider: "gemini" });
    expect(w.watchers).toBe(3);
    expect(() => w.record(call(1))).not.toThrow();
    w.record(call(2, { provider: "gemini" }));
    expect(all.map((e) => e.tokenId)).toEqual(["tok_1", "tok_2"]);
    expect(all[0]!.at).toBeInstanceOf(Date);
    expect(gemini.map((e) => e.tokenId)).toEqual(["tok_2"]);
    stop();
    w.record(call(3));
    expect(all).toHaveLength(2);
    await w.close();
  });

  it("stores only what PostgreSQL accepts: well-formed bounded strings, integer numbers", async () => {
    const fake = fakeDb();
    const w = new UsageWriter(fake.db, { intervalMs: 60_000 });
    w.record(call(1, { model: "bad\uD800model\0" + "x".repeat(1000), latencyMs: 12.7, usage: { promptTokens: 3, completionTokens: 4, totalTokens: 0 } }));
    await w.flush();
    const [row] = fake.rows();
    expect(row!.model.startsWith("bad\uFFFDmodel")).toBe(true);
    expect(row!.model).not.toContain("\0");
    expect(row!.model.length).toBeLessThanOrEqual(256);
    expect(row!.latency_ms).toBe(13);
    expect(row!.total_tokens).toBe(7);
    await w.close();
  });
});
