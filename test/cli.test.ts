/**
 * The `relayapi` command as a user runs it: a child process of `node bin/relayapi.js` against
 * a relay booted in-process, plus the local `migrate` and `serve` commands.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { afterAll, describe, expect, it } from "vitest";
import { cleanEnv } from "./support/clean-env.js";
import { useRelay } from "./support/use-relay.js";
import { runCli, type CliRun } from "./support/run-cli.js";

const ROOT = join(import.meta.dirname, "..");
const BIN = join(ROOT, "bin", "relayapi.js");
const KEY = "sk-cli-upstream-key-0123456789";

const { relay, mock } = useRelay();
const tmpDirs: string[] = [];
afterAll(async () => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "relayapi-cli-"));
  tmpDirs.push(d);
  return d;
}

type Run = CliRun;
const run = (args: string[], timeout = 45_000): Promise<CliRun> => runCli(args, { timeout });

/** A command acting on the test relay. */
const remote = (...args: string[]) => run([...args, "--server", relay.url, "--admin-key", relay.adminKey]);

/** One `relayapi: ...` line on stderr, nothing on stdout, no stack trace. */
function expectOneLineError(r: Run, code: number, text: string | RegExp): void {
  expect({ code: r.code, stdout: r.stdout }).toEqual({ code, stdout: "" });
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^relayapi: /);
  expect(lines[0]).toMatch(text);
  expect(r.stderr).not.toMatch(/\bat .+:\d+:\d+/);
}

// Each command pays ~0.9 s of start-up (loading the bundled relay), more on a loaded machine.
describe("against a running relay", { timeout: 90_000 }, () => {
  it("provider add, list and rm; a token for the custom provider reaches it with its auth style", async () => {
    const added = await remote("provider", "add", "my-llm", "--base-url", mock.url, "--auth", "header:x-my-key");
    expect(added).toMatchObject({ code: 0, stdout: "provider my-llm saved\n" });

    const list = await remote("provider", "list");
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^my-llm\\s+custom\\s+${mock.url.replaceAll(".", "\\.")}$`, "m"));
    expect(list.stdout).toMatch(/^openai\s+built-in\s/m);
    const json = JSON.parse((await remote("provider", "list", "--json")).stdout) as { id: string; builtin: boolean }[];
    expect(json).toContainEqual(expect.objectContaining({ id: "my-llm", builtin: false }));

    const issued = await remote("token", "issue", "--provider", "my-llm", "--upstream-key", KEY);
    expect(issued.code).toBe(0);
    const secret = issued.stdout.trim();
    expect(secret).toMatch(/^rai_[0-9A-Za-z]{38}$/);
    const before = mock.requests.length;
    const res = await fetch(`${relay.url}/api/my-llm/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
    });
    expect(res.status).toBe(200);
    expect(mock.requests[before]?.headers["x-my-key"]).toBe(KEY);

    expect(await remote("provider", "rm", "my-llm")).toMatchObject({ code: 0, stdout: "provider my-llm deleted\n" });
    expect((await remote("provider", "list")).stdout).not.toContain("my-llm");
    expectOneLineError(await remote("provider", "rm", "openai"), 1, /read-only \(permission_denied\)$/);
  });

  it("token issue --json, inspect, list, get, revoke; inspect then fails with exit 1", async () => {
    const issued = await remote(
      "token",
      "issue",
      "--provider",
      "openai",
      "--upstream-key",
      KEY,
      "--max-calls",
      "2",
      "--models",
      "gpt-mock",
      "--subject",
      "cli-user",
      "--json",
    );
    expect(issued.code).toBe(0);
    const view = JSON.parse(issued.stdout) as { token: string; id: string; callsLeft: number; models: string[]; upstreamKey: string };
    expect(view).toMatchObject({ id: expect.stringMatching(/^tok_/), callsLeft: 2, models: ["gpt-mock"], upstreamKey: "sk-...6789" });
    expect(view.token).toMatch(/^rai_/);
    expect(issued.stdout).not.toContain(KEY);
    const { token, id } = view;

    const inspect = await run(["token", "inspect", token, "--server", relay.url]); // no admin key needed
    expect(inspect.code).toBe(0);
    expect(inspect.stdout).toMatch(new RegExp(`^id\\s+${id}$`, "m"));
    expect(inspect.stdout).toMatch(/^callsLeft\s+2$/m);
    expect(inspect.stdout).toMatch(/^status\s+active$/m);
    expect(inspect.stdout).not.toContain(token);

    const list = await remote("token", "list", "--subject", "cli-user");
    expect(list.code).toBe(0);
    expect(list.stdout.trim().split("\n")).toHaveLength(2);
    expect(list.stdout).toMatch(new RegExp(`^ID\\s+STATUS\\s+PROVIDER\\s+SUBJECT\\s+CALLS\\s+EXPIRES\n${id}\\s+active\\s+openai\\s+cli-user\\s+0/2\\s`));
    expect(list.stdout).not.toContain(token);

    const get = JSON.parse((await remote("token", "get", id, "--json")).stdout) as { id: string; subject: string };
    expect(get).toMatchObject({ id, subject: "cli-user" });

    expect(await remote("token", "revoke", id)).toMatchObject({ code: 0, stdout: `token ${id} revoked\n` });
    expectOneLineError(await run(["token", "inspect", token, "--server", relay.url]), 1, "invalid, expired or revoked token (unauthenticated)");
    expect((await remote("token", "list", "--subject", "cli-user")).stdout).toMatch(/\srevoked\s/);
  });

  it("server-side refusals exit 1 with the server's message and code", async () => {
    const [zero, wrongKey, unknown] = await Promise.all([
      remote("token", "issue", "--provider", "no\u0007such-provider", "--upstream-key", KEY),
      run(["token", "list", "--server", relay.url, "--admin-key", "rak_wrong"]),
      remote("token", "get", "tok_nope"),
    ]);
    // The id sent, sanitised, and the known ones (the admin caller may list them anyway).
    expectOneLineError(zero, 1, /unknown provider "no\?such-provider"; known providers: (\S+, )*openai(, \S+)* \(invalid_argument\)$/);
    expectOneLineError(
      wrongKey,
      1,
      /the relay at http:\/\/127\.0\.0\.1:\d+ refused the admin key sent; check --admin-key or \$RELAYAPI_ADMIN_KEY \(a local relay writes its key to data\/admin\.key\): admin key required \(unauthenticated\)$/,
    );
    expectOneLineError(unknown, 1, /no such token \(not_found\)$/);
  });

  it("misuse exits 2 with one line and no stack trace", async () => {
    const cases: [string[], RegExp][] = [
      [["token", "issue", "--bogus"], /unknown flag --bogus \(see relayapi token issue --help\)$/],
      [["token", "issue"], /--provider is required/],
      [["token", "issue", "--provider", "openai", "--upstream-key", KEY, "--max-calls", "x"], /--max-calls must be a non-negative integer/],
      [["token", "issue", "--provider", "openai", "--upstream-key", KEY, "--expires-in", "soon"], /--expires-in/],
      [["token", "frobnicate"], /unknown command "token frobnicate"; usage: relayapi token issue\|seal/],
      [["provider", "add", "x"], /--base-url is required/],
      [["provider", "add", "x", "--base-url", "http://h", "--auth", "cookie"], /--auth must be/],
      [["frobnicate"], /unknown command "frobnicate" \(see relayapi --help\)$/],
    ];
    const results = await Promise.all(cases.map(([args]) => remote(...args)));
    results.forEach((r, i) => expectOneLineError(r, 2, cases[i]![1]));
    expectOneLineError(await run(["token", "list", "--server", "ftp://x"]), 2, /--server must be an http\(s\) URL/);
  });
});

