/**
 * UsageWriter against a fake database: batching by size and by time, one write at a time,
 * retries that keep rows, the queue bound, the live feed, close(); poison rows isolated by
 * bisection into dead letters while the rest is written, flags set at ingestion (issue 18). The
 * SQL itself runs on real databases in test/usage.test.ts and test/poison-usage.test.ts.
 */
import { PgDialect } from "drizzle-orm/pg-core";
import type { SQL } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import type { Db } from "../db/client.js";
import type { CallRecord } from "../relay/engine.js";
import { UsageFlag } from "./usage-flags.js";
import { toRow, UsageWriter, type UsageEvent } from "./usage-writer.js";
import { partsOf, usageOf } from "../providers/shapes/usage-meter.js";
import type { Prices } from "../pricing/types.js";
import type { Usage } from "../providers/types.js";
import { usageFlags } from "./usage-flags.js";
import { fakeLabels } from "../../test/support/fake-usage-labels.js";

const dialect = new PgDialect();
const turn = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface StoredRow {
  token_id: string;
  model: string;
  latency_ms: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  flags: number;
}

/** As drizzle throws it: the driver's error (with its SQLSTATE) in `cause`, the batch in the message. */
function drizzleError(code: string, message: string, params: unknown[]): Error {
  return new Error(`Failed query: insert ...\nparams: ${params.join(",")}`, { cause: Object.assign(new Error(message), { code }) });
}

/**
 * A Db whose execute() decodes the batch statement's JSON rows; `failures` makes the next N calls
 * fail (a connection error); a batch holding a row `poison` matches fails with SQLSTATE 22003.
 */
