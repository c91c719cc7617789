/**
 * The console playground's Realtime mode (issue 25, item 4) in headless Chromium: the page, as
 * built from the current sources, opens a session through the relay with the SDK's
 * `openRealtimeSocket` (the token as a subprotocol, under the console's CSP), sends a text
 * message and `response.create`, shows the mock's text delta and closes with 1000. The mock
 * Realtime server sees the upstream key, the model and the message, never the relay token.
 * Skipped without /usr/bin/chromium unless RELAYAPI_REQUIRE_BROWSER=1 (as test/console.test.ts).
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { CHROMIUM, CHROMIUM_ARGS, HAVE_BROWSER, REQUIRE_BROWSER } from "./support/chromium.js";
import { startMockRealtime, type MockRealtime } from "./support/mock-realtime.js";
import { startRelay, UPSTREAM_KEY, type TestRelay } from "./support/relay.js";
import { waitFor } from "./support/wait.js";

const ROOT = join(import.meta.dirname, "..");

describe.skipIf(!HAVE_BROWSER && !REQUIRE_BROWSER)("the playground's Realtime session", () => {
  let mock: MockRealtime;
  let relay: TestRelay;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    if (!HAVE_BROWSER) throw new Error(`RELAYAPI_REQUIRE_BROWSER=1 but ${CHROMIUM} is missing (apt-get install chromium)`);
    // The console as `npm install` builds it, from the current sources.
    execFileSync(process.execPath, [join(ROOT, "scripts", "build-console.js")], { cwd: ROOT, stdio: "pipe" });
    mock = await startMockRealtime();
    relay = await startRelay({ config: { providerBaseUrls: { openai: mock.url } } });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30_000 });
    page = await (await browser.newContext({ locale: "en-US" })).newPage();
    page.setDefaultTimeout(10_000);
  });
  afterAll(async () => {
    await browser?.close();
    await relay?.close();
    await mock?.close();
  });

  it("holds a short text session and shows the text delta", async () => {
    const { secret, id } = await relay.issue({ subject: "voice-user", limits: { models: ["gpt-realtime"] } });
    const refused: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error") refused.push(m.text());
    });
    await page.goto(`${relay.url}/console/playground`);
    await page.getByLabel("Relay token").fill(secret);
    await page.getByLabel("Message").fill("Say hello");
    await page.getByRole("button", { name: "Start session" }).click();

    await expect.poll(() => page.getByTestId("realtime-status").textContent(), { timeout: 10_000 }).toMatch(/Closed \(code 1000\)/);
    expect(refused, "no CSP or socket error in the page").toEqual([]);
    expect(await page.getByTestId("realtime-text").textContent()).toBe("Hello from the mock");
    expect(await page.getByTestId("realtime-status").textContent()).toContain("10 input + 5 output tokens");
    expect(await page.getByTestId("realtime-events").locator("li").allTextContents()).toEqual([
      "session.created",
      "response.created",
      "response.output_text.delta",
      "response.done",
    ]);

    const session = mock.sessions.at(-1)!;
    expect(session.query.get("model")).toBe("gpt-realtime");
    expect(session.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(JSON.stringify(session.headers)).not.toContain(secret);
    expect(session.received.map((m) => (JSON.parse(m) as { type: string }).type)).toEqual(["conversation.item.create", "response.create"]);
    expect(session.received[0]).toContain("Say hello");
    await waitFor(() => relay.calls.some((c) => c.tokenId === id), 3000, "the session's record");
    expect(relay.calls.find((c) => c.tokenId === id)!.outcome).toBe(Outcome.COMPLETE);
  });
});
