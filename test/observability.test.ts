/**
 * Observability (issue 19, findings 4-6): every answer the relay gives is counted in
 * `relayapi_responses_total{entry,status_class,reason}`; the in-flight gauge follows a slow
 * stream; `relayapi_build_info` is exported; a 502 logs exactly one readable warn line with no
 * secret; RPC error lines name the method; a database outage is counted, logged (down, then
 * recovered with its duration) and answered 503 with Retry-After; X-Forwarded-For from an
 * untrusted peer is warned about once; the deploy/ alert rules pass `promtool check rules` and
 * the dashboard and rules name only metrics the relay exports.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { DatabaseHealth } from "../src/observe/database-health.js";
import { SampledWarn } from "../src/observe/sampled-warn.js";
import { startMockProvider, type MockProvider } from "./support/mock-provider.js";
import { startRelay, UPSTREAM_KEY, type TestRelay } from "./support/relay.js";
import { closedPort } from "./support/http.js";
import { useRelay } from "./support/use-relay.js";
import { sleep, waitFor } from "./support/wait.js";

const ROOT = join(import.meta.dirname, "..");
const RULES = join(ROOT, "deploy", "prometheus", "alerts.yml");
const DASHBOARD = join(ROOT, "deploy", "grafana", "relayapi-dashboard.json");
/** Families registered only with a configuration the test relay does not have. */
const CONDITIONAL = new Set(["relayapi_redis_up"]);

type Line = Record<string, unknown>;

