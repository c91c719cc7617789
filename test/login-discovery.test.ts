/**
 * AddLogin without a JWKS URL (issue 24.4, review of item 4): the relay reads `jwks_uri` from
 * the issuer's `/.well-known/openid-configuration` once, stores it in the login's row, and calls
 * never fetch the document again. The discovery URL and the `jwks_uri` found follow the JWKS
 * URL rules (https, or http on loopback); a document that is missing, of another issuer, without
 * `jwks_uri` is a 400; one that hangs is a 503 after the 3 s timeout; nothing is stored then.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUDIENCE, addLogin, createPlan, newUser } from "./support/logins.js";
import { startOidcIssuer, type IssuerKey, type OidcIssuer } from "./support/oidc-issuer.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { chat } from "./support/sealed.js";
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

describe("JWKS URL discovery", () => {
  const { relay } = useRelay();
  beforeAll(async () => {
    await createPlan(relay, "free");
  });

  /** AddLogin's error for a login without a JWKS URL: the issuer's discovery decides it. */
  async function refused(name: string, issuer: string): Promise<ConnectError> {
    const e = await addLogin(relay, name, { issuer, audience: name }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e, name).toBeInstanceOf(ConnectError);
    return e as ConnectError;
  }

  it("reads jwks_uri from the issuer's discovery document once, stores it, and calls never fetch the document", async () => {
    const before = oidc.discoveryFetches;
    const added = await addLogin(relay, "found", { issuer: oidc.url });
    expect(added.login?.jwksUrl).toBe(oidc.jwksUrl);
    expect(oidc.discoveryFetches).toBe(before + 1);
    expect((await relay.admin.listLogins({})).logins.find((l) => l.name === "found")?.jwksUrl).toBe(oidc.jwksUrl);
    const audit = (await relay.admin.listAuditEvents({})).events.find((e) => e.action === "AddLogin" && e.target === "found");
    expect(audit?.detail).toContain(`jwks_url=${oidc.jwksUrl} (discovered)`);

    const sub = newUser("discovered");
    for (let i = 0; i < 2; i++) expect((await chat(relay, await oidc.sign(rsa, { aud: AUDIENCE, sub }))).status).toBe(200);
    // Reloads (a disable and an enable) read the stored URL, not the document.
    await relay.admin.setLoginEnabled({ name: "found", enabled: false });
    await relay.admin.setLoginEnabled({ name: "found", enabled: true });
    expect((await chat(relay, await oidc.sign(rsa, { aud: AUDIENCE, sub }))).status).toBe(200);
    expect(oidc.discoveryFetches).toBe(before + 1);
    await relay.admin.deleteLogin({ name: "found" });
  });

  it("refuses what it cannot trust: a plain-http issuer off loopback, a jwks_uri off the rules, another issuer's document, no jwks_uri, no document", async () => {
    const original = oidc.discovery;
    try {
      // The discovery URL itself follows the rules: nothing is fetched.
      const plain = await refused("plain", "http://idp.example");
      expect([plain.code, plain.rawMessage]).toEqual([Code.InvalidArgument, expect.stringContaining("the issuer's discovery URL must be https")]);

      const cases: [string, Record<string, unknown> | undefined, string][] = [
        ["offrules", { issuer: oidc.url, jwks_uri: "http://idp.example/jwks" }, "the discovered jwks_uri must be https"],
        ["ftp", { issuer: oidc.url, jwks_uri: "ftp://127.0.0.1/jwks" }, "the discovered jwks_uri must be https"],
        ["stranger", { issuer: "https://other.example", jwks_uri: oidc.jwksUrl }, "not of the login's issuer"],
        ["nokeys", { issuer: oidc.url }, "names no jwks_uri"],
        ["missing", undefined, "answered 404"],
      ];
      for (const [name, doc, message] of cases) {
        oidc.discovery = doc;
        const e = await refused(name, oidc.url);
        expect([e.code, e.rawMessage], name).toEqual([Code.InvalidArgument, expect.stringContaining(message)]);
      }
    } finally {
      oidc.discovery = original;
    }
    const names = (await relay.admin.listLogins({})).logins.map((l) => l.name);
    expect(names.filter((n) => ["plain", "offrules", "ftp", "stranger", "nokeys", "missing"].includes(n))).toEqual([]);
  });

  it("a discovery document that never comes fails AddLogin with 503 within the 3 s timeout", async () => {
    const started = performance.now();
    const e = await relay.admin
      .addLogin({ login: { name: "stalled", issuer: `${oidc.url}/hang`, audience: "stalled", plan: "free", provider: "openai" }, upstreamKey: UPSTREAM_KEY })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    const took = performance.now() - started;
    expect(e).toBeInstanceOf(ConnectError);
    expect((e as ConnectError).code).toBe(Code.Unavailable);
    expect(took).toBeGreaterThan(2500);
    expect(took).toBeLessThan(5000);
    expect((await relay.admin.listLogins({})).logins.map((l) => l.name)).not.toContain("stalled");
  });
});
