/**
 * A login's JWKS URL from its issuer's OpenID Connect discovery document (issue 24.4), for an
 * AddLogin that names none: `<issuer>/.well-known/openid-configuration` (OpenID Connect
 * Discovery 1.0, section 4), fetched once, then its `jwks_uri` is stored in the login's row like
 * one the admin typed, so no call ever waits on discovery or follows a changed document.
 *
 * Both URLs follow the JWKS URL rules (src/logins/jwks-url.ts): https, or http on loopback.
 * Redirects are not followed (one could lead off those rules), the fetch and its body are
 * bounded in time and size, and a document naming another issuer is refused: its keys would
 * sign tokens this login does not accept anyway, so it is a wrong `--issuer`.
 */
import { RelayError } from "../errors.js";
import { keyUrlProblem } from "./jwks-url.js";

/** Longest the discovery document may take, body included (AddLogin waits for it). */
export const DISCOVERY_TIMEOUT_MS = 3000;
/** Real documents are a few KB; a larger body is not one. */
const MAX_DOCUMENT_BYTES = 256 * 1024;
const WELL_KNOWN = "/.well-known/openid-configuration";

/** Where `issuer` publishes its discovery document: its path, without a trailing slash, then the well-known suffix. */
export function discoveryUrl(issuer: string): string {
  const url = new URL(issuer);
  url.pathname = url.pathname.replace(/\/$/, "") + WELL_KNOWN;
  return url.href;
}

/**
 * The `jwks_uri` of `issuer`'s discovery document. RelayError: 400 when the issuer cannot be
 * discovered from or its document is not usable (pass the JWKS URL instead), 503 when the
 * document could not be had (unreachable, timed out: a retry may do).
 */
export async function discoverJwksUrl(issuer: string): Promise<string> {
  const bad = (message: string): never => {
    throw new RelayError("bad_request", `${message}; or give the jwks_url`);
  };
  const where = discoveryUrl(issuer);
  const problem = keyUrlProblem(where, "the issuer's discovery URL");
  if (problem !== undefined) bad(problem);

  let res: Response;
  let body: string;
  try {
    res = await fetch(where, { redirect: "manual", headers: { accept: "application/json" }, signal: AbortSignal.timeout(DISCOVERY_TIMEOUT_MS) });
    body = await boundedText(res);
  } catch (e) {
    if (e instanceof RelayError) throw e;
    throw new RelayError("unavailable", `cannot fetch ${where} (unreachable, or slower than ${DISCOVERY_TIMEOUT_MS / 1000} s); or give the jwks_url`, {
      cause: e,
    });
  }
  if (res.status !== 200) bad(`${where} answered ${res.status}, not a discovery document`);

  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    doc = undefined;
  }
  if (typeof doc !== "object" || doc === null) return bad(`${where} is not a JSON discovery document`);
  const { issuer: named, jwks_uri: jwksUri } = doc as { issuer?: unknown; jwks_uri?: unknown };
  if (named !== undefined && named !== issuer) bad(`${where} is the discovery document of ${String(named).slice(0, 200)}, not of the login's issuer`);
  if (typeof jwksUri !== "string") return bad(`${where} names no jwks_uri`);
  const jwksProblem = keyUrlProblem(jwksUri, "the discovered jwks_uri");
  if (jwksProblem !== undefined) bad(jwksProblem);
  return jwksUri;
}

/** The body as text; a 400 past MAX_DOCUMENT_BYTES (the rest is not read). */
async function boundedText(res: Response): Promise<string> {
  if (res.body === null) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return Buffer.concat(chunks).toString("utf8");
    size += value.byteLength;
    if (size > MAX_DOCUMENT_BYTES) {
      await reader.cancel().catch(() => {});
      throw new RelayError("bad_request", `the discovery document is larger than ${MAX_DOCUMENT_BYTES / 1024} KB; or give the jwks_url`);
    }
    chunks.push(value);
  }
}
