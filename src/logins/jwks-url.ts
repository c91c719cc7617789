/**
 * Which JWKS URLs a login may name (issue 24.4): https, or plain http only on a loopback
 * address (127.0.0.0/8, ::1, localhost), so a local issuer works in development and tests while
 * a key set fetched in clear over a network, where anyone on the path could swap the keys, is
 * refused. The URL is the admin's, never the request's: a token's `iss`, `jku` or `x5u` is never
 * fetched (src/logins/id-token.ts). A URL found by discovery is held to the same rules, and so
 * is the discovery document's own URL.
 */

/** Why `raw` cannot be a login's JWKS URL, or undefined when it can. */
export function jwksUrlProblem(raw: string): string | undefined {
  return keyUrlProblem(raw, "jwks_url");
}

/**
 * Why `raw` cannot be fetched for a login's keys, or undefined when it can: the JWKS URL, and
 * the discovery document and its `jwks_uri` that stand in for it (src/logins/jwks-discovery.ts).
 * `what` names the URL in the message.
 */
export function keyUrlProblem(raw: string, what: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return `${what} must be an absolute URL`;
  }
  if (raw.length > 2048) return `${what} is at most 2048 characters`;
  if (url.username !== "" || url.password !== "" || url.hash !== "") return `${what} must not carry credentials or a fragment`;
  if (url.protocol === "https:") return undefined;
  if (url.protocol === "http:" && isLoopbackHost(url.hostname)) return undefined;
  return `${what} must be https (plain http only on a loopback address: 127.0.0.0/8, ::1, localhost)`;
}

/** `hostname` as URL gives it: IPv6 in brackets, IPv4 normalised to dotted decimal. */
function isLoopbackHost(hostname: string): boolean {
  if (hostname === "localhost" || hostname === "[::1]") return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}
