/**
 * The one-port server's bounds, with short timeouts: an h2c stream whose body never ends
 * (408 + reset, and the handler sees a failed body rather than a clean truncated one), streams
 * left alone once their body ended, idle sessions closed after the keep-alive time, the first
 * head timed from accept through the protocol sniff, and connections counted per address
 * (released on close, an exempt address never counted).
 */
import { connect as h2connect, type ClientHttp2Session, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createOnePortServer, type Handler, type OnePortOptions, type OnePortServer } from "./one-port.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let server: OnePortServer | undefined;
afterEach(async () => {
  await server?.close(50);
  server = undefined;
});

async function start(handler: Handler, opts: OnePortOptions): Promise<string> {
  server = createOnePortServer(handler, { connectionsCheckingIntervalMs: 50, ...opts });
  const { port } = await server.listen(0, "127.0.0.1");
  return `http://127.0.0.1:${port}`;
}

/** What the handler saw of a request body: all of it, or the error that cut it. */
function readAll(req: IncomingMessage | Http2ServerRequest): Promise<string> {
  return new Promise((resolve) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => resolve(`end:${body}`));
    req.on("error", (e: Error & { code?: string }) => resolve(`error:${e.code}`));
  });
}

function session(url: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = h2connect(url);
    s.once("remoteSettings", () => resolve(s));
    s.once("error", reject);
  });
}

interface Seen {
  status?: number;
  rstCode?: number;
  body: string;
  ms: number;
}

function request(s: ClientHttp2Session, path: string, body: string, end: boolean, method = "POST"): Promise<Seen> {
  const started = performance.now();
  const stream = s.request({ ":method": method, ":path": path }, { endStream: method === "GET" });
  let text = "";
  let status: number | undefined;
  stream.on("response", (h) => (status = Number(h[":status"])));
  stream.on("data", (d: Buffer) => (text += d.toString()));
  stream.on("error", () => {});
  if (method !== "GET") {
    if (end) stream.end(body);
    else stream.write(body);
  }
  return new Promise((resolve) => stream.on("close", () => resolve({ status, rstCode: stream.rstCode, body: text, ms: performance.now() - started })));
}

function socket(port: number, first?: string): Promise<Socket & { closedAt?: number }> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1", () => {
      if (first !== undefined) s.write(first);
      resolve(s);
    }) as Socket & { closedAt?: number };
    s.on("error", () => {});
    s.on("close", () => (s.closedAt = performance.now()));
    s.resume();
  });
}

describe("h2c request bodies (requestTimeoutMs)", () => {
  it("no answer yet: 408 and a reset; the handler's read fails instead of ending on a truncated body", async () => {
    const seen: Array<Promise<string>> = [];
    const url = await start((req) => seen.push(readAll(req)), { headersTimeoutMs: 300, requestTimeoutMs: 400 });
    const s = await session(url);
    const got = await request(s, "/held", "partial", false);
    expect(got.status).toBe(408);
    expect(got.ms).toBeGreaterThan(350);
    expect(got.ms).toBeLessThan(900);
    expect(await seen[0]).toBe("error:ERR_HTTP_REQUEST_TIMEOUT");
    s.destroy();
  });

  it("answer started: reset with CANCEL; answer complete, body unread: NO_ERROR (Node, at once)", async () => {
    const url = await start(
      (req, res) => {
        if (req.url === "/started") {
          res.writeHead(200);
          (res as Http2ServerResponse).write("head");
          void readAll(req).then((r) => res.end(r));
        } else {
          res.end("done"); // never reads the body
        }
      },
      { headersTimeoutMs: 300, requestTimeoutMs: 400 },
    );
    const s = await session(url);
    const [started, done] = await Promise.all([request(s, "/started", "x", false), request(s, "/done", "x", false)]);
    expect(started).toMatchObject({ status: 200, rstCode: 8, body: "head" });
    expect(done).toMatchObject({ status: 200, rstCode: 0, body: "done" });
    expect(started.ms).toBeGreaterThan(350);
    s.destroy();
  });

  it("a body that ended, or no body, is never cut, however long the answer takes", async () => {
    const url = await start(
      (req, res) => {
        void readAll(req).then(async (r) => {
          res.writeHead(200);
          for (let i = 0; i < 4; i++) {
            (res as Http2ServerResponse).write(".");
            await sleep(200);
          }
          res.end(r);
        });
      },
      { headersTimeoutMs: 300, requestTimeoutMs: 400 },
    );
    const s = await session(url);
    const [post, get] = await Promise.all([request(s, "/post", "all", true), request(s, "/get", "", true, "GET")]);
    expect(post).toMatchObject({ status: 200, rstCode: 0, body: "....end:all" });
    expect(get).toMatchObject({ status: 200, rstCode: 0, body: "....end:" });
    expect(post.ms).toBeGreaterThan(700);
    s.destroy();
  });
});

