/**
 * The app's own login as the credential (issue 24.4), against a local OIDC issuer (keys made
 * with jose, a JWKS on 127.0.0.1): a valid ID token relays through the openai SDK and its user
 * (`<login>/<sub>`) is the usage records' subject; a wrong audience or issuer, an expired token,
 * `alg: none`, an HMAC keyed with the public key and an unknown `kid` after a rotation are the
 * fixed 401 with nothing counted; a JWKS endpoint that hangs fails the call within the fetch
 * timeout; a disabled login is refused within a second (on one relay, and across two on
 * PostgreSQL); a login's model pin applies; AddLogin refuses a plain-http JWKS off loopback.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { eq } from "drizzle-orm";
import { exportJWK, exportSPKI, SignJWT, UnsecuredJWT } from "jose";
import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { usageEvents } from "../src/db/schema/index.js";
import { postgresAvailable } from "./support/databases.js";
import { AUDIENCE, addLogin as addTestLogin, createPlan, newUser as user, rowOf, userId, type TestLogin } from "./support/logins.js";
import { startOidcIssuer, type IssuerKey, type OidcIssuer } from "./support/oidc-issuer.js";
import { UPSTREAM_KEY, type TestRelay } from "./support/relay.js";
import { callsUsed, chat, expectFixed401 } from "./support/sealed.js";
import { availableDrivers, useCluster, useRelay } from "./support/use-relay.js";
import { waitFor } from "./support/wait.js";

const drivers = await availableDrivers();

let oidc: OidcIssuer;
let rsa: IssuerKey;
let ec: IssuerKey;
beforeAll(async () => {
  oidc = await startOidcIssuer();
  rsa = await oidc.newKey("rsa-1", "RS256");
  ec = await oidc.newKey("ec-1", "ES256");
  oidc.serve([rsa, ec]);
});
afterAll(async () => {
  await oidc?.close();
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** A login trusting the suite's issuer with its JWKS URL given, unless told otherwise. */
const addLogin = (relay: TestRelay, name: string, o: Partial<TestLogin> = {}) => addTestLogin(relay, name, { issuer: oidc.url, jwksUrl: oidc.jwksUrl, ...o });
/** The row id of login `app`'s user. */
const appUser = (claim: string): string => userId("app", oidc.url, claim);