describe("local commands", { timeout: 90_000 }, () => {
  it("migrate twice: both succeed, the second applies nothing", async () => {
    const dir = tmp();
    const first = await run(["migrate", "--data-dir", dir]);
    expect(first).toMatchObject({ code: 0, stdout: "migrations applied (pglite)\n" });
    const second = await run(["migrate", "--data-dir", dir]);
    expect(second).toMatchObject({ code: 0, stdout: "migrations applied (pglite)\n" });
    const journal = JSON.parse(readFileSync(join(ROOT, "drizzle", "meta", "_journal.json"), "utf8")) as { entries: unknown[] };
    const pg = await PGlite.create(join(dir, "pgdata"));
    try {
      const { rows } = await pg.query<{ n: number }>("select count(*)::int as n from drizzle.__drizzle_migrations");
      expect(rows[0]?.n).toBe(journal.entries.length);
      const t = await pg.query("select 1 from information_schema.tables where table_name = 'tokens'");
      expect(t.rows).toHaveLength(1);
    } finally {
      await pg.close();
    }
  });

  it("serve on a free port answers /healthz and exits 0 on SIGTERM", async () => {
    const dir = tmp();
    const port = await freePort();
    const child = spawn(process.execPath, [BIN, "serve", "--port", String(port), "--data-dir", dir], { cwd: ROOT, env: cleanEnv() });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      const url = `http://127.0.0.1:${port}`;
      const health = await poll(`${url}/healthz`, 40_000);
      expect(health).toEqual({ status: "ok" });
      // The admin key it generated works, and only it.
      const adminKey = readFileSync(join(dir, "admin.key"), "utf8").trim();
      const call = (key: string) =>
        fetch(`${url}/relayapi.v1.AdminService/ListProviders`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
          body: "{}",
        });
      expect((await call(adminKey)).status).toBe(200);
      expect((await call("rak_wrong")).status).toBe(401);
      expect(stderr).toContain('"msg":"relay listening"');
      expect(stderr).not.toContain(adminKey);
    } finally {
      child.kill("SIGTERM");
    }
    expect(await withTimeout(exited, 20_000)).toBe(0);
  });
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function poll(url: string, timeoutMs: number): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url);
      if (res.ok) return await res.json();
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no exit within ${ms} ms`)), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}
