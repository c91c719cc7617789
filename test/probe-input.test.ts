/**
 * Bad input against the one port from a client without a token, and with one: every case is
 * answered in its protocol's shape without a 5xx, the process stays up with bounded memory,
 * and no secret (relay token, upstream key, admin key) reaches an answer or a log line.
 *
 * Found by this probe and fixed (with test/probe-input-budget.test.ts and
 * test/probe-input-redis.test.ts):
 * - an h2c client announcing a window of 0 made each of ~100 streams per connection hold its
 *   own copy of a console file (1.1 MB of source map), unauthenticated (console-route.ts);
 * - pipelined GET /metrics from a client that reads nothing rendered the exposition once per
 *   request: ~60 MB and seconds of CPU per 64 KB sent (metrics-route.ts);
 * - an h2c request body cut at requestTimeoutMs wrote error lines (`rpc failed`, `rpc fast lane
 *   failed`) any client could produce at will (services/errors.ts, unary-fast-lane.ts);
 * - a Connect GET with `base64=1` and a message that is not base64 was a 500, and a compressed
 *   envelope sent without an encoding was `internal` (grpc-status 13) on gRPC-Web, gRPC and
 *   Connect streaming through connect-node (parse-errors.ts).
 * The rest (HTTP/1.1 framing, bombs, timeouts, h2c frame floods) held; kept as regressions.
 */
import { connect as h2connect, type ClientHttp2Session } from "node:http2";
import { readdirSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { brotliCompressSync, gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { CONSOLE_DIST } from "../src/http/console-route.js";
import { createLogger } from "../src/log.js";
import { rawRequest, type RawRequest } from "./support/http.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { useRelay } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";

const MB = 1024 * 1024;
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
/** The heap in use after two full collections, in MB. */
const heap = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed / MB;
};
const INTROSPECT = "/relayapi.v1.TokenService/IntrospectToken";
const RELAY = "/relayapi.v1.RelayService/Relay";
const ADMIN = "/relayapi.v1.AdminService/ListIssuers";

const logLines: string[] = [];
const REQUEST_TIMEOUT_MS = 1500;
const { relay } = useRelay({
  config: { h2MaxStreams: 100, headersTimeoutMs: 1000, requestTimeoutMs: REQUEST_TIMEOUT_MS },
  log: createLogger("debug", (l) => logLines.push(l)),
});
let secret = "";
const auth = (): Record<string, string> => ({ authorization: `Bearer ${secret}` });

/** A Connect / gRPC-Web envelope. */
function envelope(flags: number, data: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(data.length, 1);
  return Buffer.concat([head, data]);
}

const gzipBomb = gzipSync(Buffer.alloc(64 * MB));
const brotliBomb = brotliCompressSync(Buffer.alloc(64 * MB));

function session(settings: Record<string, number> = {}): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = h2connect(relay.url, { settings });
    s.once("remoteSettings", () => resolve(s));
    s.once("error", reject);
  });
}

async function healthyWithin(ms: number): Promise<void> {
  const started = performance.now();
  const res = await fetch(`${relay.url}/healthz`);
  expect(res.status).toBe(200);
  expect(performance.now() - started).toBeLessThan(ms);
}

it("issues the token the cases carry", async () => {
  secret = (await relay.issue()).secret;
});

describe("h2c: answers a client holds back", () => {
  it("streams stalled by a zero window share the console's files: memory stays flat", async () => {
    const map = readdirSync(join(CONSOLE_DIST, "assets")).find((f) => f.endsWith(".js.map"));
    expect(map, "the console is built (npm run build:console)").toBeDefined();
    const before = process.memoryUsage().arrayBuffers;
    const s = await session({ initialWindowSize: 0 });
    let heads = 0;
    for (let i = 0; i < 90; i++) {
      const st = s.request({ ":path": `/console/assets/${map}` });
      st.on("response", () => heads++);
      st.on("error", () => {});
    }
    for (let i = 0; i < 100 && heads < 90; i++) await sleep(50);
    const grown = (process.memoryUsage().arrayBuffers - before) / MB;
    s.destroy();
    expect(heads).toBe(90);
    // Each stream held its own 1.1 MB copy: ~87 MB for one connection.
    expect(grown).toBeLessThan(20);
  });
});

