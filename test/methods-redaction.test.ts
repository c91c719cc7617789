/**
 * Issue 17, finding 7 (a, b): the HTTP layer forwards only GET, POST, PUT, PATCH, DELETE and HEAD
 * (OPTIONS is the relay's own preflight), answering 405 with `Allow` to anything else before the
 * provider sees it; and an upstream error answer that echoes the upstream key (in its body, split
 * across chunks or not, or in `WWW-Authenticate`) reaches the client with the key redacted, an
 * error body past the scan bound cut rather than forwarded unscanned.
 */
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ApiShape, AuthStyle } from "../gen/relayapi/v1/admin_service_pb.js";
import { openaiError, rawRequest } from "./support/http.js";
import { useRelay } from "./support/use-relay.js";

const KEY = `sk-echo-${randomBytes(18).toString("hex")}`;
const { relay, mock } = useRelay();
let echo: Server;
let secret: string;
let echoSecret: string;

/** An upstream that answers 401 with the key it was sent, the way `?mode=` says. */
function echoUpstream(): Server {
  return createServer((req, res) => {
    req.resume();
    const key = String(req.headers.authorization).replace("Bearer ", "");
    const mode = new URL(req.url ?? "/", "http://x").searchParams.get("mode");
    if (mode === "split") {
      // The key is cut in two across writes that the relay receives as separate chunks.
      const text = JSON.stringify({ error: { message: `Incorrect API key provided: ${key}.`, type: "invalid_request_error", code: "invalid_api_key" } });
      const at = text.indexOf(key) + Math.floor(key.length / 2);
      res.writeHead(401, { "content-type": "application/json", "www-authenticate": `Bearer realm="api", key="${key}"` });
      res.write(text.slice(0, at));
      setTimeout(() => res.end(text.slice(at)), 40);
      return;
    }
    if (mode === "huge") {
      // 1 MB of error body with the key every 10 000 bytes, one of them across the scan bound.
      res.writeHead(401, { "content-type": "text/plain" });
      const unit = `${"e".repeat(10_000 - key.length)}${key}`;
      for (let i = 0; i < 100; i++) res.write(unit);
      res.end();
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ ok: true, key: "not an error: not scanned" }));
  });
}

beforeAll(async () => {
  echo = echoUpstream();
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
  await relay.admin.upsertProvider({
    provider: { id: "echo", baseUrl: `http://127.0.0.1:${(echo.address() as AddressInfo).port}/v1`, authStyle: AuthStyle.BEARER, shape: ApiShape.OPENAI },
  });
  secret = (await relay.issue({ upstreamKey: KEY })).secret;
  echoSecret = (await relay.issue({ provider: "echo", upstreamKey: KEY })).secret;
});
afterAll(async () => {
  echo?.closeAllConnections();
  await new Promise((r) => echo?.close(r));
});

const target = "/api/openai/v1/chat/completions";
const chatBody = JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] });

it.each(["TRACE", "PROPFIND", "MKCOL", "PURGE", "LOCK", "SEARCH"])("%s is answered 405 with Allow, and never reaches the provider", async (method) => {
  mock.reset();
  const res = await rawRequest(relay.url, {
    method,
    target,
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: chatBody,
  });
  expect(res.status).toBe(405);
  const allow = res.headers.allow
    ?.split(",")
    .map((m) => m.trim())
    .sort();
  expect(allow).toEqual(["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]);
  expect(openaiError(res.body).code).toBe("method_not_allowed");
  expect(mock.requests.length).toBe(0);
});

it("CONNECT is refused and never reaches the provider", async () => {
  mock.reset();
  // Node answers CONNECT at the connection level (no request handler runs): 405 or a closed socket.
  const outcome = await rawRequest(relay.url, { method: "CONNECT", target, headers: { authorization: `Bearer ${secret}` } }).then(
    (r) => r.status,
    () => "closed",
  );
  expect([405, 400, "closed"]).toContain(outcome);
  expect(mock.requests.length).toBe(0);
});

it("the six forwarded methods still reach the provider", async () => {
  mock.reset();
  for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]) {
    const res = await rawRequest(relay.url, { method, target: "/api/openai/v1/models", headers: { authorization: `Bearer ${secret}` } });
    expect(res.status, method).not.toBe(405);
  }
  expect(mock.requests.map((r) => r.method)).toEqual(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]);
});

it("an upstream 401 that echoes the key in its body and WWW-Authenticate reaches the SDK redacted", async () => {
  mock.reset();
  mock.behave((rec) =>
    String(rec.headers.authorization).includes(KEY)
      ? {
          status: 401,
          body: {
            error: {
              message: `Incorrect API key provided: ${KEY}. You can find your API key at ...`,
              type: "invalid_request_error",
              param: null,
              code: "invalid_api_key",
            },
          },
          headers: { "www-authenticate": `Bearer realm="OpenAI", error="invalid_token", key="${KEY}"` },
        }
      : undefined,
  );
  try {
    const client = new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
    const err = await client.chat.completions.create({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    const authErr = err as InstanceType<typeof OpenAI.AuthenticationError>;
    expect(mock.requests.length).toBe(1); // the call did reach the provider with the key
    const headers: string[] = [];
    authErr.headers?.forEach((value, name) => headers.push(`${name}: ${value}`));
    const seen = `${authErr.message}\n${JSON.stringify(authErr.error)}\n${headers.join("\n")}`;
    expect(seen).not.toContain(KEY);
    expect(seen).toContain("[redacted]");
    expect(authErr.headers?.get("www-authenticate")).toContain("[redacted]");
  } finally {
    mock.behave(undefined);
  }
});

it("a key split across two chunks of an error body is still caught", async () => {
  const res = await fetch(`${relay.url}/api/echo/v1/chat/completions?mode=split`, {
    method: "POST",
    headers: { authorization: `Bearer ${echoSecret}` },
    body: chatBody,
  });
  expect(res.status).toBe(401);
  const text = await res.text();
  expect(text).not.toContain(KEY);
  expect(text).not.toContain(KEY.slice(0, 20));
  expect(text).not.toContain(KEY.slice(-20));
  expect(JSON.parse(text).error.message).toBe("Incorrect API key provided: [redacted].");
  expect(res.headers.get("www-authenticate")).toBe('Bearer realm="api", key="[redacted]"');
});

it("an error body past the scan bound is cut, never forwarded unscanned", async () => {
  const res = await fetch(`${relay.url}/api/echo/v1/chat/completions?mode=huge`, {
    method: "POST",
    headers: { authorization: `Bearer ${echoSecret}` },
    body: chatBody,
  });
  expect(res.status).toBe(401);
  const text = await res.text();
  expect(text.length).toBeGreaterThan(10_000);
  expect(text.length).toBeLessThan(200_000);
  for (const part of [KEY, KEY.slice(0, 16), KEY.slice(-16)]) expect(text).not.toContain(part);
  expect(text).toContain("[redacted]");
});

it("a successful answer passes unscanned and unchanged", async () => {
  const res = await fetch(`${relay.url}/api/echo/v1/models`, { headers: { authorization: `Bearer ${echoSecret}` } });
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ ok: true, key: "not an error: not scanned" });
});
