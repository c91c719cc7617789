/**
 * Small helpers for the HTTP-layer suites (test/http-*.test.ts): a raw HTTP/1.1 request over a
 * TCP socket, for request targets a client library would normalise (dot segments, encoded
 * slashes) and headers it would refuse (hop-by-hop), and an assertion that a relay token never
 * reached the upstream.
 */
import { connect as h2connect } from "node:http2";
import { connect, createServer } from "node:net";
import { Agent, request } from "undici";
import { expect } from "vitest";
import type { RecordedRequest } from "./mock-provider.js";

export interface RawResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
}

export interface RawRequest {
  method?: string;
  /** The request target exactly as sent on the request line. */
  target: string;
  /** Sent as given. A `connection` header must include `close` (one request per socket). */
  headers?: Record<string, string>;
  body?: string | Buffer;
}

/** Sends one request on a fresh socket and reads the answer until the server closes it. */
export function rawRequest(baseUrl: string, req: RawRequest): Promise<RawResponse> {
  const { hostname, port } = new URL(baseUrl);
  const body = req.body === undefined ? undefined : Buffer.from(req.body);
  const headers: Record<string, string> = { host: `${hostname}:${port}`, ...req.headers };
  if (!Object.keys(headers).some((h) => h.toLowerCase() === "connection")) headers.connection = "close";
  if (body && !Object.keys(headers).some((h) => /^(content-length|transfer-encoding)$/i.test(h))) {
    headers["content-length"] = String(body.length);
  }
  const head = `${req.method ?? "GET"} ${req.target} HTTP/1.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error(`raw request to ${req.target} timed out`)), 5000);
    socket.on("data", (c) => chunks.push(c));
    socket.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on("close", () => {
      clearTimeout(timer);
      try {
        resolve(parseResponse(Buffer.concat(chunks)));
      } catch (e) {
        reject(e);
      }
    });
    socket.write(head);
    if (body) socket.write(body);
  });
}

function parseResponse(raw: Buffer): RawResponse {
  const end = raw.indexOf("\r\n\r\n");
  if (end === -1) throw new Error(`incomplete response: ${JSON.stringify(raw.toString("latin1").slice(0, 200))}`);
  const [statusLine, ...lines] = raw.subarray(0, end).toString("latin1").split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(":");
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  let body = raw.subarray(end + 4);
  if (headers["transfer-encoding"]?.includes("chunked")) body = dechunk(body);
  return { status: Number(statusLine!.split(" ")[1]), headers, body };
}

function dechunk(buf: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const nl = buf.indexOf("\r\n", at);
    if (nl === -1) throw new Error("truncated chunked body");
    const size = parseInt(buf.subarray(at, nl).toString("latin1"), 16);
    if (size === 0) return Buffer.concat(out);
    out.push(buf.subarray(nl + 2, nl + 2 + size));
    at = nl + 2 + size + 2;
  }
}

export interface H2Response extends RawResponse {
  /** Milliseconds after the response headers at which each DATA chunk arrived. */
  arrivals: number[];
}

/** One request over cleartext HTTP/2 (h2c, prior knowledge) on a fresh session. */
export function h2Request(
  baseUrl: string,
  req: { method?: string; path: string; headers?: Record<string, string>; body?: Buffer | string },
): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const session = h2connect(baseUrl);
    session.on("error", reject);
    const stream = session.request({ ":method": req.method ?? "GET", ":path": req.path, ...req.headers });
    const chunks: Buffer[] = [];
    const arrivals: number[] = [];
    let status = 0;
    let headersAt = 0;
    const headers: Record<string, string> = {};
    stream.on("response", (h) => {
      headersAt = performance.now();
      status = Number(h[":status"]);
      for (const [k, v] of Object.entries(h)) if (!k.startsWith(":") && v !== undefined) headers[k] = String(v);
    });
    stream.on("data", (c: Buffer) => {
      arrivals.push(performance.now() - headersAt);
      chunks.push(c);
    });
    stream.on("end", () => {
      session.close();
      resolve({ status, headers, body: Buffer.concat(chunks), arrivals });
    });
    stream.on("error", reject);
    stream.end(req.body);
  });
}

/** The relay token appears nowhere in what the upstream received: path, query, headers, body. */
export function expectNoSecret(rec: RecordedRequest | undefined, secret: string): void {
  expect(rec, "the upstream saw no request").toBeDefined();
  const seen = [rec!.path, rec!.query.toString(), JSON.stringify(rec!.headers), rec!.body.toString("latin1")].join("\n");
  expect(seen.includes(secret), "relay token reached the upstream").toBe(false);
  // The random part alone (a carrier that mangled the prefix would still leak it).
  expect(seen.includes(secret.slice(4, 36)), "relay token reached the upstream").toBe(false);
}

/** Parses a JSON error body and checks it has the OpenAI shape with `code`. */
export function openaiError(body: Buffer | string): { message: string; type: string; code: string } {
  const parsed = JSON.parse(body.toString()) as { error?: { message?: unknown; type?: unknown; code?: unknown } };
  expect(parsed.error).toBeDefined();
  expect(typeof parsed.error!.message).toBe("string");
  expect(typeof parsed.error!.type).toBe("string");
  expect(typeof parsed.error!.code).toBe("string");
  return parsed.error as { message: string; type: string; code: string };
}

/** A port on 127.0.0.1 that refuses connections (bound once, then closed): an upstream no byte reaches. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

// Older suites import sleep from here; it lives in wait.ts.
export { sleep } from "./wait.js";

export interface BurstAnswer {
  status: number;
  json: { error?: { type?: string; code?: string } };
}

/** `n` chat completions at once through `/api/openai` with `token` (128 connections): the race a cap must win. */
export async function burstChats(relayUrl: string, token: string, n: number): Promise<BurstAnswer[]> {
  const agent = new Agent({ connections: 128 });
  const body = JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] });
  try {
    return await Promise.all(
      Array.from({ length: n }, async () => {
        const res = await request(`${relayUrl}/api/openai/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body,
          dispatcher: agent,
        });
        return { status: res.statusCode, json: (await res.body.json()) as BurstAnswer["json"] };
      }),
    );
  } finally {
    await agent.close();
  }
}

/** One chat completion through `/api/openai` with `token` on `dispatcher`; its status (the body is read and dropped). */
export async function chatStatus(relayUrl: string, token: string, dispatcher: Agent): Promise<number> {
  const res = await request(`${relayUrl}/api/openai/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] }),
    dispatcher,
  });
  await res.body.dump();
  return res.statusCode;
}
