/**
 * The relay as a separate process, for tests that must kill it (`kill -9`) or stop it with
 * SIGTERM: `node dist/server/relayapi.js serve`, the bundle `bin/relayapi.js` runs, built (only
 * if stale) once by `buildRelayBundle()` so every process of a test runs the same code. Config
 * goes in through the environment (RELAYAPI_*, DATABASE_URL) on top of a clean one; the relay
 * listens on 127.0.0.1 and a free port, read from its "relay listening" log line.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundleFresh, ROOT, SERVER_BUNDLE, SERVER_ENTRY } from "../../scripts/build-server.js";
import { cleanEnv } from "./clean-env.js";

export { cleanEnv };

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnedRelay {
  label: string;
  url: string;
  pid: number;
  child: ChildProcessWithoutNullStreams;
  /** Everything the process wrote to stderr (its JSON log lines) so far. */
  stderr(): string;
  /** Resolves when the process exited. */
  exited: Promise<Exit>;
  /** The fields of the first log line with this `msg`, if any. */
  logLine(msg: string): Record<string, unknown> | undefined;
  /** SIGKILL: no shutdown, nothing flushed, leases lost. */
  kill9(): Promise<Exit>;
  /** SIGTERM and wait for the exit (graceful shutdown: leases given back, usage flushed). */
  stop(timeoutMs?: number): Promise<Exit>;
  /** Removes the process's data directory (after it exited). */
  cleanup(): void;
}

/** The fields of the first JSON log line in `stderr` whose msg is `msg`, or undefined. */
export function logLineIn(stderr: string, msg: string): Record<string, unknown> | undefined {
  for (const line of stderr.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (entry.msg === msg) return entry;
    } catch {
      // a line still being written
    }
  }
  return undefined;
}

/** Builds dist/server/relayapi.js from src/ unless it is fresh; returns its path. */
export function buildRelayBundle(): Promise<string> {
  return bundleFresh(SERVER_ENTRY, SERVER_BUNDLE);
}

/**
 * Starts `relayapi serve` with `env` (RELAYAPI_PORT defaults to 0, RELAYAPI_LOG_LEVEL to info,
 * RELAYAPI_DATA_DIR to a fresh temporary directory) and waits until it listens.
 */
export async function spawnRelay(env: Record<string, string>, opts: { label?: string; timeoutMs?: number; bundle?: string } = {}): Promise<SpawnedRelay> {
  const label = opts.label ?? "relay";
  const bundle = opts.bundle ?? (await buildRelayBundle());
  const dataDir = mkdtempSync(join(tmpdir(), `relayapi-${label}-`));
  const child = spawn(process.execPath, [bundle, "serve"], {
    cwd: ROOT,
    env: cleanEnv({ RELAYAPI_PORT: "0", RELAYAPI_HOST: "127.0.0.1", RELAYAPI_LOG_LEVEL: "info", RELAYAPI_DATA_DIR: dataDir, ...env }),
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdout.on("data", () => {});
  const exited = new Promise<Exit>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const logLine = (msg: string): Record<string, unknown> | undefined => logLineIn(stderr, msg);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let listening: Record<string, unknown> | undefined;
  while (!(listening = logLine("relay listening"))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${label} exited (${child.exitCode ?? child.signalCode}) before listening:\n${stderr.slice(-4000)}`);
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${label} not listening within ${timeoutMs} ms:\n${stderr.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    label,
    url: String(listening.url),
    pid: child.pid!,
    child,
    stderr: () => stderr,
    exited,
    logLine,
    kill9() {
      if (running()) child.kill("SIGKILL");
      return exited;
    },
    async stop(stopTimeoutMs = 20_000) {
      if (running()) child.kill("SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<Exit>((resolve) => {
        timer = setTimeout(() => {
          if (running()) child.kill("SIGKILL");
          resolve({ code: null, signal: "SIGKILL" });
        }, stopTimeoutMs);
      });
      try {
        return await Promise.race([exited, late]);
      } finally {
        clearTimeout(timer);
      }
    },
    cleanup() {
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** An openai token with a call cap, issued through a spawned relay's TokenService with its admin key: the secret. */
export async function issueOn(url: string, adminKey: string, upstreamKey: string, maxCalls: number): Promise<string> {
  const res = await fetch(`${url}/relayapi.v1.TokenService/IssueToken`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${adminKey}` },
    body: JSON.stringify({ provider: "openai", upstreamKey, limits: { maxCalls: String(maxCalls) } }),
  });
  return ((await res.json()) as { secret: string }).secret;
}

/** Every `worker listening` line of a spawned `serve --workers` so far: one per worker started, restarts included. */
export function workerLines(r: SpawnedRelay): Array<{ worker: number; pid: number }> {
  return r
    .stderr()
    .split("\n")
    .filter((l) => l.includes('"worker listening"'))
    .map((l) => JSON.parse(l) as { worker: number; pid: number });
}
