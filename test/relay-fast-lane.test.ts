/**
 * RelayService.Relay over Connect streaming, answered by the fast lane (src/services/relay-fast-lane.ts)
 * instead of connect-node: real connect-node clients (HTTP/1.1 and h2c, JSON and binary) get the
 * same messages as from connect-node itself (reached with a deadline, which the lane leaves to
 * connect-node), compressed messages when they accept them, the same error codes; gRPC goes on
 * through connect-node. Each test checks `relayapi_rpc_relay_fast_lane_total`, so a silent
 * fall-back to connect-node fails it.
 */
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { RelayService, type RelayResponse } from "../gen/relayapi/v1/relay_service_pb.js";
import { useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay();
const sessions: Http2SessionManager[] = [];
afterEach(() => mock.behave(undefined));
afterAll(() => {
  for (const s of sessions) s.abort();
});

type Part = RelayResponse["part"];

async function taken(): Promise<number> {
  const text = await (await fetch(`${relay.url}/metrics`)).text();
  const m = /^relayapi_rpc_relay_fast_lane_total (\d+)$/m.exec(text);
  if (!m) throw new Error("no relayapi_rpc_relay_fast_lane_total in /metrics");
  return Number(m[1]);
}

function transport(http: "1.1" | "2", binary: boolean, compress = false): Transport {
  const baseUrl = relay.url;
  const common = { baseUrl, useBinaryFormat: binary, ...(compress ? {} : { acceptCompression: [] }) };
  if (http === "1.1") return createConnectTransport({ ...common, httpVersion: "1.1" });
  const sessionManager = new Http2SessionManager(baseUrl);
  sessions.push(sessionManager);
  return createConnectTransport({ ...common, httpVersion: "2", sessionManager });
}

const chat = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }], stream: true, stream_options: { include_usage: true }, ...extra });

async function call(
  t: Transport,
  secret: string,
  req: { bodyText?: string; body?: Uint8Array; textChunks?: boolean; path?: string },
  opts: { timeoutMs?: number } = {},
): Promise<{ parts: Part[]; error?: ConnectError; header?: Headers }> {
  const parts: Part[] = [];
  let header: Headers | undefined;
  try {
    const stream = createClient(RelayService, t).relay(
      { provider: "openai", path: req.path ?? "/v1/chat/completions", headers: [{ name: "content-type", value: "application/json" }], ...req },
      { headers: { authorization: `Bearer ${secret}` }, onHeader: (h) => (header = h), ...opts },
    );
    for await (const m of stream) parts.push(m.part);
    return { parts, header };
  } catch (e) {
    return { parts, error: ConnectError.from(e), header };
  }
}

/**
 * The messages with what differs per call (the date, the ids, whether calls are left) taken out,
 * and the chunks joined: how the answer's bytes were split between reads is the socket's doing.
 */
function comparable(parts: Part[]): unknown[] {
  const out: unknown[] = [];
  for (const p of parts) {
    if (p.case === "head") out.push({ head: p.value.status, headers: p.value.headers.filter((h) => h.name !== "date").map((h) => `${h.name}: ${h.value}`) });
    if (p.case === "end")
      out.push({ outcome: p.value.outcome, usage: p.value.usage?.totalTokens, error: p.value.error, left: p.value.callsLeft !== undefined });
    if (p.case !== "chunk") continue;
    const text = (p.value.text !== "" ? p.value.text : Buffer.from(p.value.data).toString("utf8"))
      .replace(/chatcmpl-mock-\d+/g, "chatcmpl-mock-N")
      .replace(/"created":\d+/g, '"created":0');
    const last = out.at(-1);
    if (typeof last === "string") out[out.length - 1] = last + text;
    else out.push(text);
  }
  return out;
}

const joined = (parts: Part[]) =>
  parts.flatMap((p) => (p.case === "chunk" ? [p.value.text !== "" ? p.value.text : Buffer.from(p.value.data).toString("utf8")] : [])).join("");