function fakeDb(opts: { failures?: number; delayMs?: number; poison?: (row: StoredRow) => boolean } = {}) {
  const batches: StoredRow[][] = [];
  const deadLetters: { record: string; error: string }[] = [];
  let failures = opts.failures ?? 0;
  let running = 0;
  let maxRunning = 0;
  let statements = 0;
  const labels = fakeLabels();
  const db = {
    async execute(query: SQL) {
      const { sql: text, params } = dialect.sqlToQuery(query);
      const answer = labels.answer(text, params);
      if (answer !== undefined) return answer;
      running++;
      statements++;
      maxRunning = Math.max(maxRunning, running);
      try {
        if (opts.delayMs) await sleep(opts.delayMs);
        if (failures > 0) {
          failures--;
          throw new Error("database down");
        }
        if (text.includes("usage_dead_letters")) {
          deadLetters.push({ record: String(params[0]), error: String(params[1]) });
          return [];
        }
        const rows: StoredRow[] = (JSON.parse(String(params[0])) as Record<string, number | string>[]).map(labels.row);
        if (opts.poison && rows.some(opts.poison)) throw drizzleError("22003", "bigint out of range", params);
        batches.push(rows);
        return [];
      } finally {
        running--;
      }
    },
  };
  return {
    db: db as unknown as Db,
    batches,
    deadLetters,
    rows: () => batches.flat(),
    maxRunning: () => maxRunning,
    statements: () => statements,
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
    w.record(call(2, { subject: "sub\0ject\uDC00", tokenId: "tok\0_2" }));
    await w.flush();
    const [row, second] = fake.rows() as (StoredRow & { subject: string })[];
    expect(row!.model).toBe("bad_model" + "x".repeat(119));
    expect(row!.flags).toBe(UsageFlag.MODEL_CHANGED);
    expect(row!.latency_ms).toBe(13);
    expect(row!.total_tokens).toBe(7);
    expect(second).toMatchObject({ token_id: "tok_2", subject: "subject\uFFFD", flags: 0 });
    expect(w.anomalies).toEqual({ USAGE_OUT_OF_RANGE: 0, MODEL_CHANGED: 1 });
    await w.close();
  });

  it("clamps usage that no meter checked, flags it and counts it; publishes the stored model", async () => {
    const fake = fakeDb();
    const w = new UsageWriter(fake.db, { intervalMs: 60_000 });
    const seen: UsageEvent[] = [];
    w.subscribe((e) => seen.push(e));
    w.record(call(1, { usage: { promptTokens: -1, completionTokens: Number.NaN, totalTokens: 1e300 }, model: "m\u0007odel" }));
    await w.flush();
    expect(fake.rows()[0]).toMatchObject({
      prompt_tokens: 0,
      completion_tokens: 0,
      total_tokens: 0,
      flags: UsageFlag.USAGE_OUT_OF_RANGE | UsageFlag.MODEL_CHANGED,
      model: "model",
    });
    expect(w.anomalies).toEqual({ USAGE_OUT_OF_RANGE: 1, MODEL_CHANGED: 1 });
    expect(seen[0]!.model).toBe("model");
    await w.close();
  });

  it("bisects a batch refused for its data: the poison row becomes a dead letter, the rest is written once, in order", async () => {
    const fake = fakeDb({ poison: (r) => r.token_id === "tok_37" });
    const w = new UsageWriter(fake.db, { batchSize: 100, intervalMs: 60_000 });
    for (let i = 0; i < 100; i++) w.record(call(i));
    await w.flush();
    expect(fake.rows().map((r) => r.token_id)).toEqual(Array.from({ length: 100 }, (_, i) => `tok_${i}`).filter((t) => t !== "tok_37"));
    expect(fake.deadLetters).toHaveLength(1);
    expect(JSON.parse(fake.deadLetters[0]!.record)).toMatchObject({ tokenId: "tok_37", totalTokens: 15 });
    // The driver's SQLSTATE and message, never drizzle's wrapper (it holds the whole batch).
    expect(fake.deadLetters[0]!.error).toBe("22003 bigint out of range");
    expect(w.deadLetters).toBe(1);
    expect(w.queueDepth).toBe(0);
    expect(w.dropped).toBe(0);
    // 1 whole batch + 2 per level of the bisection + the dead letter.
    expect(fake.statements()).toBeLessThanOrEqual(1 + 2 * Math.ceil(Math.log2(100)) + 1);
    // The queue goes on: later records are written as usual.
    w.record(call(200));
    await w.flush();
    expect(fake.rows().at(-1)!.token_id).toBe("tok_200");
    await w.close();
  });

  it("isolates every poison row, even when all of a batch is poison", async () => {
    const some = fakeDb({ poison: (r) => r.token_id.endsWith("3") });
    const w = new UsageWriter(some.db, { batchSize: 50, intervalMs: 60_000 });
    for (let i = 0; i < 50; i++) w.record(call(i));
    await w.flush();
    expect(some.rows()).toHaveLength(45);
    expect(some.deadLetters.map((d) => (JSON.parse(d.record) as { tokenId: string }).tokenId)).toEqual(["tok_3", "tok_13", "tok_23", "tok_33", "tok_43"]);
    await w.close();

    const all = fakeDb({ poison: () => true });
    const w2 = new UsageWriter(all.db, { batchSize: 8, intervalMs: 60_000 });
    for (let i = 0; i < 8; i++) w2.record(call(i));
    await w2.flush();
    expect(all.rows()).toHaveLength(0);
    expect(all.deadLetters).toHaveLength(8);
    expect(w2.deadLetters).toBe(8);
    await w2.close();
  });

  it("a connection error during the bisection keeps only the unwritten rows, retried later, none twice", async () => {
    let broken = false;
    const fake = fakeDb({ poison: (r) => r.token_id === "tok_5" });
    const db = {
      async execute(query: SQL) {
        // The third statement (after the whole batch and its first half) finds the database gone.
        if (!broken && fake.statements() === 2) {
          broken = true;
          fake.fail(1);
        }
        return (fake.db as unknown as { execute(q: SQL): Promise<unknown> }).execute(query);
      },
    } as unknown as Db;
    const w = new UsageWriter(db, { batchSize: 16, intervalMs: 60_000 });
    for (let i = 0; i < 16; i++) w.record(call(i));
    await expect(w.flush()).rejects.toThrow("database down");
    expect(w.queueDepth).toBe(16 - fake.rows().length);
    await w.flush();
    expect(fake.rows().map((r) => r.token_id)).toEqual(Array.from({ length: 16 }, (_, i) => `tok_${i}`).filter((t) => t !== "tok_5"));
    expect(fake.deadLetters).toHaveLength(1);
    expect(w.queueDepth).toBe(0);
    await w.close();
  });

  it("keeps retrying a batch that fails for the database's fault, within the queue bound", async () => {
    const fake = fakeDb({ failures: 1_000 });
    const w = new UsageWriter(fake.db, { batchSize: 4, intervalMs: 60_000, maxQueue: 6 });
    for (let i = 0; i < 10; i++) w.record(call(i));
    for (let i = 0; i < 3; i++) await expect(w.flush()).rejects.toThrow("database down");
    expect(fake.deadLetters).toHaveLength(0);
    expect(w.queueDepth).toBe(6);
    expect(w.dropped).toBe(4);
    fake.fail(0);
    await w.flush();
    expect(fake.rows()).toHaveLength(6);
    await w.close();
  });

  it("stores usage the meters already bounded as is: the same row as after checking it again", () => {
    // The row of a record whose usage is checked again by usageOf, as every record was before
    // toRow took clean usage as it is (issue 22): the reference for every case below.
    const checked = (u: Usage) => {
      const x = usageOf(u.promptTokens, u.completionTokens, u.totalTokens, usageFlags(u), partsOf(u));
      return {
        promptTokens: x.promptTokens,
        completionTokens: x.completionTokens,
        totalTokens: x.totalTokens,
        cachedTokens: x.cachedTokens ?? 0,
        reasoningTokens: x.reasoningTokens ?? 0,
        flags: usageFlags(x),
      };
    };
    const usages: Usage[] = [
      { promptTokens: 10, completionTokens: 5, totalTokens: 15 },
      { promptTokens: 10, completionTokens: 5, totalTokens: 0 },
      { promptTokens: 0, completionTokens: 0, totalTokens: 0 },
      { promptTokens: 10, completionTokens: 5, totalTokens: 99 },
      { promptTokens: 10, completionTokens: 5, totalTokens: 15, cachedTokens: 4, reasoningTokens: 5, cacheWriteTokens: 0 },
      { promptTokens: 10, completionTokens: 5, totalTokens: 15, cachedTokens: 11 },
      { promptTokens: 10, completionTokens: 5, totalTokens: 15, reasoningTokens: 6 },
      { promptTokens: 10, completionTokens: 5, totalTokens: 15, audioOutputTokens: 6 },
      { promptTokens: 10, completionTokens: 5, totalTokens: 15, cacheWriteTokens: 1.5 },
      { promptTokens: 10, completionTokens: 5, totalTokens: 15, cachedTokens: null as unknown as number },
      { promptTokens: -1, completionTokens: 5, totalTokens: 15 },
      { promptTokens: 10.5, completionTokens: 5, totalTokens: 15 },
      { promptTokens: 10, completionTokens: Number.NaN, totalTokens: 15 },
      { promptTokens: 10, completionTokens: 5, totalTokens: 1e300 },
      { promptTokens: 9_000_000, completionTokens: 9_000_000, totalTokens: 0 },
      { promptTokens: 10_000_001, completionTokens: 5, totalTokens: 15 },
      { promptTokens: "10" as unknown as number, completionTokens: 5, totalTokens: 15 },
      Object.assign({ promptTokens: 10, completionTokens: 5, totalTokens: 15 }, { flags: UsageFlag.USAGE_OUT_OF_RANGE }),
      { promptTokens: 10, completionTokens: 5, totalTokens: 15, serviceTier: "priority" },
    ];
    // A price book that prices by what it is given: a usage it gets must be the checked one.
    const seen: Usage[] = [];
    const prices: Prices = {
      priceOf: () => ({ input: 1_000_000, output: 2_000_000 }),
      costOf: (_price, u) => (seen.push(u), u.promptTokens + 2 * u.completionTokens + (u.cachedTokens ?? 0)),
      maxCostOf: () => 0,
    };
    for (const usage of usages) {
      const want = checked(usage);
      for (const over of [{}, { costMicroUsd: 7 }, { outcome: Outcome.REFUNDED }]) {
        for (const p of [undefined, prices]) {
          const row = toRow(call(1, { usage, ...over }), 0, p);
          const got = {
            promptTokens: row.promptTokens,
            completionTokens: row.completionTokens,
            totalTokens: row.totalTokens,
            cachedTokens: row.cachedTokens,
            reasoningTokens: row.reasoningTokens,
            flags: row.flags,
          };
          expect(got, JSON.stringify({ usage, over, priced: p !== undefined })).toEqual(want);
          const cost =
            "outcome" in over ? 0 : "costMicroUsd" in over ? 7 : p === undefined ? null : want.promptTokens + 2 * want.completionTokens + want.cachedTokens;
          expect(row.costMicroUsd).toBe(cost);
        }
      }
    }
    // Priced here from the checked usage, its tier kept.
    expect(seen.at(-1)?.serviceTier).toBe("priority");
  });
});
