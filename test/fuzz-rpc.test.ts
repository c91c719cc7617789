/**
 * Fuzz: Connect, gRPC-Web and Connect GET requests to TokenService and RelayService as raw
 * HTTP/1.1: random bytes (enveloped or not) under every content type, random protocol headers
 * (timeouts, compression, versions), and random but well-typed messages (IssueToken, GetToken,
 * ListTokens, RevokeToken, Relay with any provider, method, path, query, headers and body).
 * Never an HTTP 5xx, never an internal/unknown/unavailable code, never a secret in an answer; a
 * gzip bomb is refused without being inflated.
 */
import { create, toBinary, toJsonString, type DescMessage } from "@bufbuild/protobuf";
import fc from "fast-check";
import { createGzip } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RelayRequestSchema } from "../gen/relayapi/v1/relay_service_pb.js";
import { GetTokenRequestSchema, IssueTokenRequestSchema, ListTokensRequestSchema, RevokeTokenRequestSchema } from "../gen/relayapi/v1/token_service_pb.js";
import { createLogger } from "../src/log.js";
import { expectNoFragment, fragments, RawClient, reportCases, rssMb, type WireResponse } from "./support/fuzz.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { useRelay } from "./support/use-relay.js";

const RUNS = { bytes: 1100, typed: 800, relay: 700 };
const TOKEN_SERVICE = ["IssueToken", "GetToken", "ListTokens", "RevokeToken", "IntrospectToken", "GetSealingKey"].map((m) => `/relayapi.v1.TokenService/${m}`);
const RELAY = "/relayapi.v1.RelayService/Relay";
/**
 * Codes that would mean the relay, not the request, failed. `internal` is allowed only with the
 * protocol's own message for a framing violation (gRPC answers those INTERNAL by spec); the
 * relay's answer to an unexpected exception, "internal error", never.
 */
const BAD_CODES = new Set(["unknown", "data_loss", "unavailable", "deadline_exceeded", "2", "4", "14", "15"]);
const isRelayFailure = (e: RpcError): boolean => BAD_CODES.has(e.code) || ((e.code === "internal" || e.code === "13") && /^internal error$/i.test(e.message));

const { relay, mock } = useRelay({ mock: { chunks: 2 }, config: { maxBodyBytes: 1024 * 1024 }, log: createLogger("debug", (l) => logLines.push(l)) });
let client: RawClient;
let relayToken: string;
let frags: string[];
const logLines: string[] = [];
let cases = 0;
let rssStart = 0;

beforeAll(async () => {
  client = RawClient.for(relay.url);
  relayToken = (await relay.issue()).secret;
  frags = fragments(relay.adminKey, relayToken, UPSTREAM_KEY);
  rssStart = rssMb();
});
afterAll(async () => {
  client?.close();
});

const envelope = (data: Uint8Array, flags = 0): Buffer => {
  const b = Buffer.alloc(5 + data.length);
  b[0] = flags;
  b.writeUInt32BE(data.length, 1);
  b.set(data, 5);
  return b;
};

function envelopes(buf: Buffer): { flags: number; data: Buffer }[] {
  const out: { flags: number; data: Buffer }[] = [];
  for (let at = 0; at + 5 <= buf.length; ) {
    const len = buf.readUInt32BE(at + 1);
    out.push({ flags: buf[at]!, data: buf.subarray(at + 5, at + 5 + len) });
    at += 5 + len;
  }
  return out;
}

interface RpcError {
  code: string;
  message: string;
}

/** The error an answer carries in whichever protocol it speaks, if any. */
function rpcError(res: WireResponse, ct: string): RpcError | undefined {
  const json = (b: Buffer): RpcError | undefined => {
    try {
      const v = JSON.parse(b.toString()) as { code?: string; message?: string; error?: { code?: string; message?: string } };
      const e = v.error ?? v;
      return e.code === undefined ? undefined : { code: e.code, message: e.message ?? "" };
    } catch {
      return undefined;
    }
  };
  const grpc = (text: string): RpcError | undefined => {
    const code = /grpc-status:\s*(\d+)/i.exec(text)?.[1];
    return code === undefined ? undefined : { code, message: decodeURIComponent(/grpc-message:\s*([^\r\n]*)/i.exec(text)?.[1] ?? "") };
  };
  if (res.headers["grpc-status"] !== undefined) return grpc(res.head);
  if (ct.startsWith("application/grpc-web") && res.status === 200) {
    const trailer = envelopes(res.body).find((e) => e.flags & 0x80);
    return trailer && grpc(trailer.data.toString());
  }
  if (ct.startsWith("application/connect+") && res.status === 200) {
    const end = envelopes(res.body).find((e) => e.flags & 0x02);
    return end && json(end.data);
  }
  return res.status === 200 ? undefined : json(res.body);
}

