/**
 * The global body budget (src/http/body-budget.ts) counts bytes that arrived, not lengths a
 * client declares: declared lengths were taken at once, so one unauthenticated h2c connection
 * whose streams each declared a body and sent a byte held the whole budget, and every body of
 * every client was refused 503 until requestTimeoutMs (300 s by default) cut those streams,
 * again and again (found by test/probe-input.test.ts's probe). The RPC front door
 * (src/services/rpc-gate.ts) and the HTTP layer's reader (src/http/read-body.ts) now take
 * bytes as they come.
 */
import { connect as h2connect, type ClientHttp2Session } from "node:http2";
import { afterEach, expect, it } from "vitest";
import { useRelay } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";

const MB = 1024 * 1024;
const BUDGET = 8 * MB;
const MAX_BODY = 1 * MB;
const INTROSPECT = "/relayapi.v1.TokenService/IntrospectToken";
const CHAT = "/api/openai/v1/chat/completions";

const { relay } = useRelay({ config: { bodyMemoryBytes: BUDGET, maxBodyBytes: MAX_BODY, h2MaxStreams: 200 } });
let squatter: ClientHttp2Session | undefined;
afterEach(() => squatter?.destroy());

/** Streams that declare `length` and send one byte, never more. */
function declare(s: ClientHttp2Session, path: string, headers: Record<string, string>, length: number): void {
  const st = s.request({ ":method": "POST", ":path": path, "content-length": String(length), ...headers });
  st.on("error", () => {});
  st.write("{");
}

/** Fills the budget with declared lengths: 8 of the body limit, then halves down to 16 bytes. */
async function squat(path: string, headers: Record<string, string>): Promise<void> {
  squatter = h2connect(relay.url);
  squatter.on("error", () => {});
  await new Promise((r) => squatter!.once("remoteSettings", r));
  for (let i = 0; i < BUDGET / MAX_BODY; i++) declare(squatter, path, headers, MAX_BODY);
  for (let size = MAX_BODY / 2; size >= 16; size = Math.floor(size / 2)) {
    declare(squatter, path, headers, size);
    declare(squatter, path, headers, size);
  }
  await sleep(300);
}

async function chat(secret: string): Promise<number> {
  const res = await fetch(`${relay.url}${CHAT}`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
  });
  await res.arrayBuffer();
  return res.status;
}

it("unauthenticated: IntrospectToken streams declaring bodies they never send do not refuse other clients' bodies", async () => {
  const { secret } = await relay.issue();
  await squat(INTROSPECT, { "content-type": "application/json" });
  expect(await chat(secret)).toBe(200);
  // connect-node's own path (a deadline keeps the call off the fast lane).
  const rpc = await fetch(`${relay.url}${INTROSPECT}`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", "connect-timeout-ms": "5000" },
    body: "{}",
  });
  expect(rpc.status).toBe(200);
});

it("the same through connect-node (a deadline on every squatting stream)", async () => {
  const { secret } = await relay.issue();
  await squat(INTROSPECT, { "content-type": "application/json", "connect-timeout-ms": "100000" });
  expect(await chat(secret)).toBe(200);
});

it("with a token: chat completions declaring bodies they never send do not refuse other clients' bodies", async () => {
  const { secret } = await relay.issue();
  const other = await relay.issue();
  await squat(CHAT, { "content-type": "application/json", authorization: `Bearer ${secret}` });
  expect(await chat(other.secret)).toBe(200);
});
