// Proxy hygiene of the HTTP layer: every token carrier of DESIGN 4 works and is stripped,
// browser and hop-by-hop headers stay at the relay, path tricks are refused before they reach
// the provider, the relay's body limit holds, and the call cap holds under concurrency.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { Agent, request } from "undici";
import { beforeEach, describe, expect, it } from "vitest";
import { expectNoSecret, h2Request, openaiError, rawRequest } from "./support/http.js";
import { startRelay, UPSTREAM_KEY } from "./support/relay.js";
import { useRelay } from "./support/use-relay.js";

const MAX_BODY = 1024;
const { relay, mock } = useRelay({ config: { maxBodyBytes: MAX_BODY } });
beforeEach(() => mock.reset());

const CHAT = "/api/openai/v1/chat/completions";
const chat = JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] });
const used = async (id: string) => (await relay.tokens.getToken({ id })).token!.callsUsed;
const CARRIER_HEADERS = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

describe("token carriers (DESIGN 4)", () => {
  const carriers: [string, (s: string) => { query: string; headers: Record<string, string> }][] = [
    ["Authorization: Bearer", (s) => ({ query: "", headers: { authorization: `Bearer ${s}` } })],
    ["authorization: bearer (any case)", (s) => ({ query: "", headers: { authorization: `bearer ${s}` } })],
    ["x-api-key", (s) => ({ query: "", headers: { "x-api-key": s } })],
    ["api-key", (s) => ({ query: "", headers: { "api-key": s } })],
    ["x-goog-api-key", (s) => ({ query: "", headers: { "x-goog-api-key": s } })],
    ["query key", (s) => ({ query: `?keep=1&key=${s}`, headers: {} })],
    ["query token", (s) => ({ query: `?token=${s}&keep=1`, headers: {} })],
  ];

  it.each(carriers)("%s: accepted, stripped, upstream key set in the provider's style", async (_name, make) => {
    const { secret, id } = await relay.issue();
    const { query, headers } = make(secret);
    const res = await request(relay.url + CHAT + query, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: chat });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    const rec = mock.requests[0]!;
    expectNoSecret(rec, secret);
    expect(rec.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    for (const h of CARRIER_HEADERS.slice(1)) expect(rec.headers[h]).toBeUndefined();
    expect(rec.query.has("key") || rec.query.has("token")).toBe(false);
    if (query) expect(rec.query.get("keep")).toBe("1");
    expect(await used(id)).toBe(1n);
  });

  it("Anthropic: a bearer token is dropped and x-api-key carries the upstream key", async () => {
    const { secret } = await relay.issue({ provider: "anthropic" });
    const res = await request(`${relay.url}/api/anthropic/v1/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "claude-mock", max_tokens: 8, messages: [{ role: "user", content: "hi" }] }),
    });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    const rec = mock.requests[0]!;
    expect(rec.headers["x-api-key"]).toBe(UPSTREAM_KEY);
    expect(rec.headers.authorization).toBeUndefined();
    expectNoSecret(rec, secret);
  });
});

describe("request headers that never go upstream", () => {
  it("cookies, host, origin, referer, forwarding and hop-by-hop headers are dropped", async () => {
    const { secret } = await relay.issue();
    const res = await rawRequest(relay.url, {
      method: "POST",
      target: CHAT,
      headers: {
        host: "relay.example:8443",
        authorization: `Bearer ${secret}`,
        "content-type": "application/json",
        cookie: "session=s3cret",
        origin: "https://app.example",
        referer: "https://app.example/page",
        "x-forwarded-for": "203.0.113.7",
        forwarded: "for=203.0.113.7",
        connection: "close, x-hop-secret",
        "x-hop-secret": "hop",
        "keep-alive": "timeout=5",
        te: "trailers",
        "proxy-authorization": "Basic Zm9vOmJhcg==",
        "x-passes": "yes",
      },
      body: chat,
    });
    expect(res.status).toBe(200);
    const rec = mock.requests[0]!;
    expect(rec.headers.host).toBe(new URL(mock.url).host);
    for (const h of ["cookie", "origin", "referer", "x-forwarded-for", "forwarded", "x-hop-secret", "keep-alive", "te", "proxy-authorization"]) {
      expect(rec.headers[h], h).toBeUndefined();
    }
    expect(rec.headers["x-passes"]).toBe("yes");
    expect(rec.headers["content-type"]).toBe("application/json");
    expect(rec.body.toString()).toBe(chat);
    expectNoSecret(rec, secret);
  });
});

describe("path tricks are refused with 400 and never reach the provider", () => {
  const targets = [
    "/api/openai/../x",
    "/api/openai/v1/../../admin",
    "/api/openai/./v1/chat/completions",
    "/api/openai/v1/chat/completions/..",
    "/api/openai/%2e%2e/x",
    "/api/openai/v1/%2E%2E/%2e%2e/x",
    "/api/openai/v1%2fchat/completions",
    "/api/openai/v1/%2F%2Fevil.com/x",
    "/api/openai//evil.com/",
    "/api/openai/v1/chat\\..\\x",
    "/api/openai/@evil.com/x",
    "/api/openai/v1/%5c%5cevil.com",
  ];

  it.each(targets)("%s", async (target) => {
    const { secret, id } = await relay.issue();
    const res = await rawRequest(relay.url, {
      method: "POST",
      target,
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: chat,
    });
    expect(res.status).toBe(400);
    expect(openaiError(res.body).code).toBe("bad_request");
    expect(mock.requests).toHaveLength(0);
    expect(await used(id)).toBe(0n);
  });

  it.each(["/api/../openai/v1/chat/completions", "/api/%2e%2e/x", "http://evil.com/api/openai/v1/chat/completions", "/api//evil.com/v1"])(
    "%s is refused without a 5xx",
    async (target) => {
      const { secret } = await relay.issue();
      const res = await rawRequest(relay.url, { method: "POST", target, headers: { authorization: `Bearer ${secret}` }, body: chat });
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect(mock.requests).toHaveLength(0);
    },
  );
});

describe("response framing", () => {
  it("a JSON answer keeps the provider's length (no chunking); an event stream is chunked", async () => {
    const { secret } = await relay.issue();
    const headers = { authorization: `Bearer ${secret}`, "content-type": "application/json" };
    const json = await rawRequest(relay.url, { method: "POST", target: CHAT, headers, body: chat });
    expect(json.status).toBe(200);
    expect(json.headers["transfer-encoding"]).toBeUndefined();
    expect(Number(json.headers["content-length"])).toBe(json.body.length);
    expect(JSON.parse(json.body.toString()).choices).toBeDefined();
    const sse = await rawRequest(relay.url, { method: "POST", target: CHAT, headers, body: JSON.stringify({ ...JSON.parse(chat), stream: true }) });
    expect(sse.status).toBe(200);
    expect(sse.headers["content-length"]).toBeUndefined();
    expect(sse.headers["transfer-encoding"]).toBe("chunked");
  });
  it("an event stream whose first event is slow starts at once: its headers do not wait for it", async () => {
    const FIRST_EVENT_MS = 800;
    const slow = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.flushHeaders();
      setTimeout(() => res.end('data: {"choices":[]}\n\ndata: [DONE]\n\n'), FIRST_EVENT_MS);
    });
    await new Promise<void>((r) => slow.listen(0, "127.0.0.1", r));
    const port = (slow.address() as AddressInfo).port;
    const other = await startRelay({ config: { providerBaseUrls: { openai: `http://127.0.0.1:${port}` } } });
    try {
      const { secret } = await other.issue();
      const t0 = performance.now();
      const res = await request(other.url + CHAT, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
        body: JSON.stringify({ ...JSON.parse(chat), stream: true }),
      });
      const headersAfter = performance.now() - t0;
      expect(res.statusCode).toBe(200);
      expect(res.headers["content-type"]).toBe("text/event-stream");
      expect(headersAfter).toBeLessThan(FIRST_EVENT_MS / 2);
      expect(await res.body.text()).toContain("data: [DONE]");
      expect(performance.now() - t0).toBeGreaterThanOrEqual(FIRST_EVENT_MS - 50);
    } finally {
      await other.close();
      await new Promise((r) => slow.close(r));
    }
  });
});

