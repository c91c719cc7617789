/**
 * The embedded database served to workers (src/cluster/embedded-db-server.ts): many client
 * connections and the primary's own statements on PGlite's one session never run inside one
 * another (an unnamed statement between Parse and Bind, a transaction), and a connection that
 * stalls while holding the session is cut.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql as raw } from "drizzle-orm";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase, type Database } from "../db/client.js";
import { PGlite } from "@electric-sql/pglite";
import { serveEmbeddedDb, type EmbeddedDbServer } from "./embedded-db-server.js";

describe("the embedded database served on a Unix socket", () => {
  let dir: string;
  let database: Database;
  let server: EmbeddedDbServer;
  let sql: postgres.Sql;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "relayapi-embedded-"));
    database = await openDatabase({ dataDir: dir });
    server = await database.serveWorkers!(dir);
    sql = postgres({ path: server.path, max: 8, prepare: false, fetch_types: false, user: "postgres", database: "postgres", onnotice: () => {} });
    await sql`create table counter (id int primary key, n int not null)`;
    await sql`insert into counter values (1, 0)`;
  }, 60_000);

  afterAll(async () => {
    await sql?.end();
    await server?.close();
    await database?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("statements of three shapes from 8 connections and the primary's own, all at once: every answer is its own", async () => {
    let wrong = 0;
    const errors: string[] = [];
    // Distinct texts: postgres.js describes each new text in a batch of its own (Parse,
    // Describe, Flush) before it binds it, so the session is held between two batches.
    const worker = Array.from({ length: 1500 }, async (_, i) => {
      try {
        const k = i % 3;
        if (k === 0) wrong += (await sql.unsafe(`select $1::int as a${i}`, [i]))[0]![`a${i}`] === i ? 0 : 1;
        else if (k === 1) wrong += (await sql.unsafe(`select $1::int as b, $2::text as c${i}`, [i, `x${i}`]))[0]![`c${i}`] === `x${i}` ? 0 : 1;
        else wrong += (await sql.unsafe(`select $1::int + $2::int + $3::int as d${i}`, [i, 1, 2]))[0]![`d${i}`] === i + 3 ? 0 : 1;
      } catch (e) {
        errors.push((e as Error).message);
      }
    });
    // The primary's side goes through drizzle on the same PGlite (usage maintenance does), one
    // statement after another while the workers' traffic runs, so they fall between its batches.
    const local = (async () => {
      for (let i = 0; i < 300; i++) {
        try {
          const r = await database.db.execute(raw`select ${i}::int * 2 as v`);
          wrong += Number((r as unknown as { rows: Array<{ v: number }> }).rows[0]!.v) === i * 2 ? 0 : 1;
        } catch (e) {
          errors.push((e as Error).message);
        }
      }
    })();
    await Promise.all([...worker, local]);
    expect(errors.slice(0, 3)).toEqual([]);
    expect(wrong).toBe(0);
  }, 60_000);

  it("a worker's transaction is not entered by other connections or by the primary", async () => {
    await sql`update counter set n = 0`;
    const txs = Array.from({ length: 100 }, () =>
      sql.begin(async (tx) => {
        const [row] = await tx`select n from counter where id = 1`;
        await tx`update counter set n = ${row!.n + 1} where id = 1`;
      }),
    );
    const local = (async () => {
      for (let i = 0; i < 50; i++) await database.db.execute(raw`update counter set n = n + 1000 where id = 1`);
    })();
    await Promise.all([...txs, local]);
    expect((await sql`select n from counter where id = 1`)[0]!.n).toBe(100 + 50 * 1000);
  }, 60_000);
});

describe("a connection that stalls while it holds the session", () => {
  it("is cut after holdMs, its transaction rolled back, and the others go on", async () => {
    const dir = mkdtempSync(join(tmpdir(), "relayapi-embedded-"));
    const lite = await PGlite.create();
    const server = await serveEmbeddedDb(lite, dir, { holdMs: 300 });
    const opts = { path: server.path, max: 1, prepare: false, fetch_types: false, user: "postgres", database: "postgres", onnotice: () => {} } as const;
    const staller = postgres(opts);
    const other = postgres(opts);
    try {
      await other`create table t (n int)`;
      await staller`select 1`; // connected (postgres.js's reserve() does not open a connection)
      const reserved = await staller.reserve();
      await reserved`begin`;
      await reserved`insert into t values (1)`;
      // The staller holds the session inside its transaction and says nothing more.
      const t0 = Date.now();
      const [row] = await other`select count(*)::int as n from t`;
      expect(row!.n, "the stalled transaction was rolled back").toBe(0);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
      expect(Date.now() - t0).toBeLessThan(5_000);
    } finally {
      await Promise.allSettled([staller.end({ timeout: 1 }), other.end({ timeout: 1 })]);
      await server.close();
      await lite.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
