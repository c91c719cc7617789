/**
 * Server-side prepared statements for PGlite. PGlite parses and plans every query it is sent;
 * for the hot counting statement that was three quarters of its CPU (a one-row UPDATE: ~725 µs
 * through drizzle, ~190 µs EXECUTEd, measured on the 2-core machine). A statement is PREPAREd
 * once from drizzle's own SQL and EXECUTEd with its values written as SQL literals (integers, and
 * strings with quotes doubled: standard_conforming_strings is on). PostgreSQL plans such a
 * statement in its own process, so it goes through drizzle unchanged.
 *
 * Only for statements whose plan cannot depend on table sizes (a primary-key lookup): after five
 * executions PostgreSQL may keep a generic plan for good, and PGlite never runs ANALYZE. The
 * usage batch's sums, prepared as they were first written, joined `tokens` by a full scan once it
 * held 1M rows (27x the CPU per request); they are prepared now only because each of their joins
 * also names its rows by primary key (`id = any(...)`, src/db/queries/usage-sums.ts, with a plan
 * test in test/usage-batch-writes.test.ts).
 */
import type { PGlite } from "@electric-sql/pglite";

/** What drizzle's `toSQL()` gives for a query with `sql.placeholder`s. */
export interface StatementText {
  sql: string;
  params: unknown[];
}

export type PreparedValues = Record<string, string | number | null>;

/** Runs the statement; rows as arrays, in the order of its RETURNING list. */
export type PreparedRun = (values: PreparedValues) => Promise<unknown[][]>;

export type Prepare = (name: string, text: StatementText) => PreparedRun;

export function pglitePrepare(client: PGlite): Prepare {
  return (name, text) => {
    if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new TypeError(`bad statement name ${name}`);
    // Each parameter is a placeholder (a value per call) or a constant drizzle bound itself.
    const args: ((values: PreparedValues) => string)[] = text.params.map((p, i) => {
      const placeholder = p !== null && typeof p === "object" ? (p as { name?: unknown }).name : undefined;
      if (typeof placeholder === "string") return (values) => literal(values[placeholder], placeholder);
      const fixed = literal(p as string | number | null, `$${i + 1}`);
      return () => fixed;
    });
    let ready: Promise<unknown> | undefined;
    return async (values) => {
      ready ??= client.exec(`prepare ${name} as ${text.sql}`).catch((e: unknown) => {
        ready = undefined;
        throw e;
      });
      await ready;
      const list = args.map((arg) => arg(values)).join(", ");
      return (await client.query<unknown[]>(`execute ${name}(${list})`, [], { rowMode: "array" })).rows;
    };
  };
}

function literal(v: unknown, name: string): string {
  if (v === null) return "null";
  if (typeof v === "number" && Number.isSafeInteger(v)) return String(v);
  if (typeof v === "string" && !v.includes("\0")) return stringLiteral(v);
  throw new TypeError(`parameter ${name}: an integer, a string without NUL, or null`);
}

/**
 * A SQL string literal, quotes doubled (exact with standard_conforming_strings on, PostgreSQL's
 * default and PGlite's). The caller refuses a NUL, which no literal can hold.
 */
export function stringLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}
