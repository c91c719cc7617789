/**
 * Issue 17, finding 6: an unauthenticated client must not make the relay hold memory. The token
 * (HTTP layer) and the admin key (admin RPCs) are checked from the headers before a byte of the
 * body is read, the per-IP limit is applied to Connect routes before their body too, and the
 * bodies the relay does hold are bounded by a global byte budget (503 + Retry-After past it).
 *
 * Memory is measured in this process (the relay runs in it): the peak of RSS and of
 * `arrayBuffers` (where Buffers live) sampled every 2 ms during a flood, minus the value before.
 * Each flood request comes from its own X-Forwarded-For address so the per-IP limit, which is
 * tight in this file, does not refuse them first.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { connect as h2connect } from "node:http2";
import { connect } from "node:net";
import { expect, it } from "vitest";
import { AdminService } from "../gen/relayapi/v1/admin_service_pb.js";
import { openaiError } from "./support/http.js";
import { useRelay } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";

const MB = 1024 * 1024;
/** Valid JSON (an object padded with spaces), so a relay that did read it would get past parsing. */
const FLOOD_BODY = Buffer.alloc(Math.round(9.9 * MB), 0x20)
  .fill("{", 0, 1)
  .fill("}", Math.round(9.9 * MB) - 1);
/** Small on purpose: two 1.5 MB bodies cannot be held at once. */
const BUDGET = 2 * MB;
const IP_RPM = 5;
const BOGUS = "Bearer rk_bogus_0123456789abcdefghijklmnopqrstuvwxyz";

const { relay, mock } = useRelay({ config: { bodyMemoryBytes: BUDGET, ipRpm: IP_RPM, trustProxy: ["127.0.0.1"] } });
let ipSeq = 0;
/** A fresh client address (X-Forwarded-For from a trusted 127.0.0.1). */
const freshIp = (): string => `10.17.${Math.floor(++ipSeq / 250)}.${(ipSeq % 250) + 1}`;

interface Pushed {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Milliseconds from the first byte sent to the whole answer. */
  answeredMs: number;
}

/**
 * One HTTP/1.1 request on a raw socket: the head, then `send` bytes of `body` (all by default)
 * although `content-length` says `body.length`. Resolves with the first answer (status 0 if none
 * came within `waitMs`), once the bytes were written; the socket is returned for reuse.
 */
