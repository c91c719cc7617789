/**
 * A local OIDC issuer for tests (issue 24.4): keys made with jose (RS256 and ES256, each with a
 * `kid`), their public JWK set served by node:http on 127.0.0.1 at `/jwks`, and ID tokens
 * signed with SignJWT. `serve` changes which keys the set holds (a rotation); `fetches` counts
 * the set's downloads; `/.well-known/openid-configuration` serves `discovery` (OpenID Connect
 * discovery: `issuer` and `jwks_uri` unless a test changes it); any path under `/hang` accepts a
 * request and never answers (a stalled key or discovery endpoint).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from "jose";

export interface IssuerKey {
  kid: string;
  alg: "RS256" | "ES256";
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JWK;
}

export interface OidcIssuer {
  /** `http://127.0.0.1:PORT`; also the tokens' default `iss`. */
  url: string;
  jwksUrl: string;
  /** A JWKS URL whose requests are never answered. */
  hangUrl: string;
  /** Downloads of `/jwks` so far. */
  fetches: number;
  /** The discovery document served; undefined: 404. */
  discovery: Record<string, unknown> | undefined;
  /** Downloads of the discovery document so far. */
  discoveryFetches: number;
  /** Makes a key (not yet served). */
  newKey(kid: string, alg: "RS256" | "ES256"): Promise<IssuerKey>;
  /** Serves exactly these keys' public halves from now on. */
  serve(keys: IssuerKey[]): void;
  /**
   * An ID token signed with `key`: `iss` the issuer, the given audience and subject, `iat` now,
   * `exp` in an hour, unless `claims` says otherwise. `sub` may be of any JSON type (an issuer
   * numbering its users, or a malformed one).
   */
  sign(key: IssuerKey, claims: Claims): Promise<string>;
  close(): Promise<void>;
}

export type Claims = Omit<JWTPayload, "sub"> & { aud: string; sub?: unknown };

const DISCOVERY_PATH = "/.well-known/openid-configuration";

export async function startOidcIssuer(): Promise<OidcIssuer> {
  let served: JWK[] = [];
  const issuer: Partial<OidcIssuer> = { fetches: 0, discoveryFetches: 0 };
  const server: Server = createServer((req, res) => {
    if (req.url === "/jwks") {
      issuer.fetches! += 1;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: served }));
      return;
    }
    if (req.url === DISCOVERY_PATH) {
      issuer.discoveryFetches! += 1;
      if (issuer.discovery === undefined) res.writeHead(404).end();
      else res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(issuer.discovery));
      return;
    }
    if (req.url?.startsWith("/hang")) return; // never answered: the relay's fetch timeout must end the wait
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(issuer, {
    url,
    jwksUrl: `${url}/jwks`,
    discovery: { issuer: url, jwks_uri: `${url}/jwks` },
    hangUrl: `${url}/hang`,
    async newKey(kid: string, alg: "RS256" | "ES256"): Promise<IssuerKey> {
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
      return { kid, alg, privateKey, publicKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
    },
    serve(keys: IssuerKey[]) {
      served = keys.map((k) => k.publicJwk);
    },
    async sign(key: IssuerKey, claims: Claims): Promise<string> {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: url, iat: now, exp: now + 3600, ...claims } as JWTPayload)
        .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT" })
        .sign(key.privateKey);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  }) as OidcIssuer;
}
