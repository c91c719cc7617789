/**
 * The unary fast lane (src/services/unary-fast-lane.ts, issue 22 item 4): plain Connect unary
 * IntrospectToken and GetQuota are answered without connect-node, with connect-node's answers.
 * The oracle is the relay itself: the same call as Connect GET unary (both methods have no side
 * effects), which the lane leaves to connect-node, or another method's refusal for checks that do
 * not depend on the method. Every test also checks the lane was (or was not) taken, through
 * `relayapi_rpc_fast_lane_total`, so a silent fall-back to connect-node fails it.
 */
import { fromBinary, toJsonString } from "@bufbuild/protobuf";
import { Code, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { IntrospectTokenResponseSchema, TokenService } from "../gen/relayapi/v1/token_service_pb.js";
import { codeOf } from "./support/connect-code.js";
import { h2Request, rawRequest, type RawResponse } from "./support/http.js";
import type { TestRelay } from "./support/relay.js";
import { availableDrivers, useRelay } from "./support/use-relay.js";
import { useH2Sessions } from "./support/h2-sessions.js";

const drivers = await availableDrivers();
const INTROSPECT = "/relayapi.v1.TokenService/IntrospectToken";
const QUOTA = "/relayapi.v1.TokenService/GetQuota";
const SEALING_KEY = "/relayapi.v1.TokenService/GetSealingKey";
const MAX_BODY = 4096;

const h2 = useH2Sessions();

/** Calls the fast lane took so far, by method name. */
async function taken(relay: TestRelay): Promise<Record<string, number>> {
  const text = await (await fetch(`${relay.url}/metrics`)).text();
  const out: Record<string, number> = { IntrospectToken: 0, GetQuota: 0 };
  for (const m of text.matchAll(/^relayapi_rpc_fast_lane_total\{method="relayapi\.v1\.TokenService\.(\w+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

/** `relayapi_responses_total` of the RPC entry, by label set. */
async function rpcAnswers(relay: TestRelay): Promise<Map<string, number>> {
  const text = await (await fetch(`${relay.url}/metrics`)).text();
  return new Map([...text.matchAll(/^relayapi_responses_total\{entry="rpc",([^}]*)\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
}

function delta(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) if (v !== (before.get(k) ?? 0)) out[k] = v - (before.get(k) ?? 0);
  return out;
}

/** What a client can see of an answer: status, headers but the per-connection ones, body. */
function visible(r: RawResponse): { status: number; headers: Record<string, string>; body: string } {
  const headers = { ...r.headers };
  for (const h of ["date", "connection", "keep-alive", "transfer-encoding"]) delete headers[h];
  return { status: r.status, headers, body: r.body.toString("base64") };
}

type Wire = "1.1" | "2";
const WIRES: Wire[] = ["1.1", "2"];

/** One raw call over HTTP/1.1 or h2c. */
async function call(relay: TestRelay, wire: Wire, method: string, path: string, headers: Record<string, string>, body?: Buffer | string): Promise<RawResponse> {
  if (wire === "2") return h2Request(relay.url, { method, path, headers, body: method === "GET" ? undefined : (body ?? "") });
  return rawRequest(relay.url, { method, target: path, headers, body });
}

describe.each(drivers)("the unary fast lane (%s)", (driver) => {
  const { relay } = useRelay({ driver, config: { maxBodyBytes: MAX_BODY } });

  it("connect-node clients (HTTP/1.1, h2c; JSON, binary) get the answers connect-node gives", async () => {
    const { secret } = await relay.issue({ limits: { maxCalls: 50n }, subject: "fast-lane" });
    const headers = { authorization: `Bearer ${secret}` };
    for (const httpVersion of WIRES) {
      for (const useBinaryFormat of [false, true]) {
        const base = { baseUrl: relay.url, useBinaryFormat };
        const t = (useHttpGet: boolean): Transport =>
          httpVersion === "2"
            ? createConnectTransport({ ...base, httpVersion, sessionManager: h2(relay.url), useHttpGet })
            : createConnectTransport({ ...base, httpVersion, useHttpGet });
        const fast = createClient(TokenService, t(false));
        const slow = createClient(TokenService, t(true));
        const before = await taken(relay);
        // A deadline (connect-timeout-ms) is a plain case too.
        const [a, b] = [await fast.introspectToken({}, { headers, timeoutMs: 5000 }), await slow.introspectToken({}, { headers })];
        expect(toJsonString(IntrospectTokenResponseSchema, a)).toBe(toJsonString(IntrospectTokenResponseSchema, b));
        expect(a.token?.subject).toBe("fast-lane");
        expect(a.token?.callsLeft).toBe(50n);
        expect(await fast.getQuota({}, { headers })).toEqual(await slow.getQuota({}, { headers }));
        expect(await taken(relay)).toEqual({ IntrospectToken: before.IntrospectToken! + 1, GetQuota: before.GetQuota! + 1 });
      }
    }
  });

  it("sends connect-node's bytes and headers, on HTTP/1.1 and h2c, JSON and proto, with CORS", async () => {
    const { secret } = await relay.issue();
    for (const wire of WIRES) {
      for (const [type, get, body] of [
        ["application/json", "encoding=json&message=%7B%7D", "{}"],
        ["application/json; charset=utf-8", "encoding=json&message=%7B%22x%22%3A1%7D", '{"x":1}'],
        ["application/proto", "encoding=proto&message=", ""],
      ] as const) {
        for (const path of [INTROSPECT, QUOTA]) {
          const headers = { authorization: `Bearer ${secret}`, origin: "https://app.example" };
          const before = await taken(relay);
          const fast = await call(relay, wire, "POST", path, { ...headers, "content-type": type }, body);
          const slow = await call(relay, wire, "GET", `${path}?connect=v1&${get}`, headers);
          expect(fast.status).toBe(200);
          expect(visible(fast)).toEqual(visible(slow));
          const after = await taken(relay);
          expect(after.IntrospectToken! + after.GetQuota! - before.IntrospectToken! - before.GetQuota!).toBe(1);
        }
      }
    }
    const proto = await call(relay, "1.1", "POST", INTROSPECT, { authorization: `Bearer ${secret}`, "content-type": "application/proto" }, "");
    expect(fromBinary(IntrospectTokenResponseSchema, proto.body).token?.callsUsed).toBe(0n);
  });

  it("refuses as connect-node does: no token, a bad or revoked token, malformed JSON or proto (same code, status, body, counted alike)", async () => {
    const { secret, id } = await relay.issue();
    await relay.tokens.revokeToken({ id });
    const cases: [string, Record<string, string>, string, Buffer | string, string][] = [
      ["no token", {}, "application/json", "{}", "encoding=json&message=%7B%7D"],
      ["bad token", { authorization: "Bearer rai_nope" }, "application/json", "{}", "encoding=json&message=%7B%7D"],
      ["revoked", { authorization: `Bearer ${secret}` }, "application/json", "{}", "encoding=json&message=%7B%7D"],
      ["malformed JSON", { authorization: `Bearer ${secret}` }, "application/json", "{bad", "encoding=json&message=%7Bbad"],
      ["not an object", { authorization: `Bearer ${secret}` }, "application/json", "[]", "encoding=json&message=%5B%5D"],
      ["malformed proto", { authorization: `Bearer ${secret}` }, "application/proto", Buffer.from([0xff, 0xff]), "encoding=proto&base64=1&message=__8"],
    ];
    for (const wire of WIRES) {
      for (const [name, headers, type, body, get] of cases) {
        const t0 = await taken(relay);
        const a0 = await rpcAnswers(relay);
        const fast = await call(relay, wire, "POST", INTROSPECT, { ...headers, "content-type": type }, body);
        const a1 = await rpcAnswers(relay);
        const slow = await call(relay, wire, "GET", `${INTROSPECT}?connect=v1&${get}`, headers);
        const a2 = await rpcAnswers(relay);
        expect(fast.status, name).toBeGreaterThanOrEqual(400);
        expect(fast.status, name).toBeLessThan(500);
        expect(visible(fast), name).toEqual(visible(slow));
        expect(delta(a0, a1), name).toEqual(delta(a1, a2));
        expect((await taken(relay)).IntrospectToken, name).toBe(t0.IntrospectToken! + 1);
      }
    }
  });

  it("refuses a body over the limit as connect-node does (declared, and counted as it comes)", async () => {
    const { secret } = await relay.issue();
    const big = `{"x":"${"a".repeat(MAX_BODY)}"}`;
    for (const wire of WIRES) {
      for (const headers of [{}, { "transfer-encoding": "chunked" }] as Record<string, string>[]) {
        if (wire === "2" && "transfer-encoding" in headers) continue;
        const h = { authorization: `Bearer ${secret}`, "content-type": "application/json", ...headers };
        const t0 = await taken(relay);
        const sent = "transfer-encoding" in headers ? `${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n` : big;
        const fast = await call(relay, wire, "POST", INTROSPECT, h, sent);
        // GetSealingKey takes the Connect path; the refusal does not depend on the method.
        const slow = await call(relay, wire, "POST", SEALING_KEY, h, sent);
        expect(fast.status).toBe(429);
        expect(JSON.parse(fast.body.toString()).code).toBe("resource_exhausted");
        expect(visible(fast)).toEqual(visible(slow));
        expect((await taken(relay)).IntrospectToken).toBe(t0.IntrospectToken! + 1);
      }
    }
  });

  it("leaves gRPC, gRPC-Web, GET, compressed bodies, streaming types and bad deadlines to connect-node", async () => {
    const { secret } = await relay.issue();
    const headers = { authorization: `Bearer ${secret}` };
    const t0 = await taken(relay);
    const grpc = createClient(TokenService, createGrpcTransport({ baseUrl: relay.url, sessionManager: h2(relay.url) }));
    const grpcWeb = createClient(TokenService, createGrpcWebTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
    const connect = createClient(TokenService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
    const expected = toJsonString(IntrospectTokenResponseSchema, await connect.introspectToken({}, { headers }));
    expect(toJsonString(IntrospectTokenResponseSchema, await grpc.introspectToken({}, { headers }))).toBe(expected);
    expect(toJsonString(IntrospectTokenResponseSchema, await grpcWeb.introspectToken({}, { headers }))).toBe(expected);
    expect(await codeOf(() => grpc.introspectToken({}, { headers: { authorization: "Bearer rai_nope" } }))).toBe(Code.Unauthenticated);

    const json = { ...headers, "content-type": "application/json" };
    const gz = await call(relay, "1.1", "POST", INTROSPECT, { ...json, "content-encoding": "gzip" }, gzipSync("{}"));
    expect(gz.status).toBe(200);
    expect(JSON.parse(gz.body.toString())).toEqual(JSON.parse(expected));
    const unknownEncoding = await call(relay, "1.1", "POST", INTROSPECT, { ...json, "content-encoding": "zz" }, "{}");
    expect(JSON.parse(unknownEncoding.body.toString()).code).toBe("unimplemented");
    const badDeadline = await call(relay, "2", "POST", INTROSPECT, { ...json, "connect-timeout-ms": "soon" }, "{}");
    expect([badDeadline.status, JSON.parse(badDeadline.body.toString()).code]).toEqual([400, "invalid_argument"]);
    const streaming = await call(relay, "1.1", "POST", INTROSPECT, { ...headers, "content-type": "application/connect+json" }, "");
    expect(streaming.status).toBe(415);
    expect((await call(relay, "1.1", "POST", INTROSPECT, { ...headers, "content-type": "text/plain" }, "{}")).status).toBe(415);
    // Only the one Connect POST above went through the lane.
    expect(await taken(relay)).toEqual({ IntrospectToken: t0.IntrospectToken! + 1, GetQuota: t0.GetQuota! });
  });
});

describe("the unary fast lane behind the per-IP limit", () => {
  const { relay } = useRelay({ config: { ipRpm: 3 } });

  it("refuses past the limit with the front door's answer, before reading the body", async () => {
    const { secret } = await relay.issue();
    const h = { authorization: `Bearer ${secret}`, "content-type": "application/json" };
    const t0 = await taken(relay);
    let refused: RawResponse | undefined;
    for (let i = 0; i < 10 && refused === undefined; i++) {
      const r = await call(relay, "1.1", "POST", INTROSPECT, h, "{}");
      if (r.status !== 200) refused = r;
    }
    expect(refused?.status).toBe(429);
    expect(JSON.parse(refused!.body.toString()).code).toBe("resource_exhausted");
    const slow = await call(relay, "1.1", "POST", SEALING_KEY, h, "{}");
    expect(visible(refused!)).toEqual(visible(slow));
    expect((await taken(relay)).IntrospectToken).toBeGreaterThan(t0.IntrospectToken!);
  });
});