const chat = (url: string, token: string, headers: Record<string, string> = {}, body: Record<string, unknown> = {}, provider = "openai") =>
  fetch(`${url}/api/${provider}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }], ...body }),
  });

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

async function scrape(url: string): Promise<{ text: string; samples: Sample[]; families: Set<string> }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const samples: Sample[] = [];
  const families = new Set<string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) /.exec(line);
    if (type) families.add(type[1]!);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_]\w*)="([^"]*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { text, samples, families };
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

describe("answers, in-flight, build info, logs", () => {
  const lines: string[] = [];
  const parsed = (): Line[] => lines.map((l) => JSON.parse(l) as Line);
  const secrets: string[] = [UPSTREAM_KEY];
  const { relay } = useRelay({
    log: createLogger("info", (l) => lines.push(l)),
    // anthropic points at a closed port: its calls end in 502 upstream_unreachable.
    config: async (m) => ({ maxBodyBytes: 4096, providerBaseUrls: { openai: m.url, anthropic: `http://127.0.0.1:${await closedPort()}` } }),
  });
  beforeAll(() => {
    secrets.push(relay.adminKey);
  });

  it("counts every refusal by entry, status class and reason", async () => {
    const plain = await relay.issue();
    const pinned = await relay.issue({ limits: { models: ["gpt-other"] } });
    const once = await relay.issue({ limits: { maxCalls: 1n } });
    const slow = await relay.issue({ limits: { rpm: 1 } });
    const anthropic = await relay.issue({ provider: "anthropic" });
    secrets.push(plain.secret, pinned.secret, once.secret, slow.secret, anthropic.secret);

    expect((await chat(relay.url, plain.secret)).status).toBe(200);
    expect((await chat(relay.url, "rai_not-a-real-token")).status).toBe(401);
    expect((await chat(relay.url, pinned.secret)).status).toBe(403);
    expect((await chat(relay.url, plain.secret, {}, {}, "no-such-provider")).status).toBe(404);
    const bad = await fetch(`${relay.url}/api/openai/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${plain.secret}`, "content-type": "application/json" },
      body: '{"model": ',
    });
    expect(bad.status).toBe(400);
    expect((await chat(relay.url, once.secret)).status).toBe(200);
    expect((await chat(relay.url, once.secret)).status).toBe(429);
    expect((await chat(relay.url, slow.secret)).status).toBe(200);
    expect((await chat(relay.url, slow.secret)).status).toBe(429);
    expect((await chat(relay.url, plain.secret, {}, { pad: "x".repeat(8000) })).status).toBe(413);
    expect((await fetch(`${relay.url}/api/openai/v1/models`, { method: "PROPFIND" })).status).toBe(405);
    expect((await chat(relay.url, anthropic.secret, {}, {}, "anthropic")).status).toBe(502);
    // RPC: the gate refuses an admin method without the admin key; the handler a missing token.
    const rpc = (method: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${relay.url}/relayapi.v1.${method}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
    expect((await rpc("AdminService/ListPools", {})).status).toBe(401);
    expect((await rpc("TokenService/GetToken", { id: "tok_nope" }, { authorization: `Bearer ${relay.adminKey}` })).status).toBe(404);
    expect((await rpc("NoService/Nothing", {})).status).toBe(404);

    const { samples } = await waitFor(async () => {
      const s = await scrape(relay.url);
      return value(s.samples, "relayapi_responses_total", { entry: "http", reason: "upstream_unreachable" }) ? s : undefined;
    });
    const count = (entry: string, statusClass: string, reason: string) =>
      value(samples, "relayapi_responses_total", { entry, status_class: statusClass, reason });
    expect(count("http", "2xx", "ok")).toBeGreaterThanOrEqual(3);
    expect(count("http", "4xx", "unauthenticated")).toBe(1);
    expect(count("http", "4xx", "permission_denied")).toBe(1);
    expect(count("http", "4xx", "not_found")).toBe(1);
    expect(count("http", "4xx", "bad_request")).toBe(1);
    expect(count("http", "4xx", "calls_exhausted")).toBe(1);
    expect(count("http", "4xx", "rate_limited")).toBe(1);
    expect(count("http", "4xx", "payload_too_large")).toBe(1);
    expect(count("http", "4xx", "method_not_allowed")).toBe(1);
    expect(count("http", "5xx", "upstream_unreachable")).toBe(1);
    expect(count("rpc", "4xx", "unauthenticated")).toBe(1);
    expect(count("rpc", "4xx", "not_found")).toBe(2);
    expect(count("rpc", "2xx", "ok")).toBeGreaterThanOrEqual(5); // the IssueToken calls above
    for (const s of samples) for (const v of Object.values(s.labels)) expect(v).toMatch(/^[a-z0-9_.+-]{1,64}$|^\+Inf$/i);
  });

  it("logs a 502 as exactly one warn line with readable error text and no secret", async () => {
    const { secret } = await relay.issue({ provider: "anthropic" });
    secrets.push(secret);
    const res = await chat(relay.url, secret, { "x-request-id": "req-502-once" }, {}, "anthropic");
    expect(res.status).toBe(502);
    const mine = await waitFor(() => {
      const found = parsed().filter((l) => l.requestId === "req-502-once");
      return found.length > 0 ? found : undefined;
    });
    await sleep(50);
    expect(parsed().filter((l) => l.requestId === "req-502-once")).toHaveLength(1);
    const line = mine[0]!;
    expect(line).toMatchObject({ level: "warn", entry: "http", status: 502, reason: "upstream_unreachable", provider: "anthropic" });
    expect(JSON.stringify(line.err)).toMatch(/ECONNREFUSED/);
    expect(JSON.stringify(line.err)).toMatch(/"message":"[^"]+"/);
    const all = lines.join("");
    for (const s of secrets) expect(all).not.toContain(s);
  });

  it("raises the in-flight gauge during a slow stream and lowers it after", async () => {
    const { secret } = await relay.issue();
    secrets.push(secret);
    const inFlight = async () => value((await scrape(relay.url)).samples, "relayapi_in_flight_requests", { entry: "http" });
    expect(await inFlight()).toBe(0);
    const res = await chat(relay.url, secret, { "x-mock-chunks": "5", "x-mock-delay-ms": "200" }, { stream: true });
    expect(res.status).toBe(200);
    expect(await inFlight()).toBe(1);
    expect(await res.text()).toContain("[DONE]");
    await waitFor(async () => (await inFlight()) === 0);
  });

  it("exports relayapi_build_info with the package version and a commit", async () => {
    const { samples } = await scrape(relay.url);
    const info = samples.find((s) => s.name === "relayapi_build_info");
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    expect(info?.value).toBe(1);
    expect(info?.labels.version).toBe(pkg.version);
    expect(info?.labels.commit).toMatch(/^[0-9a-f]{7,40}$|^unknown$/);
    expect(value(samples, "relayapi_database_up")).toBe(1);
    expect(value(samples, "relayapi_ready")).toBe(1);
    expect(value(samples, "relayapi_usage_write_failures_total")).toBe(0);
    expect(value(samples, "relayapi_leased_calls")).toBeGreaterThanOrEqual(0);
  });

  it("warns once about X-Forwarded-For from a peer not in trustProxy", async () => {
    const { secret } = await relay.issue();
    secrets.push(secret);
    const xff = () => parsed().filter((l) => typeof l.msg === "string" && l.msg.includes("X-Forwarded-For"));
    expect(xff()).toHaveLength(0);
    for (let i = 0; i < 3; i++) expect((await chat(relay.url, secret, { "x-forwarded-for": "203.0.113.7" })).status).toBe(200);
    expect(xff()).toHaveLength(1);
    expect(xff()[0]).toMatchObject({ level: "warn", peer: "127.0.0.1" });
    expect(JSON.stringify(xff()[0])).toContain("trustProxy");
  });
});