describe("HTTP/1.1: pipelined requests from a client that reads nothing", () => {
  it("20,000 pipelined GET /metrics: scrapes in flight share one rendering; the heap stays bounded", { timeout: 15_000 }, async () => {
    const before = heap();
    const { port } = new URL(relay.url);
    const s = connect(Number(port), "127.0.0.1");
    s.on("error", () => {});
    s.pause();
    s.write(Buffer.from("GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n".repeat(20_000)));
    await sleep(1500);
    const grown = heap() - before;
    s.destroy();
    // Each scrape rendered the whole exposition for itself: ~63 MB for the one connection, and
    // seconds of CPU that other clients waited behind.
    expect(grown).toBeLessThan(20);
    await healthyWithin(1000);
  });
});

describe("answers compressed for the client", () => {
  /** One reflection stream of `n` requests (6 KB for 200), each answered with ~13 KB of descriptors; its duration. */
  async function reflect(n: number, encoding: string): Promise<{ ms: number; grpcEncoding: unknown; status: unknown }> {
    const symbol = Buffer.from("relayapi.v1.AdminService");
    const message = envelope(0, Buffer.concat([Buffer.from([0x22, symbol.length]), symbol]));
    const s = await session();
    const started = performance.now();
    const out = await new Promise<{ grpcEncoding: unknown; status: unknown }>((resolve) => {
      const st = s.request({
        ":method": "POST",
        ":path": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "content-type": "application/grpc",
        te: "trailers",
        "grpc-accept-encoding": encoding,
      });
      let grpcEncoding: unknown;
      st.on("response", (h) => (grpcEncoding = h["grpc-encoding"]));
      st.on("trailers", (t) => resolve({ grpcEncoding, status: t["grpc-status"] }));
      st.on("error", () => resolve({ grpcEncoding, status: "error" }));
      st.resume();
      st.end(Buffer.concat(Array.from({ length: n }, () => message)));
    });
    s.close();
    return { ...out, ms: performance.now() - started };
  }

  it("brotli costs about what gzip does: 200 reflection answers asked for with br, unauthenticated", { timeout: 15_000 }, async () => {
    const gzip = await reflect(200, "gzip");
    const br = await reflect(200, "br");
    expect([gzip.grpcEncoding, gzip.status, br.grpcEncoding, br.status]).toEqual(["gzip", "0", "br", "0"]);
    // At zlib's default quality (11) brotli took ~10 s of the threadpool here (gzip: ~0.7 s).
    expect(br.ms).toBeLessThan(3 * gzip.ms + 500);
  });
});

describe("h2c: request bodies cut at requestTimeoutMs", () => {
  it("each route answers 408 and writes no error line (they were `rpc failed` / `rpc fast lane failed`)", async () => {
    const from = logLines.length;
    const s = await session();
    const routes: [string, Record<string, string>][] = [
      [INTROSPECT, { "content-type": "application/json" }],
      [INTROSPECT, { "content-type": "application/json", "content-length": "100" }],
      [INTROSPECT, { "content-type": "application/json", "connect-timeout-ms": "100000" }],
      [INTROSPECT, { "content-type": "application/grpc" }],
      [RELAY, { "content-type": "application/connect+json" }],
      [RELAY, { "content-type": "application/connect+json", "connect-timeout-ms": "100000" }],
      ["/api/openai/v1/chat/completions", { "content-type": "application/json" }],
    ];
    const statuses = await Promise.all(
      routes.map(
        ([path, headers]) =>
          new Promise<number>((resolve) => {
            const st = s.request({ ":method": "POST", ":path": path, ...auth(), ...headers });
            let status = 0;
            st.on("response", (h) => (status = Number(h[":status"])));
            st.on("error", () => {});
            st.on("close", () => resolve(status));
            st.resume();
            st.write("{");
          }),
      ),
    );
    s.close();
    expect(statuses).toEqual(routes.map(() => 408));
    await sleep(100);
    const errors = logLines.slice(from).filter((l) => /"level":"(error|fatal)"/.test(l));
    expect(errors).toEqual([]);
  });
});

