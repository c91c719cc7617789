/**
 * Who a login's user is (issue 24.4, review of item 4): the subject `<login>/<claim>`, so a
 * login user shares plan windows with neither an issued token of the same bare subject nor
 * another login's user of the same claim; a numeric subject claim is its decimal string; and a
 * login removed and added again for another identity provider starts its users on fresh rows.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUDIENCE, addLogin, createPlan, newUser, rowOf, userId } from "./support/logins.js";
import { startOidcIssuer, type IssuerKey, type OidcIssuer } from "./support/oidc-issuer.js";
import { chat, expectFixed401 } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";

let oidc: OidcIssuer;
let rsa: IssuerKey;
beforeAll(async () => {
  oidc = await startOidcIssuer();
  rsa = await oidc.newKey("rsa-1", "RS256");
  oidc.serve([rsa]);
});
afterAll(async () => {
  await oidc?.close();
});

describe("login users", () => {
  const { relay, mock } = useRelay();
  beforeAll(async () => {
    await createPlan(relay, "free");
    await createPlan(relay, "one-a-day", { callsPerDay: 1n });
    await addLogin(relay, "app", { issuer: oidc.url, jwksUrl: oidc.jwksUrl });
  });

  it("a user's plan window is its own: not an issued token's of the same bare subject, nor another login's user's; GetQuota names `<login>/<sub>`", async () => {
    await addLogin(relay, "shop", { issuer: oidc.url, jwksUrl: oidc.jwksUrl, audience: "shop-app", plan: "one-a-day" });
    await addLogin(relay, "blog", { issuer: oidc.url, jwksUrl: oidc.jwksUrl, audience: "blog-app", plan: "one-a-day" });
    const alice = newUser("alice");
    const issued = await relay.issue({ subject: alice, plan: "one-a-day" });
    expect((await chat(relay, issued.secret)).status).toBe(200);
    expect((await chat(relay, issued.secret)).status).toBe(429);

    const before = mock.requests.length;
    for (const [login, aud] of [
      ["shop", "shop-app"],
      ["blog", "blog-app"],
    ] as const) {
      const idToken = await oidc.sign(rsa, { aud, sub: alice });
      expect((await chat(relay, idToken)).status, login).toBe(200);
      expect((await chat(relay, idToken)).status, login).toBe(429);
      const q = await relay.tokens.getQuota({}, { headers: { authorization: `Bearer ${idToken}` } });
      expect(q.subject).toBe(`${login}/${alice}`);
      expect(q.windows.find((w) => w.scope === "plan" && w.period === "day" && w.unit === "calls")).toMatchObject({ limit: 1n, used: 1n, remaining: 0n });
      expect(await rowOf(relay, userId(login, oidc.url, alice, aud))).toMatchObject({ subject: `${login}/${alice}` });
    }
    expect(mock.requests.length - before).toBe(2);
  });

  it("a numeric subject claim is its decimal string; other non-strings are the fixed 401", async () => {
    const n = 1_000_000 + Math.floor(Math.random() * 1_000_000);
    const before = mock.requests.length;
    expect((await chat(relay, await oidc.sign(rsa, { aud: AUDIENCE, sub: n }))).status).toBe(200);
    // The same user, its id as a string: one row, one user.
    expect((await chat(relay, await oidc.sign(rsa, { aud: AUDIENCE, sub: String(n) }))).status).toBe(200);
    expect(await rowOf(relay, userId("app", oidc.url, String(n)))).toMatchObject({ subject: `app/${n}` });
    expect(mock.requests.length - before).toBe(2);

    // A custom subject claim too.
    await addLogin(relay, "numbered", { issuer: oidc.url, jwksUrl: oidc.jwksUrl, audience: "numbered-app", subjectClaim: "user_id" });
    expect((await chat(relay, await oidc.sign(rsa, { aud: "numbered-app", sub: "ignored", user_id: 42 }))).status).toBe(200);
    expect(await rowOf(relay, userId("numbered", oidc.url, "42", "numbered-app"))).toMatchObject({ subject: "numbered/42" });

    const refused: [string, unknown][] = [
      ["a fraction", 1.5],
      ["past 2^53 (maybe rounded)", 2 ** 60],
      ["a boolean", true],
      ["an object", { id: "x" }],
      ["an array", ["x"]],
      ["null", null],
      ["empty", ""],
      ["too long once scoped", "x".repeat(253)],
    ];
    for (const [what, sub] of refused) expectFixed401(await chat(relay, await oidc.sign(rsa, { aud: AUDIENCE, sub })), what);
    expect(mock.requests.length - before).toBe(3);
  });

  it("a login removed and added again under its name for another issuer starts its users on fresh rows", async () => {
    const other = await startOidcIssuer();
    try {
      const key = await other.newKey("other-1", "ES256");
      other.serve([key]);
      await addLogin(relay, "again", { issuer: oidc.url, jwksUrl: oidc.jwksUrl, audience: "again-app" });
      const sub = newUser("returning");
      const first = await oidc.sign(rsa, { aud: "again-app", sub });
      expect((await chat(relay, first)).status).toBe(200);
      const oldId = userId("again", oidc.url, sub, "again-app");
      await relay.tokens.revokeToken({ id: oldId });
      expectFixed401(await chat(relay, first));

      await relay.admin.deleteLogin({ name: "again" });
      await addLogin(relay, "again", { issuer: other.url, jwksUrl: other.jwksUrl, audience: "again-app" });
      const before = mock.requests.length;
      expect((await chat(relay, await other.sign(key, { aud: "again-app", sub }))).status).toBe(200);
      expect(mock.requests.length).toBe(before + 1);
      const newId = userId("again", other.url, sub, "again-app");
      expect(newId).not.toBe(oldId);
      expect(newId.startsWith("login.again:")).toBe(true);
      expect(await rowOf(relay, newId)).toMatchObject({ subject: `again/${sub}`, revokedAt: null });
      // The old row stays as it was (revoked), for the records.
      expect((await rowOf(relay, oldId))?.revokedAt).toBeInstanceOf(Date);
    } finally {
      await other.close();
    }
  });
});
