/**
 * Runs the real `relayapi` CLI (bin/relayapi.js) as a child process, in the checkout, with the
 * machine's environment minus any RELAYAPI_* / DATABASE_URL / REDIS_URL (cleanEnv): its exit
 * code, output and how long it took. A CLI that does not finish within `timeout` fails the test.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { cleanEnv } from "./clean-env.js";

export const ROOT = join(import.meta.dirname, "..", "..");
export const BIN = join(ROOT, "bin", "relayapi.js");

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

export function runCli(args: string[], opts: { timeout?: number; env?: Record<string, string> } = {}): Promise<CliRun> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: opts.timeout ?? 45_000, env: cleanEnv(opts.env) }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") return reject(new Error(`relayapi did not finish: ${err.message}\n${stderr}`));
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** The CLI acting on a running relay: `--server` and `--admin-key` appended. */
export function remoteCli(relay: { url: string; adminKey: string }, opts: { timeout?: number } = {}): (...args: string[]) => Promise<CliRun> {
  return (...args) => runCli([...args, "--server", relay.url, "--admin-key", relay.adminKey], opts);
}
