/**
 * Issue 17, finding 4: a client's path is a path only, checked and normalised by one function
 * for both entry points (src/relay/upstream-url.ts safePath) before anything reads it. Over
 * real Connect and gRPC clients, a `?` in RelayRequest.path no longer puts a client-named
 * parameter in front of a query-style upstream key, nor lets a Gemini model pin read its model
 * from the query part; over HTTP, a `#` (which Node hands over in the path) no longer does
 * either. The same paths give the same upstream path, or the same refusal, on both layers.
 */
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ApiShape, AuthStyle } from "../gen/relayapi/v1/admin_service_pb.js";
import { RelayService } from "../gen/relayapi/v1/relay_service_pb.js";
import { rawRequest } from "./support/http.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay({ mock: { chunks: 2 } });
let session: Http2SessionManager;
/** A token for `echoq`, a custom provider that takes its key in the query (`--auth query:key`). */
let queryToken: string;
/** A Gemini token pinned to gemini-pro. */
let pinned: string;

beforeAll(async () => {
  await relay.admin.upsertProvider({ provider: { id: "echoq", baseUrl: mock.url, authStyle: AuthStyle.QUERY, authName: "key", shape: ApiShape.OPENAI } });
  queryToken = (await relay.issue({ provider: "echoq" })).secret;
  pinned = (await relay.issue({ provider: "gemini", limits: { models: ["gemini-pro"] } })).secret;
  session = new Http2SessionManager(relay.url);
});
afterAll(async () => {
  session?.abort();
});
beforeEach(() => mock.reset());

const TRANSPORTS: [string, () => Transport][] = [
  ["connect http/1.1", () => createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" })],
  ["grpc h2c", () => createGrpcTransport({ baseUrl: relay.url, sessionManager: session })],
];

const CHAT = new TextEncoder().encode(JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] }));
const GEMINI = new TextEncoder().encode(JSON.stringify({ contents: [{ parts: [{ text: "hi" }] }] }));

interface Call {
  provider: string;
  path: string;
  query?: string;
  method?: string;
  body?: Uint8Array;
}

/** Runs RelayService.Relay to its end: the head status, or the RPC error code. */
async function relayRpc(transport: Transport, token: string, call: Call): Promise<{ status?: number; code?: Code }> {
  const client = createClient(RelayService, transport);
  let status: number | undefined;
  try {
    const stream = client.relay(
      {
        provider: call.provider,
        method: call.method ?? "POST",
        path: call.path,
        query: call.query ?? "",
        headers: [{ name: "content-type", value: "application/json" }],
        body: call.body ?? CHAT,
      },
      { headers: { authorization: `Bearer ${token}` }, timeoutMs: 5000 },
    );
    for await (const res of stream) if (res.part.case === "head") status = res.part.value.status;
    return { status };
  } catch (e) {
    return { code: ConnectError.from(e).code };
  }
}

describe.each(TRANSPORTS)("RelayService over %s", (_name, transport) => {
  it("a `?` in path is refused: no client-named parameter before the query-style key", async () => {
    const r = await relayRpc(transport(), queryToken, { provider: "echoq", path: "/v1/chat/completions?echo=" });
    expect(r.code).toBe(Code.InvalidArgument);
    // Before the fix the provider saw `?echo=?key=<real key>`: echo carried the key.
    expect(mock.requests).toHaveLength(0);
  });

  it("a `#` in path is refused too", async () => {
    const r = await relayRpc(transport(), queryToken, { provider: "echoq", path: "/v1/chat/completions#x" });
    expect(r.code).toBe(Code.InvalidArgument);
    expect(mock.requests).toHaveLength(0);
  });

  it("a query in its own field reaches the provider beside the key, never in front of it", async () => {
    const r = await relayRpc(transport(), queryToken, { provider: "echoq", path: "/v1/chat/completions", query: "echo=1&key=client-chosen&token=x" });
    expect(r.status).toBe(200);
    const rec = mock.requests[0]!;
    expect(rec.path).toBe("/v1/chat/completions");
    expect(rec.query.get("echo")).toBe("1");
    expect(rec.query.getAll("key")).toEqual([UPSTREAM_KEY]);
    expect(rec.query.has("token")).toBe(false);
  });

  it("a Gemini pin cannot read its model from a query in path", async () => {
    // The pin's regex would find /models/gemini-pro in the query part; the provider would read gemini-ultra.
    const r = await relayRpc(transport(), pinned, { provider: "gemini", path: "/v1beta/models/gemini-ultra?/models/gemini-pro:generateContent", body: GEMINI });
    expect(r.code).toBe(Code.InvalidArgument);
    expect(mock.requests).toHaveLength(0);
  });

  it("the pinned model passes; another model is refused", async () => {
    expect((await relayRpc(transport(), pinned, { provider: "gemini", path: "/v1beta/models/gemini-pro:generateContent", body: GEMINI })).status).toBe(200);
    expect(mock.requests.map((r) => r.path)).toEqual(["/v1beta/models/gemini-pro:generateContent"]);
    expect((await relayRpc(transport(), pinned, { provider: "gemini", path: "/v1beta/models/gemini-ultra:generateContent", body: GEMINI })).code).toBe(
      Code.PermissionDenied,
    );
    expect(mock.requests).toHaveLength(1);
  });
});