describe("Connect and gRPC input connect-es answers as internal", () => {
  it("a Connect GET whose base64 message is not base64: 400 invalid_argument, not 500", async () => {
    for (const message of ["!!!!", "a", "e30%3D%3D%3D%3Dx%25"]) {
      const res = await fetch(`${relay.url}${INTROSPECT}?connect=v1&encoding=json&base64=1&message=${message}`, { headers: auth() });
      expect(res.status, message).toBe(400);
      expect(await res.json()).toEqual({ code: "invalid_argument", message: "invalid base64 string" });
    }
    // Valid base64 still works (`{}`).
    const ok = await fetch(`${relay.url}${INTROSPECT}?connect=v1&encoding=json&base64=1&message=e30`, { headers: auth() });
    expect(ok.status).toBe(200);
  });

  it("a compressed envelope without an encoding: invalid_argument on gRPC-Web, gRPC and Connect streaming", async () => {
    const compressed = envelope(1, Buffer.from("xx"));
    const web = await rawRequest(relay.url, {
      method: "POST",
      target: INTROSPECT,
      headers: { ...auth(), "content-type": "application/grpc-web+proto" },
      body: compressed,
    });
    expect(web.status).toBe(200);
    expect(web.body.toString("latin1")).toMatch(/grpc-status: 3\r\n/);
    // Connect streaming with a deadline goes through connect-node (the fast lane takes none).
    const stream = await rawRequest(relay.url, {
      method: "POST",
      target: RELAY,
      headers: { ...auth(), "content-type": "application/connect+proto", "connect-timeout-ms": "5000" },
      body: compressed,
    });
    expect(JSON.parse(stream.body.subarray(5).toString())).toMatchObject({ error: { code: "invalid_argument" } });
    const s = await session();
    const trailers = await new Promise<Record<string, unknown>>((resolve) => {
      const st = s.request({ ":method": "POST", ":path": INTROSPECT, "content-type": "application/grpc", te: "trailers", ...auth() });
      let head: Record<string, unknown> = {};
      st.on("response", (h) => (head = h));
      st.on("trailers", (t) => resolve(t));
      st.on("end", () => resolve(head));
      st.on("error", () => resolve(head));
      st.resume();
      st.end(compressed);
    });
    s.close();
    expect(trailers["grpc-status"]).toBe("3");
  });
});

