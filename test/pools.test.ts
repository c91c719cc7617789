/**
 * Key pools end to end: round robin spreads calls evenly, a 429 rests a key, a 401 is a strike
 * (the key is disabled at the third, never by one call) and the call succeeds on the next key,
 * a stream broken after its first byte is not retried, and keys never come back whole from any
 * rpc or database row. Hostile tokens and the other failover rules: test/pool-knockout.test.ts.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { AuthStyle, ApiShape, PoolStrategy } from "../gen/relayapi/v1/admin_service_pb.js";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { listKeys } from "../src/db/queries/pools.js";
import { useRelay } from "./support/use-relay.js";

const KEYS = ["sk-pool-key-AAAA1111", "sk-pool-key-BBBB2222", "sk-pool-key-CCCC3333"];
const { relay, mock } = useRelay();
let broken: Server;

beforeAll(async () => {
  // An upstream that sends one SSE event, then resets the connection.
  broken = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write('data: {"choices":[{"delta":{"content":"half"}}]}\n\n');
    setTimeout(() => res.socket?.destroy(), 50);
  });
  await new Promise<void>((r) => broken.listen(0, "127.0.0.1", r));
});
afterAll(async () => {
  await new Promise((r) => broken?.close(r));
});

async function poolWithKeys(name: string, provider = "openai", strategy = PoolStrategy.ROUND_ROBIN) {
  await relay.admin.createPool({ name, provider, strategy });
  const res = await relay.admin.addKeys({ pool: name, keys: [...KEYS, KEYS[0]!, "", "bad key"] });
  expect({ added: res.added, skipped: res.skipped, failed: res.failed }).toEqual({ added: 3, skipped: 1, failed: 2 });
  const { secret } = await relay.tokens.issueToken({ provider, credential: { case: "pool", value: name }, limits: {} }).then((r) => ({ secret: r.secret }));
  return secret;
}

function chat(secret: string, headers: Record<string, string> = {}) {
  return fetch(`${relay.url}/api/openai/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] }),
  });
}

const keyOf = (auth: string | string[] | undefined) => String(auth).replace("Bearer ", "");

it("round robin spreads 300 calls 100/100/100", async () => {
  const secret = await poolWithKeys("rr");
  mock.reset();
  for (let i = 0; i < 300; i++) expect((await chat(secret)).status).toBe(200);
  const counts = new Map<string, number>();
  for (const r of mock.requests) counts.set(keyOf(r.headers.authorization), (counts.get(keyOf(r.headers.authorization)) ?? 0) + 1);
  expect([...counts.entries()].sort()).toEqual(KEYS.map((k) => [k, 100]));
});

it("a key answering 429 rests until its cool-down ends", async () => {
  const secret = await poolWithKeys("cool");
  mock.reset();
  mock.failNext(429, { error: { message: "slow down", type: "rate_limit_error" } }, { "retry-after": "2" });
  const first = await chat(secret);
  expect(first.status).toBe(200); // retried on the next key
  const resting = keyOf(mock.requests[0]!.headers.authorization);
  mock.reset();
  for (let i = 0; i < 6; i++) expect((await chat(secret)).status).toBe(200);
  expect(mock.requests.map((r) => keyOf(r.headers.authorization))).not.toContain(resting);
  await new Promise((r) => setTimeout(r, 2100));
  mock.reset();
  for (let i = 0; i < 6; i++) await chat(secret);
  expect(mock.requests.map((r) => keyOf(r.headers.authorization))).toContain(resting);
});

it("a key answering 401 gets a strike and the call succeeds on the next key; the third strike disables it", async () => {
  const secret = await poolWithKeys("dis");
  mock.reset();
  const refusal = { status: 401, body: { error: { message: "bad key", type: "invalid_request_error" } } };
  mock.failNext(refusal.status, refusal.body);
  const res = await chat(secret);
  expect(res.status).toBe(200);
  const dead = keyOf(mock.requests[0]!.headers.authorization);
  let keys = (await relay.admin.listKeys({ pool: "dis" })).keys;
  // Issue 17: one 401 no longer disables a key (it used to).
  expect(keys.filter((k) => !k.enabled)).toHaveLength(0);
  const served = relay.calls.at(-1)!;
  expect(served.keyId).toBe(
    keys.find((k) => k.enabled && mock.requests[1]!.headers.authorization === `Bearer ${KEYS.find((x) => x.endsWith(k.masked.slice(-4)))}`)?.id,
  );
  // The same key keeps answering 401: disabled at its third strike, every call still served.
  mock.behave((rec) => (keyOf(rec.headers.authorization) === dead ? refusal : undefined));
  for (let i = 0; i < 9 && keys.every((k) => k.enabled); i++) {
    expect((await chat(secret)).status).toBe(200);
    keys = (await relay.admin.listKeys({ pool: "dis" })).keys;
  }
  mock.behave(undefined);
  const disabled = keys.filter((k) => !k.enabled);
  expect(disabled).toHaveLength(1);
  expect(disabled[0]!.disabledReason).toBe("upstream answered 401");
  expect(disabled[0]!.masked).toBe(`sk-...${dead.slice(-4)}`);
  expect(mock.requests.filter((r) => keyOf(r.headers.authorization) === dead)).toHaveLength(3);
});

it("passes the provider's error through when no other key is left", async () => {
  await relay.admin.createPool({ name: "solo", provider: "openai" });
  await relay.admin.addKeys({ pool: "solo", keys: ["sk-solo-key-9999"] });
  const { secret } = await relay.tokens.issueToken({ provider: "openai", credential: { case: "pool", value: "solo" } });
  const res = await chat(secret, { "x-mock-status": "503" });
  expect(res.status).toBe(503);
  expect(relay.calls.at(-1)!.outcome).toBe(Outcome.UPSTREAM_ERROR);
});

it("a stream broken after its first byte is not retried and is recorded TRUNCATED", async () => {
  const url = `http://127.0.0.1:${(broken.address() as AddressInfo).port}`;
  await relay.admin.upsertProvider({ provider: { id: "broken", baseUrl: url, authStyle: AuthStyle.BEARER, shape: ApiShape.OPENAI } });
  await relay.admin.createPool({ name: "brk", provider: "broken" });
  await relay.admin.addKeys({ pool: "brk", keys: KEYS });
  const { secret } = await relay.tokens.issueToken({ provider: "broken", credential: { case: "pool", value: "brk" } });
  const before = relay.calls.length;
  const res = await fetch(`${relay.url}/api/broken/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${secret}` }, body: "{}" });
  const text = await res.text();
  expect(text).toContain("half");
  expect(text).toContain("event: error");
  expect(relay.calls.slice(before).map((c) => c.outcome)).toEqual([Outcome.TRUNCATED]);
});

it("never returns or stores a key whole", async () => {
  const responses = JSON.stringify([await relay.admin.listPools({}), await relay.admin.listKeys({ pool: "rr" })], (_k, v) =>
    typeof v === "bigint" ? String(v) : v,
  );
  const rows = JSON.stringify(await listKeys(relay.app.database.db));
  for (const key of KEYS) {
    expect(responses).not.toContain(key);
    expect(rows).not.toContain(key);
  }
});
