/** `/readyz`'s checks: database, migrations, shutdown (first failure wins); Redis down is only "degraded". */
import { describe, expect, it } from "vitest";
import { checkReadiness, type ReadinessDeps } from "./health.js";

const ok: ReadinessDeps = {
  pingDatabase: async () => {},
  appliedMigrations: async () => 3,
  expectedMigrations: 3,
  pingRedis: async () => true,
  redisConfigured: false,
  stopping: () => false,
};

describe("checkReadiness", () => {
  it("is ready when the database answers with every migration applied", async () => {
    expect(await checkReadiness(ok)).toEqual({ ready: true, degraded: false, checks: { database: "ok", migrations: "3/3", redis: "not configured" } });
    expect((await checkReadiness({ ...ok, redisConfigured: true })).checks.redis).toBe("ok");
  });

  it("is not ready when the database does not answer, or not in time", async () => {
    const down = await checkReadiness({ ...ok, pingDatabase: () => Promise.reject(new Error("ECONNREFUSED")) });
    expect(down).toMatchObject({ ready: false, reason: "database unreachable", checks: { database: "failed" } });
    const hung = await checkReadiness({ ...ok, pingDatabase: () => new Promise(() => {}) });
    expect(hung).toMatchObject({ ready: false, reason: "database unreachable" });
  });

  it("is not ready while migrations are missing (or the table is)", async () => {
    expect(await checkReadiness({ ...ok, appliedMigrations: async () => 2 })).toMatchObject({
      ready: false,
      reason: "database migrations not applied (2/3): run relayapi migrate",
    });
    const never = await checkReadiness({ ...ok, appliedMigrations: () => Promise.reject(new Error("relation does not exist")) });
    expect(never).toMatchObject({ ready: false, checks: { database: "ok", migrations: "0/3" } });
    // A newer database (another instance migrated further) still serves this build.
    expect((await checkReadiness({ ...ok, appliedMigrations: async () => 4 })).ready).toBe(true);
  });

  it("checks Redis only when configured, and Redis down leaves it ready but degraded (issue 18)", async () => {
    const down = { ...ok, pingRedis: async () => false };
    expect(await checkReadiness(down)).toMatchObject({ ready: true, degraded: false });
    expect(await checkReadiness({ ...down, redisConfigured: true })).toEqual({
      ready: true,
      degraded: true,
      checks: { database: "ok", migrations: "3/3", redis: "failed" },
    });
    const hung = await checkReadiness({ ...ok, redisConfigured: true, pingRedis: () => new Promise(() => {}) });
    expect(hung).toMatchObject({ ready: true, degraded: true });
    // The database still decides readiness.
    const both = await checkReadiness({ ...down, redisConfigured: true, pingDatabase: () => Promise.reject(new Error("ECONNREFUSED")) });
    expect(both).toMatchObject({ ready: false, reason: "database unreachable", checks: { redis: "failed" } });
  });

  it("is not ready once shutdown began", async () => {
    expect(await checkReadiness({ ...ok, stopping: () => true })).toMatchObject({ ready: false, reason: "shutting down" });
  });
});
