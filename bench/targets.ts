/**
 * Starts each benchmark target in its own child process (bench/target-process.ts, bundled
 * into dist/bench/ as the relay is into dist/server/) and talks to it over IPC. Every child is
 * tracked so `killAllTargets()` can end them on any exit path.
 */
import { fork, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { bundleFresh, ROOT } from "../scripts/build-server.js";
import { processCpuMs, procAvailable } from "./proc-cpu.js";
import type { ReadyMessage, SampleMessage, TargetConfig } from "./target-process.js";

export interface TargetHandle {
  name: string;
  url: string;
  adminKey: string | undefined;
  /** The reference only: its bare unary server's URL (bench/bare-unary.ts). */
  unaryUrl: string | undefined;
  pid: number;
  /** CPU ms of the target's own process(es) since they started (/proc; the child's own count where /proc is missing). */
  cpuMs(): Promise<number> | number;
  /** CPU time and peak RSS (since the previous sample) of the child. */
  sample(): Promise<SampleMessage>;
  /** Starts the V8 CPU profiler in the child (node:inspector). */
  startProfile(): Promise<void>;
  /** Stops it and has the child write the .cpuprofile to `file`. */
  stopProfile(file: string): Promise<void>;
  /** Relays only: adds `rows` filler tokens to the tokens table through the relay's own database. */
  seedTokens(rows: number): Promise<void>;
  /** Asks the child to close and exit; kills it after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();

/** The relay and the reference run with the Node flags of `npm start` (`node <flags> bin/relayapi.js serve`). */
const RELAY_NODE_FLAGS = (() => {
  const start = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: { start: string } }).scripts.start;
  const words = start.split(/\s+/);
  return words.slice(1, words.indexOf("bin/relayapi.js"));
})();

export async function startTarget(
  name: string,
  cfg: TargetConfig,
  opts: { execArgv?: string[]; startTimeoutMs?: number; quiet?: boolean } = {},
): Promise<TargetHandle> {
  // Plain JavaScript bundled as the relay ships (no TypeScript loader in the measured process).
  const entry = await bundleFresh(join(ROOT, "bench", "target-process.ts"), join(ROOT, "dist", "bench", "target-process.js"));
  const child = fork(entry, [JSON.stringify(cfg)], {
    execArgv: opts.execArgv ?? (cfg.kind === "relay" || cfg.kind === "reference" ? RELAY_NODE_FLAGS : []),
    stdio: ["ignore", opts.quiet ? "ignore" : "inherit", "inherit", "ipc"],
    env: { ...process.env, NODE_ENV: "production" },
  });
  live.add(child);
  const exited = new Promise<void>((r) => child.once("exit", () => (live.delete(child), r())));

  const ready = await new Promise<ReadyMessage>((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not ready after ${opts.startTimeoutMs ?? 60_000} ms`)), opts.startTimeoutMs ?? 60_000);
    child.on("message", function onMsg(m: { type: string; message?: string }) {
      if (m.type === "ready") {
        clearTimeout(timer);
        child.off("message", onMsg);
        resolveReady(m as ReadyMessage);
      } else if (m.type === "error") {
        clearTimeout(timer);
        reject(new Error(`${name} failed to start: ${m.message}`));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before it was ready`));
    });
  }).catch((e: unknown) => {
    child.kill("SIGKILL");
    throw e;
  });

  let seq = 0;
  const waiting = new Map<number, (m: { type: string; error?: string }) => void>();
  child.on("message", (m: { type: string; id?: number }) => {
    if (m.id !== undefined) waiting.get(m.id)?.(m);
  });
  /** Sends `{type, id, ...extra}` and resolves with the child's answer carrying the same id. */
  const ask = <T>(type: string, extra: object = {}, timeoutMs = 10_000): Promise<T> => {
    const id = ++seq;
    return new Promise<T>((res, rej) => {
      const timer = setTimeout(() => (waiting.delete(id), rej(new Error(`${name}: no answer to ${type}`))), timeoutMs);
      waiting.set(id, (m) => {
        clearTimeout(timer);
        waiting.delete(id);
        if (m.error) rej(new Error(`${name}: ${type}: ${m.error}`));
        else res(m as T);
      });
      child.send({ type, id, ...extra });
    });
  };
  return {
    name,
    url: ready.url,
    adminKey: ready.adminKey,
    unaryUrl: ready.unaryUrl,
    pid: child.pid!,
    cpuMs: procAvailable(child.pid!) ? () => processCpuMs(child.pid!) : async () => (await ask<SampleMessage>("sample")).cpuUs / 1000,
    sample: () => ask<SampleMessage>("sample"),
    startProfile: () => ask("profile-start"),
    stopProfile: (file) => ask("profile-stop", { file }, 60_000),
    seedTokens: (rows) => ask("seed-tokens", { rows }, 900_000),
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (child.connected) child.send({ type: "stop" });
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Synchronous last resort: SIGKILL every child still running. */
export function killAllTargets(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  live.clear();
}