async function send(method: "POST" | "GET", target: string, headers: Record<string, string>, body?: Buffer): Promise<WireResponse> {
  cases++;
  const res = await client.request(method, target, headers, body);
  const ct = headers["content-type"] ?? "";
  const what = `${method} ${target.slice(0, 100)} ${JSON.stringify(headers).slice(0, 160)} ${JSON.stringify(body?.toString("latin1").slice(0, 80))} -> ${res.status}`;
  const error = rpcError(res, ct);
  // The Connect protocol answers a compression it does not support with `unimplemented` (501).
  const unsupportedCompression =
    error?.code === "unimplemented" && /^(?!gzip$|identity$)/.test(headers["content-encoding"] ?? headers["connect-content-encoding"] ?? "gzip");
  if (!unsupportedCompression) expect(res.status, what).toBeLessThan(500);
  expect(error !== undefined && isRelayFailure(error), `${what}: ${JSON.stringify(error)}`).toBe(false);
  expectNoFragment(res.head + "\n" + res.body.toString("latin1"), frags, what);
  return res;
}

const auth = () =>
  fc.constantFrom<Record<string, string>>(
    {},
    { authorization: `Bearer ${relay.adminKey}` },
    { authorization: `Bearer ${relayToken}` },
    { authorization: "Bearer garbage" },
  );
const protocolHeaders = fc.record(
  {
    "connect-protocol-version": fc.constantFrom("1", "2", "", "x"),
    "connect-timeout-ms": fc.constantFrom("0", "1", "-1", "abc", "99999999999", "1e3", "10000"),
    "grpc-timeout": fc.constantFrom("1S", "0m", "99999999H", "x", "-1S", "5000m"),
    "content-encoding": fc.constantFrom("gzip", "br", "identity", "x"),
    "connect-content-encoding": fc.constantFrom("gzip", "identity", "zstd"),
    "connect-accept-encoding": fc.constantFrom("gzip", "*", ""),
    "x-grpc-web": fc.constant("1"),
  },
  { requiredKeys: [] },
);
const contentType = fc.constantFrom(
  "application/proto",
  "application/json",
  "application/connect+proto",
  "application/connect+json",
  "application/grpc-web+proto",
  "application/grpc-web-text",
  "application/grpc",
  "text/plain",
  "application/json; charset=latin1",
);