describe("bad input: answered in the protocol's shape, never a 5xx", () => {
  const post = (target: string, headers: Record<string, string>, body: string | Buffer): RawRequest => ({ method: "POST", target, headers, body });
  const chat = "/api/openai/v1/chat/completions";
  const json = { "content-type": "application/json" };
  /** [name, request, expected HTTP status, expected grpc-status or Connect end-of-stream code]. */
  const cases = (): [string, RawRequest, number, string?][] => [
    ["Transfer-Encoding with Content-Length", post(chat, { ...auth(), "content-length": "5", "transfer-encoding": "chunked" }, "0\r\n\r\n"), 400],
    ["a transfer coding other than chunked", post(chat, { ...auth(), "transfer-encoding": "gzip, chunked" }, "0\r\n\r\n"), 415],
    ["%00 in the path", { target: "/api/openai/v1/mod%00els", headers: auth() }, 404],
    ["dot segments past the provider", { target: "/api/openai/v1/../../../etc/passwd", headers: auth() }, 400],
    ["a bad percent escape", { target: "/api/openai/v1/%ZZ", headers: auth() }, 400],
    ["a 9,000-character provider id", { target: `/api/${"x".repeat(9000)}/v1`, headers: auth() }, 404],
    ["1,500 headers", { target: "/api/openai/v1/models", headers: Object.fromEntries(Array.from({ length: 1500 }, (_, i) => [`x-h${i}`, "1"])) }, 401],
    ["a gzip bomb, bogus token", post(chat, { authorization: "Bearer rk_bogus", ...json, "content-encoding": "gzip" }, gzipBomb), 401],
    ["a brotli bomb, valid token", post(chat, { ...auth(), ...json, "content-encoding": "br" }, brotliBomb), 413],
    ["deflate that is not deflate", post(chat, { ...auth(), ...json, "content-encoding": "deflate" }, "garbage"), 400],
    ["20 stacked gzip codings", post(chat, { ...auth(), ...json, "content-encoding": Array(20).fill("gzip").join(",") }, "{}"), 415],
    [
      "a WebSocket upgrade without a token",
      {
        target: "/api/openai/v1/realtime?model=x",
        headers: { connection: "upgrade, close", upgrade: "websocket", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" },
      },
      401,
    ],
    [
      "a WebSocket upgrade with a bad key",
      {
        target: "/api/openai/v1/realtime?model=x",
        headers: { ...auth(), connection: "upgrade, close", upgrade: "websocket", "sec-websocket-key": "x", "sec-websocket-version": "13" },
      },
      400,
    ],
    [
      "Upgrade: h2c on the HTTP layer (served as plain)",
      {
        target: "/api/openai/v1/models",
        headers: { ...auth(), connection: "upgrade, http2-settings, close", upgrade: "h2c", "http2-settings": "AAMAAABkAARAAAAAAAIAAAAA" },
      },
      200,
    ],
    ["Connect GET: JSON that is not JSON", { target: `${INTROSPECT}?connect=v1&encoding=json&message=%ZZ`, headers: auth() }, 400],
    ["Connect GET: gzip that is not gzip", { target: `${INTROSPECT}?connect=v1&encoding=json&compression=gzip&message=garbage`, headers: auth() }, 400],
    ["Connect GET: brotli that is not brotli", { target: `${INTROSPECT}?connect=v1&encoding=json&compression=br&message=garbage`, headers: auth() }, 400],
    ["Connect unary: a gzip bomb", post(INTROSPECT, { ...auth(), "content-type": "application/proto", "content-encoding": "gzip" }, gzipBomb), 429],
    ["Connect unary: a brotli bomb", post(INTROSPECT, { ...auth(), "content-type": "application/proto", "content-encoding": "br" }, brotliBomb), 429],
    ["Connect unary: a huge timeout", post(INTROSPECT, { ...auth(), ...json, "connect-timeout-ms": "99999999999999" }, "{}"), 400],
    ["Connect unary: a negative timeout", post(INTROSPECT, { ...auth(), ...json, "connect-timeout-ms": "-5" }, "{}"), 400],
    ["Connect unary: 200,000 nested arrays", post(INTROSPECT, { ...auth(), ...json }, "[".repeat(200_000)), 400],
    ["Connect unary: 100,000 bytes of nested proto", post(INTROSPECT, { ...auth(), "content-type": "application/proto" }, Buffer.alloc(100_000, 0x0a)), 400],
    [
      "gRPC-Web: a huge grpc-timeout",
      post(INTROSPECT, { ...auth(), "content-type": "application/grpc-web", "grpc-timeout": "999999999H" }, envelope(0, Buffer.alloc(0))),
      200,
      "3",
    ],
    [
      "gRPC-Web: a negative grpc-timeout",
      post(INTROSPECT, { ...auth(), "content-type": "application/grpc-web", "grpc-timeout": "-1S" }, envelope(0, Buffer.alloc(0))),
      200,
      "3",
    ],
    [
      "gRPC-Web: an envelope declaring 2 GB",
      post(INTROSPECT, { ...auth(), "content-type": "application/grpc-web+proto" }, Buffer.concat([Buffer.from([0, 0x7f, 0, 0, 0]), Buffer.alloc(10)])),
      200,
      "8",
    ],
    [
      "gRPC-Web: a gzip bomb",
      post(INTROSPECT, { ...auth(), "content-type": "application/grpc-web+proto", "grpc-encoding": "gzip" }, envelope(1, gzipBomb)),
      200,
      "8",
    ],
    ["gRPC-Web text (unsupported)", post(INTROSPECT, { ...auth(), "content-type": "application/grpc-web-text" }, "!!!!"), 415],
    [
      "Connect streaming: a compressed flag, no encoding (fast lane)",
      post(RELAY, { ...auth(), "content-type": "application/connect+proto" }, envelope(1, Buffer.from("xx"))),
      200,
      "invalid_argument",
    ],
    [
      "Connect streaming: a gzip bomb",
      post(RELAY, { ...auth(), "content-type": "application/connect+proto", "connect-content-encoding": "gzip" }, envelope(1, gzipBomb)),
      200,
      "resource_exhausted",
    ],
    [
      "Connect streaming: a brotli bomb",
      post(RELAY, { ...auth(), "content-type": "application/connect+proto", "connect-content-encoding": "br" }, envelope(1, brotliBomb)),
      200,
      "resource_exhausted",
    ],
    [
      "Connect streaming: brotli that is not brotli",
      post(RELAY, { ...auth(), "content-type": "application/connect+proto", "connect-content-encoding": "br" }, envelope(1, Buffer.from("garbage"))),
      200,
      "invalid_argument",
    ],
    [
      "Connect streaming: an envelope longer than the body",
      post(RELAY, { ...auth(), "content-type": "application/connect+proto" }, Buffer.concat([Buffer.from([0, 0x7f, 0, 0, 0]), Buffer.alloc(10)])),
      200,
      "invalid_argument",
    ],
    [
      "Connect streaming: a short envelope, with a deadline",
      post(
        RELAY,
        { ...auth(), "content-type": "application/connect+proto", "connect-timeout-ms": "100" },
        Buffer.concat([Buffer.from([0, 0, 0, 0, 50]), Buffer.alloc(10)]),
      ),
      200,
      "invalid_argument",
    ],
    [
      "Connect streaming: a timeout that is not a number",
      post(RELAY, { ...auth(), "content-type": "application/connect+json", "connect-timeout-ms": "abc" }, envelope(0, Buffer.from("{}"))),
      200,
      "invalid_argument",
    ],
    [
      "Connect streaming: JSON cut short",
      post(RELAY, { ...auth(), "content-type": "application/connect+json" }, envelope(0, Buffer.from('{"provider":1'))),
      200,
      "invalid_argument",
    ],
    ["gRPC over HTTP/1.1 to an admin method, no key", post(ADMIN, { "content-type": "application/grpc" }, envelope(0, Buffer.alloc(0))), 200, "16"],
    ["an admin method with a wrong key", post(ADMIN, { authorization: "Bearer nope", ...json }, "{}"), 401],
    ["an unknown service", post("/relayapi.v1.Nope/Nope", json, "{}"), 404],
    ["/api/quota with a bad escape in the query", { target: "/api/quota?key=%ZZ&token=", headers: {} }, 401],
    ["a leak report of 100,000 brackets", post("/v1/leaked-tokens", json, "[".repeat(100_000)), 400],
    ["the console: a bad escape", { target: "/console/assets/%ZZ" }, 404],
    ["the console: %00", { target: "/console/assets/a%00.js" }, 404],
    ["the console: encoded dot segments", { target: "/console/assets/..%2f..%2f..%2fpackage.json" }, 404],
  ];

  it("each case, and the relay still answers", { timeout: 15_000 }, async () => {
    const seen: string[] = [];
    for (const [name, req, status, code] of cases()) {
      const res = await rawRequest(relay.url, req);
      const text = res.body.toString("latin1");
      seen.push(`${name}: ${res.status} ${text.slice(0, 120)}`);
      expect(res.status, name).toBe(status);
      expect(text, name).not.toContain(secret);
      expect(text, name).not.toContain(relay.adminKey);
      expect(text, name).not.toContain(UPSTREAM_KEY);
      if (res.status >= 400 && res.status !== 431 && text.length > 0) expect(() => JSON.parse(text), name).not.toThrow();
      if (code === undefined) continue;
      if (/^\d+$/.test(code)) expect(res.headers["grpc-status"] ?? text.match(/grpc-status: (\d+)/)?.[1], name).toBe(code);
      else expect(JSON.parse(res.body.subarray(res.body.lastIndexOf(0x02) + 5).toString()), name).toMatchObject({ error: { code } });
    }
    await healthyWithin(1000);
  });
});

describe("the Connect routes: a request no protocol takes gets a JSON answer that says why", () => {
  // connect-node answered these 415 / 405 with an empty body, no content type and no hint.
  const cases: [string, RawRequest, number, RegExp][] = [
    ["text/plain", { method: "POST", target: INTROSPECT, headers: { "content-type": "text/plain" }, body: "{}" }, 415, /content type "text\/plain"/],
    ["no content type", { method: "POST", target: INTROSPECT, headers: {}, body: "{}" }, 415, /no content type/],
    [
      "JSON in Latin-1",
      { method: "POST", target: INTROSPECT, headers: { "content-type": "application/json; charset=latin1" }, body: "{}" },
      415,
      /application\/json/,
    ],
    ["gRPC-Web text", { method: "POST", target: INTROSPECT, headers: { "content-type": "application/grpc-web-text" }, body: "AAAAAAA=" }, 415, /grpc-web/],
    [
      "streaming framing for a unary method",
      { method: "POST", target: INTROSPECT, headers: { "content-type": "application/connect+json" }, body: "{}" },
      415,
      /application\/connect\+json/,
    ],
    [
      "unary framing for a streaming method",
      { method: "POST", target: RELAY, headers: { "content-type": "application/json" }, body: "{}" },
      415,
      /application\/connect\+json/,
    ],
    ["PUT", { method: "PUT", target: INTROSPECT, headers: { "content-type": "application/json" }, body: "{}" }, 405, /method PUT/],
    ["GET of a streaming method", { target: `${RELAY}?connect=v1&encoding=json&message=%7B%7D` }, 405, /method GET/],
  ];
  it.each(cases)("%s", async (_name, req, status, says) => {
    const res = await rawRequest(relay.url, req);
    expect(res.status).toBe(status);
    expect(res.headers["content-type"]).toBe("application/json");
    const body = JSON.parse(res.body.toString()) as { error: { message: string; code: string } };
    expect(body.error.message).toMatch(says);
    expect(body.error.code).toBe(status === 415 ? "unsupported_media_type" : "method_not_allowed");
    if (status === 405) expect(res.headers.allow).toMatch(/POST/);
  });

  it("still hands what a protocol takes to connect-node: Connect GET, gRPC-Web binary", async () => {
    const get = await rawRequest(relay.url, { target: `${INTROSPECT}?connect=v1&encoding=json&message=%7B%7D` });
    expect(get.status).toBe(401);
    expect(get.headers["content-type"]).toBe("application/json");
    const web = await rawRequest(relay.url, {
      method: "POST",
      target: INTROSPECT,
      headers: { "content-type": "application/grpc-web+proto" },
      body: envelope(0, Buffer.alloc(0)),
    });
    expect(web.status).toBe(200);
    expect(web.headers["grpc-status"] ?? web.body.toString("latin1").match(/grpc-status: ?(\d+)/)?.[1]).toBe("16");
  });
});

describe("a deadline past what a timer can hold is no deadline, not one of 1 ms", () => {
  // grpc-go encodes its longest deadline as `99999999H`; Node's setTimeout takes at most
  // 2^31-1 ms and fires at once for more, so connect-node ended such a Relay call after 1 ms
  // ("client closed the request"), the call already counted and sent.
  const relayCall = (): Buffer => {
    const json = JSON.stringify({
      provider: "openai",
      method: "POST",
      path: "/v1/chat/completions",
      headers: [{ name: "content-type", value: "application/json" }],
      bodyText: JSON.stringify({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "hi" }] }),
    });
    return envelope(0, Buffer.from(json));
  };
  const cases: [string, Record<string, string>][] = [
    ["gRPC-Web, grpc-timeout 99999999H", { "content-type": "application/grpc-web+json", "grpc-timeout": "99999999H" }],
    ["gRPC-Web, grpc-timeout 2147484S", { "content-type": "application/grpc-web+json", "grpc-timeout": "2147484S" }],
    ["Connect, connect-timeout-ms 9999999999", { "content-type": "application/connect+json", "connect-timeout-ms": "9999999999" }],
  ];
  it.each(cases)("%s: the call completes", async (_name, headers) => {
    const res = await rawRequest(relay.url, { method: "POST", target: RELAY, headers: { ...auth(), ...headers }, body: relayCall() });
    const text = res.body.toString("latin1");
    expect(res.status).toBe(200);
    expect(text).toContain("OUTCOME_COMPLETE");
    expect(text).not.toContain("client closed");
  });

  it("a deadline that cuts the answer: the end says so and the RPC ends DEADLINE_EXCEEDED (was `client went away`, status OK)", async () => {
    const json = JSON.stringify({
      provider: "openai",
      method: "POST",
      path: "/v1/chat/completions",
      headers: [
        { name: "content-type", value: "application/json" },
        { name: "x-mock-chunks", value: "20" },
        { name: "x-mock-delay-ms", value: "50" },
      ],
      bodyText: JSON.stringify({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "hi" }] }),
    });
    const res = await rawRequest(relay.url, {
      method: "POST",
      target: RELAY,
      headers: { ...auth(), "content-type": "application/grpc-web+json", "grpc-timeout": "300m" },
      body: envelope(0, Buffer.from(json)),
    });
    const text = res.body.toString("latin1");
    expect(text).toContain('"outcome":"OUTCOME_TRUNCATED"');
    expect(text).toContain('"error":"deadline exceeded"');
    expect(text).toMatch(/grpc-status: ?4/);
  });

  it("a deadline a timer can hold still applies", async () => {
    const res = await rawRequest(relay.url, {
      method: "POST",
      target: RELAY,
      headers: { ...auth(), "content-type": "application/grpc-web+json", "grpc-timeout": "1n" },
      body: relayCall(),
    });
    expect(res.body.toString("latin1")).toMatch(/grpc-status: ?4/);
  });
});