function openai(relay: TestRelay, idToken: string): OpenAI {
  return new OpenAI({ apiKey: idToken, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
}

describe.each(drivers)("ID tokens as relay credentials on %s", (driver) => {
  const { relay, mock } = useRelay({ driver });
  beforeAll(async () => {
    await createPlan(relay, "free");
    await addLogin(relay, "app");
  });

  it("a valid ID token relays through the openai SDK; its user `<login>/<sub>` is the call's subject, counted on one row with the login's plan", async () => {
    const subject = user("alice");
    const before = mock.requests.length;
    for (const key of [rsa, ec]) {
      const idToken = await oidc.sign(key, { aud: AUDIENCE, sub: subject });
      const answer = await openai(relay, idToken).chat.completions.create({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] });
      expect(answer.choices[0]?.message.content, key.alg).toContain("tok0");
    }
    expect(mock.requests.length - before).toBe(2);
    // The provider saw the login's upstream key, never the ID token.
    const sent = mock.requests.at(-1)!;
    expect(sent.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(JSON.stringify(sent.headers)).not.toContain("eyJ");

    const id = appUser(subject);
    expect(id).toMatch(/^login\.app:[A-Za-z0-9_-]{22}$/);
    // The user's subject is scoped by the login: plan quotas and stored objects are per login.
    const scoped = `app/${subject}`;
    // `used` may run ahead of the calls made: it counts the calls this instance leased.
    expect(await rowOf(relay, id)).toMatchObject({ subject: scoped, plan: "free", provider: "openai", revokedAt: null });
    await relay.app.usage.flush();
    const usage = await relay.app.database.db.select().from(usageEvents).where(eq(usageEvents.tokenId, id));
    expect(usage.map((u) => u.subject)).toEqual([scoped, scoped]);
    // The Connect routes take it too: IntrospectToken shows the holder its own row.
    const idToken = await oidc.sign(rsa, { aud: AUDIENCE, sub: subject });
    const own = await relay.tokens.introspectToken({}, { headers: { authorization: `Bearer ${idToken}` } });
    expect(own.token).toMatchObject({ id, subject: scoped });
  });

  it("wrong audience, wrong issuer, expired, no subject, alg none, and HS256 keyed with the public key: the fixed 401, nothing counted", async () => {
    const now = Math.floor(Date.now() / 1000);
    const pem = new TextEncoder().encode(await exportSPKI(rsa.publicKey));
    const jwkBytes = new TextEncoder().encode(JSON.stringify(await exportJWK(rsa.publicKey)));
    const hs256 = (subject: string, secret: Uint8Array) =>
      new SignJWT({ iss: oidc.url, aud: AUDIENCE, sub: subject, iat: now, exp: now + 600 }).setProtectedHeader({ alg: "HS256", kid: rsa.kid }).sign(secret);
    const cases: [string, (subject: string) => Promise<string>][] = [
      ["wrong aud", (sub) => oidc.sign(rsa, { aud: "someone-else", sub })],
      ["wrong iss", (sub) => oidc.sign(rsa, { aud: AUDIENCE, sub, iss: "https://evil.example" })],
      ["expired", (sub) => oidc.sign(rsa, { aud: AUDIENCE, sub, iat: now - 7200, exp: now - 120 })],
      ["not yet valid", (sub) => oidc.sign(rsa, { aud: AUDIENCE, sub, nbf: now + 600 })],
      ["no subject", () => oidc.sign(rsa, { aud: AUDIENCE })],
      ["alg none", async (sub) => new UnsecuredJWT({ iss: oidc.url, aud: AUDIENCE, sub, iat: now, exp: now + 600 }).encode()],
      ["HS256 keyed with the PEM", (sub) => hs256(sub, pem)],
      ["HS256 keyed with the JWK", (sub) => hs256(sub, jwkBytes)],
      ["bad signature", async (sub) => (await oidc.sign(rsa, { aud: AUDIENCE, sub })).slice(0, -4) + "AAAA"],
    ];
    const before = mock.requests.length;
    for (const [what, make] of cases) {
      const subject = user("mallory");
      const r = await chat(relay, await make(subject));
      expectFixed401(r, what);
      expect(await callsUsed(relay, appUser(subject)), what).toBe(0);
    }
    expect(mock.requests.length).toBe(before);
  });

  it("after a key rotation an unknown kid refetches the key set once, then is the fixed 401; the new key works", async () => {
    // An issuer of its own: the shifted clock below leaves its key set cooling down for a while.
    const own = await startOidcIssuer();
    const first = await own.newKey("rsa-1", "RS256");
    const rotated = await own.newKey("rsa-2", "RS256");
    own.serve([first]);
    await addLogin(relay, "rotating", { issuer: own.url, jwksUrl: own.jwksUrl });
    const subject = user("rotating");
    expect((await chat(relay, await own.sign(first, { aud: AUDIENCE, sub: subject }))).status).toBe(200);
    own.serve([rotated]);
    // Past the key set's 30 s cool-down without waiting it out: only Date.now moves (jose's
    // cool-down reads it; the tokens' own times are real).
    const realNow = Date.now.bind(Date);
    let shift = 31_000;
    vi.spyOn(Date, "now").mockImplementation(() => realNow() + shift);

    try {
      const fetches = own.fetches;
      // The new key's kid is unknown: one refetch, and it verifies.
      expect((await chat(relay, await own.sign(rotated, { aud: AUDIENCE, sub: subject }))).status).toBe(200);
      expect(own.fetches).toBe(fetches + 1);
      // The old kid, right after that refetch: refused without another fetch (the cool-down).
      const before = mock.requests.length;
      expectFixed401(await chat(relay, await own.sign(first, { aud: AUDIENCE, sub: user("old-kid") })));
      expect(own.fetches).toBe(fetches + 1);
      // Once the cool-down passed: the old kid refetches once, is still unknown, and is refused.
      shift += 31_000;
      const oldKid = user("old-kid");
      expectFixed401(await chat(relay, await own.sign(first, { aud: AUDIENCE, sub: oldKid })));
      expect(own.fetches).toBe(fetches + 2);
      expect(mock.requests.length).toBe(before);
      expect(await callsUsed(relay, userId("rotating", own.url, oldKid))).toBe(0);
    } finally {
      vi.restoreAllMocks();
      await own.close();
    }
  });

  it("a JWKS endpoint that hangs fails the call with 503 within the fetch timeout, nothing counted", async () => {
    const issuer = "https://slow-issuer.example";
    await addLogin(relay, "slow", { issuer, jwksUrl: oidc.hangUrl });
    const subject = user("patient");
    const token = await oidc.sign(rsa, { aud: AUDIENCE, sub: subject, iss: issuer });
    const before = mock.requests.length;
    const started = performance.now();
    const r = await chat(relay, token);
    const took = performance.now() - started;
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body).error.message).toBe("the identity provider's signing keys cannot be fetched");
    expect(took).toBeGreaterThan(1500);
    expect(took).toBeLessThan(4000);
    expect(mock.requests.length).toBe(before);
    expect(await callsUsed(relay, userId("slow", issuer, subject))).toBe(0);
  });

  it("a login's model pin applies: another model is 403, not counted", async () => {
    const subject = user("pinned");
    const before = mock.requests.length;
    const r = await chat(relay, await oidc.sign(rsa, { aud: AUDIENCE, sub: subject }), "gpt-other");
    expect(r.status).toBe(403);
    expect(mock.requests.length).toBe(before);
    expect(await callsUsed(relay, appUser(subject))).toBe(0);
  });

  it("a disabled login is refused at once (cached token or not), enabled again it works; a revoked user is refused", async () => {
    const subject = user("toggled");
    const token = await oidc.sign(rsa, { aud: AUDIENCE, sub: subject });
    expect((await chat(relay, token)).status).toBe(200);
    const disabled = await relay.admin.setLoginEnabled({ name: "app", enabled: false });
    expect(disabled.login?.disabled).toBe(true);
    expectFixed401(await chat(relay, token));
    await relay.admin.setLoginEnabled({ name: "app", enabled: true });
    const before = mock.requests.length;
    expect((await chat(relay, token)).status).toBe(200);
    expect(mock.requests.length).toBe(before + 1);

    await relay.tokens.revokeToken({ id: appUser(subject) });
    expectFixed401(await chat(relay, token));
    expectFixed401(await chat(relay, await oidc.sign(ec, { aud: AUDIENCE, sub: subject })));
    expect(mock.requests.length).toBe(before + 1);
  });

  it("AddLogin refuses a plain-http JWKS off loopback, an unknown plan, two credentials, a taken name; lists and deletes", async () => {
    const refused = async (o: Parameters<TestRelay["admin"]["addLogin"]>[0]) => {
      const e = await relay.admin.addLogin(o).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(ConnectError);
      return e as ConnectError;
    };
    const base = { name: "other", issuer: "https://idp.example", audience: "x", jwksUrl: "https://idp.example/jwks", plan: "free", provider: "openai" };
    for (const jwksUrl of ["http://idp.example/jwks", "http://10.0.0.1/jwks", "http://[::2]/jwks", "ftp://127.0.0.1/jwks"]) {
      const e = await refused({ login: { ...base, jwksUrl }, upstreamKey: UPSTREAM_KEY });
      expect([e.code, e.rawMessage], jwksUrl).toEqual([Code.InvalidArgument, expect.stringContaining("jwks_url must be https")]);
    }
    expect((await refused({ login: { ...base, plan: "nope" }, upstreamKey: UPSTREAM_KEY })).code).toBe(Code.InvalidArgument);
    expect((await refused({ login: { ...base, pool: "main" }, upstreamKey: UPSTREAM_KEY })).code).toBe(Code.InvalidArgument);
    expect((await refused({ login: { ...base, name: "app" }, upstreamKey: UPSTREAM_KEY })).code).toBe(Code.AlreadyExists);
    expect((await refused({ login: { ...base, issuer: oidc.url, audience: AUDIENCE }, upstreamKey: UPSTREAM_KEY })).code).toBe(Code.AlreadyExists);

    await relay.admin.addLogin({ login: { ...base, jwksUrl: "http://localhost:9/jwks" }, upstreamKey: UPSTREAM_KEY });
    const listed = (await relay.admin.listLogins({})).logins.find((l) => l.name === "other");
    expect(listed).toMatchObject({ issuer: base.issuer, subjectClaim: "sub", plan: "free", disabled: false });
    expect(listed?.upstreamKeyHint).not.toContain(UPSTREAM_KEY);
    await relay.admin.deleteLogin({ name: "other" });
    expect((await relay.admin.listLogins({})).logins.map((l) => l.name)).not.toContain("other");
    const audit = (await relay.admin.listAuditEvents({})).events.map((e) => e.action);
    expect(audit).toEqual(expect.arrayContaining(["AddLogin", "DisableLogin", "EnableLogin", "DeleteLogin"]));
    const details = (await relay.admin.listAuditEvents({})).events.map((e) => `${e.target} ${e.detail}`).join("\n");
    expect(details).not.toContain(UPSTREAM_KEY);
  });
});

describe.skipIf(!(await postgresAvailable()))("two instances on one PostgreSQL", () => {
  const { a, b } = useCluster();
  beforeAll(async () => {
    await createPlan(a, "free");
    await addLogin(a, "app");
  });

  it("a login disabled on one instance is refused by the other within a second, though the token is hot there", async () => {
    const token = await oidc.sign(rsa, { aud: AUDIENCE, sub: user("cluster") });
    // b learns of the login by its reload (500 ms), then verifies and caches the token.
    await waitFor(async () => (await chat(b, token)).status === 200, 3000, "the login reaching b");
    expect((await chat(b, token)).status).toBe(200);
    const disabledAt = performance.now();
    await a.admin.setLoginEnabled({ name: "app", enabled: false });
    await waitFor(async () => (await chat(b, token)).status === 401, 2000, "b refusing", 10);
    expect(performance.now() - disabledAt).toBeLessThan(1000);
  });
});
