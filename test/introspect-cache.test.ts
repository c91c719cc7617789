/**
 * IntrospectToken answers from the token cache and the lease state (issue 22, item 4): calls
 * left are exact on the answering instance while it holds a lease (the database counts a
 * leased block as used when it is taken), they match the database once the lease went back,
 * the database is not read per call, and a revoked token introspects as revoked at once on the
 * revoking instance and within a second on another.
 */
import { Code } from "@connectrpc/connect";
import { Agent } from "undici";
import { afterAll, describe, expect, it, vi } from "vitest";
import { findTokenById } from "../src/db/queries/tokens.js";
import { codeOf } from "./support/connect-code.js";
import { postgresAvailable } from "./support/databases.js";
import { chatStatus } from "./support/http.js";
import type { TestRelay } from "./support/relay.js";
import { availableDrivers, useCluster, useRelay } from "./support/use-relay.js";

const drivers = await availableDrivers();
const agent = new Agent({ connections: 16 });
afterAll(() => agent.close());

const chat = (relay: TestRelay, secret: string): Promise<number> => chatStatus(relay.url, secret, agent);

/** The holder's own view, through the real Connect client, authenticated by the token. */
async function introspect(relay: TestRelay, secret: string): Promise<{ used: number; left: number | undefined }> {
  const res = await relay.tokens.introspectToken({}, { headers: { authorization: `Bearer ${secret}` } });
  const t = res.token!;
  return { used: Number(t.callsUsed), left: t.callsLeft === undefined ? undefined : Number(t.callsLeft) };
}

async function usedInDatabase(relay: TestRelay, id: string): Promise<number> {
  return (await findTokenById(relay.app.database.db, id))!.used;
}

describe.each(drivers)("IntrospectToken from the cache and the lease state (%s)", (driver) => {
  const { relay } = useRelay({ driver, config: { leaseMax: 16, leaseIdleMs: 300 } });

  it("calls left are exact while this instance holds a lease, and match the database once it went back", async () => {
    const { secret, id } = await relay.issue({ limits: { maxCalls: 100n } });
    for (let i = 0; i < 20; i++) expect(await chat(relay, secret)).toBe(200);

    // The lease grew while the calls came back to back: the database counts its unused calls.
    expect(await usedInDatabase(relay, id)).toBeGreaterThan(20);
    expect(await introspect(relay, secret)).toEqual({ used: 20, left: 80 });

    // Once idle, the lease goes back: the database says 20 too, and the answer still matches it.
    const deadline = Date.now() + 5000;
    while ((await usedInDatabase(relay, id)) !== 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await usedInDatabase(relay, id)).toBe(20);
    expect(await introspect(relay, secret)).toEqual({ used: 20, left: 80 });

    // More calls after the return, a new lease: still exact.
    for (let i = 0; i < 7; i++) expect(await chat(relay, secret)).toBe(200);
    expect(await introspect(relay, secret)).toEqual({ used: 27, left: 73 });
  });

  it("does not read the database for each call", async () => {
    const { secret } = await relay.issue({ limits: { maxCalls: 1000n } });
    await introspect(relay, secret); // fills the cache
    const select = vi.spyOn(relay.app.database.db, "select");
    try {
      const t0 = Date.now();
      const answers = await Promise.all(Array.from({ length: 200 }, () => introspect(relay, secret)));
      expect(answers.every((a) => a.left === 1000)).toBe(true);
      // At most one read of the row a second; on PostgreSQL the providers, key pools and issuer
      // keys are also refreshed once a second each (src/server.ts), through the same `select`.
      const seconds = Math.ceil((Date.now() - t0) / 1000);
      expect(select.mock.calls.length).toBeLessThanOrEqual(4 * seconds + 4);
      expect(select.mock.calls.length).toBeLessThan(answers.length / 10);
    } finally {
      select.mockRestore();
    }
  });

  it("a token revoked on this instance introspects as revoked at once", async () => {
    const { secret, id } = await relay.issue({ limits: { maxCalls: 10n } });
    expect(await chat(relay, secret)).toBe(200);
    expect((await introspect(relay, secret)).left).toBe(9);
    await relay.tokens.revokeToken({ id });
    expect(await codeOf(() => introspect(relay, secret))).toBe(Code.Unauthenticated);
  });

  it("an exhausted token shows 0 calls left, not a stale count", async () => {
    const { secret } = await relay.issue({ limits: { maxCalls: 3n } });
    expect((await introspect(relay, secret)).left).toBe(3);
    for (let i = 0; i < 3; i++) expect(await chat(relay, secret)).toBe(200);
    expect(await chat(relay, secret)).toBe(429);
    expect(await introspect(relay, secret)).toEqual({ used: 3, left: 0 });
  });
});

describe.skipIf(!(await postgresAvailable()))("IntrospectToken on two instances", () => {
  const { a, b } = useCluster({ config: { leaseMax: 16, leaseIdleMs: 300 } });

  it("a token revoked on one instance introspects as revoked on the other within 1 s", async () => {
    const { secret, id } = await a.issue({ limits: { maxCalls: 100n } });
    for (let i = 0; i < 5; i++) expect(await chat(b, secret)).toBe(200);
    expect((await introspect(b, secret)).left).toBe(95); // b's view is cached now
    await a.tokens.revokeToken({ id });
    const revokedAt = Date.now();
    let code: Code | undefined;
    while (Date.now() - revokedAt < 2000) {
      code = await codeOf(() => introspect(b, secret)).catch(() => undefined);
      if (code !== undefined) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(code).toBe(Code.Unauthenticated);
    expect(Date.now() - revokedAt).toBeLessThanOrEqual(1100);
  });

  it("calls served on the other instance show within 1 s, never more calls than the cap allows", async () => {
    const { secret } = await a.issue({ limits: { maxCalls: 100n } });
    expect((await introspect(a, secret)).left).toBe(100);
    for (let i = 0; i < 10; i++) expect(await chat(b, secret)).toBe(200);
    // b's own answer is exact; a's counts b's unused lease as used until b gives it back.
    expect((await introspect(b, secret)).left).toBe(90);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await introspect(a, secret)).left).toBe(90);
  });
});
