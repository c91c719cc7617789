/**
 * Connection and stream limits of the one port, against the real relay (issue 18 finding 4,
 * issue 17 finding 7): h2c streams are capped per session (SETTINGS_MAX_CONCURRENT_STREAMS,
 * the excess refused), a stream whose request body never ends is answered 408 and reset at
 * requestTimeoutMs, connections are capped per client address (not for trusted proxies), a
 * trickled HTTP/1.1 head and a silent h2c session are cut at headersTimeoutMs (within 1 s,
 * not at Node's 30 s check), and the relay's heap stays flat under 2 x 2,000 held streams and
 * comes back once they close. Clients: node:http2 and raw sockets.
 */
import { spawn } from "node:child_process";
import { connect as h2connect, type ClientHttp2Session, type ClientHttp2Stream } from "node:http2";
import { connect, type Socket } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it, vi } from "vitest";
import { useRelay } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";

const HEADERS_TIMEOUT_MS = 1500;
const REQUEST_TIMEOUT_MS = 2500;
const MAX_STREAMS = 20;
const MAX_PER_IP = 12;
const PROXY = "127.0.0.2";
const INTROSPECT = "/relayapi.v1.TokenService/IntrospectToken";
const CHAT = "/api/openai/v1/chat/completions";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const { relay, mock } = useRelay({
  config: {
    headersTimeoutMs: HEADERS_TIMEOUT_MS,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    h2MaxStreams: MAX_STREAMS,
    maxConnectionsPerIp: MAX_PER_IP,
    trustProxy: [PROXY],
  },
});

const port = (): number => Number(new URL(relay.url).port);
const PREFACE = Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

/** A raw socket from `from`, connected, reading (so the server's FIN is seen), its close time kept. */
function rawSocket(from = "127.0.0.1", first?: string | Buffer): Promise<Socket & { closedAt?: number; openedAt: number }> {
  return new Promise((resolve, reject) => {
    const s = connect({ port: port(), host: "127.0.0.1", localAddress: from }, () => {
      if (first !== undefined) s.write(first);
      resolve(Object.assign(s, { openedAt: performance.now() }));
    }) as Socket & { closedAt?: number; openedAt: number };
    s.on("close", () => (s.closedAt = performance.now()));
    s.on("error", (e) => (s.openedAt === undefined ? reject(e) : undefined));
    s.resume();
  });
}

const closedWithin = (s: Socket, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    if (s.destroyed) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    s.once("close", () => {
      clearTimeout(t);
      resolve(true);
    });
  });

function session(): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = h2connect(relay.url, { peerMaxConcurrentStreams: 10_000 });
    s.once("remoteSettings", () => resolve(s));
    s.once("error", reject);
  });
}

interface Outcome {
  status?: number;
  rstCode?: number;
  body: string;
  ms: number;
}

/** Opens a stream, sends `chunk` and (unless `end`) never ends the request body. */
function held(
  s: ClientHttp2Session,
  path: string,
  headers: Record<string, string>,
  chunk: string,
  end = false,
): { stream: ClientHttp2Stream; done: Promise<Outcome> } {
  const started = performance.now();
  const stream = s.request({ ":method": "POST", ":path": path, ...headers });
  let body = "";
  let status: number | undefined;
  stream.on("response", (h) => (status = Number(h[":status"])));
  stream.on("data", (d: Buffer) => (body += d.toString()));
  stream.on("error", () => {});
  const done = new Promise<Outcome>((resolve) => stream.on("close", () => resolve({ status, rstCode: stream.rstCode, body, ms: performance.now() - started })));
  if (end) stream.end(chunk);
  else stream.write(chunk);
  return { stream, done };
}