describe("the relay's body limit", () => {
  /** A valid JSON chat body of exactly `size` bytes. */
  const padded = (size: number) => {
    const prefix = chat.slice(0, -1) + `,"pad":"`;
    return prefix + "x".repeat(size - prefix.length - 2) + `"}`;
  };

  it("a body of exactly maxBodyBytes passes", async () => {
    const { secret } = await relay.issue();
    const body = padded(MAX_BODY);
    expect(Buffer.byteLength(body)).toBe(MAX_BODY);
    const res = await request(relay.url + CHAT, { method: "POST", headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" }, body });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(mock.requests[0]!.body.length).toBe(MAX_BODY);
  });

  it.each([
    ["with content-length", MAX_BODY + 1, false],
    ["with content-length, 1 MB", 1024 * 1024, false],
    ["chunked", MAX_BODY + 1, true],
    ["chunked, 256 KB", 256 * 1024, true],
  ])("one byte or more over it -> 413 (%s), not counted, connection still usable", async (_name, size, chunked) => {
    const { secret, id } = await relay.issue();
    const bytes = Buffer.from(padded(size));
    const body = chunked
      ? Readable.from(
          (function* () {
            for (let i = 0; i < bytes.length; i += 512) yield bytes.subarray(i, i + 512);
          })(),
        )
      : bytes;
    // One connection: the next request must reuse the socket the refused body was sent on.
    const dispatcher = new Agent({ connections: 1, headersTimeout: 3000 });
    try {
      const headers = { authorization: `Bearer ${secret}`, "content-type": "application/json" };
      const res = await request(relay.url + CHAT, { dispatcher, method: "POST", headers, body });
      expect(res.statusCode).toBe(413);
      expect(openaiError(Buffer.from(await res.body.arrayBuffer())).code).toBe("payload_too_large");
      expect(mock.requests).toHaveLength(0);
      expect(await used(id)).toBe(0n);
      const next = await request(relay.url + CHAT, { dispatcher, method: "POST", headers, body: chat });
      expect(next.statusCode).toBe(200);
      await next.body.dump();
    } finally {
      await dispatcher.close();
    }
  });

  it("over h2c, a body past the limit without content-length -> 413", async () => {
    const { secret, id } = await relay.issue();
    const res = await h2Request(relay.url, {
      method: "POST",
      path: CHAT,
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: padded(64 * 1024),
    });
    expect(res.status).toBe(413);
    expect(openaiError(res.body).code).toBe("payload_too_large");
    expect(await used(id)).toBe(0n);
  });
});

describe("the call cap under concurrency", () => {
  it("10 concurrent calls on a 3-call token: exactly 3 pass, 7 get 429", async () => {
    const { secret, id } = await relay.issue({ limits: { maxCalls: 3n } });
    const statuses = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const res = await request(relay.url + CHAT, {
          method: "POST",
          headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
          body: chat,
        });
        await res.body.dump();
        return res.statusCode;
      }),
    );
    expect(statuses.filter((s) => s === 200)).toHaveLength(3);
    expect(statuses.filter((s) => s === 429)).toHaveLength(7);
    expect(mock.requests).toHaveLength(3);
    expect(await used(id)).toBe(3n);
  });
});
