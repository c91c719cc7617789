/**
 * Proxy hygiene in one place (STYLE habit 7): which request headers reach the provider and
 * which response headers reach the client. Hop-by-hop headers (RFC 9110 7.6.1), `host`,
 * every token carrier (DESIGN 4), cookies and browser-only headers never pass; nor does a
 * request's `content-encoding`, since the body goes upstream decoded.
 */
import type { ProviderSpec } from "../providers/types.js";

export type HeaderInput = Record<string, string | string[] | undefined>;

const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
];

/** Never forwarded upstream. */
const DROP_REQUEST = new Set([
  ...HOP_BY_HOP,
  "host",
  "content-length",
  // The engine forwards a body decoded from its content coding (src/relay/request-body.ts),
  // so the provider reads exactly what the policy read; it refuses codings it cannot decode.
  "content-encoding",
  "accept-encoding",
  "expect",
  // token carriers (DESIGN 4)
  "authorization",
  "x-api-key",
  "api-key",
  "x-goog-api-key",
  // The account a key bills to is the key's (or the provider's default headers'), never the
  // client's: an organization or project the key does not belong to draws a 401, which would
  // strike the key (DESIGN 8) and let one token take a shared pool down.
  "openai-organization",
  "openai-project",
  // A method override makes the provider run a POST as another method (a DELETE, say) that the
  // relay's rules, which read the method, never saw (src/providers/owned-objects.ts).
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  // Google's system parameters as headers: a field mask hides the usage the relay meters, a user
  // project bills another project than the key's (their query forms are refused: gemini.ts).
  "x-goog-fieldmask",
  "x-goog-user-project",
  // the relay is the upstream's client: the browser's identity stays here
  "cookie",
  "origin",
  "referer",
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-real-ip",
  "dpop",
]);

/** Never returned to the client. */
const DROP_RESPONSE = new Set([...HOP_BY_HOP, "set-cookie", "alt-svc", "content-length"]);

const NONE_LISTED: ReadonlySet<string> = new Set();
/** The values nearly every request and answer carries, parsed once (issue 22: no Set per call). */
const COMMON_CONNECTION = new Map<string, ReadonlySet<string>>(["keep-alive", "close", "Keep-Alive", "Close"].map((v) => [v, new Set([v.toLowerCase()])]));

/** Headers named in `Connection` are hop-by-hop too (RFC 9110 7.6.1). */
function connectionListed(headers: HeaderInput): ReadonlySet<string> {
  const v = headers.connection;
  if (v === undefined) return NONE_LISTED;
  const common = typeof v === "string" ? COMMON_CONNECTION.get(v) : undefined;
  if (common !== undefined) return common;
  const list = Array.isArray(v) ? v.join(",") : v;
  return new Set(
    list
      .split(",")
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean),
  );
}

function dropRequestHeader(name: string): boolean {
  return DROP_REQUEST.has(name) || name.startsWith(":") || name.startsWith("sec-") || name.startsWith("x-relay-");
}

/** Headers for the upstream request: the client's minus the dropped ones, plus the credential. */
export function upstreamHeaders(input: HeaderInput, provider: ProviderSpec, upstreamKey: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const listed = connectionListed(input);
  for (const name in input) {
    const value = input[name];
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (dropRequestHeader(lower) || listed.has(lower)) continue;
    out[lower] = Array.isArray(value) ? value.join(", ") : value;
  }
  for (const name in provider.defaultHeaders) if (out[name] === undefined) out[name] = provider.defaultHeaders[name]!;
  // identity: usage is read from the bytes as they pass, and they pass unchanged.
  out["accept-encoding"] = "identity";
  if (upstreamKey !== undefined) {
    const cred = provider.credential;
    if (cred.kind === "bearer") out.authorization = `Bearer ${upstreamKey}`;
    else if (cred.kind === "header") out[cred.name] = upstreamKey;
  }
  return out;
}

/**
 * Response headers for the client. Content length is not copied: the engine hands the sink a
 * checked length apart (never for an event stream, which the relay may end with an error event
 * of its own), and RelayService answers carry no HTTP framing of the upstream's.
 */
export function clientHeaders(upstream: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const listed = connectionListed(upstream);
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || DROP_RESPONSE.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  return out;
}
