/**
 * `npm run bench`: the mock upstream, nginx (the C ceiling, when installed), the reference
 * Node pass-through and the relay (PGlite, and PostgreSQL when 127.0.0.1:5432 answers), each in
 * its own process, driven from this process with wrk/h2load when installed (autocannon and
 * connect-node otherwise) and undici. Prints tables and the issue 22 targets, writes JSON.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { createBenchDatabase, type BenchDatabase } from "./bench-database.js";
import { measureDpopCost } from "./dpop-cost.js";
import { evaluateCheckGoals, evaluateGoals, type CheckCosts, type TokenRowsResult } from "./goals.js";
import { BENCH_UPSTREAM_KEY, countedCalls, issueBenchToken } from "./issue-bench-token.js";
import { installPortkey, PORTKEY_VERSION } from "./install-portkey.js";
import { probe, type HttpCall } from "./load.js";
import { parseOptions } from "./options.js";
import { formatProfile, summariseProfile, type ProfileSummary } from "./profile-summary.js";
import { measurePolicyCost } from "./policy-cost.js";
import { formatCheckCosts, formatReport, writeJson } from "./report.js";
import { checkRpcAnswer, measureThroughput, rpcRelayCall, runRound, warmUp, type BenchTarget, type RoundResult } from "./rounds.js";
import { summarise } from "./summarise.js";
import { ROOT } from "../scripts/build-server.js";
import { killAllTargets, startTarget, type TargetHandle } from "./targets.js";
import { formatScaling, runWorkersScaling, type ScalingResult } from "./workers-scaling.js";
import { driver } from "./load.js";
import { startNginx } from "./nginx-target.js";
import { procAvailable } from "./proc-cpu.js";
import { H2LOAD, WRK } from "./wrk.js";

const log = (s: string): void => console.error(s);
const cleanups: (() => Promise<void> | void)[] = [];

let cleaning: Promise<void> | undefined;
let interrupted = false;

/** Runs the registered cleanups once (newest first); later callers wait for the same run. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length) await Promise.resolve(cleanups.pop()!()).catch((e: unknown) => log(`cleanup: ${String(e)}`));
    killAllTargets();
  })();
  return cleaning;
}

process.on("exit", killAllTargets);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    interrupted = true;
    log(`\n${sig}: stopping targets`);
    void cleanup().finally(() => process.exit(130));
  });
}

const CHAT = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Say hello to the benchmark." }], max_tokens: 64 });
const CHAT_STREAM = JSON.stringify({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "Say hello to the benchmark." }],
  max_tokens: 64,
  stream: true,
  stream_options: { include_usage: true },
});

function calls(base: string, bearer: string, extra: Record<string, string> = {}): { call: HttpCall; streamCall: HttpCall } {
  const headers = { "content-type": "application/json", authorization: `Bearer ${bearer}`, ...extra };
  return { call: { url: base, headers, body: CHAT }, streamCall: { url: base, headers, body: CHAT_STREAM } };
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const started = Date.now();
  const loadBefore = loadavg()[0]!;
  if (loadBefore > cpus().length * 0.5)
    log(
      `warning: load average ${loadBefore.toFixed(2)} on ${cpus().length} CPUs before the run: other work on the box skews absolute numbers (compare ratios)`,
    );
  log(`bench: ${opts.rounds} rounds x ${opts.duration} s, ${opts.connections} connections; node ${process.version}, ${cpus().length} CPUs`);
  driver.wrk = WRK && !opts.autocannon;
  const skipped: string[] = [];
  const loadTool = driver.wrk ? "wrk (1 thread)" : "autocannon";
  const h2Tool = driver.wrk && H2LOAD ? "h2load" : "connect-node client";
  if (!WRK) skipped.push("wrk not installed (apt-get install wrk): throughput driven by autocannon, which takes CPU from the targets on a small box");
  if (!H2LOAD) skipped.push("h2load not installed (apt-get install nghttp2-client): IntrospectToken over h2c driven by the connect-node client");
  if (!procAvailable()) skipped.push("no /proc: CPU read from each target's process.cpuUsage(), PostgreSQL's CPU not counted");
  log(`load: ${loadTool}; h2c: ${h2Tool}`);

  const profDir = opts.cpuProf ? mkdtempSync(join(tmpdir(), "relayapi-bench-prof-")) : undefined;
  const launch = async (name: string, cfg: Parameters<typeof startTarget>[1], quiet = false): Promise<TargetHandle> => {
    const h = await startTarget(name, cfg, { quiet });
    cleanups.push(() => h.stop());
    return h;
  };

  const mock = await launch("direct", { kind: "mock", mock: { chunks: opts.chunks, delayMs: opts.chunkDelayMs } });
  const reference = await launch("reference", { kind: "reference", upstream: mock.url, upstreamKey: BENCH_UPSTREAM_KEY });
  const targets: BenchTarget[] = [{ name: "direct", relay: false, handle: mock, ...calls(`${mock.url}/v1/chat/completions`, BENCH_UPSTREAM_KEY) }];
  const nginx = opts.nginx ? await startNginx(mock.url, BENCH_UPSTREAM_KEY, log) : undefined;
  if (nginx) {
    cleanups.push(() => nginx.stop());
    targets.push({ name: "nginx", relay: false, handle: nginx, ...calls(`${nginx.url}/v1/chat/completions`, "client-side-ignored") });
  } else skipped.push(opts.nginx ? "nginx not installed or did not start (apt-get install nginx-light): no C ceiling" : "nginx (--no-nginx)");
  targets.push({ name: "reference", relay: false, handle: reference, ...calls(`${reference.url}/v1/chat/completions`, "client-side-ignored") });
  if (opts.oldReference) {
    const old = await launch("reference-old", { kind: "reference-old", upstream: mock.url, upstreamKey: BENCH_UPSTREAM_KEY });
    targets.push({ name: "reference-old", relay: false, handle: old, ...calls(`${old.url}/v1/chat/completions`, "client-side-ignored") });
  }

  if (opts.peers) {
    const entry = await installPortkey(log);
    const portkey = await launch("portkey", { kind: "portkey", entry }, true);
    const extra = { "x-portkey-provider": "openai", "x-portkey-custom-host": `${mock.url}/v1` };
    targets.push({ name: "portkey", relay: false, handle: portkey, ...calls(`${portkey.url}/v1/chat/completions`, BENCH_UPSTREAM_KEY, extra) });
  }

  let db: BenchDatabase | undefined;
  if (opts.postgres) {
    db = await createBenchDatabase();
    if (db)
      cleanups.unshift(() => db!.drop()); // runs last, after the relay child is gone
    else skipped.push("relay-postgres: PostgreSQL does not answer on 127.0.0.1:5432");
    if (db && !db.cpu) skipped.push("PostgreSQL's own CPU: its processes are not visible in /proc (another machine or namespace)");
  } else skipped.push("relay-postgres (--no-postgres)");
  const relays: { name: string; databaseUrl?: string }[] = [{ name: "relay-pglite" }];
  if (db) relays.push({ name: "relay-postgres", databaseUrl: db.url });
  for (const r of relays) {
    const dataDir = mkdtempSync(join(tmpdir(), `relayapi-bench-${r.name}-`));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const handle = await launch(r.name, { kind: "relay", upstream: mock.url, dataDir, ...(r.databaseUrl ? { databaseUrl: r.databaseUrl } : {}) });
    const token = await issueBenchToken(handle.url, handle.adminKey!);
    const dbCpu = r.databaseUrl ? db?.cpu : undefined;
    targets.push({
      name: r.name,
      relay: true,
      handle,
      token,
      ...calls(`${handle.url}/api/openai/v1/chat/completions`, token),
      ...(dbCpu ? { databaseCpuMs: () => dbCpu.cpuMs() } : {}),
    });
  }

  for (const t of targets) {
    for (const c of [t.call, t.streamCall]) {
      const res = await probe(c);
      if (res.status !== 200) throw new Error(`${t.name} answered ${res.status} to ${c.url}: ${res.body.slice(0, 300)}`);
    }
    if (t.relay) {
      const res = await probe(rpcRelayCall(t));
      checkRpcAnswer(res.status, res.body);
    }
  }
  log(`targets up in ${((Date.now() - started) / 1000).toFixed(1)} s: ${targets.map((t) => `${t.name} ${t.handle.url} (pid ${t.handle.pid})`).join(", ")}`);

  // `--cpu-prof a,b`: each named target gets its own profiled window, in its own folder.
  const profiled = (opts.cpuProf ?? "")
    .split(",")
    .filter(Boolean)
    .map((name) => {
      const t = targets.find((x) => x.name === name);
      if (!t || t.name === "nginx")
        throw new Error(
          `--cpu-prof: no Node target named ${name} (have ${targets
            .filter((x) => x.name !== "nginx")
            .map((x) => x.name)
            .join(", ")})`,
        );
      return t;
    });

  await warmUp(targets, opts, log);
  const rounds: RoundResult[] = [];
  for (let i = 0; i < opts.rounds; i++) rounds.push(await runRound(i, targets, opts, log));
  const tokenRows: Record<string, TokenRowsResult> = {};
  if (opts.tokenRows > 0) {
    for (const t of targets.filter((x) => x.relay)) {
      const before = await measureThroughput(t, opts.connections, opts.duration);
      const t0 = Date.now();
      await t.handle.seedTokens(opts.tokenRows);
      const seedSeconds = (Date.now() - t0) / 1000;
      const after = await measureThroughput(t, opts.connections, opts.duration);
      tokenRows[t.name] = {
        rows: opts.tokenRows,
        seedSeconds,
        beforeCpuMsPerReq: before.cpuMsPerReq,
        afterCpuMsPerReq: after.cpuMsPerReq,
        beforeRps: before.rps,
        afterRps: after.rps,
      };
      log(
        `  ${t.name}: ${before.cpuMsPerReq.toFixed(3)} CPU ms/req, +${opts.tokenRows} token rows (${seedSeconds.toFixed(0)} s), then ${after.cpuMsPerReq.toFixed(3)}`,
      );
    }
  }
  for (const t of profDir ? profiled : []) {
    // An extra, unreported throughput window under the profiler, so the rounds stay unskewed.
    mkdirSync(join(profDir!, t.name));
    const r = await measureThroughput(t, opts.connections, opts.duration, join(profDir!, t.name, `${t.name}.cpuprofile`));
    log(`  profiled ${t.name}: ${Math.round(r.rps)} req/s under the profiler`);
  }
  const loadAfter = loadavg()[0]!;
  const counted = Object.fromEntries(
    await Promise.all(targets.filter((t) => t.relay).map(async (t) => [t.name, await countedCalls(t.handle.url, t.token!)] as const)),
  );
  const lifetime = Object.fromEntries(await Promise.all(targets.map(async (t) => [t.name, (await t.handle.sample()).maxRss / 2 ** 20] as const)));

  await cleanup(); // stops children (writes the CPU profile), drops the database
  // Measured with the targets gone, so nothing competes with these microsecond figures.
  log("safety checks: request policy and DPoP verification, in-process");
  // A failing micro-measurement must not lose the rounds measured above.
  let checks: CheckCosts | undefined;
  try {
    checks = { policy: measurePolicyCost("3kb")[0]!, dpop: [await measureDpopCost("ES256"), await measureDpopCost("EdDSA")] };
  } catch (e) {
    log(`safety checks not measured: ${e instanceof Error ? e.message : String(e)}`);
  }
  const checkGoals = checks ? evaluateCheckGoals(checks) : [];
  const profileSummary: Record<string, ProfileSummary> = {};
  for (const t of profDir ? profiled : []) {
    const summary = summariseProfile(join(profDir!, t.name));
    if (!summary) continue;
    profileSummary[t.name] = summary;
    console.log(formatProfile(summary, `${t.name}, one extra ${opts.duration} s throughput window`) + "\n");
  }

  const names = targets.map((t) => t.name);
  const summary = summarise(rounds, names);
  const goals = evaluateGoals(summary, { peersMeasured: opts.peers, tokenRows });
  const header = `RelayAPI bench ${new Date().toISOString()}: node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GB; ${opts.rounds} rounds x ${opts.duration} s at ${opts.connections} connections, load from ${loadTool} (h2c: ${h2Tool}); SSE ${opts.chunks} frames ${opts.chunkDelayMs} ms apart; load avg ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after`;
  console.log(formatReport(summary, goals, names, header, { http1: loadTool, h2c: h2Tool }));
  if (skipped.length) console.log(`\nSkipped:\n${skipped.map((x) => `  - ${x}`).join("\n")}`);
  if (checks) console.log(`\n${formatCheckCosts(checks, checkGoals)}`);
  console.log(
    `\ncalls counted on the bench token (IntrospectToken): ${Object.entries(counted)
      .map(([n, c]) => `${n} ${c}`)
      .join(", ")}`,
  );
  if (!opts.peers) console.log("\npeers: not measured (run with --peers to add Portkey's gateway)");
  // Usage records (issue 23): disk and CPU per call with roll-ups, few and many series per batch.
  const usageCost: Record<string, unknown> = {};
  for (const tokens of [5, 200]) {
    try {
      const out = execFileSync(
        process.execPath,
        [join(ROOT, "bin", "run-ts.js"), join(ROOT, "bench", "usage-cost.ts"), "20000", `--tokens=${tokens}`, "--json"],
        { encoding: "utf8", timeout: 180_000 },
      );
      usageCost[`tokens${tokens}`] = JSON.parse(out.trim().split("\n").at(-1)!) as unknown;
    } catch (e) {
      usageCost[`tokens${tokens}`] = `failed: ${e instanceof Error ? e.message.slice(0, 200) : String(e)}`;
    }
  }
  console.log(
    `\nusage records on PGlite (bench/usage-cost.ts, 20,000 calls through the writer, roll-ups on): ${Object.entries(usageCost)
      .map(([k, v]) =>
        typeof v === "object" && v !== null
          ? `${k.slice(6)} tokens ${(v as { bytesPerCall: number }).bytesPerCall} B/call, ${(v as { cpuUsPerCall: number }).cpuUsPerCall} us CPU/call`
          : `${k}: ${String(v)}`,
      )
      .join("; ")}`,
  );
  // What one relayed call makes (promises, heap bytes), counted: the same on a busy box.
  try {
    const out = execFileSync(process.execPath, [join(ROOT, "bin", "run-ts.js"), join(ROOT, "bench", "call-work.ts"), "2000"], {
      encoding: "utf8",
      timeout: 180_000,
    });
    console.log(`\n${out.trim().split("\n").at(-1)}`);
  } catch (e) {
    console.log(`\ncall work: failed: ${e instanceof Error ? e.message.slice(0, 200) : String(e)}`);
  }
  let workers: ScalingResult | undefined;
  if (opts.workers) {
    await cleanup(); // the targets above stop first: the scaling rounds get the whole box
    workers = await runWorkersScaling({ rounds: opts.rounds, duration: opts.duration, connections: opts.connections, postgres: opts.postgres });
    console.log(`\n${formatScaling(workers)}`);
  } else console.log("\nserve --workers scaling: not measured (run with --workers)");
  const out = resolve(opts.out);
  writeJson(out, {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    options: opts,
    load: { http1: loadTool, h2c: h2Tool },
    skipped,
    database: db?.name,
    summary,
    goals,
    checks,
    checkGoals,
    lifetimeMaxRssMb: lifetime,
    loadAverage: { before: loadBefore, after: loadAfter },
    countedCalls: counted,
    tokenRows,
    rounds,
    profile: profileSummary,
    workers: workers ?? "not measured",
    usageCost,
    peers: opts.peers ? { portkey: PORTKEY_VERSION } : "not measured",
    seconds: (Date.now() - started) / 1000,
  });
  console.log(`wrote ${out} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

main().then(
  () => process.exit(0),
  async (e: unknown) => {
    if (!interrupted) log(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    await cleanup();
    process.exit(interrupted ? 130 : 1);
  },
);