describe("HTTP layer", () => {
  it("a `#` that Node hands over in the path is refused: the Gemini pin cannot be fooled by it", async () => {
    const res = await rawRequest(relay.url, {
      method: "POST",
      target: "/api/gemini/v1beta/models/gemini-ultra#/models/gemini-pro:generateContent",
      headers: { "x-goog-api-key": pinned, "content-type": "application/json" },
      body: Buffer.from(GEMINI),
    });
    expect(res.status).toBe(400);
    expect(mock.requests).toHaveLength(0);
  });
});

/**
 * Paths sent over both layers: the path the provider saw, or the status of the refusal.
 * HTTP request targets must be valid on the wire, so their raw characters are pre-encoded.
 */
const PARITY: [name: string, http: string, rpc: string, expected: string | number][] = [
  ["plain", "/v1/chat/completions", "/v1/chat/completions", "/v1/chat/completions"],
  ["escaped unreserved characters are decoded", "/v1/ch%61t/completions", "/v1/ch%61t/completions", "/v1/chat/completions"],
  ["no leading slash (RPC)", "/v1/chat/completions", "v1/chat/completions", "/v1/chat/completions"],
  // Not below /v1/chat/completions/: a stored completion's id there is an owned object (issue 25).
  ["raw and escaped non-ASCII alike", "/v1/moderations/%C3%A9", "/v1/moderations/é", "/v1/moderations/%C3%A9"],
  ["a space", "/v1/moderations/a%20b", "/v1/moderations/a b", "/v1/moderations/a%20b"],
  ["duplicate slashes", "/v1//chat/completions", "/v1//chat/completions", 400],
  ["a malformed escape", "/v1/chat/completions%zz", "/v1/chat/completions%zz", 400],
  ["an encoded dot segment", "/v1/%2e%2e/chat/completions", "/v1/%2e%2e/chat/completions", 400],
];

describe("one normal form for both layers", () => {
  it.each(PARITY)("%s", async (_name, httpPath, rpcPath, expected) => {
    const res = await rawRequest(relay.url, {
      method: "POST",
      target: `/api/echoq${httpPath}`,
      headers: { authorization: `Bearer ${queryToken}`, "content-type": "application/json" },
      body: Buffer.from(CHAT),
    });
    const httpSaw = typeof expected === "number" ? res.status : mock.requests[0]?.path;
    mock.reset();
    const r = await relayRpc(transport0(), queryToken, { provider: "echoq", path: rpcPath });
    const rpcSaw = typeof expected === "number" ? (r.code === Code.InvalidArgument ? 400 : r.code) : mock.requests[0]?.path;
    expect([httpSaw, rpcSaw]).toEqual([expected, expected]);
  });

  it("a path pin reads the normal form: an escaped letter neither slips past nor is refused", async () => {
    const { secret } = await relay.issue({ provider: "echoq", limits: { paths: ["/v1/chat"] } });
    const r = await relayRpc(transport0(), secret, { provider: "echoq", path: "/v1/ch%61t/completions" });
    expect(r.status).toBe(200);
    expect(mock.requests[0]!.path).toBe("/v1/chat/completions");
    const other = await relayRpc(transport0(), secret, { provider: "echoq", path: "/v1/embeddings" });
    expect(other.code).toBe(Code.PermissionDenied);
    expect(mock.requests).toHaveLength(1);
  });
});

function transport0(): Transport {
  return TRANSPORTS[0]![1]();
}
