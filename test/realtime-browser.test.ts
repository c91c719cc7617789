/**
 * A Realtime session from a page in headless Chromium (issue 25), opened with the SDK's
 * `openRealtimeSocket` (src/sdk/realtime-socket.ts, bundled from source by esbuild as an app's
 * bundler would): the browser's own WebSocket carries the token as a subprotocol, gets the
 * `realtime` protocol back, exchanges events with the mock provider through the relay; a token
 * pinned to another origin is refused at the upgrade. Skipped without /usr/bin/chromium unless
 * RELAYAPI_REQUIRE_BROWSER=1 (as test/dpop-browser.test.ts).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { startMockRealtime, type MockRealtime } from "./support/mock-realtime.js";
import { startRelay, UPSTREAM_KEY, type TestRelay } from "./support/relay.js";
import { CHROMIUM, CHROMIUM_ARGS, HAVE_BROWSER, REQUIRE_BROWSER } from "./support/chromium.js";
import { waitFor } from "./support/wait.js";

const ARGS = CHROMIUM_ARGS;

const PAGE = `<!doctype html><meta charset="utf-8"><title>realtime</title>
<script type="module">
import { openRealtimeSocket } from "/sdk.js";
window.talk = (relayUrl, token) => new Promise((resolve) => {
  const types = [];
  const ws = openRealtimeSocket({ relayUrl, token, model: "gpt-realtime" });
  ws.onmessage = (e) => {
    const event = JSON.parse(e.data);
    types.push(event.type);
    if (event.type === "session.created") ws.send(JSON.stringify({ type: "response.create" }));
    if (event.type === "response.done") ws.close(1000);
  };
  ws.onclose = (e) => resolve({ types, code: e.code, protocol: ws.protocol });
});
window.ready = true;
</script>`;

describe.skipIf(!HAVE_BROWSER && !REQUIRE_BROWSER)("a Realtime session from a page", () => {
  let mock: MockRealtime;
  let relay: TestRelay;
  let server: Server;
  let appUrl: string;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    if (!HAVE_BROWSER) throw new Error(`RELAYAPI_REQUIRE_BROWSER=1 but ${CHROMIUM} is missing (apt-get install chromium)`);
    mock = await startMockRealtime();
    relay = await startRelay({ config: { providerBaseUrls: { openai: mock.url } } });
    const { build } = await import("esbuild");
    const sdk = await build({
      entryPoints: [join(import.meta.dirname, "..", "src", "sdk", "index.ts")],
      bundle: true,
      write: false,
      format: "esm",
      platform: "browser",
      target: "es2022",
      define: { process: "undefined" },
      logLevel: "silent",
    });
    server = createServer((req, res) => {
      if (req.url === "/sdk.js") res.writeHead(200, { "content-type": "text/javascript" }).end(sdk.outputFiles[0]!.contents);
      else res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(PAGE);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    appUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 30_000 });
    page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(10_000);
    await page.goto(appUrl);
    await page.waitForFunction(() => (window as { ready?: boolean }).ready === true);
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await relay?.close();
    await mock?.close();
  });

  const talk = (token: string) =>
    page.evaluate(
      ([url, t]) => (window as unknown as { talk(u: string, t: string): Promise<{ types: string[]; code: number; protocol: string }> }).talk(url!, t!),
      [relay.url, token],
    );

  it("opens through openRealtimeSocket with the token as a subprotocol and exchanges events both ways", async () => {
    const { secret, id } = await relay.issue({ limits: { models: ["gpt-realtime"], origins: [appUrl] } });
    const got = await talk(secret);
    expect(got).toEqual({ types: ["session.created", "response.created", "response.output_text.delta", "response.done"], code: 1000, protocol: "realtime" });
    const seen = mock.sessions.at(-1)!;
    expect(seen.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(JSON.stringify(seen.headers)).not.toContain(secret);
    await waitFor(() => relay.calls.some((c) => c.tokenId === id), 3000, "the session's record");
    expect(relay.calls.find((c) => c.tokenId === id)!.outcome).toBe(Outcome.COMPLETE);
  });

  it("a token pinned to another origin is refused at the upgrade; nothing reaches the provider", async () => {
    const { secret } = await relay.issue({ limits: { origins: ["https://elsewhere.example"] } });
    const before = mock.sessions.length;
    const got = await talk(secret);
    expect(got.types).toEqual([]);
    expect(got.code).toBe(1006);
    expect(mock.sessions.length).toBe(before);
  });
});