// Generous: a property runs its cases one after another, and CI machines can be busy.
describe("fuzz: Connect and gRPC-Web messages", { timeout: 180_000 }, () => {
  it("random bytes, enveloped or not, under every content type and protocol header", async () => {
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
      fc.tuple(fc.uint8Array({ maxLength: 120 }), fc.constantFrom(0, 1, 2, 0x80, 0xff)).map(([a, f]) => envelope(a, f)),
      fc.tuple(fc.uint8Array({ maxLength: 40 }), fc.nat()).map(([a, n]) => {
        const e = envelope(a);
        e.writeUInt32BE(n >>> 0, 1);
        return e;
      }),
      fc.jsonValue({ maxDepth: 2 }).map((v) => Buffer.from(JSON.stringify(v))),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...TOKEN_SERVICE, RELAY), contentType, auth(), protocolHeaders, body, async (path, ct, a, ph, b) => {
        await send("POST", path, { ...a, ...ph, "content-type": ct }, b);
      }),
      {
        numRuns: RUNS.bytes,
        // Regressions: a malformed binary message was `internal` (HTTP 500, grpc-status 13); so was a bad brotli body.
        examples: [
          ["/relayapi.v1.TokenService/IssueToken", "application/proto", {}, {}, Buffer.from([0, 0, 0, 0, 0])],
          ["/relayapi.v1.RelayService/Relay", "application/grpc-web+proto", {}, {}, envelope(Buffer.from([0, 0, 0]))],
          ["/relayapi.v1.TokenService/IssueToken", "application/proto", {}, { "content-encoding": "br" }, Buffer.from("hello")],
        ],
      },
    );
  });

  it("well-typed random TokenService messages (admin key): binary, JSON and Connect GET", async () => {
    const str = fc.oneof(
      fc.string({ maxLength: 20 }),
      fc.string({ unit: "binary", maxLength: 10 }),
      fc.constantFrom("", "\u0000", "tok_x", "openai", "a:b", "%", "'; drop table tokens; --"),
    );
    const big = fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.constantFrom(0n, 1n, -1n, 2n ** 53n + 1n));
    const i32 = fc.oneof(fc.integer(), fc.constantFrom(0, -1, 2 ** 31 - 1, -(2 ** 31)));
    const msg = fc.oneof(
      fc
        .record(
          {
            provider: fc.oneof(str, fc.constant("openai")),
            subject: str,
            credential: fc.oneof(
              fc.record({ case: fc.constant("upstreamKey" as const), value: str }),
              fc.record({ case: fc.constant("pool" as const), value: str }),
            ),
            limits: fc.record(
              {
                maxCalls: big,
                models: fc.array(str, { maxLength: 3 }),
                paths: fc.array(str, { maxLength: 3 }),
                origins: fc.array(str, { maxLength: 3 }),
                maxBodyBytes: big,
              },
              { requiredKeys: [] },
            ),
            expiry: fc.oneof(
              fc.record({ case: fc.constant("expiresIn" as const), value: fc.record({ seconds: big, nanos: i32 }) }),
              fc.record({ case: fc.constant("expiresAt" as const), value: fc.record({ seconds: big, nanos: i32 }) }),
            ),
          },
          { requiredKeys: [] },
        )
        .map((v) => ["IssueToken", IssueTokenRequestSchema, v] as const),
      fc.record({ id: str }).map((v) => ["GetToken", GetTokenRequestSchema, v] as const),
      fc.record({ id: str }).map((v) => ["RevokeToken", RevokeTokenRequestSchema, v] as const),
      fc
        .record(
          {
            pageSize: i32,
            pageToken: fc.oneof(
              str,
              fc.string().map((s) => Buffer.from(s).toString("base64url")),
            ),
            provider: str,
            subject: str,
            kind: i32,
            status: i32,
          },
          { requiredKeys: [] },
        )
        .map((v) => ["ListTokens", ListTokensRequestSchema, v] as const),
    );
    await fc.assert(
      fc.asyncProperty(msg, fc.constantFrom("binary", "json", "get"), async ([method, desc, init], encoding) => {
        const schema = desc as DescMessage;
        let message;
        try {
          message = create(schema, init as never);
        } catch {
          return; // fast-check made something protobuf-es itself refuses to build
        }
        let binary: Uint8Array, json: string;
        try {
          binary = toBinary(schema, message);
          json = toJsonString(schema, message);
        } catch {
          return; // not encodable (a Duration's nanos out of range): nothing a client could send
        }
        const admin = { authorization: `Bearer ${relay.adminKey}` };
        const path = `/relayapi.v1.TokenService/${method}`;
        if (encoding === "binary") await send("POST", path, { ...admin, "content-type": "application/proto" }, Buffer.from(binary));
        else if (encoding === "json") await send("POST", path, { ...admin, "content-type": "application/json" }, Buffer.from(json));
        else if (method !== "IssueToken" && method !== "RevokeToken") {
          const q = `connect=v1&encoding=json&message=${encodeURIComponent(json)}`;
          await send("GET", `${path}?${q}`, admin);
        }
      }),
      // Regressions: a NUL in an id or a subject reached PostgreSQL and came back as a 500.
      {
        numRuns: RUNS.typed,
        examples: [
          [["GetToken", GetTokenRequestSchema, { id: "\u0000" }], "binary"],
          [
            ["IssueToken", IssueTokenRequestSchema, { provider: "openai", subject: "a\u0000", credential: { case: "upstreamKey", value: "sk-x-12345678" } }],
            "json",
          ],
        ] as never,
      },
    );
  });

  it("well-typed random Relay requests with a valid token: refused cleanly or relayed", async () => {
    const headerName = fc.oneof(
      fc.string({ maxLength: 12 }),
      fc.constantFrom(
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "authorization",
        "x-api-key",
        "expect",
        "te",
        "upgrade",
        "content-type",
        "x ok",
        "x\r\ny",
        "__proto__",
      ),
    );
    const req = fc.record({
      provider: fc.oneof(fc.constantFrom("openai", "anthropic", "gemini", ""), fc.string({ maxLength: 10 })),
      method: fc.oneof(fc.constantFrom("", "GET", "post", "HEAD", "DELETE", "CONNECT", "TRACE", "OPTIONS"), fc.string({ maxLength: 6 })),
      path: fc.oneof(
        fc.constantFrom(
          "/v1/chat/completions",
          "v1/chat/completions",
          "/v1/models",
          "",
          "/",
          "//evil.example/x",
          "/../x",
          "/%2e%2e/x",
          "/v1/chat/completions#x",
          "/@evil",
        ),
        fc.webPath(),
        fc.string({ maxLength: 20 }),
      ),
      query: fc.oneof(fc.webQueryParameters(), fc.string({ maxLength: 20 }), fc.constant(`key=${"k"}&token=t`)),
      headers: fc.array(
        fc.record({ name: headerName, value: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom("a\r\nHost: evil", "chunked", "close", "100-continue")) }),
        { maxLength: 4 },
      ),
      body: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constant(new TextEncoder().encode('{"model":"gpt-mock","messages":[],"stream":true}'))),
    });
    await fc.assert(
      fc.asyncProperty(req, fc.constantFrom("application/connect+proto", "application/connect+json", "application/grpc-web+proto"), async (r, ct) => {
        const message = create(RelayRequestSchema, r);
        const bytes =
          ct === "application/connect+json" ? new TextEncoder().encode(toJsonString(RelayRequestSchema, message)) : toBinary(RelayRequestSchema, message);
        const before = mock.requests.length;
        await send("POST", RELAY, { authorization: `Bearer ${relayToken}`, "content-type": ct }, envelope(bytes));
        for (const seen of mock.requests.slice(before)) {
          const all = seen.path + seen.query.toString() + JSON.stringify(seen.headers);
          expect(all.includes(relayToken) || all.includes(relayToken.slice(4, 36)), "relay token reached the upstream").toBe(false);
          expect(seen.headers.host).toBe(new URL(mock.url).host);
        }
      }),
      // Regression: a header name a client library refuses was "upstream unreachable" (refunded) instead of invalid_argument.
      {
        numRuns: RUNS.relay,
        examples: [
          [
            { provider: "openai", method: "", path: "/v1/chat/completions", query: "", headers: [{ name: "x ok", value: "1" }], body: new Uint8Array() },
            "application/connect+proto",
          ],
        ],
      },
    );
  });

  it("a gzip bomb (256 MB of zeros in ~250 KB) is refused without being inflated", async () => {
    const gz = createGzip();
    const parts: Buffer[] = [];
    gz.on("data", (c: Buffer) => parts.push(c));
    const zeros = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < 256; i++) if (!gz.write(zeros)) await new Promise((r) => gz.once("drain", r));
    await new Promise((r) => gz.end(r));
    const bomb = Buffer.concat(parts);
    const rss = rssMb();
    const unary = await send(
      "POST",
      "/relayapi.v1.TokenService/GetToken",
      { authorization: `Bearer ${relay.adminKey}`, "content-type": "application/proto", "content-encoding": "gzip" },
      bomb,
    );
    expect(unary.status).toBeGreaterThanOrEqual(400);
    const streamed = await send(
      "POST",
      RELAY,
      { authorization: `Bearer ${relayToken}`, "content-type": "application/connect+proto", "connect-content-encoding": "gzip" },
      envelope(bomb, 1),
    );
    expect(rpcError(streamed, "application/connect+proto")?.code).toBe("resource_exhausted");
    expect(rssMb() - rss, "the bomb was inflated").toBeLessThan(128);
  });

  it("afterwards: the relay answers, memory is bounded, no internal error was logged", async () => {
    expect((await client.request("GET", "/healthz")).status).toBe(200);
    console.log(`fuzz-rpc: rss ${rssStart} MB -> ${rssMb()} MB`);
    expect(rssMb() - rssStart).toBeLessThan(256);
    expect(logLines.filter((l) => l.includes('"level":"error"'))).toEqual([]);
    expectNoFragment(logLines.join("\n"), frags, "the relay's log");
    reportCases("fuzz", "fuzz-rpc", cases);
    expect(cases).toBeGreaterThanOrEqual(RUNS.bytes + RUNS.relay);
  });
});
