/**
 * Disk and CPU cost of usage records (issue 23):
 * `node bin/run-ts.js bench/usage-cost.ts [calls] [--tokens=N] [--stored-tokens=N] [--batch=N] [--warmup=N] [--postgres[=URL]] [--json]`.
 * Opens a fresh embedded database (PGlite) in a temporary directory, or with `--postgres` a fresh
 * database on that server (default postgres://postgres@127.0.0.1:5432), records `calls` finished
 * calls (default 20,000) through the real UsageWriter (its default batch size, as the relay's) over
 * N tokens (default 200; as many subjects up to 50), 4 models, 2 keys and 2 providers, so each
 * batch adds to up to ~1,000 roll-up rows (--tokens=5: a few dozen). With --stored-tokens=N the
 * `tokens` table holds N tokens (the calls' among them) and the 2 keys exist, so the batches
 * meter and count real rows, as a relay's do (default 0: the counters' updates find no row).
 * With --warmup=N, N calls are recorded and written before the measured ones (default 0): the
 * first batches of a process cost PGlite and V8 ~2-4x a later one (code compiled on first use),
 * ~250 ms in all, ~6 µs per call of a 40,000-call run; a relay pays it once (issue 22).
 * Prints the process's CPU per call (PGlite is WASM on the event loop, so its work is counted;
 * on PostgreSQL the server's backends are counted apart, from /proc: bench/proc-cpu.ts) and the
 * bytes per call of the usage tables (pg_total_relation_size, partitions included) after a VACUUM.
 * With `--json` the last line is `{"callsMeasured", "cpuUsPerCall", "serverCpuUsPerCall", "bytesPerCall", "tables"}`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import postgres from "postgres";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { openDatabase } from "../src/db/client.js";
import { migrateDatabase } from "../src/db/migrate.js";
import { resultRows } from "../src/db/queries/usage-labels.js";
import { UsageWriter } from "../src/usage/usage-writer.js";
import { PostgresCpu } from "./proc-cpu.js";

const calls = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 20_000);
const asJson = process.argv.includes("--json");
const tokenCount = Number(/^--tokens=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--tokens=")) ?? "")?.[1] ?? 200);
const storedTokens = Number(/^--stored-tokens=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--stored-tokens=")) ?? "")?.[1] ?? 0);
const warmup = Number(/^--warmup=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--warmup=")) ?? "")?.[1] ?? 0);
const batchArg = /^--batch=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--batch=")) ?? "")?.[1];
const pgArg = process.argv.find((a) => a === "--postgres" || a.startsWith("--postgres="));
const dir = mkdtempSync(join(tmpdir(), "relayapi-usage-cost-"));
let dropDatabase: (() => Promise<void>) | undefined;
let databaseUrl: string | undefined;
let pgName = "";
if (pgArg !== undefined) {
  const server = new URL(pgArg.includes("=") ? pgArg.slice(pgArg.indexOf("=") + 1) : "postgres://postgres@127.0.0.1:5432/postgres");
  pgName = `relayapi_usage_cost_${process.pid}`;
  const admin = postgres(server.toString(), { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${pgName}`);
  dropDatabase = async () => {
    await admin.unsafe(`drop database if exists ${pgName} with (force)`);
    await admin.end();
  };
  server.pathname = `/${pgName}`;
  databaseUrl = server.toString();
}
const database = await openDatabase({ dataDir: dir, databaseUrl });
try {
  await migrateDatabase(database);
  let serverCpu: PostgresCpu | undefined;
  if (databaseUrl !== undefined) {
    const [row] = resultRows<{ pid: number }>(await database.db.execute(sql`select pg_backend_pid() as pid`));
    serverCpu = PostgresCpu.fromBackend(Number(row?.pid), pgName);
  }
  if (storedTokens > 0) {
    // The calls' tokens are the first of them (tok_<20 digits>, as below).
    await database.db.execute(sql`insert into key_pools (name, provider, strategy) values ('bench', 'openai', 1)`);
    await database.db.execute(sql`insert into upstream_keys (id, pool, key_enc, key_hash, masked)
      values ('key_aaaaaaaaaaaaaaaa', 'bench', 'x', 'a', 'm'), ('key_bbbbbbbbbbbbbbbb', 'bench', 'x', 'b', 'm')`);
    await database.db.execute(sql`insert into tokens (id, kind, provider, expires_at)
      select 'tok_' || lpad(g::text, 20, '0'), 1, 'openai', now() + interval '1 day' from generate_series(0, ${Math.max(storedTokens, tokenCount) - 1}::integer) g`);
    await database.db.execute(sql`analyze`);
  }
  const writer = new UsageWriter(database.db, { intervalMs: 50, ...(batchArg === undefined ? {} : { batchSize: Number(batchArg) }) });
  const models = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku-latest", "gemini-2.0-flash"];
  const tokens = Array.from({ length: tokenCount }, (_, i) => `tok_${String(i).padStart(20, "0")}`);
  const record = (i: number): void =>
    writer.record({
      tokenId: tokens[i % tokens.length]!,
      subject: `user-${i % Math.min(50, tokenCount)}`,
      provider: i % 3 === 0 ? "anthropic" : "openai",
      model: models[i % models.length],
      keyId: i % 2 === 0 ? "key_aaaaaaaaaaaaaaaa" : "key_bbbbbbbbbbbbbbbb",
      status: i % 50 === 0 ? 429 : 200,
      outcome: i % 50 === 0 ? Outcome.UPSTREAM_ERROR : Outcome.COMPLETE,
      usage: { promptTokens: 100 + (i % 900), completionTokens: 20 + (i % 300), totalTokens: 120 + (i % 900) + (i % 300) },
      bytes: 1_000 + (i % 4_000),
      latencyMs: 50 + (i % 2_000),
    });
  for (let i = 0; i < warmup; i++) {
    record(i);
    if (i % 500 === 499) await new Promise((r) => setImmediate(r));
  }
  await writer.flush();
  const s0 = serverCpu?.cpuMs() ?? 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = warmup; i < warmup + calls; i++) {
    record(i);
    // Let batches go out as they would between calls (not one giant queue at the end).
    if (i % 500 === 499) await new Promise((r) => setImmediate(r));
  }
  await writer.flush();
  const cpu = process.cpuUsage(c0);
  const serverUs = serverCpu === undefined ? undefined : ((serverCpu.cpuMs() - s0) * 1000) / calls;
  const wallMs = performance.now() - t0;
  await writer.close();
  await database.db.execute(sql`vacuum`);
  const rows = (await database.db.execute(sql`
    select c.relname as name, pg_total_relation_size(c.oid)::bigint as bytes
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p') and (c.relname like 'usage%')
    order by 1`)) as unknown as { rows?: { name: string; bytes: string | number }[] } | { name: string; bytes: string | number }[];
  const list = Array.isArray(rows) ? rows : (rows.rows ?? []);
  const tables = Object.fromEntries(list.map((r) => [r.name, Number(r.bytes)]));
  const total = Object.values(tables).reduce((a, b) => a + b, 0);
  const cpuUs = (cpu.user + cpu.system) / calls;
  const server = serverUs === undefined ? "" : ` + ${serverUs.toFixed(1)} µs PostgreSQL server CPU`;
  console.log(
    `usage records on ${database.driver} (${tokenCount} tokens): ${calls} calls in ${wallMs.toFixed(0)} ms; ${cpuUs.toFixed(1)} µs process CPU per call${server}`,
  );
  for (const [name, bytes] of Object.entries(tables)) console.log(`  ${name.padEnd(28)} ${String(bytes).padStart(12)} bytes`);
  console.log(`  bytes per call (all usage tables): ${(total / (calls + warmup)).toFixed(1)}`);
  if (asJson)
    console.log(
      JSON.stringify({ callsMeasured: calls, cpuUsPerCall: cpuUs, serverCpuUsPerCall: serverUs ?? null, bytesPerCall: total / (calls + warmup), tables }),
    );
} finally {
  await database.close();
  await dropDatabase?.();
  rmSync(dir, { recursive: true, force: true });
}
