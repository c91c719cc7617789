/**
 * Refunds (DESIGN 3.3, issue 17 finding 1): a call is given back only when the relay can prove
 * no request byte left for the provider. A provider slower than the headers timeout, or one
 * that resets the connection after reading the body, has the request: those calls are counted
 * (UPSTREAM_ERROR), so a token capped at 3 calls puts at most 3 requests before the provider
 * however often it retries, one after another or all at once. Arrivals are the mock's
 * `requests` (recorded when a request's head arrives), per token by its upstream key.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ApiShape, AuthStyle } from "../gen/relayapi/v1/admin_service_pb.js";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { closedPort, openaiError } from "./support/http.js";
import { callsUsed } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";

const TIMEOUT_MS = 300;
/** The provider's delay: well past the timeout, which undici keeps with a coarse (~1 s) timer. */
const SLOW_MS = TIMEOUT_MS + 3000;
const CAP = 3;
const { relay, mock } = useRelay({ config: { upstreamHeadersTimeoutMs: TIMEOUT_MS, leaseIdleMs: 100 } });
let keys = 0;

beforeAll(async () => {
  await relay.admin.upsertProvider({
    provider: { id: "refusing", baseUrl: `http://127.0.0.1:${await closedPort()}`, authStyle: AuthStyle.BEARER, shape: ApiShape.OPENAI },
  });
});

/** A token capped at CAP calls, with an upstream key of its own (how its arrivals are told apart). */
async function cappedToken(provider = "openai") {
  const key = `sk-refunds-${++keys}-0123456789abcdef`;
  const { secret, id } = await relay.issue({ provider, upstreamKey: key, limits: { maxCalls: BigInt(CAP) } });
  return { secret, id, key, arrivals: () => mock.requests.filter((r) => r.headers.authorization === `Bearer ${key}`).length };
}

function chat(secret: string, provider = "openai") {
  return fetch(`${relay.url}/api/${provider}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] }),
  });
}

/** Status and error code of each answer. */
async function answers(responses: Response[]): Promise<string[]> {
  return Promise.all(responses.map(async (r) => `${r.status} ${r.status === 200 ? "" : openaiError(await r.text()).code}`.trim()));
}

/** calls_used settles at `expected` (unused leased calls go back after leaseIdleMs) and stays there. */
async function expectUsed(id: string, expected: number): Promise<void> {
  for (let i = 0; i < 100 && (await callsUsed(relay, id)) !== expected; i++) await sleep(30);
  await sleep(250);
  expect(await callsUsed(relay, id), `calls_used of ${id}`).toBe(expected);
}

const outcomes = (id: string) => relay.calls.filter((c) => c.tokenId === id).map((c) => `${c.status} ${Outcome[c.outcome]}`);

describe("the request was written: counted, never refunded", () => {
  it("a provider slower than the headers timeout: 8 calls in a row, 3 arrivals", async () => {
    const t = await cappedToken();
    mock.behave((rec) => (rec.headers.authorization === `Bearer ${t.key}` ? { headersDelayMs: SLOW_MS } : undefined));
    const got: string[] = [];
    for (let i = 0; i < 8; i++) got.push(...(await answers([await chat(t.secret)])));
    expect(got).toEqual([...Array(CAP).fill("504 upstream_timeout"), ...Array(8 - CAP).fill("429 calls_exhausted")]);
    expect(t.arrivals(), "requests that reached the provider").toBe(CAP);
    expect(outcomes(t.id)).toEqual(Array(CAP).fill("504 UPSTREAM_ERROR"));
    await expectUsed(t.id, CAP);
  });

  it("a provider slower than the headers timeout: 8 calls at once, 3 arrivals", async () => {
    const t = await cappedToken();
    mock.behave((rec) => (rec.headers.authorization === `Bearer ${t.key}` ? { headersDelayMs: SLOW_MS } : undefined));
    const got = (await answers(await Promise.all(Array.from({ length: 8 }, () => chat(t.secret))))).sort();
    expect(got).toEqual([...Array(8 - CAP).fill("429 calls_exhausted"), ...Array(CAP).fill("504 upstream_timeout")]);
    expect(t.arrivals()).toBe(CAP);
    await expectUsed(t.id, CAP);
  });

  it("a provider that resets the connection after reading the body: 20 calls, 3 arrivals", async () => {
    const t = await cappedToken();
    mock.behave((rec) => (rec.headers.authorization === `Bearer ${t.key}` ? { reset: "after-body" } : undefined));
    const got: string[] = [];
    for (let i = 0; i < 20; i++) got.push(...(await answers([await chat(t.secret)])));
    expect(got).toEqual([...Array(CAP).fill("502 upstream_unreachable"), ...Array(20 - CAP).fill("429 calls_exhausted")]);
    expect(t.arrivals()).toBe(CAP);
    expect(outcomes(t.id)).toEqual(Array(CAP).fill("502 UPSTREAM_ERROR"));
    await expectUsed(t.id, CAP);
  });
});

describe("no byte left for the provider: refunded", () => {
  it("connection refused: every call is given back, the cap is never touched", async () => {
    const t = await cappedToken("refusing");
    const got: string[] = [];
    for (let i = 0; i < 8; i++) got.push(...(await answers([await chat(t.secret, "refusing")])));
    expect(got).toEqual(Array(8).fill("502 upstream_unreachable"));
    expect(outcomes(t.id)).toEqual(Array(8).fill("502 REFUNDED"));
    await expectUsed(t.id, 0);
  });
});
