/**
 * Two relay instances on one PostgreSQL (DESIGN 10): call caps stay exact across instances even
 * though each leases blocks of calls, leased calls that were not used go back, and revocations
 * and provider changes made on one instance reach the other within a second.
 */
import { describe, expect, it } from "vitest";
import { Agent, request } from "undici";
import { AuthStyle, ApiShape } from "../gen/relayapi/v1/admin_service_pb.js";
import { findTokenById } from "../src/db/queries/tokens.js";
import { postgresAvailable } from "./support/databases.js";
import type { TestRelay } from "./support/relay.js";
import { useCluster } from "./support/use-relay.js";

const enabled = await postgresAvailable();

describe.skipIf(!enabled)("two instances on one PostgreSQL", () => {
  const { a, b, mock } = useCluster({ config: { leaseIdleMs: 500 } });

  const agent = new Agent({ connections: 64 });
  const chat = (relay: TestRelay, secret: string) =>
    request(`${relay.url}/api/openai/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-mock", messages: [] }),
      dispatcher: agent,
    }).then(async (res) => {
      await res.body.dump();
      return res.statusCode;
    });

  it("400 concurrent calls split across both on a max-50 token: exactly 50 served", async () => {
    const { secret } = await a.issue({ limits: { maxCalls: 50n } });
    mock.reset();
    const statuses = await Promise.all(Array.from({ length: 400 }, (_, i) => chat(i % 2 ? a : b, secret)));
    // Anything but 200 or 429 is named, so a failure says which answer it was.
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([]);
    expect(statuses.filter((s) => s === 200)).toHaveLength(50);
    expect(statuses.filter((s) => s === 429)).toHaveLength(350);
    expect(mock.requests).toHaveLength(50);
  });

  it("leased calls that were not used go back, so the count ends exact", async () => {
    const { secret, id } = await a.issue({ limits: { maxCalls: 100_000n } });
    for (let round = 0; round < 4; round++) {
      await Promise.all(Array.from({ length: 60 }, (_, i) => chat(i % 2 ? a : b, secret)));
    }
    const db = a.app.database.db;
    expect((await findTokenById(db, id))!.used).toBeGreaterThanOrEqual(240);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await findTokenById(db, id))!.used).toBe(240);
  });

  it("a revocation on one instance stops the token on the other within 1 s", async () => {
    const { secret, id } = await a.issue({ limits: { maxCalls: 1000n } });
    for (let i = 0; i < 20; i++) expect(await chat(b, secret)).toBe(200); // b now holds a lease
    await a.tokens.revokeToken({ id });
    await new Promise((r) => setTimeout(r, 1000));
    expect(await chat(b, secret)).toBe(401);
    expect(await chat(a, secret)).toBe(401);
  });

  it("a custom provider added on one instance is usable on the other within 1 s", async () => {
    await a.admin.upsertProvider({ provider: { id: "shared-llm", baseUrl: mock.url, authStyle: AuthStyle.BEARER, shape: ApiShape.OPENAI } });
    const { secret } = await a.issue({ provider: "shared-llm" });
    await new Promise((r) => setTimeout(r, 1100));
    const res = await request(`${b.url}/api/shared-llm/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}` },
      body: "{}",
      dispatcher: agent,
    });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
  });
});
