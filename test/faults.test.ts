/**
 * Fault injection: a provider that fails in every way a network and a server can (refused,
 * reset before or after its headers, stalls, broken or malformed streams, gzip, 10 MB, 5xx and
 * 429 with and without Retry-After), behind the HTTP layer and RelayService. Each case checks
 * what the client got (a clear error in the API's shape, or a stream that ends with an explicit
 * error, never a silent clean end), the outcome recorded, and the refund rule of DESIGN 3.3
 * (given back only when no request byte left for the provider: a timeout or reset after the
 * request was written is counted) through TokenService.GetToken.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiShape, AuthStyle } from "../gen/relayapi/v1/admin_service_pb.js";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { RelayService } from "../gen/relayapi/v1/relay_service_pb.js";
import { RawClient, reportCases } from "./support/fuzz.js";
import { closedPort, openaiError } from "./support/http.js";
import { callsUsed } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";

const TIMEOUT_MS = 400;
const BIG = 10 * 1024 * 1024;
const MALFORMED = [
  "data: {not json\n\n",
  'data: {"usage":{"prompt_tokens":"ten","completion_tokens":null}}\n\n',
  "event: \x00\xff\n",
  "data: " + "y".repeat(2 * 1024 * 1024) + "\n",
  "\r\r\n: comment\rdata: [DONE]",
  "retry: -1\nid: \u2028\n\n",
  'data: {"choices":[{"delta":{"content":"\\ud800"}}]}\n\n',
];
const bigBody = Buffer.from(`{"data":"${"x".repeat(BIG - 11)}"}`);
const gzipped = gzipSync(JSON.stringify({ id: "gz", usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } }));

const { relay } = useRelay({ mock: false, config: { upstreamHeadersTimeoutMs: TIMEOUT_MS, upstreamIdleTimeoutMs: TIMEOUT_MS, leaseIdleMs: 100 } });
let fault: Server;
const stalled = new Set<Socket>();
const upstreamClosed: string[] = [];
let cases = 0;

function behave(name: string, req: IncomingMessage, res: ServerResponse): void {
  const socket = res.socket!;
  const sse = (): void => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write('data: {"choices":[{"delta":{"content":"partial"}}]}\n\n');
  };
  const status = /^status-(\d{3})(-ra)?$/.exec(name);
  if (status) {
    res.writeHead(Number(status[1]), { "content-type": "application/json", ...(status[2] ? { "retry-after": "7" } : {}) });
    res.end(JSON.stringify({ error: { message: `provider says ${status[1]}`, type: "server_error", code: "provider_error" } }));
    return;
  }
  switch (name) {
    case "reset-before-headers":
      return void socket.resetAndDestroy();
    case "partial-head":
      socket.write("HTTP/1.1 200 OK\r\nContent-Ty");
      return void setTimeout(() => socket.resetAndDestroy(), 20);
    case "bad-head":
      socket.write("HTTP/1.1 200 OK\r\nthis is not a header\r\n\r\n");
      return void socket.end();
    case "stall-headers":
    case "stall-sse":
      if (name === "stall-sse") sse();
      stalled.add(socket);
      return void socket.on("close", () => upstreamClosed.push(name));
    case "reset-sse":
      sse();
      return void setTimeout(() => socket.resetAndDestroy(), 30);
    case "fin-sse": // a chunked stream cut without its last chunk, by a clean FIN
      sse();
      return void setTimeout(() => socket.end(), 30);
    case "bad-chunk":
      socket.write("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n9\r\ndata: x\n\n\r\nZZZ\r\n");
      return void setTimeout(() => socket.end(), 30);
    case "reset-json":
    case "fin-json":
      res.writeHead(200, { "content-type": "application/json", "content-length": "1000" });
      res.write('{"choices":[{"message":{"content":"cut');
      return void setTimeout(() => (name === "reset-json" ? socket.resetAndDestroy() : socket.end()), 30);
    case "malformed-sse":
      res.writeHead(200, { "content-type": "text/event-stream" });
      for (const frame of MALFORMED) res.write(frame, "latin1");
      return void res.end();
    case "gzip":
      res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip", "content-length": String(gzipped.length) });
      return void res.end(gzipped);
    case "big":
      res.writeHead(200, { "content-type": "application/json", "content-length": String(BIG) });
      return void res.end(bigBody);
    default:
      res.writeHead(418).end();
  }
}

beforeAll(async () => {
  fault = createServer((req, res) => {
    req.resume();
    req.on("end", () => behave(String(req.headers["x-fault"]), req, res));
  });
  await new Promise<void>((r) => fault.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(fault.address() as AddressInfo).port}`;
  await relay.admin.upsertProvider({ provider: { id: "faulty", baseUrl: base, authStyle: AuthStyle.BEARER, shape: ApiShape.OPENAI } });
  await relay.admin.upsertProvider({
    provider: { id: "refusing", baseUrl: `http://127.0.0.1:${await closedPort()}`, authStyle: AuthStyle.BEARER, shape: ApiShape.OPENAI },
  });
});
afterAll(async () => {
  for (const s of stalled) s.destroy();
  await new Promise((r) => fault?.close(r));
});

const CHAT = JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], stream: true });

/** Issues a token for the case, calls through the HTTP layer with `x-fault`, returns the answer. */
async function call(fault: string, provider = "faulty"): Promise<{ id: string; res: Response }> {
  cases++;
  const { secret, id } = await relay.issue({ provider, limits: { maxCalls: 5n } });
  const res = await fetch(`${relay.url}/api/${provider}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", "x-fault": fault },
    body: CHAT,
  });
  return { id, res };
}

/** The outcome the engine recorded for the token (waits for the call to end). */
async function outcomeOf(id: string): Promise<{ outcome: Outcome; status: number }> {
  for (let i = 0; i < 100; i++) {
    const rec = relay.calls.find((c) => c.tokenId === id);
    if (rec) return { outcome: rec.outcome, status: rec.status };
    await sleep(20);
  }
  throw new Error(`no call recorded for ${id}`);
}

/** calls_used settles at `expected` (unused leased calls go back after leaseIdleMs) and stays there. */
async function expectUsed(id: string, expected: number): Promise<void> {
  for (let i = 0; i < 100 && (await callsUsed(relay, id)) !== expected; i++) await sleep(30);
  await sleep(250);
  expect(await callsUsed(relay, id), `calls_used of ${id}`).toBe(expected);
}

describe("faults before the response headers: a 502/504 in the API's shape", () => {
  it("connection refused: no byte left for the provider, refunded", async () => {
    const { id, res } = await call("-", "refusing");
    expect(res.status).toBe(502);
    expect(openaiError(await res.text()).code).toBe("upstream_unreachable");
    expect(await outcomeOf(id)).toEqual({ outcome: Outcome.REFUNDED, status: 502 });
    await expectUsed(id, 0);
  });

  // Issue 17: these used to be refunded, but the provider had read the request by then.
  it.each([
    ["reset before headers", "reset-before-headers", 502, "upstream_unreachable"],
    ["reset in the middle of the headers", "partial-head", 502, "upstream_unreachable"],
    ["a malformed response head", "bad-head", 502, "upstream_unreachable"],
    ["stall before headers (upstreamHeadersTimeoutMs)", "stall-headers", 504, "upstream_timeout"],
  ])("%s, after the request was written: UPSTREAM_ERROR, counted", async (_name, name, status, code) => {
    const started = performance.now();
    const { id, res } = await call(name);
    expect(res.status).toBe(status);
    expect(openaiError(await res.text()).code).toBe(code);
    expect(await outcomeOf(id)).toEqual({ outcome: Outcome.UPSTREAM_ERROR, status });
    await expectUsed(id, 1);
    // The provider may still be working on (and billing) a request that timed out: SDKs are told
    // not to send it again on their own; a reset may be retried.
    expect(res.headers.get("x-should-retry")).toBe(name === "stall-headers" ? "false" : null);
    if (name === "stall-headers") {
      expect(performance.now() - started).toBeLessThan(TIMEOUT_MS + 2000);
      for (let i = 0; i < 50 && !upstreamClosed.includes(name); i++) await sleep(20);
      expect(upstreamClosed, "the stalled upstream connection was closed").toContain(name);
    }
  });
});

describe("faults after the headers: an explicit error, TRUNCATED, not refunded", () => {
  it.each([
    ["reset mid-stream", "reset-sse", "upstream stream interrupted"],
    ["stall between chunks (upstreamIdleTimeoutMs)", "stall-sse", "upstream stalled"],
    ["a chunked stream cut by a clean FIN", "fin-sse", "upstream stream interrupted"],
    ["an invalid chunk size", "bad-chunk", "upstream stream interrupted"],
  ])("SSE, %s: the stream ends with `event: error`", async (_name, name, message) => {
    const { id, res } = await call(name);
    expect(res.status).toBe(200);
    const text = await res.text();
    const tail = /event: error\ndata: (\{.*\})\n\n$/.exec(text);
    expect(tail, `stream ended without an error event: ${JSON.stringify(text.slice(-200))}`).not.toBeNull();
    expect(JSON.parse(tail![1]!)).toMatchObject({ error: { message, code: "upstream_unreachable" } });
    expect(await outcomeOf(id)).toEqual({ outcome: Outcome.TRUNCATED, status: 200 });
    await expectUsed(id, 1);
  });

  it.each([
    ["reset", "reset-json"],
    ["clean FIN short of content-length", "fin-json"],
  ])("JSON body cut (%s): the client's read fails, never a short clean body", async (_n, name) => {
    const { id, res } = await call(name);
    expect(res.status).toBe(200);
    await expect(res.text()).rejects.toThrow();
    expect(await outcomeOf(id)).toEqual({ outcome: Outcome.TRUNCATED, status: 200 });
    await expectUsed(id, 1);
  });
});

describe("odd but complete answers pass through unchanged", () => {
  it("malformed SSE that ends cleanly: the same bytes, COMPLETE, no usage invented", async () => {
    const { id, res } = await call("malformed-sse");
    expect(res.status).toBe(200);
    const got = Buffer.from(await res.arrayBuffer());
    expect(got.equals(Buffer.from(MALFORMED.join(""), "latin1"))).toBe(true);
    expect(await outcomeOf(id)).toEqual({ outcome: Outcome.COMPLETE, status: 200 });
    expect(relay.calls.find((c) => c.tokenId === id)!.usage).toMatchObject({ promptTokens: 0, completionTokens: 0 });
    await expectUsed(id, 1);
  });

  it("a gzip body: content-encoding and bytes unchanged", async () => {
    cases++;
    const { secret, id } = await relay.issue({ provider: "faulty" });
    const client = RawClient.for(relay.url);
    const res = await client.request(
      "POST",
      "/api/faulty/v1/chat/completions",
      { authorization: `Bearer ${secret}`, "x-fault": "gzip", "content-type": "application/json" },
      CHAT,
    );
    client.close();
    expect(res.status).toBe(200);
    expect(res.headers["content-encoding"]).toBe("gzip");
    expect(res.body.equals(gzipped)).toBe(true);
    expect(JSON.parse(gunzipSync(res.body).toString())).toMatchObject({ id: "gz" });
    expect(await outcomeOf(id)).toEqual({ outcome: Outcome.COMPLETE, status: 200 });
  });

  it("a 10 MB response arrives whole", async () => {
    const { id, res } = await call("big");
    expect(res.status).toBe(200);
    const got = Buffer.from(await res.arrayBuffer());
    expect(got.length).toBe(BIG);
    expect(createHash("sha256").update(got).digest("hex")).toBe(createHash("sha256").update(bigBody).digest("hex"));
    expect(await outcomeOf(id)).toEqual({ outcome: Outcome.COMPLETE, status: 200 });
    expect(relay.calls.find((c) => c.tokenId === id)!.bytes).toBe(BIG);
  });
});

describe("the provider's own errors: passed through, UPSTREAM_ERROR, not refunded", () => {
  it.each(
    [500, 502, 503, 429].flatMap(
      (s) =>
        [
          [s, false],
          [s, true],
        ] as const,
    ),
  )("%i (Retry-After: %s)", async (status, retryAfter) => {
    const { id, res } = await call(`status-${status}${retryAfter ? "-ra" : ""}`);
    expect(res.status).toBe(status);
    expect(res.headers.get("retry-after")).toBe(retryAfter ? "7" : null);
    expect(openaiError(await res.text()).message).toBe(`provider says ${status}`);
    expect(await outcomeOf(id)).toEqual({ outcome: Outcome.UPSTREAM_ERROR, status });
    await expectUsed(id, 1);
  });
});

describe("RelayService: the same faults, as RPC codes and `end` outcomes", () => {
  const rpc = () => createClient(RelayService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
  async function relayCall(name: string, provider = "faulty") {
    cases++;
    const { secret, id } = await relay.issue({ provider, limits: { maxCalls: 5n } });
    const parts: string[] = [];
    let end: { outcome: Outcome; error: string } | undefined;
    let status = 0;
    try {
      for await (const m of rpc().relay(
        { provider, path: "/v1/chat/completions", headers: [{ name: "x-fault", value: name }], body: new TextEncoder().encode(CHAT) },
        { headers: { authorization: `Bearer ${secret}` } },
      )) {
        if (m.part.case === "head") status = m.part.value.status;
        if (m.part.case === "chunk") parts.push(Buffer.from(m.part.value.data).toString());
        if (m.part.case === "end") end = m.part.value;
      }
      return { id, status, parts, end, error: undefined };
    } catch (e) {
      return { id, status, parts, end, error: ConnectError.from(e) };
    }
  }

  it.each([
    ["connection refused", "-", "refusing", Code.Unavailable, Outcome.REFUNDED, 0],
    // Issue 17: the request was written, so the call is counted (it used to be refunded).
    ["stall before headers", "stall-headers", "faulty", Code.DeadlineExceeded, Outcome.UPSTREAM_ERROR, 1],
  ])("%s -> an RPC error", async (_n, name, provider, code, outcome, used) => {
    const r = await relayCall(name, provider);
    expect(r.error?.code).toBe(code);
    expect(await outcomeOf(r.id)).toMatchObject({ outcome });
    await expectUsed(r.id, used);
  });

  it("reset mid-stream -> head, the chunks, then `end` TRUNCATED with its reason", async () => {
    const r = await relayCall("reset-sse");
    expect(r.error).toBeUndefined();
    expect(r.status).toBe(200);
    expect(r.parts.join("")).toContain("partial");
    expect(r.end).toMatchObject({ outcome: Outcome.TRUNCATED, error: "upstream stream interrupted" });
    await expectUsed(r.id, 1);
  });

  it("503 with Retry-After -> head 503 with the header, `end` UPSTREAM_ERROR", async () => {
    const r = await relayCall("status-503-ra");
    expect(r.status).toBe(503);
    expect(r.end).toMatchObject({ outcome: Outcome.UPSTREAM_ERROR });
    await expectUsed(r.id, 1);
  });

  it("reports the number of fault cases", () => {
    reportCases("faults", "faults", cases);
    expect(cases).toBeGreaterThanOrEqual(25);
  });
});
