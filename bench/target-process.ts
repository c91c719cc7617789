/**
 * Entry point of one benchmark target's child process:
 * `node dist/bench/target-process.js '<TargetConfig JSON>'` (bundled from this file by bench/targets.ts, forked with IPC).
 *
 * It starts the mock upstream, the reference pass-through, the relay or (with --peers) Portkey's
 * gateway on 127.0.0.1, sends
 * `{type: "ready", url, ...}`, and answers `{type: "sample", id}` with its own CPU time
 * (process.cpuUsage) and the peak RSS since the previous sample (polled every 50 ms here).
 * `profile-start` / `profile-stop` (with `file`) run the V8 CPU profiler over a measured window.
 * `{type: "stop"}` closes the server and exits; it also exits when the parent goes away.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { MockUpstreamOptions } from "./mock-upstream.js";

export type TargetConfig =
  | { kind: "mock"; mock: MockUpstreamOptions }
  | { kind: "reference"; upstream: string; upstreamKey: string }
  | { kind: "reference-old"; upstream: string; upstreamKey: string }
  | { kind: "relay"; upstream: string; dataDir: string; databaseUrl?: string }
  | { kind: "portkey"; entry: string };

export interface ReadyMessage {
  type: "ready";
  url: string;
  adminKey?: string;
  /** The reference only: the bare Node unary server (bench/bare-unary.ts), IntrospectToken's ceiling. */
  unaryUrl?: string;
}

export interface SampleMessage {
  type: "sample";
  id: number;
  /** user + system CPU of this process since it started, in microseconds. */
  cpuUs: number;
  rss: number;
  /** Highest RSS seen since the previous sample, in bytes. */
  peakRss: number;
  /** Highest RSS over the process lifetime (getrusage), in bytes. */
  maxRss: number;
  /** Event-loop delay since the previous sample (ms): how long a ready socket could wait. */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
}

const send = (m: unknown): void => {
  process.send?.(m);
};

interface Started {
  ready: ReadyMessage;
  close(): Promise<void>;
  /** Relays: adds filler rows to the tokens table. */
  seedTokens?(rows: number): Promise<void>;
}

async function start(cfg: TargetConfig): Promise<Started> {
  if (cfg.kind === "mock") {
    const { startMockUpstream } = await import("./mock-upstream.js");
    const { url, server } = await startMockUpstream(cfg.mock);
    return { ready: { type: "ready", url }, close: () => new Promise((r) => server.close(() => r())) };
  }
  if (cfg.kind === "reference" || cfg.kind === "reference-old") {
    // The relay's own V8 settings (src/v8-tuning.ts), so the ceiling runs as the relay does.
    if (cfg.kind === "reference") (await import("../src/v8-tuning.js")).tuneHeap();
    const { startReferenceProxy } = await import("./reference-proxy.js");
    const { startOldReferenceProxy } = await import("./reference-proxy-old.js");
    const { url, server } = await (cfg.kind === "reference" ? startReferenceProxy : startOldReferenceProxy)(cfg.upstream, cfg.upstreamKey);
    const unary = cfg.kind === "reference" ? await (await import("./bare-unary.js")).startBareUnary() : undefined;
    return {
      ready: { type: "ready", url, unaryUrl: unary?.url },
      close: () => new Promise((r) => (unary?.server.close(), server.closeAllConnections(), server.close(() => r()))),
    };
  }
  if (cfg.kind === "portkey") {
    const { startPortkey } = await import("./start-portkey.js");
    const url = await startPortkey(cfg.entry);
    return { ready: { type: "ready", url }, close: async () => {} };
  }
  // The V8 settings `relayapi serve` makes (src/main.ts), before the relay's modules load as
  // there: the young generation is held from the start (src/v8-tuning.ts).
  const { tuneHeap } = await import("../src/v8-tuning.js");
  tuneHeap();
  const { loadConfig } = await import("../src/config.js");
  const { build } = await import("../src/server.js");
  const config = loadConfig(
    {
      dataDir: cfg.dataDir,
      databaseUrl: cfg.databaseUrl,
      port: 0,
      logLevel: "silent",
      shutdownGraceMs: 1000,
      // Every safety feature stays on; the per-IP limit is set high because all load comes
      // from one address (the check still runs on every request).
      ipRpm: 100_000_000,
      providerBaseUrls: { openai: cfg.upstream },
    },
    {},
  );
  const app = await build(config);
  await app.listen(0, "127.0.0.1");
  const { seedTokens } = await import("./seed-tokens.js");
  return { ready: { type: "ready", url: app.url, adminKey: app.adminKey }, close: () => app.close(), seedTokens: (rows) => seedTokens(app.database.db, rows) };
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] ?? "{}") as TargetConfig;
  let peak = process.memoryUsage.rss();
  const poll = setInterval(() => {
    const rss = process.memoryUsage.rss();
    if (rss > peak) peak = rss;
  }, 50);
  poll.unref();
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();

  let target: Started;
  try {
    target = await start(cfg);
  } catch (e) {
    send({ type: "error", message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    process.exit(1);
  }
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => process.exit(0), 3000);
    force.unref();
    await target.close().catch(() => {});
    process.exit(0);
  };
  let session: Session | undefined;
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((res, rej) => session!.post(method, params ?? {}, (err, result) => (err ? rej(err) : res(result))));
  const answer = (id: number | undefined, work: Promise<unknown>): void => {
    work.then(
      () => send({ type: "done", id }),
      (e: unknown) => send({ type: "done", id, error: String(e) }),
    );
  };
  process.on("message", (m: { type: string; id?: number; file?: string; rows?: number }) => {
    if (m.type === "sample") {
      const rss = process.memoryUsage.rss();
      const cpu = process.cpuUsage();
      const msg: SampleMessage = {
        type: "sample",
        id: m.id ?? 0,
        cpuUs: cpu.user + cpu.system,
        rss,
        peakRss: Math.max(peak, rss),
        maxRss: process.resourceUsage().maxRSS * 1024,
        loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
        loopDelayMaxMs: loopDelay.max / 1e6,
      };
      peak = rss;
      loopDelay.reset();
      send(msg);
    } else if (m.type === "profile-start") {
      session = new Session();
      session.connect();
      answer(
        m.id,
        post("Profiler.enable")
          .then(() => post("Profiler.setSamplingInterval", { interval: 250 }))
          .then(() => post("Profiler.start")),
      );
    } else if (m.type === "profile-stop") {
      answer(
        m.id,
        post("Profiler.stop").then((r) => {
          writeFileSync(m.file!, JSON.stringify((r as { profile: unknown }).profile));
          session!.disconnect();
        }),
      );
    } else if (m.type === "seed-tokens") {
      answer(m.id, target.seedTokens ? target.seedTokens(m.rows ?? 0) : Promise.reject(new Error("not a relay")));
    } else if (m.type === "stop") {
      void stop();
    }
  });
  process.on("disconnect", () => void stop());
  process.on("SIGTERM", () => void stop());
  // Ctrl-C reaches the whole process group: the parent stops its children itself.
  process.on("SIGINT", () => {});
  send(target.ready);
}

void main();
