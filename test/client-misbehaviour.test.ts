/**
 * Clients that misbehave: slowloris connections (idle, trickling a request head, an h2c
 * preface and nothing more), oversized headers (431) and bodies (413 / resource_exhausted), a
 * client that reads a 50 MB stream very slowly (backpressure all the way to the provider, memory
 * bounded), and clients that leave (before the provider answered, mid-stream, mid-upload).
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { create, toBinary } from "@bufbuild/protobuf";
import { createServer, type Server } from "node:http";
import { connect as h2connect } from "node:http2";
import { connect, type AddressInfo, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiShape, AuthStyle } from "../gen/relayapi/v1/admin_service_pb.js";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { RelayRequestSchema, RelayService } from "../gen/relayapi/v1/relay_service_pb.js";
import { createOnePortServer } from "../src/one-port.js";
import { RawClient, rssMb } from "./support/fuzz.js";
import { callsUsed } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";

const MB = 1024 * 1024;
const STREAM_BYTES = 50 * MB;
const FRAME = Buffer.from(`data: ${"z".repeat(64 * 1024 - 8)}\n\n`);
const MAX_BODY = 64 * 1024;

const { relay } = useRelay({ mock: false, config: { maxBodyBytes: MAX_BODY, leaseIdleMs: 100, maxConnectionsPerIp: 0 } });
let upstream: Server;
/** Bytes the upstream handed to its socket so far, per request path. */
const written = new Map<string, number>();
const upstreamClosed = new Set<string>();

beforeAll(async () => {
  upstream = createServer((req, res) => {
    const path = req.url ?? "";
    res.on("close", () => upstreamClosed.add(path));
    req.resume();
    if (path.includes("stall")) return; // never answers
    res.writeHead(200, { "content-type": "text/event-stream" });
    // 50 MB of SSE, honouring backpressure like any well-behaved server.
    void (async () => {
      let sent = 0;
      while (sent < STREAM_BYTES && !res.destroyed) {
        sent += FRAME.length;
        written.set(path, sent);
        if (!res.write(FRAME))
          await new Promise((r) => {
            res.once("drain", r);
            res.once("close", r);
          });
      }
      res.end();
    })();
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  // 300 slow sockets from one address below: over the per-address cap (256), which h2-limits tests.
  const base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  await relay.admin.upsertProvider({ provider: { id: "flood", baseUrl: base, authStyle: AuthStyle.BEARER, shape: ApiShape.OPENAI } });
});
afterAll(async () => {
  upstream?.closeAllConnections();
  await new Promise((r) => upstream?.close(r));
});

const port = () => Number(new URL(relay.url).port);
const open = (): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const s = connect(port(), "127.0.0.1", () => resolve(s));
    s.on("error", reject);
  });
const closedWithin = (s: Socket, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    if (s.destroyed) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    s.on("close", () => {
      clearTimeout(t);
      resolve(true);
    });
  });

describe("slowloris", () => {
  it("the one-port server closes idle, trickling and silent-h2c connections after headersTimeout", async () => {
    const server = createOnePortServer((_req, res) => res.end("ok"), { headersTimeoutMs: 300, connectionsCheckingIntervalMs: 50 });
    const { port: p } = await server.listen(0, "127.0.0.1");
    const sock = (first: string): Promise<Socket> =>
      new Promise((resolve) => {
        const s = connect(p, "127.0.0.1", () => {
          if (first) s.write(first);
          resolve(s);
        });
        s.on("error", () => {});
        s.resume(); // read, so the server's FIN is seen
      });
    const idle = await sock("");
    const prefix = await sock("PR");
    const head = await sock("GET / HTTP/1.1\r\nHost: x\r\n");
    const trickle = setInterval(() => head.writable && head.write("x"), 50);
    const h2 = await sock("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    const normal = await sock("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let answer = "";
    normal.on("data", (d: Buffer) => (answer += d.toString()));
    const closed = await Promise.all([idle, prefix, head, h2].map((s) => closedWithin(s, 2000)));
    clearInterval(trickle);
    expect(closed).toEqual([true, true, true, true]);
    expect(await closedWithin(normal, 1000)).toBe(true);
    expect(answer).toMatch(/^HTTP\/1.1 200/);
    await server.close(100);
  });

  it("300 slow connections against the relay do not keep a normal client waiting", async () => {
    const sockets = await Promise.all(Array.from({ length: 300 }, open));
    sockets.forEach((s, i) => s.write(["", "PR", `POST /api/flood/v1/x HTTP/1.1\r\nHost: x\r\n`][i % 3]!));
    const trickle = setInterval(() => sockets.forEach((s, i) => i % 3 === 2 && s.writable && s.write("a")), 100);
    try {
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        const res = await fetch(`${relay.url}/healthz`);
        expect(res.status).toBe(200);
        expect(performance.now() - started).toBeLessThan(1000);
        await sleep(100);
      }
      expect(sockets.filter((s) => s.destroyed)).toHaveLength(0); // still held: only time closes them (30 s in build())
    } finally {
      clearInterval(trickle);
      for (const s of sockets) s.destroy();
    }
  });
});

