/**
 * Proof of possession in a real browser (RFC 9449, issue 9). In headless Chromium (Debian's
 * `chromium` driven by playwright-core), examples/browser-dpop.html makes a non-extractable key
 * kept in IndexedDB (the SDK's browserDpopKey: same key after a reload, a new one after
 * rotation), gets a token bound to it from examples/backend-route.ts and streams an answer
 * through the relay with the openai SDK and dpopFetch, with server nonces on (so the relay's
 * CORS must expose `DPoP-Nonce` to the page). The token, handed to Node, is refused there:
 * alone, and with a proof from another key. Without a browser, the Node-side checks of the
 * route still run.
 *
 * Without /usr/bin/chromium the browser suite is skipped with a reason, unless
 * RELAYAPI_REQUIRE_BROWSER=1 (set by .ci/run), which makes that a failure.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { demoApp, tokenRoute } from "../examples/backend-route.js";
import { browserDpopKey, forgetBrowserDpopKey } from "../src/sdk/browser-key.js";
import { createDpopProof, dpopFetch, generateDpopKeyPair, publicDpopJwk } from "../src/sdk/dpop-fetch.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { createIssuer } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";
import { CHROMIUM, CHROMIUM_ARGS, HAVE_BROWSER, REQUIRE_BROWSER } from "./support/chromium.js";

const ARGS = CHROMIUM_ARGS;

if (!HAVE_BROWSER && !REQUIRE_BROWSER) {
  console.warn(
    `[skip] test/dpop-browser.test.ts browser suite skipped: ${CHROMIUM} is missing (apt-get install chromium; RELAYAPI_REQUIRE_BROWSER=1 fails instead)`,
  );
}

const { relay, mock } = useRelay({ config: { dpopNonces: true } });
let server: Server;
let appUrl: string;

beforeAll(async () => {
  // Nonces on: the page's first call gets a 401 with DPoP-Nonce and must read it. The public
  // origin is the relay's own URL (its fallback when RELAYAPI_PUBLIC_ORIGIN is unset).
  const issuer = await createIssuer(relay, "dpop-browser");
  server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  appUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const route = tokenRoute({
    relayUrl: relay.url,
    issuerKey: issuer.issuerKey,
    upstreamKey: UPSTREAM_KEY,
    maxCalls: 10,
    models: ["gpt-4o-mini"],
    origins: [appUrl],
  });
  server.on("request", demoApp(route));
});
afterAll(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
});

const chatUrl = () => `${relay.url}/api/openai/v1/chat/completions`;
const chatBody = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });

/** POST /token as the demo user, with `body` as it is. */
const mint = (body?: string, headers: Record<string, string> = {}) =>
  fetch(`${appUrl}/token`, { method: "POST", headers: { "x-demo-user": "alice", "content-type": "application/json", ...headers }, body });

/** The token, replayed from Node as a thief would: right origin, its own (or no) proof. */
async function replay(token: string, proof?: string): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, origin: appUrl, "content-type": "application/json" };
  if (proof) headers.dpop = proof;
  return fetch(chatUrl(), { method: "POST", headers, body: chatBody });
}

/** A bound token refused without its key: alone, and with a valid proof from another key. */
async function expectRefusedWithoutKey(token: string): Promise<void> {
  const alone = await replay(token);
  expect(alone.status).toBe(401);
  expect(alone.headers.get("www-authenticate")).toMatch(/^DPoP error=/);
  const nonce = alone.headers.get("dpop-nonce");
  expect(nonce).toBeTruthy();
  const stranger = await generateDpopKeyPair();
  const forged = await replay(token, await createDpopProof(stranger, "POST", chatUrl(), token, nonce!));
  expect(forged.status).toBe(401);
  expect(forged.headers.get("www-authenticate")).toMatch(/^DPoP error=/);
}

