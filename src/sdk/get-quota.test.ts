/**
 * getQuota against a tiny node:http server answering what the relay answers: the proto JSON of
 * a GetQuotaResponse (int64 as strings, zero values left out). Counts come back as numbers,
 * defaults are filled, the token goes only in the Authorization header, and a refusal is a
 * QuotaError with the relay's status and message.
 */
import { create, toJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetQuotaResponseSchema } from "../../gen/relayapi/v1/token_service_pb.js";
import { getQuota, QuotaError } from "./get-quota.js";

const TOKEN = "rai_quotaTestToken0123456789abcdefABCD";
const RESET = new Date("2026-03-02T00:00:00Z");

const ANSWER = toJson(
  GetQuotaResponseSchema,
  create(GetQuotaResponseSchema, {
    subject: "alice",
    plan: "free",
    timeZone: "Europe/Paris",
    windows: [
      { scope: "token", period: "life", unit: "calls", limit: 100n, used: 7n, remaining: 93n },
      { scope: "plan", period: "day", unit: "calls", limit: 50n, used: 12n, remaining: 38n, resetsAt: timestampFromDate(RESET) },
      // used 0: proto JSON leaves it out.
      { scope: "plan", period: "month", unit: "micro_usd", limit: 2_500_000n, used: 0n, remaining: 2_500_000n, resetsAt: timestampFromDate(RESET) },
    ],
  }),
);

let server: Server;
let base: string;
const seen: { url: string; headers: IncomingHttpHeaders }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? "", headers: req.headers });
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "invalid, expired or revoked token", type: "invalid_request_error", code: "unauthenticated" } }));
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(ANSWER));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe("getQuota", () => {
  it("answers numbers, ISO reset times and filled defaults from the relay's proto JSON", async () => {
    // The fixture really is what a relay sends: strings for int64, no `used` when 0.
    expect(JSON.stringify(ANSWER)).toContain('"limit":"50"');
    expect(JSON.stringify(ANSWER)).not.toContain('"used":"0"');
    const quota = await getQuota(`${base}/`, TOKEN);
    expect(quota).toEqual({
      subject: "alice",
      plan: "free",
      timeZone: "Europe/Paris",
      windows: [
        { scope: "token", period: "life", unit: "calls", limit: 100, used: 7, remaining: 93, resetsAt: null },
        { scope: "plan", period: "day", unit: "calls", limit: 50, used: 12, remaining: 38, resetsAt: RESET.toISOString() },
        { scope: "plan", period: "month", unit: "micro_usd", limit: 2_500_000, used: 0, remaining: 2_500_000, resetsAt: RESET.toISOString() },
      ],
    });
    const last = seen.at(-1)!;
    expect(last.url).toBe("/api/quota");
    expect(last.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it("throws QuotaError with the relay's status and message, never the token", async () => {
    const err = await getQuota(base, "rai_wrongToken").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QuotaError);
    expect(err).toMatchObject({ status: 401, message: "invalid, expired or revoked token" });
    expect(String((err as Error).message)).not.toContain("rai_wrongToken");
  });

  it("uses the fetch it is given (a DPoP fetch, a test double)", async () => {
    const urls: string[] = [];
    const quota = await getQuota(base, TOKEN, {
      fetch: (input, init) => {
        urls.push(String(input));
        return fetch(input, init);
      },
    });
    expect(urls).toEqual([`${base}/api/quota`]);
    expect(quota.windows).toHaveLength(3);
  });

  it("refuses a relay URL that is not http(s)", async () => {
    await expect(getQuota("ftp://relay", TOKEN)).rejects.toThrow(TypeError);
  });
});
