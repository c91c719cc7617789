/** PGlite's server-side prepared statements (src/db/prepared.ts): values as literals, safely. */
import { PGlite } from "@electric-sql/pglite";
import { and, eq, gt, sql } from "drizzle-orm";
import { integer, pgTable, text } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/pglite";
import { afterAll, beforeAll, expect, it } from "vitest";
import { pglitePrepare, type Prepare } from "./prepared.js";

const t = pgTable("t", { id: text("id").primaryKey(), n: integer("n").notNull() });
let client: PGlite;
let prepare: Prepare;
const db = () => drizzle(client);

beforeAll(async () => {
  client = await PGlite.create();
  await client.exec("create table t (id text primary key, n integer not null)");
  prepare = pglitePrepare(client);
});
afterAll(() => client.close());

const bump = () =>
  db()
    .update(t)
    .set({ n: sql`${t.n} + ${sql.placeholder("by")}` })
    .where(and(eq(t.id, sql.placeholder("id")), gt(t.n, -1)))
    .returning({ id: t.id, n: t.n })
    .toSQL();

it("runs drizzle's statement with placeholders and drizzle's own constants, rows as arrays", async () => {
  await client.query("insert into t values ('a', 1)");
  const run = prepare("test_bump", bump());
  expect(await run({ id: "a", by: 2 })).toEqual([["a", 3]]);
  expect(await run({ id: "a", by: 5 })).toEqual([["a", 8]]);
  expect(await run({ id: "missing", by: 1 })).toEqual([]);
  expect((await client.query("select count(*)::int as c from pg_prepared_statements where name = 'test_bump'")).rows).toEqual([{ c: 1 }]);
});

it("writes strings as literals: quotes and injection attempts are data, NUL and non-integers are refused", async () => {
  const evil = "x'); drop table t; --";
  await client.query("insert into t values ($1, 0), ($2, 0)", [evil, "o'brien"]);
  const run = prepare("test_bump_q", bump());
  expect(await run({ id: evil, by: 1 })).toEqual([[evil, 1]]);
  expect(await run({ id: "o'brien", by: 1 })).toEqual([["o'brien", 1]]);
  expect((await client.query("select count(*)::int as c from t")).rows).toEqual([{ c: 3 }]);
  await expect(run({ id: "a\0b", by: 1 })).rejects.toThrow(/without NUL/);
  await expect(run({ id: "a", by: 1.5 })).rejects.toThrow(/integer/);
  await expect(run({ id: "a" })).rejects.toThrow(/parameter by/);
  expect(() => prepare("bad name", bump())).toThrow(/statement name/);
});

it("prepares once under concurrent first calls, and again after a failed PREPARE", async () => {
  const run = prepare("test_bump_c", bump());
  await client.query("insert into t values ('c', 0)");
  const rows = await Promise.all(Array.from({ length: 10 }, () => run({ id: "c", by: 1 })));
  expect(rows.map((r) => r[0]![1]).sort((x, y) => Number(x) - Number(y))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  const later = prepare("test_later", { sql: "select n from t2 where id = $1", params: [sql.placeholder("id")] });
  await expect(later({ id: "z" })).rejects.toThrow(/t2/);
  await client.exec("create table t2 (id text, n integer); insert into t2 values ('z', 7)");
  expect(await later({ id: "z" })).toEqual([[7]]);
});
