/**
 * The relay as connect-es clients call it (connect-node over HTTP/1.1 and h2c, connect-web on
 * fetch): deadlines (timeoutMs), abort signals, compression both ways, GET for idempotent
 * methods, Retry-After on refusals, and the `end` message of Relay with `text_chunks`.
 */
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { createConnectTransport as createWebTransport } from "@connectrpc/connect-web";
import { describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { RelayService, type RelayResponse } from "../gen/relayapi/v1/relay_service_pb.js";
import { TokenService } from "../gen/relayapi/v1/token_service_pb.js";
import { useRelay } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";
import { useH2Sessions } from "./support/h2-sessions.js";

const { relay, mock } = useRelay({ mock: { chunks: 5, chunkDelayMs: 0 } });
const h2 = useH2Sessions();

const TRANSPORTS: [string, (url: string) => Transport][] = [
  ["connect http/1.1", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" })],
  ["connect h2c", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2", sessionManager: h2(baseUrl) })],
  ["connect-web fetch", (baseUrl) => createWebTransport({ baseUrl, fetch: globalThis.fetch })],
  ["connect-web fetch, binary", (baseUrl) => createWebTransport({ baseUrl, fetch: globalThis.fetch, useBinaryFormat: true })],
  ["grpc-web http/1.1", (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })],
  ["grpc h2c", (baseUrl) => createGrpcTransport({ baseUrl, sessionManager: h2(baseUrl) })],
];
const GZIP: [string, (url: string) => Transport][] = [
  [
    "connect gzip both ways",
    (baseUrl) =>
      createConnectTransport({ baseUrl, httpVersion: "1.1", sendCompression: compressionGzip, acceptCompression: [compressionGzip], compressMinBytes: 1 }),
  ],
  [
    "grpc-web gzip both ways",
    (baseUrl) =>
      createGrpcWebTransport({ baseUrl, httpVersion: "1.1", sendCompression: compressionGzip, acceptCompression: [compressionGzip], compressMinBytes: 1 }),
  ],
];

const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });
const json = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
function chat(extra: Record<string, string> = {}, opts: { textChunks?: boolean } = {}) {
  return {
    provider: "openai",
    path: "/v1/chat/completions",
    headers: [{ name: "content-type", value: "application/json" }, ...Object.entries(extra).map(([name, value]) => ({ name, value }))],
    body: json({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }], stream: true, stream_options: { include_usage: true } }),
    textChunks: opts.textChunks ?? false,
  };
}

async function collect(stream: AsyncIterable<RelayResponse>): Promise<{ parts: RelayResponse["part"][]; error: ConnectError | undefined }> {
  const parts: RelayResponse["part"][] = [];
  try {
    for await (const r of stream) parts.push(r.part);
    return { parts, error: undefined };
  } catch (e) {
    return { parts, error: ConnectError.from(e) };
  }
}

async function settled(before: number): Promise<void> {
  for (let i = 0; i < 100 && relay.calls.length === before; i++) await sleep(20);
}