describe.each([
  ["HTTP/1.1 JSON", "1.1", false],
  ["HTTP/1.1 binary", "1.1", true],
  ["h2c JSON", "2", false],
  ["h2c binary", "2", true],
] as const)("%s", (_name, http, binary) => {
  it("streams the same messages as connect-node, through the fast lane", async () => {
    const { secret } = await relay.issue();
    const t = transport(http, binary);
    const before = await taken();
    const fast = await call(t, secret, { bodyText: chat() });
    expect(await taken()).toBe(before + 1);
    // A deadline is connect-node's to keep: the same call through it, for comparison.
    const slow = await call(t, secret, { bodyText: chat() }, { timeoutMs: 30_000 });
    expect(await taken()).toBe(before + 1);
    expect(fast.error).toBeUndefined();
    expect(slow.error).toBeUndefined();
    expect(fast.parts[0]?.case).toBe("head");
    expect(fast.parts.at(-1)?.case).toBe("end");
    expect(comparable(fast.parts)).toEqual(comparable(slow.parts));
    expect(joined(fast.parts)).toContain("data: [DONE]");
    const end = fast.parts.at(-1);
    expect(end?.case === "end" && end.value.outcome).toBe(Outcome.COMPLETE);
    expect(fast.header?.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("text chunks and an empty answer body", async () => {
    const { secret } = await relay.issue();
    const t = transport(http, binary);
    const text = await call(t, secret, { bodyText: chat(), textChunks: true });
    expect(text.error).toBeUndefined();
    expect(text.parts.some((p) => p.case === "chunk" && p.value.text.includes("tok0"))).toBe(true);
    mock.behave(() => ({ stream: { contentType: "application/json", parts: [] } }));
    const empty = await call(t, secret, { bodyText: chat() });
    mock.behave(undefined);
    const slow = await call(t, secret, { bodyText: chat() }, { timeoutMs: 30_000 });
    expect(empty.error).toBeUndefined();
    expect(empty.parts.map((p) => p.case)).toEqual(["head", "end"]);
    expect(slow.parts.length).toBeGreaterThan(2);
  });

  it("sends the head as soon as the provider's headers come, not with the first chunk", async () => {
    const { secret } = await relay.issue();
    const t = transport(http, binary);
    const before = await taken();
    const frame = 'data: {"choices":[{"delta":{"content":"late"}}]}\n\n';
    mock.behave(() => ({ stream: { contentType: "text/event-stream", parts: [frame, "data: [DONE]\n\n"], delaysMs: [1500, 0] } }));
    const started = Date.now();
    const arrived: { case: Part["case"]; ms: number }[] = [];
    const stream = createClient(RelayService, t).relay(
      { provider: "openai", path: "/v1/chat/completions", headers: [{ name: "content-type", value: "application/json" }], bodyText: chat() },
      { headers: { authorization: `Bearer ${secret}` } },
    );
    for await (const m of stream) arrived.push({ case: m.part.case, ms: Date.now() - started });
    expect(await taken()).toBe(before + 1);
    expect(arrived.map((a) => a.case)).toEqual(["head", "chunk", "chunk", "end"]);
    // The head within a fraction of the provider's delay; the first chunk only after it.
    expect(arrived[0]!.ms).toBeLessThan(1000);
    expect(arrived[1]!.ms).toBeGreaterThanOrEqual(1400);
  });

  it("refuses as connect-node does: a bad token, a bad method", async () => {
    const t = transport(http, binary);
    const before = await taken();
    const bad = await call(t, "rai_not-a-token", { bodyText: chat() });
    expect(bad.error?.code).toBe(Code.Unauthenticated);
    expect(bad.parts).toEqual([]);
    const { secret } = await relay.issue();
    const slowBad = await call(t, "rai_not-a-token", { bodyText: chat() }, { timeoutMs: 30_000 });
    expect(slowBad.error?.code).toBe(Code.Unauthenticated);
    expect(slowBad.error?.rawMessage).toBe(bad.error?.rawMessage);
    const both = await call(t, secret, { bodyText: chat(), body: new TextEncoder().encode(chat()) });
    expect(both.error?.code).toBe(Code.InvalidArgument);
    expect(await taken()).toBe(before + 2);
  });
});

describe("compression, framing and the other protocols", () => {
  it("compresses messages from 1 KiB when the client accepts it, and the client reads them", async () => {
    const { secret } = await relay.issue();
    const big = "x".repeat(4000);
    mock.behave(() => ({ stream: { contentType: "application/json", parts: [JSON.stringify({ id: "chatcmpl-1", big })] } }));
    const before = await taken();
    const res = await call(transport("1.1", false, true), secret, { bodyText: chat() });
    expect(await taken()).toBe(before + 1);
    expect(res.error).toBeUndefined();
    expect(joined(res.parts)).toContain(big);
    // On the wire: the answer says gzip, and the big chunk's envelope has the compressed flag.
    const body = envelope(JSON.stringify({ provider: "openai", path: "/v1/chat/completions", bodyText: chat() }));
    const raw = await fetch(`${relay.url}/relayapi.v1.RelayService/Relay`, {
      method: "POST",
      headers: { "content-type": "application/connect+json", "connect-accept-encoding": "gzip", authorization: `Bearer ${secret}` },
      body: new Uint8Array(body),
    });
    expect(raw.headers.get("connect-content-encoding")).toBe("gzip");
    const flags = envelopes(Buffer.from(await raw.arrayBuffer())).map((e) => e.flags);
    expect(flags).toContain(1);
    expect(flags.at(-1)).toBe(2);
  });

  it("a body that is not one well-formed envelope, or not a RelayRequest, is invalid_argument", async () => {
    const { secret } = await relay.issue();
    const post = (body: Uint8Array, type = "application/connect+proto") =>
      fetch(`${relay.url}/relayapi.v1.RelayService/Relay`, {
        method: "POST",
        headers: { "content-type": type, authorization: `Bearer ${secret}` },
        body: new Uint8Array(body),
      });
    const endOf = async (res: Response) => {
      expect(res.status).toBe(200);
      const last = envelopes(Buffer.from(await res.arrayBuffer())).at(-1)!;
      expect(last.flags).toBe(2);
      return JSON.parse(last.data.toString("utf8")) as { error?: { code: string } };
    };
    const before = await taken();
    const calls = mock.requests.length;
    expect((await endOf(await post(new Uint8Array([0, 0, 0])))).error?.code).toBe("invalid_argument");
    expect((await endOf(await post(Buffer.concat([envelope("{}"), envelope("{}")]), "application/connect+json"))).error?.code).toBe("invalid_argument");
    expect((await endOf(await post(envelope(Buffer.from([0xff, 0xff, 0xff]))))).error?.code).toBe("invalid_argument");
    expect((await endOf(await post(envelope("{not json"), "application/connect+json"))).error?.code).toBe("invalid_argument");
    expect(await taken()).toBe(before + 4);
    expect(mock.requests.length).toBe(calls);
  });

  it("gRPC and a compressed request message go through connect-node", async () => {
    const { secret } = await relay.issue();
    const sessionManager = new Http2SessionManager(relay.url);
    sessions.push(sessionManager);
    const before = await taken();
    const grpc = await call(createGrpcTransport({ baseUrl: relay.url, sessionManager }), secret, { bodyText: chat() });
    expect(grpc.error).toBeUndefined();
    expect(joined(grpc.parts)).toContain("data: [DONE]");
    const gzipped = await call(
      createConnectTransport({
        baseUrl: relay.url,
        httpVersion: "1.1",
        sendCompression: (await import("@connectrpc/connect-node")).compressionGzip,
        compressMinBytes: 1,
      }),
      secret,
      { bodyText: chat() },
    );
    expect(gzipped.error).toBeUndefined();
    expect(await taken()).toBe(before);
  });
});

function envelope(data: string | Buffer, flags = 0): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  const out = Buffer.alloc(5 + bytes.length);
  out[0] = flags;
  out.writeUInt32BE(bytes.length, 1);
  bytes.copy(out, 5);
  return out;
}

function envelopes(body: Buffer): { flags: number; data: Buffer }[] {
  const out: { flags: number; data: Buffer }[] = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const size = body.readUInt32BE(at + 1);
    out.push({ flags: body[at]!, data: body.subarray(at + 5, at + 5 + size) });
    at += 5 + size;
  }
  return out;
}