/** Raw HTTP/2 frames on a socket (floods node:http2 would not send). */
const frame = (type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer => {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
};
/** An HPACK integer with a 7-bit prefix. */
const hpackInt = (n: number, prefix = 0): Buffer => {
  if (n < 127) return Buffer.from([prefix | n]);
  const out = [prefix | 127];
  let rest = n - 127;
  while (rest >= 128) {
    out.push((rest & 127) | 128);
    rest >>= 7;
  }
  out.push(rest);
  return Buffer.from(out);
};
/** A literal header field, without indexing or (with `index`) added to the dynamic table. */
const literal = (name: string, value: string, index = false): Buffer =>
  Buffer.concat([Buffer.from([index ? 0x40 : 0x00]), hpackInt(name.length), Buffer.from(name), hpackInt(Buffer.byteLength(value)), Buffer.from(value)]);
/** `POST <path>` over http (static table entries 3 and 6). */
const post = (path: string, extra: Buffer[] = []): Buffer =>
  Buffer.concat([Buffer.from([0x83, 0x86]), literal(":path", path), literal(":authority", "x"), ...extra]);
const HEADERS = 1;
const RST_STREAM = 3;
const SETTINGS = 4;
const PING = 6;
const CONTINUATION = 9;
const END_HEADERS = 4;

/** A prior-knowledge h2c connection on a raw socket, its preface and SETTINGS sent; what comes back is dropped. */
function rawH2(): Promise<Socket> {
  const { port } = new URL(relay.url);
  return new Promise((resolve) => {
    const s = connect(Number(port), "127.0.0.1", () => {
      s.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frame(SETTINGS, 0, 0)]));
      resolve(s);
    });
    s.on("data", () => {});
    s.on("error", () => {});
  });
}

