/**
 * An embedded data directory belongs to one process (issue 17, findings 2 and 7): a second
 * `relayapi serve` or a `relayapi migrate` on it refuses in one line naming the directory and the
 * holder's pid, so a call cap cannot be counted twice; a relay killed with SIGKILL does not block
 * its restart; and PGlite's files are private (directories 0700, files 0600).
 *
 * The relays here are real processes (`node bin/relayapi.js serve`), as an operator runs them.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenService } from "../gen/relayapi/v1/token_service_pb.js";
import { startMockProvider, type MockProvider } from "./support/mock-provider.js";

const ROOT = join(import.meta.dirname, "..");
const BIN = join(ROOT, "bin", "relayapi.js");
const UPSTREAM_KEY = "sk-data-dir-upstream-0123456789";

let mock: MockProvider;
const dirs: string[] = [];
const children: ChildProcessWithoutNullStreams[] = [];
const agent = new Agent({ connections: 16 });

beforeAll(async () => {
  mock = await startMockProvider();
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await agent.close();
  await mock?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "relayapi-datadir-"));
  dirs.push(d);
  return d;
}

/** The environment without the machine's RELAYAPI_* / DATABASE_URL, the mock as OpenAI. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("RELAYAPI_") && k !== "DATABASE_URL"));
  return { ...base, RELAYAPI_PROVIDER_OPENAI_BASE_URL: mock.url, RELAYAPI_IP_RPM: "0", ...extra };
}

interface Started {
  child: ChildProcessWithoutNullStreams;
  /** Resolves with the URL once it listens, or with the exit code and stderr when it exits first. */
  outcome: Promise<{ url: string } | { code: number | null; stderr: string }>;
  exited: Promise<number | null>;
}

function serve(dataDir: string, extraEnv: Record<string, string> = {}): Started {
  const child = spawn(process.execPath, [BIN, "serve", "--port", "0", "--data-dir", dataDir], { cwd: ROOT, env: env(extraEnv) });
  children.push(child);
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const outcome = new Promise<{ url: string } | { code: number | null; stderr: string }>((resolve) => {
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      const line = stderr.split("\n").find((l) => l.includes('"msg":"relay listening"'));
      if (line) resolve({ url: (JSON.parse(line) as { url: string }).url });
    });
    void exited.then((code) => resolve({ code, stderr }));
  });
  return { child, outcome, exited };
}

async function listening(s: Started): Promise<string> {
  const o = await withTimeout(s.outcome, 40_000);
  if (!("url" in o)) throw new Error(`relay exited with ${o.code}: ${o.stderr}`);
  return o.url;
}

/** Runs one CLI command to its end. */
function run(args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: env(extraEnv) });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

async function issue(url: string, dataDir: string, maxCalls: number): Promise<string> {
  const adminKey = readFileSync(join(dataDir, "admin.key"), "utf8").trim();
  const transport = createConnectTransport({
    baseUrl: url,
    httpVersion: "1.1",
    interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${adminKey}`), next(req))],
  });
  const res = await createClient(TokenService, transport).issueToken({
    provider: "openai",
    credential: { case: "upstreamKey", value: UPSTREAM_KEY },
    limits: { maxCalls: BigInt(maxCalls) },
  });
  return res.secret;
}

async function chat(url: string, secret: string): Promise<number> {
  const res = await request(`${url}/api/openai/v1/chat/completions`, {
    method: "POST",
    dispatcher: agent,
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] }),
  });
  await res.body.dump();
  return res.statusCode;
}

/** One `relayapi: ...` line on stderr (beside `serve`'s JSON `fatal` line), no stack trace. */
function oneLine(stderr: string): string {
  const lines = stderr
    .trimEnd()
    .split("\n")
    .filter((l) => !l.startsWith("{"));
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^relayapi: /);
  expect(stderr).not.toMatch(/\bat .+:\d+:\d+/);
  return lines[0]!;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`nothing within ${ms} ms`)), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

/** Every directory and file under `dir` (and `dir` itself) with its permission bits. */
function modes(dir: string): { path: string; dir: boolean; mode: number }[] {
  const out = [{ path: dir, dir: true, mode: statSync(dir).mode & 0o777 }];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const path = join(e.parentPath, e.name);
    out.push({ path, dir: e.isDirectory(), mode: statSync(path).mode & 0o777 });
  }
  return out;
}

// Each relay process pays its start-up (bundle, PGlite, a new directory's initdb).
describe("one process per data directory", { timeout: 120_000 }, () => {
  let dataDir: string;
  let first: Started;
  let firstUrl: string;

  it("a second relay on the directory refuses to start: 300 calls on a cap of 50 reach the provider 50 times", async () => {
    dataDir = tmp();
    first = serve(dataDir);
    firstUrl = await listening(first);
    const secret = await issue(firstUrl, dataDir, 50);

    const second = serve(dataDir);
    const o = await withTimeout(second.outcome, 40_000);
    const urls = "url" in o ? [firstUrl, o.url] : [firstUrl];

    mock.reset();
    const statuses: number[] = [];
    for (let i = 0; i < 300; i += 10) {
      statuses.push(...(await Promise.all(Array.from({ length: 10 }, (_, j) => chat(urls[(i + j) % urls.length]!, secret)))));
    }
    const arrivals = mock.requests.length;
    if ("url" in o) second.child.kill("SIGKILL");

    expect({ secondStarted: "url" in o, arrivals, ok: statuses.filter((s) => s === 200).length }).toEqual({ secondStarted: false, arrivals: 50, ok: 50 });
    if ("url" in o) return;
    expect(o.code).not.toBe(0);
    const line = oneLine(o.stderr);
    expect(line).toContain(dataDir);
    expect(line).toContain(`pid ${first.child.pid}`);
  });

  it("relayapi migrate refuses while the relay runs", async () => {
    const r = await run(["migrate", "--data-dir", dataDir]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe("");
    const line = oneLine(r.stderr);
    expect(line).toContain(dataDir);
    expect(line).toContain(`pid ${first.child.pid}`);
  });

  it("after kill -9 of the relay, a restart on the directory succeeds; a clean stop frees it", async () => {
    first.child.kill("SIGKILL");
    await withTimeout(first.exited, 10_000);
    const restarted = serve(dataDir);
    const url = await listening(restarted);
    expect(await chat(url, await issue(url, dataDir, 1))).toBe(200);

    // Directories 0700, files 0600: nothing of the database is open to other users.
    const loose = modes(dataDir).filter((e) => e.mode !== (e.dir ? 0o700 : 0o600));
    expect(loose.map((e) => `${e.mode.toString(8)} ${e.path}`)).toEqual([]);
    expect(modes(dataDir).length).toBeGreaterThan(100); // the whole of pgdata was looked at

    restarted.child.kill("SIGTERM");
    expect(await withTimeout(restarted.exited, 20_000)).toBe(0);
    expect(readdirSync(dataDir).filter((f) => f.includes("lock"))).toEqual([]);
    const migrated = await run(["migrate", "--data-dir", dataDir]);
    expect(migrated).toMatchObject({ code: 0, stdout: "migrations applied (pglite)\n" });
    expect(existsSync(join(dataDir, "pgdata"))).toBe(true);
  });
});