describe("database outage", () => {
  let mock: MockProvider;
  let relay: TestRelay;
  const lines: string[] = [];
  const parsed = (): Line[] => lines.map((l) => JSON.parse(l) as Line);
  beforeAll(async () => {
    mock = await startMockProvider();
    relay = await startRelay({ mock, log: createLogger("info", (l) => lines.push(l)) });
  });
  afterAll(async () => {
    // The database was closed by the test: close() fails at its end, the rest is cleaned.
    await relay?.close().catch(() => {});
    if (relay) rmSync(relay.dataDir, { recursive: true, force: true });
    await mock?.close();
  });

  it("answers 503 with Retry-After, counts and logs the outage, names the method on RPC error lines", async () => {
    const { secret } = await relay.issue(); // never used: its first check needs the database
    await relay.app.database.close();

    const res = await chat(relay.url, secret, { "x-request-id": "req-db-down" });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
    const ready = await fetch(`${relay.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(ready.headers.get("retry-after")).toMatch(/^\d+$/);
    const rpc = await fetch(`${relay.url}/relayapi.v1.AdminService/ListAuditEvents`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${relay.adminKey}` },
      body: "{}",
    });
    expect(rpc.status).toBeGreaterThanOrEqual(500);
    if (rpc.status === 503) expect(rpc.headers.get("retry-after")).toMatch(/^\d+$/);

    const { samples } = await scrape(relay.url);
    expect(value(samples, "relayapi_responses_total", { entry: "http", status_class: "5xx", reason: "database_unavailable" })).toBe(1);
    expect(value(samples, "relayapi_database_up")).toBe(0);
    expect(value(samples, "relayapi_ready")).toBe(0);
    expect(value(samples, "relayapi_database_errors_total", { source: "request" })).toBeGreaterThanOrEqual(1);

    const all = parsed();
    expect(all.filter((l) => l.msg === "database down")).toHaveLength(1);
    const down = all.find((l) => l.msg === "database down")!;
    expect(down).toMatchObject({ level: "warn", source: "request" });
    const rpcLine = all.find((l) => l.method === "relayapi.v1.AdminService/ListAuditEvents");
    expect(rpcLine, JSON.stringify(all)).toBeDefined();
    expect(["warn", "error"]).toContain(rpcLine!.level);
    // Readable: a message (and a code where the driver gives one), not {"name":"Error"} alone.
    expect(JSON.stringify(rpcLine!.err)).toMatch(/"message":"[^"]+"/);
    expect(lines.join("")).not.toContain(secret);
    expect(lines.join("")).not.toContain(relay.adminKey);
  });
});