describe("oversized requests", () => {
  it("a request head over 16 KB -> 431 and the connection closes; the relay still answers", async () => {
    const client = RawClient.for(relay.url);
    const res = await client.request("GET", "/api/openai/v1/models", { "x-big": "a".repeat(17 * 1024) });
    expect(res.status).toBe(431);
    client.close();
    expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
  });

  it("h2c: a header block of 100 KB is refused without a 5xx or a crash", async () => {
    const session = h2connect(relay.url);
    session.on("error", () => {});
    const status = await new Promise<number | string>((resolve) => {
      const stream = session.request({ ":path": "/api/openai/v1/models", "x-big": "a".repeat(100 * 1024) });
      stream.on("response", (h) => resolve(Number(h[":status"])));
      stream.on("error", (e: Error) => resolve((e as { code?: string }).code ?? e.message));
      stream.on("close", () => resolve(`closed ${stream.rstCode}`));
      stream.end();
    });
    session.destroy();
    expect(typeof status === "number" ? status >= 400 && status < 500 : true, String(status)).toBe(true);
    expect((await fetch(`${relay.url}/healthz`)).status).toBe(200);
  });

  it("RelayService: a message over maxBodyBytes -> resource_exhausted, not counted, nothing sent", async () => {
    const { secret, id } = await relay.issue({ provider: "flood" });
    const rpc = createClient(RelayService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
    const before = written.size;
    const err = await (async () => {
      try {
        for await (const _ of rpc.relay(
          { provider: "flood", path: "/v1/x", body: new Uint8Array(MAX_BODY + 1024) },
          { headers: { authorization: `Bearer ${secret}` } },
        ))
          void _;
      } catch (e) {
        return ConnectError.from(e);
      }
    })();
    expect(err?.code).toBe(Code.ResourceExhausted);
    expect(written.size).toBe(before);
    expect(await callsUsed(relay, id)).toBe(0);
  });
});

describe("a client that reads a 50 MB stream very slowly", { timeout: 90_000 }, () => {
  /** Sends `head` (+ body) on a raw socket, reads slowly, returns how far the upstream got meanwhile. */
  async function slowRead(path: string, head: string, body?: Buffer): Promise<{ whilePaused: number; received: number; rssGrowth: number }> {
    const s = await open();
    let received = 0;
    s.on("data", (d: Buffer) => {
      received += d.length;
      s.pause();
    });
    s.write(head);
    if (body) s.write(body);
    for (let i = 0; i < 100 && received === 0; i++) await sleep(20);
    const rss = rssMb();
    await sleep(800); // the client reads nothing
    const whilePaused = written.get(path) ?? 0;
    let peak = rssMb();
    for (let i = 0; i < 20; i++) {
      s.resume(); // one read, then paused again by the data handler
      await sleep(20);
      peak = Math.max(peak, rssMb());
    }
    s.on("data", () => s.resume());
    s.resume();
    await closedWithin(s, 30_000);
    return { whilePaused, received, rssGrowth: peak - rss };
  }

  it("HTTP: the provider is held back to a few MB ahead; the stream then completes", async () => {
    const { secret, id } = await relay.issue({ provider: "flood" });
    const path = "/slow-http";
    const r = await slowRead(
      path,
      `POST /api/flood${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${secret}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`,
    );
    console.log(`slow reader (HTTP): upstream ${(r.whilePaused / MB).toFixed(1)} MB ahead while paused, rss +${r.rssGrowth} MB`);
    expect(r.whilePaused).toBeLessThan(16 * MB);
    expect(r.rssGrowth).toBeLessThan(64);
    expect(r.received).toBeGreaterThan(STREAM_BYTES);
    await expect.poll(() => relay.calls.find((c) => c.tokenId === id)?.outcome).toBe(Outcome.COMPLETE);
    expect(relay.calls.find((c) => c.tokenId === id)!.bytes).toBe(STREAM_BYTES);
  });

  it("RelayService (Connect over HTTP/1.1): the same backpressure", async () => {
    const { secret, id } = await relay.issue({ provider: "flood" });
    const path = "/slow-rpc";
    const msg = toBinary(RelayRequestSchema, create(RelayRequestSchema, { provider: "flood", path, body: new TextEncoder().encode("{}") }));
    const env = Buffer.alloc(5 + msg.length);
    env.writeUInt32BE(msg.length, 1);
    env.set(msg, 5);
    const head = `POST /relayapi.v1.RelayService/Relay HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${secret}\r\nContent-Type: application/connect+proto\r\nContent-Length: ${env.length}\r\nConnection: close\r\n\r\n`;
    const r = await slowRead(path, head, env);
    console.log(`slow reader (RPC): upstream ${(r.whilePaused / MB).toFixed(1)} MB ahead while paused, rss +${r.rssGrowth} MB`);
    expect(r.whilePaused).toBeLessThan(16 * MB);
    expect(r.rssGrowth).toBeLessThan(64);
    expect(r.received).toBeGreaterThan(STREAM_BYTES);
    await expect.poll(() => relay.calls.find((c) => c.tokenId === id)?.outcome).toBe(Outcome.COMPLETE);
  });
});

describe("a client that leaves", () => {
  it("before the provider answered (HTTP): the upstream request is aborted; counted, TRUNCATED", async () => {
    const { secret, id } = await relay.issue({ provider: "flood" });
    const s = await open();
    s.write(`POST /api/flood/stall-http HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${secret}\r\nContent-Length: 2\r\n\r\n{}`);
    await sleep(300);
    s.destroy();
    await expect.poll(() => upstreamClosed.has("/stall-http"), { timeout: 3000 }).toBe(true);
    await expect.poll(() => relay.calls.find((c) => c.tokenId === id)?.outcome).toBe(Outcome.TRUNCATED);
    // The request was sent: the provider may be working on it, so the call is not given back.
    await sleep(300);
    expect(await callsUsed(relay, id)).toBe(1);
  });

  it("mid-stream (RelayService, aborted by the caller): the upstream request is aborted", async () => {
    const { secret } = await relay.issue({ provider: "flood" });
    const rpc = createClient(RelayService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
    const ac = new AbortController();
    let chunks = 0;
    await expect(
      (async () => {
        for await (const m of rpc.relay({ provider: "flood", path: "/abort-rpc" }, { headers: { authorization: `Bearer ${secret}` }, signal: ac.signal })) {
          if (m.part.case === "chunk" && ++chunks === 3) ac.abort();
        }
      })(),
    ).rejects.toThrow();
    await expect.poll(() => upstreamClosed.has("/abort-rpc"), { timeout: 3000 }).toBe(true);
    expect(written.get("/abort-rpc")!).toBeLessThan(STREAM_BYTES);
  });

  it("mid-upload: nothing is counted and nothing reaches the provider", async () => {
    const { secret, id } = await relay.issue({ provider: "flood" });
    const s = await open();
    s.write(`POST /api/flood/half-upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${secret}\r\nContent-Length: 1000\r\n\r\n{"model":`);
    await sleep(200);
    s.destroy();
    await sleep(300);
    expect(written.has("/half-upload")).toBe(false);
    expect(upstreamClosed.has("/half-upload")).toBe(false);
    expect(await callsUsed(relay, id)).toBe(0);
    expect(relay.calls.some((c) => c.tokenId === id)).toBe(false);
  });
});
