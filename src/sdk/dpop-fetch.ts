/**
 * Proof of possession for clients (RFC 9449): `dpopFetch(keyPair)` wraps `fetch` so every
 * request carries a fresh `DPoP` proof signed with the client's key, bound to the method, the
 * URL and the access token it sends; on a 401 asking for a server nonce it retries once with
 * it. Pass it as the official `openai` client's `fetch` option. `jwkThumbprint` gives the
 * `jkt` a token is bound to (`relayapi token issue --bind-jkt`, or the `cnf` claim).
 * WebCrypto only (no `node:` imports): Node 20 and browsers alike.
 */
import { calculateJwkThumbprint, exportJWK, SignJWT, type JWK } from "jose";

export interface DpopKeyPair {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** A new ES256 key pair; `extractable: false` keeps the private key inside WebCrypto. */
export async function generateDpopKeyPair(extractable = false): Promise<DpopKeyPair> {
  return (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, extractable, ["sign", "verify"])) as DpopKeyPair;
}

/** RFC 7638 SHA-256 thumbprint of the public key: the token's `jkt`. */
export async function jwkThumbprint(publicKey: CryptoKey): Promise<string> {
  return calculateJwkThumbprint(await publicDpopJwk(publicKey), "sha256");
}

/** The public key as a JWK with only its public members: what a backend binds a token to (`bindKey`). */
export async function publicDpopJwk(publicKey: CryptoKey): Promise<JWK> {
  const { kty, crv, x, y } = await exportJWK(publicKey);
  return { kty, crv, x, y } as JWK;
}

async function sha256b64url(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  let binary = "";
  for (const b of digest) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function accessTokenOf(headers: Headers): string | undefined {
  const auth = headers.get("authorization");
  if (auth && /^(bearer|dpop) /i.test(auth)) return auth.slice(auth.indexOf(" ") + 1).trim();
  return headers.get("x-api-key") ?? headers.get("api-key") ?? headers.get("x-goog-api-key") ?? undefined;
}

/** Signs one proof for `method` and `url` (query and fragment dropped, per RFC 9449 4.2). */
export async function createDpopProof(keys: DpopKeyPair, method: string, url: string, accessToken?: string, nonce?: string): Promise<string> {
  const u = new URL(url);
  const claims: Record<string, unknown> = { htm: method.toUpperCase(), htu: `${u.origin}${u.pathname}`, jti: crypto.randomUUID() };
  if (accessToken) claims.ath = await sha256b64url(accessToken);
  if (nonce) claims.nonce = nonce;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: await publicDpopJwk(keys.publicKey) })
    .setIssuedAt()
    .sign(keys.privateKey);
}

export function dpopFetch(keys: DpopKeyPair, baseFetch: FetchLike = (i, init) => fetch(i, init)): FetchLike {
  let nonce: string | undefined;
  return async (input, init) => {
    const request = new Request(input, init);
    const body = request.body ? await request.arrayBuffer() : undefined;
    const send = async (): Promise<Response> => {
      const headers = new Headers(request.headers);
      headers.set("dpop", await createDpopProof(keys, request.method, request.url, accessTokenOf(headers), nonce));
      return baseFetch(request.url, { method: request.method, headers, body, signal: request.signal });
    };
    let res = await send();
    const fresh = res.headers.get("dpop-nonce");
    if (fresh) {
      const retry = res.status === 401 && fresh !== nonce;
      nonce = fresh;
      if (retry) {
        await res.body?.cancel();
        res = await send();
      }
    }
    return res;
  };
}