describe("idle and slow connections", () => {
  it("HTTP/1.1: a body not sent in requestTimeoutMs gets Node's 408, checked often enough (default) to be on time", async () => {
    const url = await start((req, res) => void readAll(req).then((r) => res.end(r)), {
      headersTimeoutMs: 300,
      requestTimeoutMs: 400,
      connectionsCheckingIntervalMs: undefined,
    });
    const opened = performance.now();
    const s = await socket(Number(new URL(url).port), "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    let answer = "";
    s.on("data", (d: Buffer) => (answer += d.toString()));
    await sleep(1100);
    expect(answer).toMatch(/^HTTP\/1.1 408/);
    expect(s.closedAt! - opened).toBeLessThan(1000);
  });

  it("an h2c session is closed keepAliveTimeoutMs after its last stream, not while one is open", async () => {
    const url = await start(
      (req, res) => {
        if (req.url === "/slow") setTimeout(() => res.end("slow"), 500);
        else res.end("ok");
      },
      { headersTimeoutMs: 300, keepAliveTimeoutMs: 300 },
    );
    const s = await session(url);
    let closedAt = 0;
    s.on("close", () => (closedAt = performance.now()));
    s.on("error", () => {});
    const slow = await request(s, "/slow", "", true, "GET");
    expect(slow).toMatchObject({ status: 200, body: "slow" });
    const lastEnded = performance.now();
    expect(s.closed || s.destroyed).toBe(false);
    await sleep(700);
    expect(closedAt).toBeGreaterThan(lastEnded + 200);
    expect(closedAt).toBeLessThan(lastEnded + 600);
  });

  it("the first head is timed from accept, through the sniff (a slow `PR...` is not timed twice)", async () => {
    const url = await start((_req, res) => res.end("ok"), { headersTimeoutMs: 600 });
    const port = Number(new URL(url).port);
    const opened = performance.now();
    const s = await socket(port, "PR");
    await sleep(400);
    s.write("OPFIND / HTTP/1.1\r\nHost: x\r\n"); // PROPFIND, not the preface: HTTP/1.1 takes it, 400 ms in
    const trickle = setInterval(() => s.writable && s.write("a"), 50);
    await sleep(500);
    clearInterval(trickle);
    expect(s.closedAt).toBeDefined();
    expect(s.closedAt! - opened).toBeGreaterThan(550);
    expect(s.closedAt! - opened).toBeLessThan(800);
  });
});

describe("connections per address", () => {
  it("past the cap a socket is closed at once; closing frees a place; an exempt address is not counted", async () => {
    let exempt = false;
    const url = await start((_req, res) => res.end("ok"), {
      headersTimeoutMs: 5000,
      maxConnectionsPerIp: 3,
      connectionKey: (address) => (exempt ? undefined : `key:${address}`),
    });
    const port = Number(new URL(url).port);
    const held = [await socket(port), await socket(port), await socket(port)];
    const over = await socket(port);
    await sleep(100);
    expect(over.destroyed).toBe(true);
    expect(held.some((x) => x.destroyed)).toBe(false);
    expect(server!.stats()).toMatchObject({ sockets: 3, addresses: 1 });

    held.pop()!.destroy();
    await sleep(50);
    const next = await socket(port);
    await sleep(100);
    expect(next.destroyed).toBe(false);

    exempt = true;
    const free = await Promise.all(Array.from({ length: 5 }, () => socket(port)));
    await sleep(100);
    expect(free.some((x) => x.destroyed)).toBe(false);

    for (const x of [...held, next, ...free]) x.destroy();
    await sleep(100);
    expect(server!.stats()).toEqual({ sockets: 0, sessions: 0, addresses: 0 });
  });
});
