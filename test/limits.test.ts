/**
 * Limits on the relay (DESIGN 9): per client IP before the token (bad tokens are limited too),
 * X-Forwarded-For believed only from trusted proxies, per-token rpm with Retry-After, and the
 * same limits on RPC. With Redis, a token's rpm holds across two instances.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import { TokenService } from "../gen/relayapi/v1/token_service_pb.js";
import { createDpopProof, generateDpopKeyPair, jwkThumbprint } from "../src/sdk/dpop-fetch.js";
import { postgresAvailable, redisAvailable, REDIS_URL } from "./support/databases.js";
import { startRelay, type TestRelay } from "./support/relay.js";
import { useCluster, useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay({ config: { ipRpm: 5, trustProxy: ["127.0.0.1"] } });

const chat = (r: TestRelay, token: string, headers: Record<string, string> = {}) =>
  fetch(`${r.url}/api/openai/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "m", messages: [] }),
  });

it("limits each client IP before looking at the token, with Retry-After", async () => {
  const ip = { "x-forwarded-for": "203.0.113.7" };
  const statuses = [];
  for (let i = 0; i < 7; i++) statuses.push((await chat(relay, "rai_not-a-token", ip)).status);
  expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429]);
  const limited = await chat(relay, "rai_not-a-token", ip);
  expect(limited.headers.get("retry-after")).toMatch(/^\d+$/);
  expect(((await limited.json()) as { error: { code: string } }).error.code).toBe("rate_limited");
  // Another client is not affected.
  expect((await chat(relay, "rai_not-a-token", { "x-forwarded-for": "203.0.113.8" })).status).toBe(401);
});

it("believes X-Forwarded-For only from a trusted proxy", async () => {
  const untrusted = await startRelay({ mock, config: { ipRpm: 3 } });
  try {
    const statuses = [];
    // Each request claims a new address; the socket (127.0.0.1) is what counts.
    for (let i = 0; i < 5; i++) statuses.push((await chat(untrusted, "x", { "x-forwarded-for": `198.51.100.${i}` })).status);
    expect(statuses).toEqual([401, 401, 401, 429, 429]);
  } finally {
    await untrusted.close();
  }
});

it("applies the per-IP limit to RPCs too", async () => {
  const client = createClient(TokenService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
  const codes = [];
  for (let i = 0; i < 7; i++) {
    codes.push(
      await client.introspectToken({}, { headers: { authorization: "Bearer nope", "x-forwarded-for": "192.0.2.44" } }).then(
        () => "ok",
        (e) => ConnectError.from(e).code,
      ),
    );
  }
  expect(codes.slice(0, 5)).toEqual(Array(5).fill(Code.Unauthenticated));
  expect(codes.slice(5)).toEqual([Code.ResourceExhausted, Code.ResourceExhausted]);
});

it("holds a token's rpm and answers 429 with Retry-After", async () => {
  const { secret } = await relay.issue({ limits: { rpm: 3 } });
  const statuses = [];
  for (let i = 0; i < 5; i++) statuses.push((await chat(relay, secret, { "x-forwarded-for": `10.9.0.${i}` })).status);
  expect(statuses).toEqual([200, 200, 200, 429, 429]);
});

const redisUp = await redisAvailable();
const pgUp = await postgresAvailable();

describe.skipIf(!redisUp || !pgUp)("two instances sharing Redis", () => {
  const { a, b } = useCluster({ config: { redisUrl: REDIS_URL, publicOrigin: "https://relay.test" } });

  it("a per-token rpm of 60 holds across both instances", async () => {
    const { secret } = await a.issue({ limits: { rpm: 60 } });
    // Waves of 10: a key's Redis checks run one at a time per instance, and a check that waits
    // past 500 ms falls back to the local bucket (by design), which would blur what is tested.
    const statuses: number[] = [];
    const started = Date.now();
    for (let wave = 0; wave < 15; wave++) {
      statuses.push(...(await Promise.all(Array.from({ length: 10 }, (_, i) => chat(i % 2 ? a : b, secret).then((r) => r.status)))));
    }
    const ok = statuses.filter((s) => s === 200).length;
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
    expect(ok).toBeGreaterThanOrEqual(55);
    // A bucket of 60 refilled at one a second: 60 at once, then one per second elapsed (+1 slack
    // per instance for a check that lost a race). Two independent buckets would allow 120.
    expect(ok).toBeLessThanOrEqual(60 + Math.ceil((Date.now() - started) / 1000) + 2);
  });

  it("a DPoP proof used on one instance is refused as a replay on the other", async () => {
    const keys = await generateDpopKeyPair();
    const { secret } = await a.issue({ limits: { bindJkt: await jwkThumbprint(keys.publicKey) } });
    const proof = await createDpopProof(keys, "POST", "https://relay.test/api/openai/v1/chat/completions", secret);
    expect((await chat(a, secret, { dpop: proof })).status).toBe(200);
    expect((await chat(b, secret, { dpop: proof })).status).toBe(401);
  });
});
