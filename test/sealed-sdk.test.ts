/**
 * The SDK as app developers get it: the package export `relayapi/sdk` (built JavaScript in
 * dist/, imported by the package's own name, in this process and in plain Node without tsx),
 * free of `node:` modules so it runs in browsers; its Connect clients over connect-web's
 * transport; relayBaseURL; its input checks; and examples/backend-route.ts end to end with the
 * openai SDK.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join, sep } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UPSTREAM_KEY } from "./support/relay.js";
import { chat, createIssuer, ROOT, runFile, type TestIssuer } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";

type Sdk = typeof import("relayapi/sdk");

const DIST = join(ROOT, "dist");
const files = (dir: string): string[] =>
  readdirSync(dir).flatMap((name) => (statSync(join(dir, name)).isDirectory() ? files(join(dir, name)) : [join(dir, name)]));

/** Builds dist/ (`npm run build:sdk`, which `npm ci` runs) when a source is newer than it. */
function ensureSdkBuilt(): void {
  // The SDK also compiles the limits table it shares with the relay (src/tokens/token-limits.ts).
  const sources = [...files(join(ROOT, "src", "sdk")), ...files(join(ROOT, "gen")), join(ROOT, "src", "tokens", "token-limits.ts")];
  const newest = Math.max(...sources.map((f) => statSync(f).mtimeMs));
  let built = 0;
  try {
    built = statSync(join(DIST, "src", "sdk", "index.js")).mtimeMs;
  } catch {
    // not built yet
  }
  if (built < newest) execFileSync(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.sdk.json"], { cwd: ROOT });
}

let sdk: Sdk;
const { relay, mock } = useRelay();
let issuer: TestIssuer;
beforeAll(async () => {
  ensureSdkBuilt();
  sdk = await import("relayapi/sdk");
  issuer = await createIssuer(relay, "sdk-app");
}, 120_000);

it("is built JavaScript with no node: module or Node global, so browsers and bundlers take it", () => {
  // dist/server/ and dist/bench/ hold the bundled relay and bench targets, Node programs.
  const nodeOnly = [join(DIST, "server"), join(DIST, "bench")].map((d) => d + sep);
  const js = files(DIST).filter((f) => f.endsWith(".js") && !nodeOnly.some((d) => f.startsWith(d)));
  expect(js.map((f) => f.slice(DIST.length + 1)).sort()).toContain("src/sdk/index.js");
  for (const f of js) {
    const text = readFileSync(f, "utf8");
    expect(text, f).not.toMatch(/from\s*["']node:|import\(\s*["']node:|require\(/);
    expect(text, f).not.toMatch(/\b(Buffer|process)\./);
  }
  expect(readFileSync(join(DIST, "src", "sdk", "index.d.ts"), "utf8")).toContain("sealToken");
});

it("imported by the package's name in plain Node (no tsx), seals a token that relays", async () => {
  const script = `
    import { sealToken, relayBaseURL } from "relayapi/sdk";
    const [issuerKey, relayUrl] = process.argv.slice(1);
    const token = await sealToken({ jti: "plain-node", prv: "openai", key: ${JSON.stringify(UPSTREAM_KEY)}, max: 1 }, issuerKey);
    const res = await fetch(relayBaseURL(relayUrl, "openai") + "/chat/completions", {
      method: "POST",
      headers: { authorization: "Bearer " + token, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] }),
    });
    console.log(res.status);`;
  const run = await runFile(process.execPath, ["--input-type=module", "-e", script, issuer.issuerKey, relay.url]);
  expect(run.stderr).toBe("");
  expect(run.stdout.trim()).toBe("200");
  expect((await relay.tokens.getToken({ id: "sdk-app:plain-node" })).token?.callsUsed).toBe(1n);
});

describe("createRelayClients (connect-web transport)", () => {
  it("admin calls with the admin key, IntrospectToken with the relay token", async () => {
    const token = await sdk.sealToken({ jti: "clients-1", prv: "openai", key: UPSTREAM_KEY, max: 3 }, issuer.issuerKey);
    const c = sdk.createRelayClients({ baseUrl: relay.url, token, adminKey: relay.adminKey });
    expect((await c.admin.listIssuers({})).issuers.map((i) => i.name)).toContain("sdk-app");
    expect((await c.tokens.introspectToken({})).token).toMatchObject({ id: "sdk-app:clients-1", callsLeft: 3n });
    const key = await sdk.createRelayClients({ baseUrl: relay.url }).tokens.getSealingKey({});
    expect(JSON.parse(key.jwk)).toMatchObject({ kty: "OKP", crv: "X25519" });
  });

  it("RelayService.Relay streams a chat completion: head, chunks, one end", async () => {
    const token = await sdk.sealToken({ jti: "clients-2", prv: "openai", key: UPSTREAM_KEY, max: 2 }, issuer.issuerKey);
    const { relay: rpc } = sdk.createRelayClients({ baseUrl: relay.url, token });
    const body = new TextEncoder().encode(JSON.stringify({ model: "gpt-mock", stream: true, messages: [{ role: "user", content: "hi" }] }));
    const parts: string[] = [];
    let text = "";
    let end: { outcome: number; callsLeft?: bigint } | undefined;
    for await (const m of rpc.relay({
      provider: "openai",
      method: "POST",
      path: "/v1/chat/completions",
      headers: [{ name: "content-type", value: "application/json" }],
      body,
    })) {
      parts.push(m.part.case ?? "");
      if (m.part.case === "chunk") text += new TextDecoder().decode(m.part.value.data);
      if (m.part.case === "end") end = m.part.value;
    }
    expect(parts[0]).toBe("head");
    expect(parts.filter((p) => p === "end")).toHaveLength(1);
    expect(text).toContain("tok0");
    expect(end).toMatchObject({ outcome: sdk.Outcome.COMPLETE, callsLeft: 1n });
  });
});

it("relayBaseURL gives the base URL each provider's SDK expects", () => {
  expect(sdk.relayBaseURL("https://relay.example/", "openai")).toBe("https://relay.example/api/openai/v1");
  expect(sdk.relayBaseURL("https://relay.example", "groq")).toBe("https://relay.example/api/groq/v1");
  expect(sdk.relayBaseURL("https://relay.example", "anthropic")).toBe("https://relay.example/api/anthropic");
  expect(sdk.relayBaseURL("https://relay.example", "gemini")).toBe("https://relay.example/api/gemini");
  expect(sdk.relayBaseURL("http://127.0.0.1:8080", "my-llm")).toBe("http://127.0.0.1:8080/api/my-llm");
  expect(() => sdk.relayBaseURL("relay.example", "openai")).toThrow(TypeError);
  expect(() => sdk.relayBaseURL("https://relay.example", "../admin")).toThrow(TypeError);
});

it("checks claims and keys at mint time, with a message", async () => {
  const k = issuer.issuerKey;
  const now = Math.floor(Date.now() / 1000);
  await expect(sdk.sealToken({ prv: "openai", key: "sk-x-123456", pool: "p" }, k)).rejects.toThrow(/exactly one of key and pool/);
  await expect(sdk.sealToken({ prv: "openai" }, k)).rejects.toThrow(/exactly one of key and pool/);
  await expect(sdk.sealToken({ prv: "openai", key: "sk-x-123456", exp: now - 1 }, k)).rejects.toThrow(/exp must be in the future/);
  await expect(sdk.sealToken({ prv: "openai", key: "sk-x-123456", jti: "a b" }, k)).rejects.toThrow(/jti/);
  await expect(sdk.sealToken({ prv: "openai", key: "sk-x-123456", max: 0 }, k)).rejects.toThrow(/max must be a positive integer/);
  await expect(sdk.sealToken({ prv: "Open AI", key: "sk-x-123456" }, k)).rejects.toThrow(/prv/);
  await expect(sdk.sealToken({ prv: "openai", key: "sk-x-123456" }, "kid_only")).rejects.toThrow(/<kid>:<secret>/);
  await expect(sdk.sealToken({ prv: "openai", key: "sk-x-123456" }, { kid: "k", secret: new Uint8Array(16) })).rejects.toThrow(/32-byte/);
  const jwk = JSON.parse((await relay.tokens.getSealingKey({})).jwk) as Record<string, unknown>;
  await expect(sdk.sealTokenForRelay({ prv: "openai", key: "sk-x-123456" }, { ...jwk, d: "private" })).rejects.toThrow(/public X25519/);
  await expect(sdk.sealTokenForRelay({ prv: "openai", key: "sk-x-123456" }, { ...jwk, kid: undefined })).rejects.toThrow(/no kid/);
});

describe("examples/backend-route.ts", () => {
  let server: Server;
  let url: string;
  beforeAll(async () => {
    const { tokenRoute } = await import("../examples/backend-route.js");
    const route = tokenRoute({
      relayUrl: relay.url,
      issuerKey: issuer.issuerKey,
      upstreamKey: UPSTREAM_KEY,
      maxCalls: 2,
      models: ["gpt-mock"],
      origins: ["http://app.test"],
    });
    server = createServer((req, res) => void route(req, res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("mints a per-user token that the openai SDK uses through the relay", async () => {
    const res = await fetch(`${url}/token`, { method: "POST", headers: { "x-demo-user": "alice" } });
    expect(res.status).toBe(200);
    const { token, baseURL } = (await res.json()) as { token: string; baseURL: string };
    expect(baseURL).toBe(`${relay.url}/api/openai/v1`);
    mock.reset();
    const client = new OpenAI({ apiKey: token, baseURL, maxRetries: 0, defaultHeaders: { origin: "http://app.test" } });
    const answer = await client.chat.completions.create({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] });
    expect(answer.choices[0]?.message.content).toContain("tok0");
    expect(mock.requests[0]?.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    const seen = (await createClientsFor(token).tokens.introspectToken({})).token;
    expect(seen).toMatchObject({ subject: "alice", callsUsed: 1n, callsLeft: 1n });
    expect(seen?.limits).toMatchObject({ models: ["gpt-mock"], origins: ["http://app.test"] });
    // Pinned: another model and another origin are refused before anything is counted.
    expect((await chat(relay, token, "gpt-other")).status).toBe(403);
    const elsewhere = await fetch(`${baseURL}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, origin: "http://evil.test", "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-mock", messages: [] }),
    });
    expect(elsewhere.status).toBe(403);
    expect((await createClientsFor(token).tokens.introspectToken({})).token?.callsUsed).toBe(1n);
  });

  it("answers 401 without a user and 405 for anything but POST", async () => {
    expect((await fetch(`${url}/token`, { method: "POST" })).status).toBe(401);
    expect((await fetch(`${url}/token`)).status).toBe(405);
  });
});

function createClientsFor(token: string) {
  return sdk.createRelayClients({ baseUrl: relay.url, token });
}