describe("h2c frame floods", () => {
  it("rapid reset (20,000 HEADERS + RST_STREAM): the relay answers at once, its heap stays bounded", async () => {
    const before = heap();
    const s = await rawH2();
    for (let batch = 0; batch < 10; batch++) {
      const parts: Buffer[] = [];
      for (let i = 0; i < 2000; i++) {
        const id = 1 + 2 * (batch * 2000 + i);
        parts.push(
          frame(HEADERS, END_HEADERS, id, post(INTROSPECT, [literal("content-type", "application/json")])),
          frame(RST_STREAM, 0, id, Buffer.from([0, 0, 0, 8])),
        );
      }
      s.write(Buffer.concat(parts));
    }
    // nghttp2 ends such a session (GOAWAY) once the resets pass its rate; when that shows
    // depends on the load, so what is asserted is the harm: the relay keeps answering.
    await sleep(1000);
    await healthyWithin(1000);
    expect(heap() - before).toBeLessThan(64);
    s.destroy();
  });

  it("CONTINUATION flood: the connection is cut", async () => {
    const s = await rawH2();
    s.write(frame(HEADERS, 0, 1, post("/healthz")));
    for (let i = 0; i < 20 && !s.closed; i++) {
      s.write(Buffer.concat(Array.from({ length: 1000 }, () => frame(CONTINUATION, 0, 1, literal("x-a", "b".repeat(100))))));
      await sleep(5);
    }
    await sleep(300);
    expect(s.closed).toBe(true);
    await healthyWithin(500);
  });

  it("SETTINGS and PING floods from a client that reads nothing: memory stays bounded", async () => {
    const before = process.memoryUsage().rss / MB;
    const s = await rawH2();
    s.pause();
    s.write(Buffer.concat(Array.from({ length: 100_000 }, (_, i) => (i % 2 ? frame(SETTINGS, 0, 0) : frame(PING, 0, 0, Buffer.alloc(8))))));
    await sleep(1000);
    expect(process.memoryUsage().rss / MB - before).toBeLessThan(64);
    await healthyWithin(500);
    s.destroy();
  });

  it("HPACK amplification (one 4 KB entry referenced 200 times per stream, 100 streams): memory stays bounded", async () => {
    const before = process.memoryUsage().rss / MB;
    const s = await rawH2();
    s.pause();
    for (let id = 1; id < 200; id += 2) {
      const first = id === 1 ? [literal("x-big", "v".repeat(4000), true)] : [];
      s.write(frame(HEADERS, END_HEADERS, id, post(INTROSPECT, [...first, ...Array.from({ length: 200 }, () => Buffer.from([0x80 | 62]))])));
    }
    await sleep(1000);
    expect(process.memoryUsage().rss / MB - before).toBeLessThan(64);
    await healthyWithin(500);
    s.destroy();
  });
});

it("no log line carries a secret, and none is an error", () => {
  expect(logLines.length).toBeGreaterThan(0);
  for (const line of logLines) {
    expect(line).not.toContain(secret);
    expect(line).not.toContain(relay.adminKey);
    expect(line).not.toContain(UPSTREAM_KEY);
    expect(line).not.toMatch(/"level":"(error|fatal)"/);
  }
});
