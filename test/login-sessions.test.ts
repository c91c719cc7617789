/**
 * A login disabled or removed ends its users' open Realtime sessions within a second (issue
 * 24.4, review of item 4), on the instance where it happened and, by the login reload, on every
 * other: closed as a revoked token's are (an `unauthenticated` error event, then 1008), while
 * another login's users and issued tokens keep theirs. Sessions are opened with ID tokens of a
 * local OIDC issuer against the mock Realtime provider, with the real `ws` client.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postgresAvailable } from "./support/databases.js";
import { addLogin, createPlan, newUser } from "./support/logins.js";
import { startMockRealtime, type MockRealtime } from "./support/mock-realtime.js";
import { startOidcIssuer, type IssuerKey, type OidcIssuer } from "./support/oidc-issuer.js";
import { openSession, wsUrl, type Session } from "./support/realtime-client.js";
import type { TestRelay } from "./support/relay.js";
import { useCluster, useRelay } from "./support/use-relay.js";
import { sleep, waitFor } from "./support/wait.js";

const REALTIME = "/api/openai/v1/realtime?model=gpt-realtime";

let oidc: OidcIssuer;
let rsa: IssuerKey;
let realtime: MockRealtime;
beforeAll(async () => {
  oidc = await startOidcIssuer();
  rsa = await oidc.newKey("rsa-1", "RS256");
  oidc.serve([rsa]);
  realtime = await startMockRealtime();
});
afterAll(async () => {
  await oidc?.close();
  await realtime?.close();
});

/** A login of the suite's issuer for audience `name`, with no model pin. */
const addVoiceLogin = (relay: TestRelay, name: string) => addLogin(relay, name, { issuer: oidc.url, jwksUrl: oidc.jwksUrl, audience: name, models: [] });

/** An open Realtime session with `bearer` (an ID token or a relay token) as the subprotocol credential. */
async function open(relay: TestRelay, bearer: string): Promise<Session> {
  const s = await openSession(wsUrl(relay.url, REALTIME), ["realtime", `openai-insecure-api-key.${bearer}`]);
  await s.next("session.created");
  return s;
}

async function sessionOf(relay: TestRelay, login: string): Promise<Session> {
  return open(relay, await oidc.sign(rsa, { aud: login, sub: newUser(login) }));
}

/** How the session ended and how long after `since`; code 0 when still open after 3 s. */
async function closedWithin(s: Session, since: number): Promise<{ code: number; ms: number }> {
  const closed = await Promise.race([s.closed, sleep(3000).then(() => ({ code: 0 }))]);
  return { code: closed.code, ms: performance.now() - since };
}

function revokedEvent(s: Session): string | undefined {
  return (s.events.find((e) => e.type === "error")?.error as { code: string } | undefined)?.code;
}

describe("one relay", () => {
  const { relay } = useRelay({ mock: false, config: () => ({ providerBaseUrls: { openai: realtime.url } }) });
  beforeAll(async () => {
    await createPlan(relay, "free");
    await addVoiceLogin(relay, "voice");
    // A name `voice` is a prefix of: its users' sessions must not be taken for voice's.
    await addVoiceLogin(relay, "voice2");
  });

  it("disabling a login closes its users' sessions within 1 s (1008), not another login's nor an issued token's", async () => {
    const users = [await sessionOf(relay, "voice"), await sessionOf(relay, "voice")];
    const other = await sessionOf(relay, "voice2");
    const issued = await open(relay, (await relay.issue()).secret);
    const t0 = performance.now();
    await relay.admin.setLoginEnabled({ name: "voice", enabled: false });
    for (const s of users) {
      const { code, ms } = await closedWithin(s, t0);
      expect(code).toBe(1008);
      expect(ms).toBeLessThan(1000);
      expect(revokedEvent(s)).toBe("unauthenticated");
    }
    await sleep(200);
    for (const s of [other, issued]) {
      expect(s.ws.readyState).toBe(s.ws.OPEN);
      s.ws.close(1000);
      expect((await s.closed).code).toBe(1000);
    }
    await relay.admin.setLoginEnabled({ name: "voice", enabled: true });
  });

  it("deleting a login closes its users' sessions within 1 s", async () => {
    const s = await sessionOf(relay, "voice2");
    const t0 = performance.now();
    await relay.admin.deleteLogin({ name: "voice2" });
    const { code, ms } = await closedWithin(s, t0);
    expect(code).toBe(1008);
    expect(ms).toBeLessThan(1000);
  });
});

describe.skipIf(!(await postgresAvailable()))("two instances on one PostgreSQL", () => {
  const { a, b } = useCluster({ config: () => ({ providerBaseUrls: { openai: realtime.url } }) });
  beforeAll(async () => {
    await createPlan(a, "free");
    await addVoiceLogin(a, "voice");
  });

  it("a login disabled on one instance closes its users' sessions on the other within 1 s", async () => {
    // b learns of the login by its reload (500 ms).
    const token = await oidc.sign(rsa, { aud: "voice", sub: newUser("cluster") });
    const s = await waitFor(() => open(b, token).catch(() => undefined), 3000, "a session on b");
    const t0 = performance.now();
    await a.admin.setLoginEnabled({ name: "voice", enabled: false });
    const { code, ms } = await closedWithin(s, t0);
    expect(code).toBe(1008);
    expect(ms).toBeLessThan(1000);
    expect(revokedEvent(s)).toBe("unauthenticated");
  });
});
