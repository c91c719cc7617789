/**
 * The admin console and the playground (issue 7). The static route and the console's pure
 * modules are checked in Node; the pages run in a real headless Chromium (Debian's `chromium`
 * driven by playwright-core) against the real relay and the mock provider: the playground
 * streams token by token, an admin signs in, issues, lists and revokes a token, imports keys,
 * manages issuers and providers, watches a live usage event, and no secret outlives its
 * one-time display in the DOM or in storage. Text chosen by others (a subject with a right-to-left
 * override, a 256-character subject, a 300-character model name with control characters) is
 * isolated in <bdi dir=auto>, clipped, and widens no card (issue 18, finding 7). Screenshots of
 * every page at 1280 and 390 px go to test/.artifacts/screenshots/ for review.
 *
 * Without /usr/bin/chromium the browser suites are skipped with a reason, unless
 * RELAYAPI_REQUIRE_BROWSER=1 (set by .ci/run), which makes that a failure.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dictionaries } from "../console/src/i18n.js";
import { SseParser, textOf, type Shape } from "../console/src/sse.js";
import { CONSOLE_CSP, createConsoleHandler } from "../src/http/console-route.js";
import { startRelay } from "./support/relay.js";
import { useRelay } from "./support/use-relay.js";
import { CHROMIUM, CHROMIUM_ARGS, HAVE_BROWSER, REQUIRE_BROWSER } from "./support/chromium.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SHOTS = join(ROOT, "test", ".artifacts", "screenshots");
const ARGS = CHROMIUM_ARGS;
const WIDTHS = [1280, 390] as const;
const rand = () => Math.random().toString(36).slice(2, 10);

if (!HAVE_BROWSER && !REQUIRE_BROWSER) {
  console.warn(
    `[skip] test/console.test.ts browser suites skipped: ${CHROMIUM} is missing (apt-get install chromium; RELAYAPI_REQUIRE_BROWSER=1 fails instead)`,
  );
}

/** Builds the console from the current sources, as `npm install` does. */
function buildConsole(): void {
  execFileSync(process.execPath, [join(ROOT, "scripts", "build-console.js")], { cwd: ROOT, stdio: "pipe" });
}

/** A raw GET, so `..` and odd encodings reach the server unnormalised. */
function rawGet(base: string, path: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method: "GET" }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.end();
  });
}

// One relay (PGlite) and one mock provider for the whole file, on a console built from the
// current sources.
const { relay, mock } = useRelay({ mock: { chunks: 5 } });
beforeAll(async () => {
  buildConsole();
});

