/**
 * Exact counting for sealed tokens on both drivers (PGlite and PostgreSQL): the first use
 * inserts the row by `<issuer>:<jti>` and every use increments it in one statement, so 500
 * concurrent first uses of a max-50 token succeed exactly 50 times, through the query alone and
 * end-to-end through the HTTP layer.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { CallCounter } from "../src/db/queries/call-counter.js";
import { findTokenById } from "../src/db/queries/tokens.js";
import { sealToken } from "../src/sdk/index.js";
import { burstChats } from "./support/http.js";
import { createIssuer, type TestIssuer } from "./support/sealed.js";
import { availableDrivers, useRelay } from "./support/use-relay.js";

const drivers = await availableDrivers();

describe.each(drivers)("sealed-token counting on %s", (driver) => {
  const { relay, mock } = useRelay({ driver });
  let issuer: TestIssuer;
  beforeAll(async () => {
    issuer = await createIssuer(relay, "count-app");
  });

  it("500 concurrent first uses through the query insert one row and succeed exactly 50 times", async () => {
    const db = relay.app.database.db;
    const first = { id: "count-app:q-race", kind: 2, provider: "openai", maxCalls: 50, expiresAt: new Date(Date.now() + 600_000) };
    const counter = new CallCounter(db);
    const results = await Promise.all(Array.from({ length: 500 }, () => counter.useSealed(first, 1)));
    expect(results.filter(Boolean)).toHaveLength(50);
    expect(
      results
        .filter(Boolean)
        .map((r) => r!.used)
        .sort((a, b) => a - b),
    ).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect((await findTokenById(db, first.id))?.used).toBe(50);
  });

  it("500 concurrent HTTP calls on a sealed max-50 token forward exactly 50; the rest get 429", async () => {
    const token = await sealToken({ jti: "http-race", prv: "openai", key: "sk-sealed-count-upstream-01", max: 50 }, issuer.issuerKey);
    mock.reset();
    const responses = await burstChats(relay.url, token, 500);
    expect(responses.filter((r) => r.status === 200)).toHaveLength(50);
    const limited = responses.filter((r) => r.status === 429);
    expect(limited).toHaveLength(450);
    for (const r of limited) expect(r.json.error?.code).toBe("calls_exhausted");
    expect(mock.requests.filter((r) => r.path.endsWith("/chat/completions"))).toHaveLength(50);
    const row = (await relay.tokens.getToken({ id: "count-app:http-race" })).token;
    expect(row).toMatchObject({ callsUsed: 50n, callsLeft: 0n, kind: 2 });
  });
});
