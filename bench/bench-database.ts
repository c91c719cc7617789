/**
 * A throwaway PostgreSQL database for the relay-postgres target: `relayapi_bench_<random>` on
 * 127.0.0.1:5432 as user postgres, dropped (with force) at the end. Undefined when nothing
 * answers there.
 */
import { randomBytes } from "node:crypto";
import postgres from "postgres";

const ADMIN_URL = process.env.RELAYAPI_BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export interface BenchDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

export async function createBenchDatabase(): Promise<BenchDatabase | undefined> {
  const admin = postgres(ADMIN_URL, { max: 1, connect_timeout: 2, onnotice: () => {} });
  const name = `relayapi_bench_${randomBytes(5).toString("hex")}`;
  try {
    await admin`select 1`;
    await admin.unsafe(`create database ${name}`);
  } catch {
    return undefined;
  } finally {
    await admin.end({ timeout: 1 }).catch(() => {});
  }
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    name,
    url: url.toString(),
    async drop() {
      if (dropped) return;
      dropped = true;
      const sql = postgres(ADMIN_URL, { max: 1, connect_timeout: 2, onnotice: () => {} });
      try {
        await sql.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await sql.end({ timeout: 1 }).catch(() => {});
      }
    },
  };
}