describe("console: static route", () => {
  it("serves index.html for /console and every app route, with a strict CSP and nosniff", async () => {
    for (const path of ["/console", "/console/", "/console/playground", "/console/tokens", "/console/usage/deep/link"]) {
      const res = await rawGet(relay.url, path);
      expect(res.status, path).toBe(200);
      expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
      expect(res.headers["content-security-policy"]).toBe(CONSOLE_CSP);
      expect(CONSOLE_CSP).toContain("default-src 'self'; connect-src 'self'");
      expect(res.headers["x-content-type-options"]).toBe("nosniff");
      expect(res.headers["cache-control"]).toBe("no-cache");
      expect(res.body).toContain('<div id="app">');
      expect(res.body).not.toMatch(/https?:\/\//); // nothing from a CDN
    }
  });

  it("serves the hashed assets with their content types, cacheable for good", async () => {
    const html = (await rawGet(relay.url, "/console")).body;
    const js = /src="(\/console\/assets\/app-[^"]+\.js)"/.exec(html)?.[1];
    const css = /href="(\/console\/assets\/styles-[^"]+\.css)"/.exec(html)?.[1];
    expect(js).toBeDefined();
    expect(css).toBeDefined();
    const jsRes = await rawGet(relay.url, js!);
    expect(jsRes.status).toBe(200);
    expect(jsRes.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(jsRes.headers["cache-control"]).toContain("immutable");
    expect(jsRes.headers["x-content-type-options"]).toBe("nosniff");
    const cssRes = await rawGet(relay.url, css!);
    expect(cssRes.headers["content-type"]).toBe("text/css; charset=utf-8");
    expect((await rawGet(relay.url, "/console/assets/favicon.svg")).headers["content-type"]).toBe("image/svg+xml");
  });

  it("never leaves dist/console and answers 404 JSON for what is not there", async () => {
    for (const path of [
      "/console/../package.json",
      "/console/assets/../../../package.json",
      "/console/assets/..%2f..%2f..%2fpackage.json",
      "/console/%2e%2e/%2e%2e/package.json",
      "/console/assets/%00.js",
      "/console/assets/..%5c..%5cpackage.json",
      "/console/assets/nope.js",
      "/console/missing.png",
    ]) {
      const res = await rawGet(relay.url, path);
      expect(res.status, path).toBe(404);
      expect(JSON.parse(res.body)).toEqual({ error: { message: "not found", type: "invalid_request_error", code: "not_found" } });
      expect(res.body).not.toContain('"name": "relayapi"');
    }
    expect((await rawGet(relay.url, "/consoleX")).status).toBe(404); // not a console path: Connect's 404
  });

  it("says how to build the console when it is missing (503)", async () => {
    const empty = mkdtempSync(join(tmpdir(), "relayapi-console-"));
    const serve = createConsoleHandler(empty);
    const server: Server = createServer((req, res) => void serve(req, res, new URL(req.url ?? "/", "http://x").pathname));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      for (const path of ["/console", "/console/playground", "/console/assets/app.js"]) {
        const res = await rawGet(base, path);
        expect(res.status, path).toBe(503);
        expect(res.headers["content-type"]).toBe("text/plain; charset=utf-8");
        expect(res.body).toContain("npm run build:console");
      }
    } finally {
      server.close();
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe("console: SSE parsing and dictionaries", () => {
  const enc = new TextEncoder();
  /** Feeds `text` to a parser in pieces of `size` bytes (splitting UTF-8 and CRLF) and joins the answer. */
  function answer(shape: Shape, text: string, size: number): string {
    const bytes = enc.encode(text);
    const p = new SseParser();
    let out = "";
    for (let i = 0; i < bytes.length; i += size) for (const ev of p.push(bytes.subarray(i, i + size))) out += textOf(shape, ev);
    for (const ev of p.end()) out += textOf(shape, ev);
    return out;
  }
  const streams: Record<Shape, string> = {
    openai:
      'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"你好"}}]}\n\n' +
      'data: {"choices":[{"index":0,"delta":{"content":", world"}}]}\r\n\r\n' +
      'data: {"choices":[],"usage":{"total_tokens":3}}\n\ndata: [DONE]\n\n',
    anthropic:
      'event: message_start\ndata: {"type":"message_start","message":{}}\n\n' +
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"你好"}}\n\n' +
      ': a comment\nevent: content_block_delta\r\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", world"}}\r\n\r\n' +
      'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    gemini:
      'data: {"candidates":[{"content":{"parts":[{"text":"你"},{"text":"好"}],"role":"model"}}]}\n\n' +
      'data: {"candidates":[{"content":{"parts":[{"text":", world"}],"role":"model"},"finishReason":"STOP"}]}',
  };
  for (const shape of ["openai", "anthropic", "gemini"] as const) {
    it(`reads ${shape} answers split at any byte`, () => {
      for (const size of [1, 2, 3, 7, 64, 10_000]) expect(answer(shape, streams[shape], size), `${shape}/${size}`).toBe("你好, world");
    });
  }

  it("has every English string in Chinese too", () => {
    const en = Object.keys(dictionaries.en).sort();
    expect(Object.keys(dictionaries.zh).sort()).toEqual(en);
    for (const key of en) expect(dictionaries.zh[key as keyof typeof dictionaries.zh].trim(), key).not.toBe("");
  });
});