function push(
  path: string,
  headers: Record<string, string>,
  body: Buffer,
  opts: { send?: number; waitMs?: number; keep?: boolean } = {},
): Promise<Pushed & { socket: import("node:net").Socket }> {
  const { port } = new URL(relay.url);
  const head = `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: ${body.length}\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;
  return new Promise((resolve) => {
    const socket = connect(Number(port), "127.0.0.1");
    const started = performance.now();
    let raw = Buffer.alloc(0);
    let answer: Pushed | undefined;
    let written = false;
    const done = (): void => {
      if (!answer || !written) return;
      clearTimeout(timer);
      socket.removeAllListeners("data");
      if (!opts.keep) socket.destroy();
      resolve({ ...answer, socket });
    };
    const timer = setTimeout(() => {
      answer ??= { status: 0, headers: {}, body: "", answeredMs: performance.now() - started };
      written = true;
      done();
    }, opts.waitMs ?? 8000);
    socket.on("error", () => {
      answer ??= { status: -1, headers: {}, body: "", answeredMs: performance.now() - started };
      written = true;
      done();
    });
    socket.on("data", (c: Buffer) => {
      raw = Buffer.concat([raw, c]);
      const end = raw.indexOf("\r\n\r\n");
      if (end === -1 || answer) return;
      const lines = raw.subarray(0, end).toString("latin1").split("\r\n");
      const h: Record<string, string> = {};
      for (const line of lines.slice(1)) h[line.slice(0, line.indexOf(":")).toLowerCase()] = line.slice(line.indexOf(":") + 1).trim();
      const length = Number(h["content-length"] ?? 0);
      if (raw.length < end + 4 + length) return;
      answer = {
        status: Number(lines[0]!.split(" ")[1]),
        headers: h,
        body: raw.subarray(end + 4, end + 4 + length).toString(),
        answeredMs: performance.now() - started,
      };
      done();
    });
    socket.write(head);
    socket.write(body.subarray(0, opts.send ?? body.length), () => {
      written = true;
      done();
    });
  });
}

/** Peak growth of RSS and of Buffer memory while `fn` runs, in MB. */
async function peakGrowth(fn: () => Promise<void>): Promise<{ rssMb: number; buffersMb: number }> {
  await sleep(200);
  const base = process.memoryUsage();
  let rss = base.rss;
  let buffers = base.arrayBuffers;
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss);
    buffers = Math.max(buffers, m.arrayBuffers);
  }, 2);
  try {
    await fn();
    await sleep(50);
  } finally {
    clearInterval(timer);
  }
  return { rssMb: Math.round((rss - base.rss) / MB), buffersMb: Math.round((buffers - base.arrayBuffers) / MB) };
}

const chatPath = "/api/openai/v1/chat/completions";

/** An empty protobuf message carrying `n` bytes in an unknown field (15), which parsers keep. */
function protoPadding(n: number): Buffer {
  const length: number[] = [];
  for (let v = n; ; v = Math.floor(v / 128)) {
    if (v < 128) {
      length.push(v);
      break;
    }
    length.push((v % 128) | 128);
  }
  return Buffer.concat([Buffer.from([0x7a, ...length]), Buffer.alloc(n, 0x61)]);
}

/** One unary gRPC call over h2c with no content-length (as gRPC clients send it): its grpc-status. */
function grpcStatus(path: string, message: Buffer, headers: Record<string, string>): Promise<string | undefined> {
  return new Promise((resolve) => {
    const session = h2connect(relay.url);
    session.on("error", () => resolve(undefined));
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      "x-forwarded-for": freshIp(),
      ...headers,
    });
    let status: string | undefined;
    const timer = setTimeout(() => stream.close(), 5000);
    stream.on("response", (h) => (status ??= h["grpc-status"] as string | undefined));
    stream.on("trailers", (t) => (status ??= t["grpc-status"] as string | undefined));
    stream.on("error", () => {});
    stream.on("data", () => {});
    stream.on("close", () => {
      clearTimeout(timer);
      session.close();
      resolve(status);
    });
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(message.length, 1);
    stream.end(Buffer.concat([prefix, message]));
  });
}

it("a bogus token gets 401 from the headers while its body is still coming, and the connection stays usable", async () => {
  const ip = freshIp();
  const first = await push(chatPath, { authorization: BOGUS, "content-type": "application/json", "x-forwarded-for": ip }, FLOOD_BODY, {
    send: 64 * 1024,
    waitMs: 3000,
    keep: true,
  });
  expect(first.status, "no answer until the whole body was sent").toBe(401);
  expect(first.answeredMs).toBeLessThan(1500);
  expect(openaiError(first.body).code).toBe("unauthenticated");
  // The rest of the body is discarded by the relay; the keep-alive connection then serves the next request.
  const socket = first.socket;
  const next = new Promise<string>((resolve) => {
    let text = "";
    socket.on("data", (c: Buffer) => {
      text += c.toString("latin1");
      if (text.includes("\r\n\r\n")) resolve(text);
    });
    setTimeout(() => resolve(text), 4000);
  });
  socket.write(FLOOD_BODY.subarray(64 * 1024));
  socket.write("GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
  expect((await next).split("\r\n")[0]).toBe("HTTP/1.1 200 OK");
  socket.destroy();
  expect(mock.requests.length).toBe(0);
});

it("40 concurrent 9.9 MB bodies with a bogus token: each 401 at once, the relay's memory stays flat", async () => {
  let answers: Pushed[] = [];
  const growth = await peakGrowth(async () => {
    answers = await Promise.all(
      Array.from({ length: 40 }, () => push(chatPath, { authorization: BOGUS, "content-type": "application/json", "x-forwarded-for": freshIp() }, FLOOD_BODY)),
    );
  });
  const slowest = Math.round(Math.max(...answers.map((a) => a.answeredMs)));
  console.log(`[finding 6] HTTP flood 40 x 9.9 MB, bogus token: peak RSS +${growth.rssMb} MB, Buffers +${growth.buffersMb} MB, slowest 401 ${slowest} ms`);
  expect(answers.map((a) => a.status)).toEqual(Array(40).fill(401));
  expect(growth.buffersMb).toBeLessThan(100);
  expect(growth.rssMb).toBeLessThan(120);
  expect(mock.requests.length).toBe(0);
});

const listIssuers = "/relayapi.v1.AdminService/ListIssuers";

it("an admin rpc without the key is refused from the headers, in each protocol's shape", async () => {
  const connectAnswer = await push(listIssuers, { "content-type": "application/json", "x-forwarded-for": freshIp() }, FLOOD_BODY, {
    send: 64 * 1024,
    waitMs: 3000,
  });
  expect(connectAnswer.status, "no answer until the whole body was read").toBe(401);
  expect(connectAnswer.answeredMs).toBeLessThan(1500);
  expect(JSON.parse(connectAnswer.body)).toMatchObject({ code: "unauthenticated" });

  const webAnswer = await push(listIssuers, { "content-type": "application/grpc-web+proto", "x-forwarded-for": freshIp() }, FLOOD_BODY, {
    send: 64 * 1024,
    waitMs: 3000,
  });
  expect(webAnswer.status).toBe(200);
  expect(webAnswer.headers["grpc-status"]).toBe("16");

  // gRPC over h2c: a 9.9 MB message announced, 64 KiB of it sent, the stream left open.
  const grpc = await new Promise<Record<string, string>>((resolve) => {
    const session = h2connect(relay.url);
    session.on("error", () => resolve({}));
    const stream = session.request({
      ":method": "POST",
      ":path": listIssuers,
      "content-type": "application/grpc",
      te: "trailers",
      "x-forwarded-for": freshIp(),
    });
    stream.on("error", () => {});
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(FLOOD_BODY.length, 1);
    stream.write(Buffer.concat([prefix, FLOOD_BODY.subarray(0, 64 * 1024)]));
    const timer = setTimeout(() => done({}), 3000);
    const done = (h: Record<string, string>): void => {
      clearTimeout(timer);
      session.destroy();
      resolve(h);
    };
    stream.on("response", (h) => done(Object.fromEntries(Object.entries(h).map(([k, v]) => [k, String(v)]))));
  });
  expect(grpc["grpc-status"], "no gRPC answer until the whole message was read").toBe("16");

  // Real clients read each of these as Unauthenticated.
  for (const transport of [
    createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }),
    createGrpcWebTransport({ baseUrl: relay.url, httpVersion: "1.1" }),
    createGrpcTransport({ baseUrl: relay.url }),
  ]) {
    const admin = createClient(AdminService, transport);
    const err = await admin.listIssuers({}, { headers: { "x-forwarded-for": freshIp() } }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.Unauthenticated);
  }
});

it("30 keyless 9.9 MB admin rpcs: each refused at once, the relay's memory stays flat", async () => {
  let answers: Pushed[] = [];
  const growth = await peakGrowth(async () => {
    answers = await Promise.all(
      Array.from({ length: 30 }, () => push(listIssuers, { "content-type": "application/json", "x-forwarded-for": freshIp() }, FLOOD_BODY)),
    );
  });
  const slowest = Math.round(Math.max(...answers.map((a) => a.answeredMs)));
  console.log(`[finding 6] admin rpc flood 30 x 9.9 MB, no key: peak RSS +${growth.rssMb} MB, Buffers +${growth.buffersMb} MB, slowest 401 ${slowest} ms`);
  expect(answers.map((a) => a.status)).toEqual(Array(30).fill(401));
  expect(growth.buffersMb).toBeLessThan(100);
  expect(growth.rssMb).toBeLessThan(120);
});

it("the per-IP limit refuses a Connect call before reading its body", async () => {
  const ip = freshIp();
  const sealing = "/relayapi.v1.TokenService/GetSealingKey";
  for (let i = 0; i < IP_RPM; i++) {
    const ok = await push(sealing, { "content-type": "application/json", "x-forwarded-for": ip }, Buffer.from("{}"));
    expect(ok.status).toBe(200);
  }
  const over = await push(sealing, { "content-type": "application/json", "x-forwarded-for": ip }, FLOOD_BODY, { send: 64 * 1024, waitMs: 3000 });
  expect(over.status, "no answer until the whole body was read").toBe(429);
  expect(over.answeredMs).toBeLessThan(1500);
  expect(Number(over.headers["retry-after"])).toBeGreaterThan(0);
  expect(JSON.parse(over.body)).toMatchObject({ code: "resource_exhausted" });
  // The same bucket as the HTTP layer's: this address is limited there too.
  const http = await push(chatPath, { authorization: BOGUS, "x-forwarded-for": ip }, Buffer.from("{}"));
  expect(http.status).toBe(429);
});

it("bodies held in memory have a global budget: past it 503 + Retry-After, released when requests end", async () => {
  const { secret } = await relay.issue();
  const big = Buffer.from(JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "x".repeat(1.5 * MB) }] }));
  const chat = (extra: Record<string, string> = {}, body = big, opts: { send?: number; waitMs?: number } = {}) =>
    push(chatPath, { authorization: `Bearer ${secret}`, "content-type": "application/json", "x-forwarded-for": freshIp(), ...extra }, body, opts);
  mock.reset();
  // The first call holds its 1.5 MB while the provider takes its time to answer.
  const holder = chat({ "x-mock-headers-delay-ms": "1500" });
  await sleep(400);
  const refused = await chat();
  expect(refused.status).toBe(503);
  expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
  expect(openaiError(refused.body).code).toBeTruthy();
  // Connect routes draw on the same budget (IntrospectToken is public: its body is read first).
  const padded = Buffer.concat([Buffer.from("{"), Buffer.alloc(1.5 * MB, 0x20), Buffer.from("}")]);
  const rpc = await push(
    "/relayapi.v1.TokenService/IntrospectToken",
    { "content-type": "application/json", authorization: `Bearer ${secret}`, "x-forwarded-for": freshIp() },
    padded,
  );
  expect(rpc.status).toBe(503);
  expect(JSON.parse(rpc.body)).toMatchObject({ code: "unavailable" });
  expect(Number(rpc.headers["retry-after"])).toBeGreaterThan(0);
  // A body without a declared length (gRPC over h2c) is counted as connect-node reads it.
  const grpcMessage = protoPadding(1.5 * MB);
  expect(await grpcStatus("/relayapi.v1.TokenService/IntrospectToken", grpcMessage, { authorization: `Bearer ${secret}` })).toBe("14");
  expect((await holder).status).toBe(200);
  expect(mock.requests.length).toBe(1);
  expect(await grpcStatus("/relayapi.v1.TokenService/IntrospectToken", grpcMessage, { authorization: `Bearer ${secret}` })).toBe("0");

  // Released however the request ended: a client that leaves mid-body gives its bytes back.
  for (let i = 0; i < 3; i++) await chat({}, big, { send: 256 * 1024, waitMs: 100 });
  await sleep(100);
  expect((await chat()).status).toBe(200);
  const rpcAfter = await push(
    "/relayapi.v1.TokenService/IntrospectToken",
    { "content-type": "application/json", authorization: `Bearer ${secret}`, "x-forwarded-for": freshIp() },
    padded,
  );
  expect(rpcAfter.status).toBe(200);
});
