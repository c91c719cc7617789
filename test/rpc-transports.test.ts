/**
 * The three services over every wire the one port speaks: Connect (HTTP/1.1 and h2c), gRPC
 * (h2c), gRPC-Web, and a browser-style Connect-web client on global fetch. Each issues a token
 * and streams RelayService.Relay; then the error codes of Relay and the admin rpcs.
 */
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { createConnectTransport as createWebTransport } from "@connectrpc/connect-web";
import { beforeAll, describe, expect, it } from "vitest";
import { AdminService } from "../gen/relayapi/v1/admin_service_pb.js";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { RelayService, type RelayResponse } from "../gen/relayapi/v1/relay_service_pb.js";
import { TokenService } from "../gen/relayapi/v1/token_service_pb.js";
import { MOCK_PROMPT_TOKENS } from "./support/mock-provider.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { codeOf } from "./support/connect-code.js";
import { useRelay } from "./support/use-relay.js";
import { useH2Sessions } from "./support/h2-sessions.js";

const { relay, mock } = useRelay();
const h2 = useH2Sessions();

const TRANSPORTS: [string, (url: string) => Transport][] = [
  ["connect http/1.1", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" })],
  ["connect h2c", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2", sessionManager: h2(baseUrl) })],
  ["grpc h2c", (baseUrl) => createGrpcTransport({ baseUrl, sessionManager: h2(baseUrl) })],
  ["grpc-web http/1.1", (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })],
  ["connect-web fetch", (baseUrl) => createWebTransport({ baseUrl, fetch: globalThis.fetch })],
];

const bearer = (secret: string) => ({ headers: { authorization: `Bearer ${secret}` } });
const json = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

function chatRequest(opts: { model?: string; provider?: string; extra?: Record<string, string> } = {}) {
  return {
    provider: opts.provider ?? "openai",
    path: "/v1/chat/completions",
    headers: [{ name: "content-type", value: "application/json" }, ...Object.entries(opts.extra ?? {}).map(([name, value]) => ({ name, value }))],
    body: json({
      model: opts.model ?? "gpt-mock",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
    }),
  };
}

async function collect(stream: AsyncIterable<RelayResponse>): Promise<RelayResponse["part"][]> {
  const parts: RelayResponse["part"][] = [];
  for await (const res of stream) parts.push(res.part);
  return parts;
}

/** Checks the head / chunk+ / end shape and returns the pieces. */
function splitStream(parts: RelayResponse["part"][]) {
  const head = parts[0];
  const end = parts[parts.length - 1];
  const middle = parts.slice(1, -1);
  if (head?.case !== "head") throw new Error(`first part is ${head?.case}, not head`);
  if (end?.case !== "end") throw new Error(`last part is ${end?.case}, not end`);
  expect(parts.filter((p) => p.case === "head")).toHaveLength(1);
  expect(parts.filter((p) => p.case === "end")).toHaveLength(1);
  expect(middle.every((p) => p.case === "chunk")).toBe(true);
  const data = Buffer.concat(middle.map((p) => (p.case === "chunk" ? p.value.data : new Uint8Array()))).toString("utf8");
  const header = (name: string) => head.value.headers.filter((h) => h.name === name).map((h) => h.value);
  return { head: head.value, end: end.value, chunks: middle.length, data, header };
}

describe.each(TRANSPORTS)("%s", (_name, makeTransport) => {
  let transport: Transport;
  beforeAll(() => {
    transport = makeTransport(relay.url);
  });

  it("issues a token and streams Relay: head, chunks, one end", async () => {
    const tokens = createClient(TokenService, transport);
    const issued = await tokens.issueToken(
      { provider: "openai", credential: { case: "upstreamKey", value: UPSTREAM_KEY }, limits: { maxCalls: 3n } },
      bearer(relay.adminKey),
    );
    expect(issued.secret).toMatch(/^rai_/);
    const before = mock.requests.length;

    const parts = await collect(createClient(RelayService, transport).relay(chatRequest(), bearer(issued.secret)));
    const { head, end, chunks, data, header } = splitStream(parts);
    expect(head.status).toBe(200);
    expect(header("content-type").join()).toContain("text/event-stream");
    expect(chunks).toBeGreaterThanOrEqual(1);
    expect(data).toContain('"content":"tok0 "');
    expect(data).toContain('"content":"tok4 "');
    expect(data).toContain("data: [DONE]");
    expect(end.outcome).toBe(Outcome.COMPLETE);
    expect(end.usage).toMatchObject({ promptTokens: BigInt(MOCK_PROMPT_TOKENS), completionTokens: 5n, totalTokens: BigInt(MOCK_PROMPT_TOKENS + 5) });
    expect(end.callsLeft).toBe(2n);
    expect(end.error).toBe("");

    // The upstream saw the real key, never the relay token.
    const seen = mock.requests.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(JSON.stringify(seen[0]?.headers)).not.toContain(issued.secret);
  });

  it("maps Relay failures to RPC codes", async () => {
    const client = createClient(RelayService, transport);
    const run =
      (secret: string | undefined, req = chatRequest()) =>
      () =>
        collect(client.relay(req, secret === undefined ? {} : bearer(secret)));

    expect(await codeOf(run(undefined))).toBe(Code.Unauthenticated);
    expect(await codeOf(run("rai_not-a-real-token"))).toBe(Code.Unauthenticated);

    const pinned = await relay.issue({ limits: { models: ["gpt-mock"] } });
    expect(await codeOf(run(pinned.secret, chatRequest({ model: "gpt-4o" })))).toBe(Code.PermissionDenied);

    const anthropicToken = await relay.issue({ provider: "anthropic" });
    expect(await codeOf(run(anthropicToken.secret))).toBe(Code.PermissionDenied);

    const once = await relay.issue({ limits: { maxCalls: 1n } });
    const first = splitStream(await run(once.secret)());
    expect(first.end.callsLeft).toBe(0n);
    expect(await codeOf(run(once.secret))).toBe(Code.ResourceExhausted);

    const any = await relay.issue();
    expect(await codeOf(run(any.secret, chatRequest({ provider: "no-such-provider" })))).toBe(Code.NotFound);
  });

  it("reports an upstream error status in head and end, not as an RPC error", async () => {
    const { secret } = await relay.issue({ limits: { maxCalls: 5n } });
    const parts = await collect(createClient(RelayService, transport).relay(chatRequest({ extra: { "x-mock-status": "500" } }), bearer(secret)));
    const { head, end, data } = splitStream(parts);
    expect(head.status).toBe(500);
    expect(data).toContain("mock error 500");
    expect(end.outcome).toBe(Outcome.UPSTREAM_ERROR);
    expect(end.error).not.toBe("");
    expect(end.callsLeft).toBe(4n);
  });

  it("refuses admin rpcs without or with a wrong admin key", async () => {
    const admin = createClient(AdminService, transport);
    const tokens = createClient(TokenService, transport);
    for (const opts of [{}, bearer("rak_wrong"), bearer(""), { headers: { authorization: relay.adminKey } }]) {
      expect(await codeOf(() => admin.listProviders({}, opts))).toBe(Code.Unauthenticated);
      expect(await codeOf(() => tokens.listTokens({}, opts))).toBe(Code.Unauthenticated);
      expect(await codeOf(() => tokens.issueToken({ provider: "openai", credential: { case: "upstreamKey", value: UPSTREAM_KEY } }, opts))).toBe(
        Code.Unauthenticated,
      );
    }
    // A relay token is not an admin key either.
    const { secret } = await relay.issue();
    expect(await codeOf(() => admin.listProviders({}, bearer(secret)))).toBe(Code.Unauthenticated);
    // And the real key works over this transport.
    const res = await admin.listProviders({}, bearer(relay.adminKey));
    expect(res.providers.map((p) => p.id)).toContain("openai");
  });
});

it("gives a browser client a fixed, secret-free message for a refused token", async () => {
  // A server-streaming Connect error arrives in the end-of-stream message of an HTTP 200; a
  // fetch-based client still reads its code and message.
  const web = createClient(RelayService, createWebTransport({ baseUrl: relay.url }));
  const err = await collect(web.relay(chatRequest(), bearer("rai_x"))).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  expect(err?.code).toBe(Code.Unauthenticated);
  expect(err?.rawMessage).toBe("invalid, expired or revoked token");
});

it("Relay forwards method, query and path as given (GET, no leading slash)", async () => {
  const { secret } = await relay.issue();
  const before = mock.requests.length;
  const client = createClient(RelayService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
  const parts = await collect(client.relay({ provider: "openai", method: "get", path: "v1/models", query: "limit=2" }, bearer(secret)));
  const { head, end, data, header } = splitStream(parts);
  expect(head.status).toBe(200);
  expect(header("content-type").join()).toContain("application/json");
  expect((JSON.parse(data) as { data: { id: string }[] }).data.map((m) => m.id)).toContain("gpt-4o");
  expect(end).toMatchObject({ outcome: Outcome.COMPLETE, error: "" });
  expect(end.callsLeft).toBeUndefined();
  const seen = mock.requests[before];
  expect({ method: seen?.method, path: seen?.path, query: seen?.query.toString() }).toEqual({ method: "GET", path: "/v1/models", query: "limit=2" });
});

describe("browser pages on another origin", () => {
  const ORIGIN = "https://app.example";

  it("get CORS preflights answered on the RPC paths", async () => {
    const res = await fetch(`${relay.url}/relayapi.v1.RelayService/Relay`, {
      method: "OPTIONS",
      headers: {
        origin: ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, connect-protocol-version, x-grpc-web, x-user-agent",
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe(ORIGIN);
    expect(res.headers.get("access-control-allow-methods")).toContain("POST");
    expect(res.headers.get("access-control-allow-headers")?.split(/,\s*/)).toEqual(
      expect.arrayContaining(["authorization", "content-type", "connect-protocol-version", "x-grpc-web"]),
    );
  });

  it("stream Relay with CORS headers on the answer, and the token's origin pin applies", async () => {
    const { secret } = await relay.issue({ limits: { origins: [ORIGIN] } });
    const web = createClient(RelayService, createWebTransport({ baseUrl: relay.url }));
    const seen: Headers[] = [];
    const call = (origin: string) =>
      collect(web.relay(chatRequest(), { headers: { authorization: `Bearer ${secret}`, origin }, onHeader: (h) => void seen.push(h) }));
    const { end } = splitStream(await call(ORIGIN));
    expect(end.outcome).toBe(Outcome.COMPLETE);
    expect(seen[0]?.get("access-control-allow-origin")).toBe(ORIGIN);
    expect(await codeOf(() => call("https://evil.example"))).toBe(Code.PermissionDenied);

    // A gRPC-web error's status must be readable by the page: exposed headers or the trailer frame.
    const res = await fetch(`${relay.url}/relayapi.v1.TokenService/IntrospectToken`, {
      method: "POST",
      headers: { origin: ORIGIN, "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
      body: new Uint8Array(5),
    });
    expect(res.headers.get("access-control-allow-origin")).toBe(ORIGIN);
    expect(res.headers.get("access-control-expose-headers")).toContain("grpc-status");
    // Connect-es sends the gRPC-web status in a trailer frame (flag 0x80) of the body, or in headers.
    const body = Buffer.from(await res.arrayBuffer());
    const status = res.headers.get("grpc-status") ?? /grpc-status: ?(\d+)/.exec(body.subarray(5).toString("latin1"))?.[1];
    expect(status).toBe(String(Code.Unauthenticated));
  });
});
