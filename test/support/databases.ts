/**
 * Real databases for tests: PGlite always; PostgreSQL on 127.0.0.1:5432 when it answers. Each
 * caller gets a fresh, uniquely named PostgreSQL database, dropped afterwards.
 *
 * Without a server the PostgreSQL suites are skipped with a reason; with
 * RELAYAPI_REQUIRE_POSTGRES=1 (set by .ci/run) a missing server fails them instead.
 */
import postgres from "postgres";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import type { EmbeddedDbServer } from "../../src/cluster/embedded-db-server.js";
import { openDatabase, type Database } from "../../src/db/client.js";
import { migrateDatabase } from "../../src/db/migrate.js";
import { late } from "./late.js";

export const ADMIN_URL = process.env.RELAYAPI_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const REQUIRE_POSTGRES = process.env.RELAYAPI_REQUIRE_POSTGRES === "1";

let probe: Promise<boolean> | undefined;

/** True when PostgreSQL answers; throws when it does not and RELAYAPI_REQUIRE_POSTGRES=1. */
export async function postgresAvailable(): Promise<boolean> {
  probe ??= (async () => {
    const sql = postgres(ADMIN_URL, { max: 1, connect_timeout: 3, onnotice: () => {} });
    try {
      await sql`select 1`;
      return true;
    } catch {
      return false;
    } finally {
      await sql.end({ timeout: 1 }).catch(() => {});
    }
  })();
  const ok = await probe;
  if (!ok && REQUIRE_POSTGRES) throw new Error(`PostgreSQL required (RELAYAPI_REQUIRE_POSTGRES=1) but ${ADMIN_URL} does not answer`);
  if (!ok) console.warn(`[skip] PostgreSQL suites skipped: nothing answers at ${ADMIN_URL}`);
  return ok;
}

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `relayapi_test_${randomBytes(6).toString("hex")}`;
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const sql = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
      await sql.unsafe(`drop database if exists ${name} with (force)`);
      await sql.end();
    },
  };
}

export const REDIS_URL = process.env.RELAYAPI_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** True when Redis answers PING; throws when it does not and RELAYAPI_REQUIRE_REDIS=1. */
export async function redisAvailable(): Promise<boolean> {
  const { createConnection } = await import("node:net");
  const url = new URL(REDIS_URL);
  const ok = await new Promise<boolean>((resolve) => {
    const socket = createConnection({ host: url.hostname, port: Number(url.port || 6379) });
    const done = (v: boolean): void => {
      socket.destroy();
      resolve(v);
    };
    socket.setTimeout(2000, () => done(false));
    socket.on("error", () => done(false));
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (d) => done(d.toString().startsWith("+PONG")));
  });
  if (!ok && process.env.RELAYAPI_REQUIRE_REDIS === "1") throw new Error(`Redis required (RELAYAPI_REQUIRE_REDIS=1) but ${REDIS_URL} does not answer`);
  if (!ok) console.warn(`[skip] Redis suites skipped: nothing answers at ${REDIS_URL}`);
  return ok;
}

/**
 * A migrated database of the given driver for a describe block (beforeAll opens it, afterAll
 * closes and drops it): PGlite in a fresh data directory, or a fresh PostgreSQL database (its
 * URL in `postgresUrl`, for a second connection).
 */
export function useMigratedDatabase(driver: "pglite" | "postgres"): Database & { postgresUrl: string | undefined } {
  let database: (Database & { postgresUrl: string | undefined }) | undefined;
  let pg: TestDatabase | undefined;
  let dataDir: string | undefined;
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "relayapi-db-"));
    if (driver === "postgres") pg = await createTestDatabase();
    database = Object.assign(await openDatabase({ dataDir, databaseUrl: pg?.url }), { postgresUrl: pg?.url });
    await migrateDatabase(database);
  }, 60_000);
  afterAll(async () => {
    await database?.close();
    await pg?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });
  return late("the database", () => database);
}

/**
 * The database of a worker of `serve --workers` on the embedded default: the primary's PGlite,
 * served on a Unix socket (src/cluster/embedded-db-server.ts) and reached as PostgreSQL.
 */
export function useServedPglite(): Database {
  let dir: string | undefined;
  let primary: Database | undefined;
  let server: EmbeddedDbServer | undefined;
  let worker: Database | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "relayapi-served-"));
    primary = await openDatabase({ dataDir: dir });
    await migrateDatabase(primary);
    server = await primary.serveWorkers!(dir);
    worker = await openDatabase({ dataDir: dir, databaseUrl: `postgres://postgres@localhost/postgres?host=${encodeURIComponent(dir)}` });
  }, 60_000);
  afterAll(async () => {
    await worker?.close();
    await server?.close();
    await primary?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return late("the served database", () => worker);
}
