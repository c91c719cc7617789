/**
 * The relay as @grpc/grpc-js (the gRPC client Node services use) calls it over h2c: the
 * RelayService stream and a unary RPC with deadlines, cancellation, binary metadata, gzip
 * messages, keepalive pings and many streams on one channel.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { RelayRequestSchema, RelayResponseSchema, type RelayRequest, type RelayResponse } from "../gen/relayapi/v1/relay_service_pb.js";
import { IntrospectTokenRequestSchema, IntrospectTokenResponseSchema } from "../gen/relayapi/v1/token_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { useRelay } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";

const { relay, mock } = useRelay({ mock: { chunks: 5, chunkDelayMs: 0 } });
const RELAY = "/relayapi.v1.RelayService/Relay";
const INTROSPECT = "/relayapi.v1.TokenService/IntrospectToken";

let client: grpc.Client;
const channels: grpc.Client[] = [];
beforeAll(() => {
  client = channel();
});
afterAll(() => {
  for (const c of channels) c.close();
});

function channel(options: grpc.ClientOptions = {}): grpc.Client {
  const c = new grpc.Client(new URL(relay.url).host, grpc.credentials.createInsecure(), options);
  channels.push(c);
  return c;
}

const json = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
function chat(extra: Record<string, string> = {}, body: Record<string, unknown> = {}): MessageInitShape<typeof RelayRequestSchema> {
  return {
    provider: "openai",
    path: "/v1/chat/completions",
    headers: [{ name: "content-type", value: "application/json" }, ...Object.entries(extra).map(([name, value]) => ({ name, value }))],
    body: json({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }], stream: true, stream_options: { include_usage: true }, ...body }),
  };
}

const ser = (m: RelayRequest) => Buffer.from(toBinary(RelayRequestSchema, m));
const des = (b: Buffer) => fromBinary(RelayResponseSchema, b);

function meta(secret: string, extra: Record<string, string | Buffer> = {}): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set("authorization", `Bearer ${secret}`);
  for (const [k, v] of Object.entries(extra)) m.set(k, v);
  return m;
}

interface StreamResult {
  parts: RelayResponse["part"][];
  status: grpc.StatusObject | undefined;
  error: grpc.ServiceError | undefined;
  headers: grpc.Metadata | undefined;
}

function relayCall(
  c: grpc.Client,
  req: MessageInitShape<typeof RelayRequestSchema>,
  md: grpc.Metadata,
  opts: grpc.CallOptions = {},
  onStream?: (s: grpc.ClientReadableStream<RelayResponse>) => void,
): Promise<StreamResult> {
  return new Promise((resolve) => {
    const s = c.makeServerStreamRequest(RELAY, ser, des, create(RelayRequestSchema, req), md, opts);
    const out: StreamResult = { parts: [], status: undefined, error: undefined, headers: undefined };
    s.on("metadata", (h: grpc.Metadata) => (out.headers = h));
    s.on("data", (m: RelayResponse) => out.parts.push(m.part));
    s.on("status", (st: grpc.StatusObject) => {
      out.status = st;
      // 'status' comes after 'end' or 'error'; wait a tick for the latter.
      setImmediate(() => resolve(out));
    });
    s.on("error", (e: grpc.ServiceError) => (out.error = e));
    onStream?.(s);
  });
}

const lastCall = () => relay.calls[relay.calls.length - 1];

describe("@grpc/grpc-js Relay", () => {
  it("streams head, chunks and one end", async () => {
    const { secret } = await relay.issue();
    const r = await relayCall(client, chat(), meta(secret));
    expect(r.error).toBeUndefined();
    expect(r.status?.code).toBe(grpc.status.OK);
    expect(r.parts[0]?.case).toBe("head");
    const end = r.parts[r.parts.length - 1];
    expect(end?.case === "end" && end.value.outcome).toBe(Outcome.COMPLETE);
  });

  it("a short deadline: DEADLINE_EXCEEDED, the call TRUNCATED, the upstream request aborted", async () => {
    const { secret } = await relay.issue();
    const before = relay.calls.length;
    const r = await relayCall(client, chat({ "x-mock-chunks": "50", "x-mock-delay-ms": "50" }), meta(secret), { deadline: Date.now() + 400 });
    expect(r.status?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await mock.waitForAbort("/chat/completions");
    for (let i = 0; i < 50 && relay.calls.length === before; i++) await sleep(20);
    expect(lastCall()?.outcome).toBe(Outcome.TRUNCATED);
  });

  it("a deadline that passes while the provider has not answered: DEADLINE_EXCEEDED, recorded, upstream aborted", async () => {
    const { secret, id } = await relay.issue({ limits: { maxCalls: 5n } });
    const r = await relayCall(client, chat({ "x-mock-headers-delay-ms": "3000" }), meta(secret), { deadline: Date.now() + 400 });
    expect(r.status?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await mock.waitForAbort("/chat/completions");
    for (let i = 0; i < 50 && !relay.calls.some((c) => c.tokenId === id); i++) await sleep(20);
    expect(relay.calls.filter((c) => c.tokenId === id)).toHaveLength(1);
  });

  it("cancelled before the provider answered: the upstream request aborted, recorded once", async () => {
    const { secret, id } = await relay.issue({ limits: { maxCalls: 5n } });
    const r = await relayCall(client, chat({ "x-mock-headers-delay-ms": "3000" }), meta(secret), {}, (s) => setTimeout(() => s.cancel(), 300));
    expect(r.status?.code).toBe(grpc.status.CANCELLED);
    await mock.waitForAbort("/chat/completions");
    for (let i = 0; i < 50 && !relay.calls.some((c) => c.tokenId === id); i++) await sleep(20);
    expect(relay.calls.filter((c) => c.tokenId === id)).toHaveLength(1);
  });

  it("a request message just under the body limit is relayed", async () => {
    const { secret } = await relay.issue();
    const r = await relayCall(client, chat({}, { pad: "x".repeat(10 * 1024 * 1024 - 4096) }), meta(secret));
    expect({ code: r.status?.code, details: r.status?.details }).toEqual({ code: grpc.status.OK, details: "" });
    expect(r.parts.at(-1)).toMatchObject({ case: "end", value: { outcome: Outcome.COMPLETE } });
  });

  it("cancelled mid-stream: the call TRUNCATED, the upstream request aborted", async () => {
    const { secret } = await relay.issue();
    const before = relay.calls.length;
    const r = await relayCall(client, chat({ "x-mock-chunks": "100", "x-mock-delay-ms": "30" }), meta(secret), {}, (s) => {
      let n = 0;
      s.on("data", () => {
        if (++n === 3) s.cancel();
      });
    });
    expect(r.status?.code).toBe(grpc.status.CANCELLED);
    await mock.waitForAbort("/chat/completions");
    for (let i = 0; i < 50 && relay.calls.length === before; i++) await sleep(20);
    expect(relay.calls.length).toBe(before + 1);
    expect(lastCall()?.outcome).toBe(Outcome.TRUNCATED);
  });

  it("binary metadata and a trace header ride along without breaking the call", async () => {
    const { secret } = await relay.issue();
    const r = await relayCall(client, chat(), meta(secret, { "trace-bin": Buffer.from([0, 1, 2, 255]), "x-request-id": "req-grpc-1" }));
    expect(r.status?.code).toBe(grpc.status.OK);
    expect(r.headers?.get("x-request-id")).toEqual(["req-grpc-1"]);
  });

  it("gzip-compressed request messages (grpc-encoding: gzip)", async () => {
    const { secret } = await relay.issue();
    const gz = channel({ "grpc.default_compression_algorithm": 2 });
    const r = await relayCall(gz, chat({}, { pad: "x".repeat(4000) }), meta(secret));
    expect(r.error?.details).toBeUndefined();
    expect(r.status?.code).toBe(grpc.status.OK);
  });

  it("many concurrent streams on one channel", async () => {
    const { secret } = await relay.issue();
    const c = channel();
    const rs = await Promise.all(Array.from({ length: 150 }, () => relayCall(c, chat({ "x-mock-delay-ms": "5" }), meta(secret))));
    expect(rs.map((r) => r.status?.code).filter((s) => s !== grpc.status.OK)).toEqual([]);
  });

  it("30 calls of 2 MB each at once on one channel", async () => {
    const { secret } = await relay.issue();
    const c = channel();
    const pad = "x".repeat(2 * 1024 * 1024);
    const rs = await Promise.all(Array.from({ length: 30 }, () => relayCall(c, chat({}, { pad }), meta(secret))));
    expect(rs.map((r) => `${r.status?.code} ${r.status?.details}`).filter((s) => s !== "0 OK" && s !== "0 ")).toEqual([]);
  });

  it("keepalive pings every second on an idle and a busy channel", async () => {
    const { secret } = await relay.issue();
    const c = channel({ "grpc.keepalive_time_ms": 1000, "grpc.keepalive_timeout_ms": 500, "grpc.keepalive_permit_without_calls": 1 });
    expect((await relayCall(c, chat(), meta(secret))).status?.code).toBe(grpc.status.OK);
    await sleep(3500);
    const r = await relayCall(c, chat({ "x-mock-chunks": "30", "x-mock-delay-ms": "100" }), meta(secret));
    expect(r.status?.code).toBe(grpc.status.OK);
  });

  it("refusals carry the gRPC codes and a message", async () => {
    const r = await relayCall(client, chat(), meta("rai_nope"));
    expect(r.status?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(r.status?.details).toBe("invalid, expired or revoked token");
    const once = await relay.issue({ limits: { maxCalls: 1n } });
    await relayCall(client, chat(), meta(once.secret));
    const r2 = await relayCall(client, chat(), meta(once.secret));
    expect(r2.status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const rpm = await relay.issue({ limits: { rpm: 1 } });
    await relayCall(client, chat(), meta(rpm.secret));
    const r3 = await relayCall(client, chat(), meta(rpm.secret));
    expect(r3.status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(r3.status?.metadata.get("retry-after")).toEqual([expect.stringMatching(/^\d+$/)]);
  });

  it("a request message over the body limit: RESOURCE_EXHAUSTED, not INTERNAL", async () => {
    const { secret } = await relay.issue();
    const r = await relayCall(client, chat({}, { pad: "x".repeat(20 * 1024 * 1024) }), meta(secret));
    expect(r.status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });
});

describe("buf curl (connect-go) over gRPC and gRPC-Web", () => {
  const BUF = join(import.meta.dirname, "..", "node_modules", ".bin", "buf");
  const curl = (...args: string[]) =>
    new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(BUF, ["curl", ...args], { timeout: 20_000, env: { ...process.env, NO_COLOR: "1" } }, (err, _out, stderr) =>
        resolve({ code: err ? Number(err.code) : 0, stderr }),
      );
    });
  it.each([
    ["grpc", ["--protocol", "grpc", "--http2-prior-knowledge"]],
    ["grpcweb", ["--protocol", "grpcweb"]],
  ])("%s: a refusal's message reads as written", async (_name, wire) => {
    const { secret } = await relay.issue();
    const req = JSON.stringify({ provider: "openai", path: "/v1/chat/completions", body: "e30=", bodyText: "{}" });
    const run = await curl(...wire, "-H", `authorization: Bearer ${secret}`, "-d", req, `${relay.url}${RELAY}`);
    expect(run.code).toBe(3 * 8);
    expect(run.stderr).toContain("set body or body_text, not both");
  });
});

describe("@grpc/grpc-js unary", () => {
  const serI = (m: unknown) => Buffer.from(toBinary(IntrospectTokenRequestSchema, m as never));
  const desI = (b: Buffer) => fromBinary(IntrospectTokenResponseSchema, b);
  const introspect = (md: grpc.Metadata, opts: grpc.CallOptions = {}) =>
    new Promise<{ err: grpc.ServiceError | null; res: unknown }>((resolve) => {
      client.makeUnaryRequest(INTROSPECT, serI, desI, create(IntrospectTokenRequestSchema, {}), md, opts, (err, res) => resolve({ err, res }));
    });

  it("IntrospectToken with no deadline, a long one and grpc-go's longest", async () => {
    const { secret } = await relay.issue();
    expect((await introspect(meta(secret))).err).toBeNull();
    expect((await introspect(meta(secret), { deadline: Date.now() + 60_000 })).err).toBeNull();
    expect((await introspect(meta(secret), { deadline: Infinity })).err).toBeNull();
  });

  it("a refusal's message reads as sent (grpc-message in the spec's encoding, not encodeURIComponent's)", async () => {
    const { err } = await introspect(meta("rai_nope"));
    expect(err?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(err?.details).toBe("invalid, expired or revoked token");
  });
});

describe("@grpc/grpc-js refused at the front door (per-IP limit)", () => {
  const { relay: limited } = useRelay({ config: { ipRpm: 1 } });
  it("RESOURCE_EXHAUSTED with its message and one Retry-After", async () => {
    const c = new grpc.Client(new URL(limited.url).host, grpc.credentials.createInsecure());
    channels.push(c);
    let r = await relayCall(c, chat(), meta("rai_x"));
    for (let i = 0; i < 5 && r.status?.code !== grpc.status.RESOURCE_EXHAUSTED; i++) r = await relayCall(c, chat(), meta("rai_x"));
    expect(r.status?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(r.status?.details).not.toMatch(/%[0-9A-F]{2}/);
    expect(r.status?.metadata.get("retry-after")).toEqual([expect.stringMatching(/^\d+$/)]);
  });
});
