/**
 * Helpers for the sealed-token suites (test/sealed-*.test.ts): an issuer on a test relay, a
 * chat call through the HTTP layer, the fixed 401, a token's counter, and child processes (the
 * CLI, the jose-only fixture, the Python example).
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";
import { INVALID_TOKEN } from "../../src/errors.js";
import { cleanEnv } from "./clean-env.js";
import type { TestRelay } from "./relay.js";

export { cleanEnv };

export const ROOT = join(import.meta.dirname, "..", "..");
export const BIN = join(ROOT, "bin", "relayapi.js");

export interface TestIssuer {
  name: string;
  kid: string;
  secret: string;
  /** `kid:secret`, as `token seal --issuer-key` and sealToken take it. */
  issuerKey: string;
}

export async function createIssuer(relay: TestRelay, name: string): Promise<TestIssuer> {
  const res = await relay.admin.createIssuer({ name });
  return { name, kid: res.kid, secret: res.secret, issuerKey: `${res.kid}:${res.secret}` };
}

export const seconds = (fromNowS = 0): number => Math.floor(Date.now() / 1000) + fromNowS;

export interface ChatResult {
  status: number;
  body: string;
}

/** One chat completion through `/api/openai/v1` with the token as a bearer. */
export async function chat(relay: TestRelay, token: string, model = "gpt-mock"): Promise<ChatResult> {
  const res = await fetch(`${relay.url}/api/openai/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
  });
  return { status: res.status, body: await res.text() };
}

/** The one fixed 401: same status, same body, whatever was wrong with the token. */
export function expectFixed401(r: ChatResult, what = ""): void {
  expect({ status: r.status, body: JSON.parse(r.body) as unknown }, what).toEqual({
    status: 401,
    body: { error: { message: INVALID_TOKEN, type: "invalid_request_error", param: null, code: "unauthenticated" } },
  });
}

/** calls_used of a token by id; 0 when no row exists yet (a sealed token never used). */
export async function callsUsed(relay: TestRelay, id: string): Promise<number> {
  try {
    return Number((await relay.tokens.getToken({ id })).token?.callsUsed ?? 0);
  } catch (e) {
    if (e instanceof ConnectError && e.code === Code.NotFound) return 0;
    throw e;
  }
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function runFile(file: string, args: string[], opts: { env?: Record<string, string>; timeout?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd: ROOT, timeout: opts.timeout ?? 60_000, env: cleanEnv(opts.env) }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") return reject(new Error(`${file} did not finish: ${err.message}\n${stderr}`));
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
  });
}

/** `relayapi ...` as a user runs it. */
export const cli = (args: string[], env: Record<string, string> = {}): Promise<Run> => runFile(process.execPath, [BIN, ...args], { env });
