/**
 * Revocation reaches WebSocket sessions cluster-wide (issue 25): two relays on one PostgreSQL,
 * a Realtime session open on one, the token revoked on the other: the session closes (1008,
 * after the error event) within 1 s, through the revocation poll and the token store's forget.
 */
import { afterAll, describe, expect, it } from "vitest";
import { postgresAvailable } from "./support/databases.js";
import { startMockRealtime, type MockRealtime } from "./support/mock-realtime.js";
import { openSession, wsUrl } from "./support/realtime-client.js";
import { useCluster } from "./support/use-relay.js";
import { sleep } from "./support/wait.js";

const enabled = await postgresAvailable();
let realtime: MockRealtime | undefined;

describe.skipIf(!enabled)("two instances on one PostgreSQL", () => {
  const { a, b } = useCluster({ mock: false, config: async () => ({ providerBaseUrls: { openai: (realtime ??= await startMockRealtime()).url } }) });
  afterAll(async () => {
    await realtime?.close();
  });

  it("a token revoked on one instance closes its session on the other within 1 s", async () => {
    const { secret, id } = await a.issue();
    const s = await openSession(wsUrl(b.url, "/api/openai/v1/realtime?model=gpt-realtime"), ["realtime", `openai-insecure-api-key.${secret}`]);
    await s.next("session.created");
    const t0 = performance.now();
    await a.tokens.revokeToken({ id });
    const closed = await Promise.race([s.closed, sleep(3000).then(() => ({ code: 0, reason: "still open after 3 s" }))]);
    const ms = performance.now() - t0;
    expect(closed.code).toBe(1008);
    expect(ms).toBeLessThan(1000);
    expect(s.events.find((e) => e.type === "error")?.error).toMatchObject({ code: "unauthenticated" });
  });
});