describe.each(TRANSPORTS)("%s", (_name, make) => {
  const client = () => createClient(RelayService, make(relay.url));

  it("timeoutMs mid-stream: deadline_exceeded, TRUNCATED, upstream aborted", async () => {
    const { secret } = await relay.issue();
    const before = relay.calls.length;
    const r = await collect(client().relay(chat({ "x-mock-chunks": "50", "x-mock-delay-ms": "40" }), { headers: bearer(secret), timeoutMs: 400 }));
    expect(r.error?.code).toBe(Code.DeadlineExceeded);
    await mock.waitForAbort("/chat/completions");
    await settled(before);
    expect(relay.calls.at(-1)?.outcome).toBe(Outcome.TRUNCATED);
  });

  it("an abort signal mid-stream: canceled, TRUNCATED, upstream aborted, counted once", async () => {
    const { secret, id } = await relay.issue({ limits: { maxCalls: 5n } });
    const before = relay.calls.length;
    const ac = new AbortController();
    const stream = client().relay(chat({ "x-mock-chunks": "100", "x-mock-delay-ms": "20" }), { headers: bearer(secret), signal: ac.signal });
    let n = 0;
    const r = await collect(
      (async function* () {
        for await (const m of stream) {
          if (++n === 3) ac.abort();
          yield m;
        }
      })(),
    );
    expect(r.error?.code).toBe(Code.Canceled);
    await mock.waitForAbort("/chat/completions");
    await settled(before);
    expect(relay.calls.filter((c) => c.tokenId === id).map((c) => c.outcome)).toEqual([Outcome.TRUNCATED]);
    const left = await createClient(TokenService, make(relay.url)).introspectToken({}, { headers: bearer(secret) });
    expect(left.token?.callsUsed).toBe(1n);
  });

  it("text_chunks: the end comes once, after whole-character text", async () => {
    const { secret } = await relay.issue();
    const r = await collect(client().relay(chat({}, { textChunks: true }), { headers: bearer(secret) }));
    expect(r.error).toBeUndefined();
    expect(r.parts.filter((p) => p.case === "end")).toHaveLength(1);
    expect(r.parts.at(-1)?.case).toBe("end");
    const text = r.parts.map((p) => (p.case === "chunk" ? p.value.text : "")).join("");
    expect(text).toContain("tok4");
  });

  it("an rpm refusal: resource_exhausted with Retry-After", async () => {
    const { secret } = await relay.issue({ limits: { rpm: 1 } });
    await collect(client().relay(chat(), { headers: bearer(secret) }));
    const r = await collect(client().relay(chat(), { headers: bearer(secret) }));
    expect(r.error?.code).toBe(Code.ResourceExhausted);
    // Once: the fast lane wrote the error's metadata twice into the end message ("60, 60"), so
    // Number(retry-after) was NaN for every connect-es client.
    expect(r.error?.metadata.get("retry-after")).toMatch(/^\d+$/);
    expect(Number(r.error?.metadata.get("retry-after"))).toBeGreaterThan(0);
  });
});

describe("a refusal at the front door (per-IP limit)", () => {
  const { relay: limited } = useRelay({ config: { ipRpm: 1 } });
  it.each(TRANSPORTS)("%s: Relay refused resource_exhausted with one Retry-After", async (_name, make) => {
    const client = createClient(RelayService, make(limited.url));
    let r = await collect(client.relay(chat(), { headers: bearer("rai_x") }));
    for (let i = 0; i < 5 && r.error?.code !== Code.ResourceExhausted; i++) r = await collect(client.relay(chat(), { headers: bearer("rai_x") }));
    expect(r.error?.code).toBe(Code.ResourceExhausted);
    expect(r.error?.metadata.get("retry-after")).toMatch(/^\d+$/);
  });
});

describe.each(GZIP)("%s", (_name, make) => {
  it("Relay and IntrospectToken", async () => {
    const { secret } = await relay.issue();
    const r = await collect(createClient(RelayService, make(relay.url)).relay(chat(), { headers: bearer(secret) }));
    expect(r.error).toBeUndefined();
    expect(r.parts.at(-1)?.case).toBe("end");
    const t = await createClient(TokenService, make(relay.url)).introspectToken({}, { headers: bearer(secret) });
    expect(t).toBeDefined();
  });
});

describe("many calls at once on one h2c session", () => {
  it.each([
    ["connect", (baseUrl: string) => createConnectTransport({ baseUrl, httpVersion: "2", sessionManager: h2(baseUrl) })],
    ["grpc", (baseUrl: string) => createGrpcTransport({ baseUrl, sessionManager: h2(baseUrl) })],
  ])("%s: 150 Relay streams, more than the relay's 100 concurrent streams, all complete", async (_name, make) => {
    const { secret } = await relay.issue();
    const client = createClient(RelayService, make(relay.url));
    const rs = await Promise.all(Array.from({ length: 150 }, () => collect(client.relay(chat({ "x-mock-delay-ms": "5" }), { headers: bearer(secret) }))));
    expect(rs.map((r) => r.error?.message).filter((m) => m !== undefined)).toEqual([]);
  });
});

describe("Connect GET for NO_SIDE_EFFECTS methods", () => {
  it("IntrospectToken over GET (useHttpGet)", async () => {
    const { secret } = await relay.issue();
    for (const transport of [
      createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1", useHttpGet: true }),
      createWebTransport({ baseUrl: relay.url, useHttpGet: true }),
    ]) {
      const t = await createClient(TokenService, transport).introspectToken({}, { headers: bearer(secret) });
      expect(t).toBeDefined();
    }
  });
});
