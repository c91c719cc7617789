/**
 * A local OIDC issuer for tests (issue 24.4): keys made with jose (RS256 and ES256, each with a
 * `kid`), their public JWK set served by node:http on 127.0.0.1 at `/jwks`, and ID tokens
 * signed with SignJWT. `serve` changes which keys the set holds (a rotation); `fetches` counts
 * the set's downloads; `/hang` accepts a request and never answers (a stalled key endpoint).
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
  /** Makes a key (not yet served). */
  newKey(kid: string, alg: "RS256" | "ES256"): Promise<IssuerKey>;
  /** Serves exactly these keys' public halves from now on. */
  serve(keys: IssuerKey[]): void;
  /** An ID token signed with `key`: `iss` the issuer, the given audience and subject, `iat` now, `exp` in an hour, unless `claims` says otherwise. */
  sign(key: IssuerKey, claims: JWTPayload & { aud: string; sub?: string }): Promise<string>;
  close(): Promise<void>;
}

export async function startOidcIssuer(): Promise<OidcIssuer> {
  let served: JWK[] = [];
  const issuer: Partial<OidcIssuer> = { fetches: 0 };
  const server: Server = createServer((req, res) => {
    if (req.url === "/jwks") {
      issuer.fetches! += 1;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: served }));
      return;
    }
    if (req.url === "/hang") return; // never answered: the relay's fetch timeout must end the wait
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(issuer, {
    url,
    jwksUrl: `${url}/jwks`,
    hangUrl: `${url}/hang`,
    async newKey(kid: string, alg: "RS256" | "ES256"): Promise<IssuerKey> {
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
      return { kid, alg, privateKey, publicKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
    },
    serve(keys: IssuerKey[]) {
      served = keys.map((k) => k.publicJwk);
    },
    async sign(key: IssuerKey, claims: JWTPayload & { aud: string; sub?: string }): Promise<string> {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: url, iat: now, exp: now + 3600, ...claims })
        .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT" })
        .sign(key.privateKey);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  }) as OidcIssuer;
}
