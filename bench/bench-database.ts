/**
 * A throwaway PostgreSQL database for the relay-postgres target: `relayapi_bench_<random>` on
 * 127.0.0.1:5432 as user postgres, dropped (with force) at the end. Undefined when nothing
 * answers there. When the server runs on this machine, its CPU for this database is read from
 * /proc (proc-cpu.ts) so moving work into the database does not look free.
 */
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { PostgresCpu } from "./proc-cpu.js";

const ADMIN_URL = process.env.RELAYAPI_BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export interface BenchDatabase {
  name: string;
  url: string;
  /** The server's CPU for this database (/proc), when the server runs on this machine. */
  cpu: PostgresCpu | undefined;
  drop(): Promise<void>;
}

export async function createBenchDatabase(): Promise<BenchDatabase | undefined> {
  const admin = postgres(ADMIN_URL, { max: 1, connect_timeout: 2, onnotice: () => {} });
  const name = `relayapi_bench_${randomBytes(5).toString("hex")}`;
  let cpu: PostgresCpu | undefined;
  try {
    const [me] = await admin<{ pid: number }[]>`select pg_backend_pid() as pid`;
    await admin.unsafe(`create database ${name}`);
    cpu = PostgresCpu.fromBackend(me!.pid, name);
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
    cpu,
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
