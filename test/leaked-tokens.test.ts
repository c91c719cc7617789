/**
 * POST /v1/leaked-tokens under a flood (issue 18, finding 6). A report may name many tokens and
 * each one costs a token lookup and a database write (~50x a refused request for 100 tokens), so
 * the per-IP limit is charged per token reported: a flood from one address gets through as many
 * tokens as the limit allows, whatever the batch size. A report larger than the per-IP burst
 * could never be paid for and is refused as a bad request.
 */
import { randomBytes } from "node:crypto";
import { expect, it } from "vitest";
import { useRelay } from "./support/use-relay.js";

const { relay } = useRelay({ mock: false, config: { ipRpm: 60, trustProxy: ["127.0.0.1"] } });

const report = (tokens: number, ip: string): Promise<Response> =>
  fetch(`${relay.url}/v1/leaked-tokens`, {
    method: "POST",
    headers: { "x-forwarded-for": ip, "content-type": "text/plain" },
    body: Array.from({ length: tokens }, () => `rai_${randomBytes(16).toString("hex")}`).join("\n"),
  });

async function flood(reports: number, tokensEach: number, ip: string): Promise<{ ok: number; limited: Response[] }> {
  const all = await Promise.all(Array.from({ length: reports }, () => report(tokensEach, ip)));
  const limited = all.filter((r) => r.status === 429);
  expect(all.filter((r) => r.status !== 200 && r.status !== 429).map((r) => r.status)).toEqual([]);
  await Promise.all(all.map((r) => r.arrayBuffer()));
  return { ok: all.length - limited.length, limited };
}

it("charges the per-IP limit per token reported, so a flood gets through in proportion to tokens", async () => {
  // A bucket of 60 per address, refilled at one a second.
  const t0 = Date.now();
  const big = await flood(12, 20, "203.0.113.61");
  const small = await flood(80, 1, "203.0.113.62");
  const refill = Math.ceil((Date.now() - t0) / 1000) + 1;
  console.log(
    `[leaked-tokens] per-IP 60: ${big.ok}/12 reports of 20 tokens admitted (${big.ok * 20} tokens), ${small.ok}/80 reports of 1 (${small.ok} tokens)`,
  );
  expect(big.ok).toBe(3);
  expect(small.ok).toBeGreaterThanOrEqual(60);
  expect(small.ok).toBeLessThanOrEqual(60 + refill);
  // Retry when the address has a report's worth again: ~20 s for 20 tokens at 1/s.
  expect(Number(big.limited[0]!.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
  // Another address is not affected.
  expect((await report(20, "203.0.113.63")).status).toBe(200);
});

it("refuses a report larger than the per-IP burst, which could never be paid for", async () => {
  const res = await report(61, "203.0.113.64");
  expect(res.status).toBe(400);
  expect(((await res.json()) as { error: { message: string } }).error.message).toBe("at most 60 tokens per request");
  // The refused report still cost its first unit (taken before the body is read), like any refused request.
  expect((await report(60, "203.0.113.64")).status).toBe(429);
  expect((await report(60, "203.0.113.65")).status).toBe(200);
});