describe("examples/backend-route.ts binds tokens to a posted public key", () => {
  it("mints a bound token that only the key's holder can spend, and keeps minting bearer tokens without a body", async () => {
    const keys = await generateDpopKeyPair();
    const res = await mint(JSON.stringify({ dpopKey: await publicDpopJwk(keys.publicKey) }));
    expect(res.status).toBe(200);
    const { token, baseURL } = (await res.json()) as { token: string; baseURL: string };
    await expectRefusedWithoutKey(token);
    const client = new OpenAI({ apiKey: token, baseURL, maxRetries: 0, fetch: dpopFetch(keys), defaultHeaders: { origin: appUrl } });
    const answer = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
    expect(answer.choices[0]?.message.content).toContain("tok0");
    // No body, or a body without dpopKey: a plain bearer token, as before.
    for (const body of [undefined, "{}"]) {
      const plain = (await (await mint(body)).json()) as { token: string };
      expect((await replay(plain.token)).status).toBe(200);
    }
  });

  it("refuses a private key, other key types, a key off the curve, bad JSON and a large body", async () => {
    const withPrivate = await generateDpopKeyPair(true);
    const { exportJWK } = await import("jose");
    const privateJwk = await exportJWK(withPrivate.privateKey);
    const pub = await publicDpopJwk(withPrivate.publicKey);
    const cases: [string, number, RegExp][] = [
      [JSON.stringify({ dpopKey: privateJwk }), 400, /public key/],
      [JSON.stringify({ dpopKey: { kty: "RSA", n: "abc", e: "AQAB" } }), 400, /P-256 or OKP Ed25519/],
      [JSON.stringify({ dpopKey: { kty: "oct", k: "c2VjcmV0" } }), 400, /P-256 or OKP Ed25519/],
      [JSON.stringify({ dpopKey: { ...pub, y: pub.x } }), 400, /not a valid public key/],
      [JSON.stringify({ dpopKey: "jwk" }), 400, /JWK object/],
      [JSON.stringify([pub]), 400, /JSON object/],
      ["{", 400, /JSON/],
      [JSON.stringify({ dpopKey: { ...pub, pad: "x".repeat(4096) } }), 413, /over 2048 bytes/],
    ];
    for (const [body, status, message] of cases) {
      const res = await mint(body);
      expect(res.status, body.slice(0, 80)).toBe(status);
      expect(((await res.json()) as { error: string }).error).toMatch(message);
    }
  });

  it("lets a browser read DPoP-Nonce and WWW-Authenticate on a cross-origin 401", async () => {
    const res = await fetch(chatUrl(), { method: "POST", headers: { authorization: "Bearer nope", origin: appUrl }, body: chatBody });
    const exposed = (res.headers.get("access-control-expose-headers") ?? "").split(/,\s*/);
    expect(res.headers.get("access-control-allow-origin")).toBe(appUrl);
    expect(exposed).toEqual(expect.arrayContaining(["dpop-nonce", "www-authenticate"]));
    const preflight = await fetch(chatUrl(), {
      method: "OPTIONS",
      headers: { origin: appUrl, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type, dpop" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-headers")).toContain("dpop");
  });

  it("browserDpopKey says clearly that it needs IndexedDB outside a browser", async () => {
    await expect(browserDpopKey()).rejects.toThrow(/needs IndexedDB/);
    await expect(forgetBrowserDpopKey()).rejects.toThrow(/needs IndexedDB/);
  });
});

describe.skipIf(!HAVE_BROWSER && !REQUIRE_BROWSER)("examples/browser-dpop.html in Chromium", () => {
  let browser: Browser;
  let page: Page;
  /** Every answer from the relay's HTTP layer that the page saw: method, path and status. */
  const seen: string[] = [];

  interface Demo {
    relayDemo?: { ready: boolean; ask(prompt: string): Promise<string>; keys(): CryptoKeyPair; session(): { token: string } | undefined };
  }

  beforeAll(async () => {
    if (!HAVE_BROWSER) throw new Error(`RELAYAPI_REQUIRE_BROWSER=1 but ${CHROMIUM} is missing (apt-get install chromium)`);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 30_000 });
    page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(10_000);
    page.on("response", (r) => {
      const u = new URL(r.url());
      if (u.origin === relay.url && u.pathname.startsWith("/api/")) seen.push(`${r.request().method()} ${u.pathname} ${r.status()}`);
    });
  });
  afterAll(async () => {
    await browser?.close();
  });

  async function open(): Promise<void> {
    await page.goto(`${appUrl}/dpop`);
    await page.waitForFunction(() => (window as Demo).relayDemo?.ready === true);
  }

  /** What the page and its IndexedDB hold about the key, read in the page. */
  const keyFacts = () =>
    page.evaluate(async () => {
      const { privateKey, publicKey } = (window as Demo).relayDemo!.keys();
      const stored = await new Promise<{ privateKey: CryptoKey; publicKey: CryptoKey }>((resolve, reject) => {
        const open = indexedDB.open("relayapi-dpop");
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const get = open.result.transaction("keys").objectStore("keys").get("default");
          get.onsuccess = () => resolve(get.result);
          get.onerror = () => reject(get.error);
        };
      });
      const exportRefused = await crypto.subtle.exportKey("jwk", privateKey).then(
        () => false,
        (e: unknown) => (e as Error).name,
      );
      return {
        jkt: document.getElementById("jkt")!.textContent,
        extractable: privateKey.extractable,
        algorithm: `${privateKey.algorithm.name} ${(privateKey.algorithm as EcKeyAlgorithm).namedCurve}`,
        exportRefused,
        storedIsCryptoKey: stored.privateKey instanceof CryptoKey,
        storedExtractable: stored.privateKey.extractable,
        storedPublicJwk: JSON.stringify(await crypto.subtle.exportKey("jwk", stored.publicKey)),
        publicJwk: JSON.stringify(await crypto.subtle.exportKey("jwk", publicKey)),
      };
    });

  it("makes a non-extractable key kept in IndexedDB, the same after a reload, streams a bound call, and the token alone is refused from Node", async () => {
    await open();
    const first = await keyFacts();
    expect(first).toMatchObject({
      extractable: false,
      algorithm: "ECDSA P-256",
      exportRefused: "InvalidAccessError",
      storedIsCryptoKey: true,
      storedExtractable: false,
    });
    expect(first.jkt).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(first.storedPublicJwk).toBe(first.publicJwk);

    await page.reload();
    await page.waitForFunction(() => (window as Demo).relayDemo?.ready === true);
    expect((await keyFacts()).jkt).toBe(first.jkt); // loaded from IndexedDB, not made again

    // Through the UI: the page mints a bound token and streams with the openai SDK + dpopFetch.
    mock.reset();
    seen.length = 0;
    await page.fill("#prompt", "Count for me");
    await page.click("#ask");
    await expect.poll(() => page.textContent("#answer"), { timeout: 10_000 }).toContain("tok4");
    expect(await page.textContent("#status")).toBe("");
    // The first call got the server nonce from a 401 (readable only through CORS's exposed
    // headers) and the retry with it streamed.
    expect(seen).toEqual(["POST /api/openai/v1/chat/completions 401", "POST /api/openai/v1/chat/completions 200"]);
    expect(mock.requests).toHaveLength(1);
    expect(mock.requests[0]!.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(mock.requests[0]!.headers.dpop).toBeUndefined(); // the proof stays at the relay

    // The token handed to Node, without the browser's key, is worth nothing.
    const token = await page.evaluate(() => (window as Demo).relayDemo!.session()!.token);
    await expectRefusedWithoutKey(token);
    // While the page, holding the key, keeps spending it (with the nonce it already has).
    seen.length = 0;
    expect(await page.evaluate(() => (window as Demo).relayDemo!.ask("again"))).toContain("tok4");
    expect(seen).toEqual(["POST /api/openai/v1/chat/completions 200"]);
    expect(mock.requests).toHaveLength(2);
  });

  it("rotates the key: a new one in IndexedDB, and a new token bound to it", async () => {
    const before = await keyFacts();
    const oldToken = await page.evaluate(() => (window as Demo).relayDemo!.session()?.token);
    await page.click("#rotate");
    await expect.poll(async () => (await keyFacts()).jkt).not.toBe(before.jkt);
    const after = await keyFacts();
    expect(after).toMatchObject({ extractable: false, storedExtractable: false });
    expect(after.storedPublicJwk).toBe(after.publicJwk);
    expect(await page.evaluate(() => (window as Demo).relayDemo!.ask("rotated"))).toContain("tok4");
    const newToken = await page.evaluate(() => (window as Demo).relayDemo!.session()!.token);
    expect(newToken).not.toBe(oldToken);
    await expectRefusedWithoutKey(newToken);
  });

  it("keeps one key per name when two callers make it at once, and separate keys per name", async () => {
    // A string, not a function: vitest would rewrite a function's import() for Node. The page's
    // import map resolves "relayapi/sdk".
    const jkts = await page.evaluate<string[]>(`(async () => {
      const sdk = await import("relayapi/sdk");
      const made = await Promise.all([sdk.browserDpopKey({ name: "race" }), sdk.browserDpopKey({ name: "race" }), sdk.browserDpopKey({ name: "other" })]);
      const again = await sdk.browserDpopKey({ name: "race" });
      return Promise.all([...made, again].map((k) => sdk.jwkThumbprint(k.publicKey)));
    })()`);
    expect(jkts[1]).toBe(jkts[0]);
    expect(jkts[3]).toBe(jkts[0]);
    expect(jkts[2]).not.toBe(jkts[0]);
  });
});