describe("database health and 5xx sampling", () => {
  it("logs down once and recovered once with the outage's duration", async () => {
    const lines: string[] = [];
    let up = false;
    const health = new DatabaseHealth({
      log: createLogger("info", (l) => lines.push(l)),
      ping: async () => void (up || (await Promise.reject(new Error("still down")))),
      probeMs: 20,
    });
    // A transaction conflict (a deadlock, a serialization failure, a NOWAIT lock) is answered 503
    // to its call, but the database answered: it is not down.
    for (const code of ["40P01", "40001", "55P03"]) health.failed("request", Object.assign(new Error("conflict"), { code }));
    expect(health.up).toBe(true);
    health.failed("request", Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" }));
    health.failed("request", new Error("again"));
    expect(health.up).toBe(false);
    await sleep(100);
    up = true;
    await waitFor(() => health.up);
    health.close();
    const msgs = lines.map((l) => JSON.parse(l) as Line);
    expect(msgs.map((l) => l.msg)).toEqual(["database down", "database recovered"]);
    expect(msgs[0]).toMatchObject({ source: "request", err: { message: "connect ECONNREFUSED 127.0.0.1:5432", code: "ECONNREFUSED" } });
    expect(msgs[1]!.downMs).toBeGreaterThanOrEqual(80);
    expect(msgs[1]!.errors).toBe(2);
  });

  it("writes at most 10 lines a second and then says how many it suppressed", async () => {
    const lines: string[] = [];
    const warn = new SampledWarn(
      createLogger("info", (l) => lines.push(l)),
      10,
      100,
    );
    for (let i = 0; i < 25; i++) warn.warn("5xx answer", { i });
    expect(lines).toHaveLength(10);
    await waitFor(() => lines.length === 11);
    expect(JSON.parse(lines[10]!)).toMatchObject({ level: "warn", msg: "5xx answer lines suppressed", suppressed: 15 });
    warn.warn("5xx answer", { i: 99 });
    expect(lines).toHaveLength(12);
    warn.close();
  });
});

describe("fatal start-up errors", () => {
  it("serve writes a JSON fatal line, then the human line, when stderr is not a terminal", { timeout: 60_000 }, () => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("RELAYAPI_") && k !== "DATABASE_URL" && k !== "REDIS_URL"));
    let stderr = "";
    let code: number | null = 0;
    try {
      execFileSync(process.execPath, [join(ROOT, "bin", "relayapi.js"), "serve", "--port", "70000"], {
        cwd: ROOT,
        env,
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (e) {
      ({ stderr, status: code } = e as { stderr: string; status: number | null });
    }
    expect(code).toBe(2);
    const lines = stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      level: "fatal",
      msg: "relay failed to start",
      err: { name: "ConfigError", message: expect.stringContaining("port") },
    });
    expect(lines[1]).toMatch(/^relayapi: .*port/);
  });
});

describe("deploy/", () => {
  const { relay } = useRelay({ mock: false });

  it("alert rules pass promtool check rules (when promtool is installed)", (ctx) => {
    expect(existsSync(RULES)).toBe(true);
    let promtool = true;
    try {
      execFileSync("promtool", ["--version"], { stdio: "ignore" });
    } catch {
      promtool = false;
    }
    if (!promtool) {
      console.warn("[skip] promtool not installed: deploy/prometheus/alerts.yml not checked (apt-get install prometheus provides it)");
      ctx.skip();
      return;
    }
    const out = execFileSync("promtool", ["check", "rules", RULES], { encoding: "utf8" });
    expect(out).toMatch(/SUCCESS: \d+ rules found/);
  });

  it("dashboard and alerts name only metrics the relay exports", async () => {
    const { families } = await scrape(relay.url);
    const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as { panels: { title: string; targets?: { expr: string }[] }[] };
    const exprs = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr);
    expect(exprs.length).toBeGreaterThanOrEqual(8);
    const rules = readFileSync(RULES, "utf8");
    const alerts = [...rules.matchAll(/^\s+expr: (.+)$/gm)].map((m) => m[1]!);
    for (const name of ["HighErrorRatio", "DatabaseDown", "UsageDeadLetters", "RedisDegraded", "PoolKeysAllDisabled", "NotReady"]) {
      expect(rules).toContain(`alert: RelayAPI${name}`);
    }
    const named = new Set<string>();
    for (const expr of [...exprs, ...alerts]) for (const m of expr.matchAll(/\b((?:relayapi|process|nodejs)_[a-z0-9_]+)/g)) named.add(m[1]!);
    expect(named.size).toBeGreaterThanOrEqual(8);
    for (const name of named) {
      const family = families.has(name) ? name : name.replace(/_(bucket|sum|count)$/, "");
      expect(families.has(family) || CONDITIONAL.has(family), `${name} is not exported`).toBe(true);
    }
  });
});