describe.skipIf(!HAVE_BROWSER && !REQUIRE_BROWSER)("console in Chromium", () => {
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    if (!HAVE_BROWSER) throw new Error(`RELAYAPI_REQUIRE_BROWSER=1 but ${CHROMIUM} is missing (apt-get install chromium)`);
    mkdirSync(SHOTS, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 30_000 });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-US" });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: relay.url });
    page = await context.newPage();
    page.setDefaultTimeout(10_000);
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** Full-page screenshots of the current page at both widths, back at 1280 after. */
  async function shoot(name: string): Promise<void> {
    for (const width of WIDTHS) {
      await page.setViewportSize({ width, height: width === 390 ? 844 : 900 });
      await page.waitForTimeout(300); // the usage charts redraw for the new width
      await page.screenshot({ path: join(SHOTS, `${name}-${width}.png`), fullPage: true });
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  }

  /** Everything the page holds: its markup, form values and both storages. */
  async function everything(): Promise<string> {
    return page.evaluate(() => {
      const values = Array.from(document.querySelectorAll("input, textarea, select")).map((e) => (e as HTMLInputElement).value);
      const store = (s: Storage) => Object.keys(s).map((k) => `${k}=${s.getItem(k) ?? ""}`);
      return [document.documentElement.outerHTML, ...values, ...store(sessionStorage), ...store(localStorage)].join("\n");
    });
  }

  async function expectNoSecrets(secrets: string[], where: string): Promise<void> {
    const all = await everything();
    for (const s of secrets) expect(all.includes(s), `${where}: a secret is still in the page or storage`).toBe(false);
  }

  async function go(label: string): Promise<void> {
    await page.locator("header nav").getByRole("link", { name: label, exact: true }).click();
    await page.getByRole("heading", { level: 1, name: label }).waitFor();
  }

  it("streams a playground answer token by token, then shows the outcome and calls left", async () => {
    const { secret } = await relay.issue({ subject: "play-user", limits: { maxCalls: 3n } });
    await page.goto(`${relay.url}/console/playground`);
    await page.getByLabel("Relay token").fill(secret);
    await page.getByRole("button", { name: "Check token" }).click();
    await expect.poll(() => page.getByText(/calls left: 3/).count()).toBe(1);
    await page.getByLabel("Prompt").fill("Count for me");
    await page.getByText("Advanced").click();
    await page.getByLabel("Extra request headers").fill("x-mock-delay-ms: 150\nx-mock-chunks: 8");
    // Record every change of the answer, and whether the `end` had arrived at that moment.
    await page.evaluate(() => {
      const answer = document.querySelector("[data-testid=answer]")!;
      const seen: { text: string; ended: boolean }[] = [];
      (window as unknown as { seen: typeof seen }).seen = seen;
      new MutationObserver(() => seen.push({ text: answer.textContent ?? "", ended: document.querySelector("[data-testid=end]") !== null })).observe(answer, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    });
    await page.getByRole("button", { name: "Send", exact: true }).click();
    const end = page.getByTestId("end");
    await end.waitFor({ timeout: 15_000 });
    const expected = Array.from({ length: 8 }, (_, i) => `tok${i} `).join("");
    expect(await page.getByTestId("answer").textContent()).toBe(expected);
    const seen = await page.evaluate(() => (window as unknown as { seen: { text: string; ended: boolean }[] }).seen);
    const growing = [...new Set(seen.filter((s) => !s.ended && s.text !== "").map((s) => s.text))];
    expect(growing.length, `the answer grew in steps before the end: ${JSON.stringify(growing)}`).toBeGreaterThanOrEqual(4);
    for (let i = 1; i < growing.length; i++) expect(growing[i]!.startsWith(growing[i - 1]!)).toBe(true);
    expect(growing[0]!.length).toBeLessThan(expected.length);
    const endText = (await end.textContent()) ?? "";
    expect(endText).toContain("complete");
    expect(endText).toContain("10 prompt + 8 completion = 18 tokens");
    expect(endText).toMatch(/Calls left\s*2/);
    await shoot("playground");

    // A bad token is said plainly.
    await page.getByLabel("Relay token").fill("rai_not-a-real-token");
    await page.getByRole("button", { name: "Send", exact: true }).click();
    await page.getByText("The relay token is invalid, expired or revoked.").waitFor();
  });

  it("signs in, issues, lists and revokes a token, manages pools, issuers and providers, and shows live usage", async () => {
    const upstreamKey = `sk-console-UPSTREAM-${rand()}${rand()}`;
    const subject = `console-user-${rand()}`;
    const poolKeys = [`sk-pool-A-${rand()}${rand()}`, `sk-pool-B-${rand()}${rand()}`];
    const secrets: string[] = [upstreamKey, ...poolKeys];

    // A wrong key says so; the right one signs in.
    await page.goto(`${relay.url}/console`);
    await page.getByLabel("Admin key").fill("rak_wrong-key");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("That admin key was not accepted").waitFor();
    await shoot("signin");
    await page.getByLabel("Admin key").fill(relay.adminKey);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { level: 1, name: "Tokens" }).waitFor();
    expect(new URL(page.url()).pathname).toBe("/console/tokens");
    expect(page.url()).not.toContain(relay.adminKey);

    // Issue a token with limits; its secret is shown once, with a ready-to-paste snippet.
    await page.getByText("Issue a token").click();
    await page.getByLabel("Provider API key").fill(upstreamKey);
    await page.getByLabel("Subject", { exact: true }).first().fill(subject);
    await page.getByLabel("Max calls").fill("7");
    await page.getByLabel("Allowed models").fill("gpt-4o-mini, gpt-4o");
    await page.getByLabel("Allowed path prefixes").fill("/v1/chat");
    await page.getByRole("button", { name: "Issue token" }).click();
    const once = page.getByTestId("secret-once");
    await once.waitFor();
    const tokenSecret = ((await once.getByTestId("secret-value").textContent()) ?? "").trim();
    expect(tokenSecret).toMatch(/^rai_[A-Za-z0-9]{38}$/);
    secrets.push(tokenSecret);
    await once.getByRole("button", { name: "Copy openai snippet" }).click();
    const snippet = await page.evaluate(() => navigator.clipboard.readText());
    expect(snippet).toContain(`baseURL: "${relay.url}/api/openai/v1"`);
    expect(snippet).toContain(`apiKey: "${tokenSecret}"`);
    expect(snippet).toContain(`model: "gpt-4o-mini"`);
    const row = page.locator("tr", { hasText: subject });
    await row.waitFor();
    expect(await row.textContent()).toContain("active");
    expect(await row.textContent()).toMatch(/0 \/ 7/);
    expect(await row.textContent()).not.toContain(upstreamKey);
    await shoot("tokens-issued");
    await once.getByRole("button", { name: "Done, hide it" }).click();
    await once.waitFor({ state: "detached" });
    await expectNoSecrets(secrets, "tokens after the one-time display");
    // A listed token's snippet has a placeholder: the secret is gone for good.
    await row.getByRole("button", { name: /^Copy openai snippet/ }).click();
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toContain("PASTE_THE_RELAY_TOKEN");
    expect(await page.evaluate(() => navigator.clipboard.readText())).toContain(`baseURL: "${relay.url}/api/openai/v1"`);

    // Filters: by subject finds it, by another status does not.
    await page.getByRole("search").getByLabel("Subject").fill(subject);
    await page.getByRole("search").getByLabel("Status").selectOption({ label: "revoked" });
    await page.getByRole("button", { name: "Apply filters" }).click();
    await page.getByText("No token matches these filters.").waitFor();
    await page.getByRole("search").getByLabel("Status").selectOption({ label: "Any" });
    await page.getByRole("button", { name: "Apply filters" }).click();
    await row.waitFor();

    // Revoke: Escape cancels the dialog, the button confirms.
    await row.getByRole("button", { name: /^Revoke/ }).click();
    await page.keyboard.press("Escape");
    await page.locator("dialog").waitFor({ state: "detached" });
    expect(await row.textContent()).toContain("active");
    await row.getByRole("button", { name: /^Revoke/ }).click();
    await page.locator("dialog").getByRole("button", { name: "Revoke" }).click();
    await expect.poll(async () => (await page.locator("tr", { hasText: subject }).textContent()) ?? "").toContain("revoked");
    await shoot("tokens");

    // Key pools: create one, import 3 keys with one duplicate, disable one; masked only.
    await go("Key pools");
    await page.getByText("No key pools yet").waitFor();
    const poolName = `console-pool-${rand()}`;
    await page.getByLabel("Name").fill(poolName);
    await page.getByRole("button", { name: "Create a pool" }).click();
    await page.getByRole("heading", { name: `Keys of ${poolName}` }).waitFor();
    await page.getByLabel("Keys to import, one per line").fill(`${poolKeys[0]}\n${poolKeys[1]}\n${poolKeys[0]}\n`);
    await page.getByRole("button", { name: "Import keys" }).click();
    await expect.poll(() => page.getByTestId("import-result").textContent()).toBe("2 added, 1 skipped, 0 failed");
    const keyRows = page.locator("tr[data-key-id]");
    await expect.poll(() => keyRows.count()).toBe(2);
    for (const text of await keyRows.allTextContents()) expect(text).toMatch(/sk-\.\.\.\w{4}/);
    await keyRows
      .first()
      .getByRole("button", { name: /^Disable/ })
      .click();
    await expect.poll(async () => (await keyRows.allTextContents()).filter((t) => t.includes("disabled")).length).toBe(1);
    await expect.poll(async () => (await page.locator(`tr[data-pool="${poolName}"]`).textContent()) ?? "").toContain("1 enabled of 2");
    await expectNoSecrets(secrets, "key pools");
    await shoot("pools");

    // Issuers: the secret is shown once, on create and on rotate.
    await go("Issuers");
    await page.getByText("No issuers yet").waitFor();
    const issuerName = `console-issuer-${rand()}`;
    await page.getByLabel("Name").fill(issuerName);
    await page.getByRole("button", { name: "Create an issuer" }).click();
    await once.waitFor();
    secrets.push(((await once.getByTestId("secret-value").textContent()) ?? "").trim());
    expect(secrets.at(-1)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await once.getByRole("button", { name: "Done, hide it" }).click();
    await page
      .locator(`tr[data-issuer="${issuerName}"]`)
      .getByRole("button", { name: `Rotate ${issuerName}` })
      .click();
    await once.waitFor();
    secrets.push(((await once.getByTestId("secret-value").textContent()) ?? "").trim());
    await once.getByRole("button", { name: "Done, hide it" }).click();
    await once.waitFor({ state: "detached" });
    await expect.poll(async () => page.locator(`tr[data-issuer="${issuerName}"] li`).count()).toBe(2);
    await expectNoSecrets(secrets, "issuers");
    await shoot("issuers");

    // Providers: built-ins listed, a custom one added.
    await go("Providers");
    await page.locator('tr[data-provider-id="openai"]').waitFor();
    const providerId = `console-llm-${rand()}`;
    await page.getByLabel("ID", { exact: true }).fill(providerId);
    await page.getByLabel("Base URL").fill("https://llm.internal.example");
    await page.getByRole("button", { name: "Save provider" }).click();
    await expect.poll(async () => (await page.locator(`tr[data-provider-id="${providerId}"]`).textContent()) ?? "").toContain("custom");
    await shoot("providers");

    // Usage: a relayed call shows up in the live feed, then in the chart.
    await go("Usage");
    await page.getByText("Calls this relay instance finishes appear here").waitFor();
    const live = await relay.issue({ subject: `live-user-${rand()}`, limits: { maxCalls: 10n } });
    secrets.push(live.secret);
    const feedItem = page.getByTestId("live-feed").locator("li", { hasText: live.id });
    for (let attempt = 0; attempt < 5 && (await feedItem.count()) === 0; attempt++) {
      // The feed subscribes when the page opens; a call made before that is not replayed, so retry.
      const res = await fetch(`${relay.url}/api/openai/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${live.secret}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
      });
      expect(res.status).toBe(200);
      await res.text();
      await feedItem
        .first()
        .waitFor({ timeout: 2_000 })
        .catch(() => {});
    }
    const itemText = (await feedItem.first().textContent()) ?? "";
    expect(itemText).toContain("complete");
    expect(itemText).toContain("openai");
    expect(itemText).toContain("HTTP 200");
    await page.locator("figure.chart-box svg rect").first().waitFor({ timeout: 10_000 });
    await expectNoSecrets(secrets, "usage");
    await shoot("usage");

    // Audit log: the actions above, newest first.
    await go("Audit log");
    const auditText = (await page.locator("table").textContent()) ?? "";
    for (const action of ["IssueToken", "RevokeToken", "CreateIssuer", "RotateIssuer", "UpsertProvider"]) expect(auditText).toContain(action);
    await expectNoSecrets(secrets, "audit log");
    await shoot("audit");

    // Chinese, then back; keyboard: the skip link is the first stop.
    await page.getByLabel("Language").selectOption("zh");
    await page.getByRole("heading", { level: 1, name: "审计日志" }).waitFor();
    await go("令牌");
    await shoot("tokens-zh");
    await page.getByLabel("语言").selectOption("en");
    await page.getByRole("heading", { level: 1, name: "Tokens" }).waitFor();
    await page.reload();
    await page.getByRole("heading", { level: 1, name: "Tokens" }).waitFor();
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Skip to content");

    // Sign out removes the key; a key that stops working sends the console back to sign-in.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByText("Signed out.").waitFor();
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await page.getByLabel("Admin key").fill(relay.adminKey);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { level: 1, name: "Tokens" }).waitFor();
    await page.evaluate(() => {
      for (const k of Object.keys(sessionStorage)) sessionStorage.setItem(k, "rak_changed-on-the-relay");
    });
    await go("Providers").catch(() => {});
    await page.getByText("Your admin key is no longer accepted").waitFor();
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await expectNoSecrets([...secrets, relay.adminKey], "after sign-out");
  });

  it("pages through the token list with Next and Previous (20 a page)", async () => {
    const subject = `paged-user-${rand()}`;
    for (let i = 0; i < 23; i++) await relay.issue({ subject });
    await page.goto(`${relay.url}/console`);
    await page.getByLabel("Admin key").fill(relay.adminKey);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { level: 1, name: "Tokens" }).waitFor();
    await page.getByRole("search").getByLabel("Subject").fill(subject);
    await page.getByRole("button", { name: "Apply filters" }).click();
    const rows = page.locator("tr[data-token-id]");
    const pager = page.getByRole("navigation", { name: "Pages" });
    await expect.poll(() => pager.textContent()).toContain("Page 1");
    expect(await rows.count()).toBe(20);
    const first = await rows.first().getAttribute("data-token-id");
    expect(await pager.getByRole("button", { name: "Previous" }).isDisabled()).toBe(true);
    await pager.getByRole("button", { name: "Next" }).click();
    await expect.poll(() => pager.textContent()).toContain("Page 2");
    expect(await rows.count()).toBe(3);
    expect(await pager.getByRole("button", { name: "Next" }).isDisabled()).toBe(true);
    await pager.getByRole("button", { name: "Previous" }).click();
    await expect.poll(() => pager.textContent()).toContain("Page 1");
    expect(await rows.first().getAttribute("data-token-id")).toBe(first);
    // New filters go back to the first page; a list that fits on one page has no pager.
    await page.getByRole("search").getByLabel("Subject").fill(`${subject}-none`);
    await page.getByRole("button", { name: "Apply filters" }).click();
    await page.getByText("No token matches these filters.").waitFor();
    expect(await pager.count()).toBe(0);
  });

  it("isolates and clips subjects, model names and key tails chosen by others, so none reorders or widens the page (issue 18, finding 7)", async () => {
    const RLO = "\u202E";
    // The relay refuses a 300-character subject (256 is its limit); the longest it takes is used.
    await expect(relay.issue({ subject: "S".repeat(300) })).rejects.toThrow(/at most 256 characters/);
    const spoofSubject = `spoof-${rand()}${RLO}gnp.exe`;
    const longSubject = `long-${rand()}-${RLO}${"W".repeat(300)}`.slice(0, 256);
    const sentModel = `gpt${RLO}-${"x".repeat(300)}\u0000-tail`;
    // As the usage writer stores it: control characters gone, others outside the safe set "_", 128 long.
    const storedModel = `gpt_-${"x".repeat(300)}`.slice(0, 128);
    const spoof = await relay.issue({ subject: spoofSubject, limits: { maxCalls: 20n } });
    const long = await relay.issue({ subject: longSubject, limits: { maxCalls: 20n } });
    // An inline key whose tail is a right-to-left override: its masked hint ends in it.
    const keyed = await relay.issue({ subject: `${RLO}keyed-${rand()}`, upstreamKey: `sk-hostile-${rand()}${rand()}${RLO}abc` });
    const hostile = [spoofSubject, longSubject, storedModel];

    // Signed out first, whatever the tests before left.
    await page.goto(`${relay.url}/console`);
    await page.evaluate(() => sessionStorage.clear());
    await page.goto(`${relay.url}/console`);
    await page.getByLabel("Admin key").fill(relay.adminKey);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { level: 1, name: "Tokens" }).waitFor();
    await go("Usage");
    await page.getByText("Calls this relay instance finishes appear here").waitFor();
    const feed = page.getByTestId("live-feed");
    for (const tok of [spoof, long]) {
      const item = feed.locator(`li[data-token-id="${tok.id}"]`);
      for (let attempt = 0; attempt < 5 && (await item.count()) === 0; attempt++) {
        const res = await fetch(`${relay.url}/api/openai/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${tok.secret}`, "content-type": "application/json" },
          body: JSON.stringify({ model: sentModel, messages: [{ role: "user", content: "hi" }] }),
        });
        expect(res.status).toBe(200);
        await res.text();
        await item
          .first()
          .waitFor({ timeout: 2_000 })
          .catch(() => {});
      }
      await item.first().waitFor();
    }
    await page.locator("figure.chart-box svg rect").first().waitFor({ timeout: 10_000 });

    // The live feed (WatchUsage) carries the stored, clipped model name, never the one sent.
    const spoofItem = feed.locator(`li[data-token-id="${spoof.id}"]`).first();
    const bdis = await spoofItem
      .locator("bdi")
      .evaluateAll((els) =>
        els.map((e) => ({ text: e.textContent, dir: e.getAttribute("dir"), clip: e.classList.contains("clip"), title: e.getAttribute("title") })),
      );
    expect(bdis).toContainEqual({ text: storedModel, dir: "auto", clip: true, title: `\u2068${storedModel}\u2069` });
    expect(bdis).toContainEqual({ text: spoofSubject, dir: "auto", clip: true, title: `\u2068${spoofSubject}\u2069` });
    expect(bdis).toContainEqual({ text: spoof.id, dir: "auto", clip: false, title: null });
    expect((await spoofItem.textContent()) ?? "").not.toContain(sentModel.slice(0, 10));
    // The long subject is cut with an ellipsis, not wrapped over lines; its tooltip has all of it.
    const longBdi = feed.locator(`li[data-token-id="${long.id}"]`).first().locator("bdi.clip", { hasText: longSubject });
    expect(
      await longBdi.evaluate((e) => ({
        cut: e.scrollWidth > e.clientWidth + 50,
        overflow: getComputedStyle(e).textOverflow,
        lines: Math.round(e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight)),
      })),
    ).toEqual({ cut: true, overflow: "ellipsis", lines: 1 });

    /** At both widths: every hostile string isolated as a whole, nothing wider than its card; then screenshots. */
    const checkAndShoot = async (name: string, mustShow: string[]): Promise<void> => {
      for (const width of WIDTHS) {
        await page.setViewportSize({ width, height: width === 390 ? 844 : 900 });
        await page.waitForTimeout(400); // the usage charts redraw for the new width
        const problems = await page.evaluate(
          ({ hostile, mustShow }) => {
            const out: string[] = [];
            const main = document.querySelector("main")!;
            // 1. Bidi isolation: a text node holding a hostile string (or any bidi control) sits in a
            //    <bdi>/dir=auto element whose text is that string alone, or (an SVG <title>, where
            //    no element can go) has it between FSI and PDI.
            const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
            const seen = new Set<string>();
            for (let n = walker.nextNode(); n; n = walker.nextNode()) {
              const text = n.textContent ?? "";
              const found = hostile.filter((x) => text.includes(x));
              if (found.length === 0 && !/[\u202A-\u202E\u2066-\u2069]/.test(text)) continue;
              found.forEach((x) => seen.add(x));
              const outside = text.replace(/\u2068[^\u2066-\u2069]*\u2069/g, "");
              if (!hostile.some((x) => outside.includes(x)) && !/[\u202A-\u202E\u2066-\u2069]/.test(outside)) continue;
              const iso = n.parentElement?.closest("bdi, [dir=auto]");
              if (!iso || !main.contains(iso)) out.push(`not isolated: ${JSON.stringify(text.slice(0, 40))} in <${n.parentElement?.tagName.toLowerCase()}>`);
              else if (found.some((x) => iso.textContent !== x)) out.push(`isolated with other text: ${JSON.stringify((iso.textContent ?? "").slice(0, 60))}`);
            }
            for (const x of mustShow) if (!seen.has(x)) out.push(`not shown: ${JSON.stringify(x.slice(0, 30))}`);
            // 2. Widths: nothing reaches past its card, no table needs a scroll bar, the page none.
            for (const card of Array.from(main.querySelectorAll(".card"))) {
              const box = card.getBoundingClientRect();
              if (card.scrollWidth > card.clientWidth + 1)
                out.push(`card "${card.querySelector("h2")?.textContent}" scrolls: ${card.scrollWidth} > ${card.clientWidth}`);
              for (const el of Array.from(card.querySelectorAll("*"))) {
                if (el.closest(".visually-hidden, .clip > *, svg > *")) continue;
                const r = el.getBoundingClientRect();
                if (r.width === 0 && r.height === 0) continue;
                if (r.right > box.right + 1 || r.left < box.left - 1)
                  out.push(
                    `<${el.tagName.toLowerCase()} class="${el.getAttribute("class") ?? ""}"> spans ${Math.round(r.left)}..${Math.round(r.right)} outside its card ${Math.round(box.left)}..${Math.round(box.right)}`,
                  );
              }
              for (const wrap of Array.from(card.querySelectorAll(".table-wrap, .chart-scroll"))) {
                if (wrap.scrollWidth > wrap.clientWidth + 1) out.push(`${wrap.className} scrolls: ${wrap.scrollWidth} > ${wrap.clientWidth}`);
              }
            }
            if (document.documentElement.scrollWidth > window.innerWidth)
              out.push(`page is ${document.documentElement.scrollWidth} px wide in ${window.innerWidth}`);
            return out;
          },
          { hostile, mustShow },
        );
        expect(problems, `${name} at ${width} px`).toEqual([]);
        await page.screenshot({ path: join(SHOTS, `${name}-${width}.png`), fullPage: true });
      }
      await page.setViewportSize({ width: 1280, height: 900 });
    };

    // Usage grouped by model, then by subject: the totals table and the legend hold them.
    const group = page.getByLabel("Group by");
    await group.selectOption({ label: "Model" });
    await page.locator("table bdi", { hasText: storedModel }).first().waitFor();
    await checkAndShoot("hostile-usage-model", [storedModel, spoofSubject, longSubject]);
    await group.selectOption({ label: "Subject" });
    await page.locator("table bdi", { hasText: longSubject }).first().waitFor();
    await checkAndShoot("hostile-usage-subject", [storedModel, spoofSubject, longSubject]);

    // The token list: subjects clipped and isolated, the key tail isolated.
    await go("Tokens");
    const keyedRow = page.locator(`tr[data-token-id="${keyed.id}"]`);
    await keyedRow.waitFor();
    const hint = await keyedRow.locator("code bdi", { hasText: "abc" }).evaluate((e) => ({ text: e.textContent, dir: e.getAttribute("dir") }));
    expect(hint).toEqual({ text: `sk-...${RLO}abc`, dir: "auto" });
    // In a table the long subject wraps and is cut after three lines (its column may be narrow).
    const longCell = page.locator(`tr[data-token-id="${long.id}"] td.subject bdi.clip`);
    expect(
      await longCell.evaluate((e) => ({
        cut: e.scrollHeight > e.clientHeight + 2,
        lines: Math.round(e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight)),
        title: e.getAttribute("title"),
      })),
    ).toEqual({
      cut: true,
      lines: 3,
      title: `\u2068${longSubject}\u2069`,
    });
    await checkAndShoot("hostile-tokens", [spoofSubject, longSubject]);
  });

  it("manages plans: creates one in dollars, edits it, offers it and a dollar budget when issuing, and deletes it with a forced confirm (issue 24)", async () => {
    const name = `console-plan-${rand()}`;
    const subject = `plan-user-${rand()}`;
    const upstreamKey = `sk-plan-UPSTREAM-${rand()}${rand()}`;
    const planOf = async () => (await relay.admin.listPlans({})).plans.find((p) => p.name === name);
    await page.goto(`${relay.url}/console/plans`);
    const h1 = page.locator("main h1");
    await h1.waitFor();
    if ((await h1.textContent()) !== "Plans") {
      await page.getByLabel("Admin key").fill(relay.adminKey);
      await page.getByRole("button", { name: "Sign in" }).click();
    }
    await page.getByRole("heading", { level: 1, name: "Plans" }).waitFor();

    // Create: dollars typed as dollars reach the relay as exact micro-dollars.
    await page.getByLabel("Name", { exact: true }).fill(name);
    await page.getByLabel("Calls per day", { exact: true }).fill("20");
    await page.getByLabel("US dollars per day", { exact: true }).fill("0.25");
    await page.getByLabel("US dollars per month", { exact: true }).fill("1.005");
    await page.getByLabel("Allowed models", { exact: true }).fill("gpt-4o-mini, gpt-4o");
    await page.getByRole("button", { name: "Create a plan" }).click();
    const row = page.locator(`tr[data-plan="${name}"]`);
    await row.waitFor();
    expect(await row.textContent()).toContain("20 / day");
    expect(await row.textContent()).toContain("$0.25 / day");
    expect(await row.textContent()).toContain("$1.005 / month");
    expect(await planOf()).toMatchObject({ callsPerDay: 20n, microUsdPerDay: 250_000n, microUsdPerMonth: 1_005_000n, models: ["gpt-4o-mini", "gpt-4o"] });
    await shoot("plans");

    // Edit: the form holds the plan; what is cleared is no longer a limit.
    await row.getByRole("button", { name: `Edit plan ${name}` }).click();
    expect(await page.getByLabel("US dollars per day", { exact: true }).inputValue()).toBe("0.25");
    await page.getByLabel("Calls per day", { exact: true }).fill("30");
    await page.getByLabel("US dollars per day", { exact: true }).fill("");
    await page.getByRole("button", { name: "Save plan" }).click();
    await expect.poll(async () => (await row.textContent()) ?? "").toContain("30 / day");
    const edited = await planOf();
    expect(edited).toMatchObject({ callsPerDay: 30n, microUsdPerMonth: 1_005_000n, models: ["gpt-4o-mini", "gpt-4o"] });
    expect(edited?.microUsdPerDay).toBeUndefined();

    // Issue: the form offers the plan and takes a budget in dollars.
    await go("Tokens");
    // The form opens by itself on an empty list (run alone, this test sees one).
    await page.locator("tr[data-token-id], p.empty").first().waitFor();
    if (!(await page.locator("details.issue").evaluate((d) => (d as HTMLDetailsElement).open))) await page.getByText("Issue a token").click();
    await page.getByLabel("Provider API key").fill(upstreamKey);
    await page.getByLabel("Subject", { exact: true }).first().fill(subject);
    await page.getByLabel("Plan", { exact: true }).selectOption(name);
    await page.getByLabel("Budget in US dollars", { exact: true }).fill("1.50");
    await page.getByRole("button", { name: "Issue token" }).click();
    const once = page.getByTestId("secret-once");
    await once.waitFor();
    await once.getByRole("button", { name: "Done, hide it" }).click();
    const { tokens } = await relay.tokens.listTokens({ subject });
    expect(tokens).toHaveLength(1);
    expect(tokens[0]).toMatchObject({ plan: name });
    expect(tokens[0]?.limits?.budgetMicroUsd).toBe(1_500_000n);
    await expectNoSecrets([upstreamKey], "tokens after issuing with a plan");

    // Delete: refused while the token names the plan; a second confirm forces it.
    await go("Plans");
    await row.getByRole("button", { name: `Delete plan ${name}` }).click();
    await page.locator("dialog").getByRole("button", { name: "Delete" }).click();
    const force = page.locator("dialog", { hasText: "still in use" });
    await force.waitFor();
    expect(await force.textContent()).toContain("1 live token(s)");
    await force.getByRole("button", { name: "Delete anyway" }).click();
    await row.waitFor({ state: "detached" });
    expect(await planOf()).toBeUndefined();
  });

  it("opens 'Issue a token' on an empty list, and shows refused requests by reason beside the usage charts (issue 21.10, 21.9)", async () => {
    // A relay of its own: the shared one has tokens by now.
    const fresh = await startRelay({ mock });
    try {
      // Refusals the relay counts: three bad tokens (401), two unpinned models (403).
      const call = (secret: string, model: string) =>
        fetch(`${fresh.url}/api/openai/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
          body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
        });
      for (let i = 0; i < 3; i++) expect((await call(`rai_bogus-${i}`, "gpt-mock")).status).toBe(401);
      await page.goto(`${fresh.url}/console`);
      await page.getByLabel("Admin key").fill(fresh.adminKey);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("heading", { level: 1, name: "Tokens" }).waitFor();
      await page.getByText("No tokens yet", { exact: false }).waitFor();
      expect(await page.locator("details.issue").evaluate((d) => (d as HTMLDetailsElement).open)).toBe(true);
      await expect.poll(() => page.getByLabel("Provider API key").isVisible()).toBe(true);

      const { secret } = await fresh.issue({ limits: { models: ["gpt-4o"] } });
      for (let i = 0; i < 2; i++) expect((await call(secret, "gpt-mock")).status).toBe(403);
      await go("Usage");
      const refusals = page.getByTestId("refusals");
      await refusals.locator("[data-reason=unauthenticated]").waitFor();
      const counts = await refusals
        .locator("tbody tr")
        .evaluateAll((rows) => rows.map((r) => [r.querySelector("[data-reason]")?.getAttribute("data-reason"), r.querySelector("td.num")?.textContent]));
      expect(counts).toEqual([
        ["unauthenticated", "3"],
        ["permission_denied", "2"],
      ]);
      await shoot("usage-refusals");
      // A list that is not empty keeps the form closed.
      await go("Tokens");
      await page.locator("tr[data-token-id]").first().waitFor();
      expect(await page.locator("details.issue").evaluate((d) => (d as HTMLDetailsElement).open)).toBe(false);
    } finally {
      await fresh.close();
    }
  });
});