describe("h2c streams", () => {
  it("SETTINGS carry h2MaxStreams; streams past it are refused (REFUSED_STREAM), the others held", async () => {
    // Opened before the server's SETTINGS arrive, as a client ignoring them would.
    const s = h2connect(relay.url, { peerMaxConcurrentStreams: 10_000 });
    s.on("error", () => {});
    const streams = Array.from({ length: MAX_STREAMS + 10 }, () => held(s, INTROSPECT, { "content-type": "application/proto" }, "\n"));
    await new Promise((r) => s.once("remoteSettings", r));
    await sleep(300);
    try {
      expect(s.remoteSettings.maxConcurrentStreams).toBe(MAX_STREAMS);
      const refused = streams.filter((x) => x.stream.rstCode === 7);
      const open = streams.filter((x) => !x.stream.closed);
      expect(refused).toHaveLength(10);
      expect(open).toHaveLength(MAX_STREAMS);
    } finally {
      s.destroy();
    }
  });

  it("a stream whose body never ends gets 408 and a reset at requestTimeoutMs; a long answer to a finished body is untouched", async () => {
    const errors = vi.spyOn(console, "error");
    const { secret } = await relay.issue();
    const s = await session();
    try {
      const auth = { authorization: `Bearer ${secret}`, "content-type": "application/json" };
      const rpc = Array.from({ length: 3 }, () => held(s, INTROSPECT, { "content-type": "application/proto" }, "\n"));
      const chat = held(s, CHAT, auth, '{"model":"gpt-4o-mini","messages":');
      // Ends its body at once; its answer streams for ~3 s, past requestTimeoutMs.
      const body = JSON.stringify({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "hi" }] });
      const long = held(s, CHAT, { ...auth, "x-mock-chunks": "6", "x-mock-delay-ms": "500" }, body, true);
      const cut = await Promise.race([Promise.all([...rpc, chat].map((x) => x.done)), sleep(REQUEST_TIMEOUT_MS + 1500).then(() => [])]);
      expect(cut).toHaveLength(4);
      for (const o of cut) {
        expect(o.status).toBe(408);
        expect(o.ms).toBeGreaterThan(REQUEST_TIMEOUT_MS - 100);
        expect(o.ms).toBeLessThan(REQUEST_TIMEOUT_MS + 1000);
      }
      const answered = await long.done;
      expect(answered.status).toBe(200);
      expect(answered.rstCode).toBe(0);
      expect(answered.body).toContain("data: [DONE]");
      expect(answered.ms).toBeGreaterThan(REQUEST_TIMEOUT_MS);
      // Only the finished request reached the provider; the cut one was never relayed.
      expect(mock.requests).toHaveLength(1);
      expect(errors.mock.calls.filter((c) => String(c[0]).includes("handler for rpc"))).toHaveLength(0);
    } finally {
      errors.mockRestore();
      s.destroy();
    }
  });

  it("2 sessions x 2,000 held streams: the relay's heap stays bounded and comes back after they close", async () => {
    const heap = (): number => {
      gc();
      gc();
      return process.memoryUsage().heapUsed / (1024 * 1024);
    };
    const before = heap();
    // The client runs in its own process so that only the relay's memory is measured here.
    const client = spawn(process.execPath, ["--input-type=module", "-e", HOLDER], { env: { ...process.env, URL: relay.url, SESSIONS: "2", STREAMS: "2000" } });
    let out = "";
    client.stdout.on("data", (d: Buffer) => (out += d.toString()));
    client.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const exited = new Promise((r) => client.on("exit", r));
    try {
      for (let i = 0; i < 100 && !out.includes("opened"); i++) await sleep(50);
      expect(out).toContain("opened");
      await sleep(700); // well before requestTimeoutMs
      const during = heap();
      client.stdin.write("close\n");
      await exited;
      await sleep(300);
      const after = heap();
      console.log(`relay heap: before ${before.toFixed(1)} MB, during ${during.toFixed(1)} MB, after ${after.toFixed(1)} MB`);
      expect(during - before).toBeLessThan(16);
      expect(after - before).toBeLessThan(6);
    } finally {
      client.kill();
    }
  });
});

/** Opens SESSIONS x STREAMS streams that never end their body; exits (dropping them) on any input. */
const HOLDER = `
import { connect } from "node:http2";
const sessions = [];
for (let i = 0; i < Number(process.env.SESSIONS); i++) {
  const s = connect(process.env.URL);
  s.on("error", () => {});
  await new Promise((r) => s.once("remoteSettings", r));
  for (let j = 0; j < Number(process.env.STREAMS); j++) {
    const st = s.request({ ":method": "POST", ":path": "${INTROSPECT}", "content-type": "application/proto" });
    st.on("error", () => {});
    st.write("\\n");
  }
  sessions.push(s);
}
console.log("opened");
// Exiting drops the connections (destroying sessions with ~2,000 queued streams takes seconds).
process.stdin.on("data", () => process.exit(0));
`;

describe("connections per client address", () => {
  it("past maxConnectionsPerIp (HTTP/1.1 and h2c alike) a new socket is closed at once; a trusted proxy is not capped", async () => {
    const sessions: ClientHttp2Session[] = [];
    const sockets: Array<Socket & { closedAt?: number; openedAt: number }> = [];
    try {
      for (let i = 0; i < 4; i++) sessions.push(await session());
      for (let i = 0; i < MAX_PER_IP + 4; i++) sockets.push(await rawSocket());
      const proxied = await Promise.all(Array.from({ length: MAX_PER_IP + 4 }, () => rawSocket(PROXY)));
      sockets.push(...proxied);
      await sleep(300);
      const refused = sockets.filter((s) => s.closedAt !== undefined && s.closedAt - s.openedAt < 250);
      const open = sockets.filter((s) => !s.destroyed && !proxied.includes(s));
      // Other connections of this process (the test's RPC client) may count too: at most the cap.
      expect(open.length + sessions.length).toBeLessThanOrEqual(MAX_PER_IP);
      expect(refused.length).toBeGreaterThanOrEqual(8);
      expect(sessions.every((s) => !s.closed && !s.destroyed)).toBe(true);
      expect(proxied.every((s) => !s.destroyed)).toBe(true);
    } finally {
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
    }
    await sleep(100);
    // Closed connections are no longer counted.
    const again = await rawSocket("127.0.0.1", "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let answer = "";
    again.on("data", (d: Buffer) => (answer += d.toString()));
    expect(await closedWithin(again, 2000)).toBe(true);
    expect(answer).toMatch(/^HTTP\/1.1 200/);
  });
});

describe("headersTimeoutMs", () => {
  it("a trickled HTTP/1.1 head and a silent h2c session are cut within headersTimeoutMs + 1 s", async () => {
    const head = await rawSocket("127.0.0.1", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    const trickle = setInterval(() => head.writable && head.write("a"), 200);
    const h2 = await rawSocket("127.0.0.1", PREFACE);
    try {
      const [headCut, h2Cut] = await Promise.all([closedWithin(head, HEADERS_TIMEOUT_MS + 1000), closedWithin(h2, HEADERS_TIMEOUT_MS + 1000)]);
      expect(headCut).toBe(true);
      expect(h2Cut).toBe(true);
      for (const s of [head, h2]) expect(s.closedAt! - s.openedAt).toBeGreaterThan(HEADERS_TIMEOUT_MS - 100);
    } finally {
      clearInterval(trickle);
      head.destroy();
      h2.destroy();
    }
  });
});
