/**
 * Builds the upstream URL from a provider's base URL and the client's path and query. The
 * result always has the provider's origin and lies below its base path: dot segments, encoded
 * slashes or backslashes, and anything that could change the host are refused (SSRF).
 *
 * safePath is the one check of a client's path for both entry points (issue 17 finding 4): the
 * engine calls it before the policy reads the path, so the policy, the model in the path and
 * the provider all see the same string.
 */
import { RelayError } from "../errors.js";
import type { ProviderSpec } from "../providers/types.js";

/**
 * Dot segments, encoded dots, slashes and backslashes, control characters, userinfo, empty
 * segments; and `?` or `#`: a query travels in its own field, so a path never carries one (a
 * `?` in a path would put client-named parameters before a query-style key; the model pin
 * would read a model from the query part).
 */
const BAD_PATH = /(?:^|\/)\.\.?(?:\/|$)|%2e|%2f|%5c|\\|[\0-\x1f\x7f]|@|\/\/|[?#]/i;
/** Paths of RFC 3986 pchars only, no escapes: the common case, already normal. */
const PLAIN_PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,;=:/]*$/;
/** A `%` not followed by two hex digits (a URL parser would pass it through, a server may not). */
const BAD_ESCAPE = /%(?![0-9A-Fa-f]{2})/;
const ESCAPE = /%([0-9A-Fa-f]{2})/g;
const UNRESERVED = /[A-Za-z0-9\-._~]/;

/** Query parameters that carry relay tokens (DESIGN 4) and never go upstream. */
export const TOKEN_QUERY_PARAMS = ["key", "token"] as const;

const invalidPath = (): RelayError => new RelayError("bad_request", "invalid path");

/**
 * The client's path (below the provider root) in normal form, or a 400. An empty path is `/`
 * and a missing leading slash is added (a RelayRequest may say `v1/models`). Characters a URL
 * would percent-encode are encoded as the upstream URL will be (so the policy reads what the
 * provider reads), and escapes of unreserved characters are decoded (RFC 3986 6.2.2.2), so
 * `/v1/ch%61t` is `/v1/chat` to a path pin as it is to the provider. Other escapes are kept
 * as sent (a pin on a model or path with an escape in it compares decoded or fails closed).
 */
export function safePath(raw: string): string {
  const path = raw.startsWith("/") ? raw : "/" + raw;
  if (BAD_PATH.test(path)) throw invalidPath();
  if (PLAIN_PATH.test(path)) return path;
  if (BAD_ESCAPE.test(path)) throw invalidPath();
  let normal: string;
  try {
    normal = new URL(path, "http://relay.invalid").pathname;
  } catch {
    throw invalidPath();
  }
  normal = normal.replace(ESCAPE, (match, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(c) ? c : match;
  });
  // The decoding above cannot make a bad path (%2e is refused first); checked again all the same.
  if (BAD_PATH.test(normal)) throw invalidPath();
  return normal;
}

/** A provider's base URL parsed once, not per request (specs are immutable; registry reloads make new ones). */
const bases = new WeakMap<ProviderSpec, { origin: string; path: string }>();

function baseOf(provider: ProviderSpec): { origin: string; path: string } {
  let base = bases.get(provider);
  if (!base) {
    const u = new URL(provider.baseUrl);
    base = { origin: u.origin, path: u.pathname.replace(/\/$/, "") };
    bases.set(provider, base);
  }
  return base;
}

/** Where a call goes: the origin (undici's pool) and the path with its query. */
export interface UpstreamTarget {
  origin: string;
  /** The path below the origin, with `?query` when there is one. */
  path: string;
}

/**
 * A base URL already in normal form (an origin, then a path of plain characters only, no dot
 * segments, query or fragment): the raw path after its origin, to which a plain client path is
 * joined as a URL parser would join it. Undefined for others: they take the parsed way.
 */
const plainPrefixes = new WeakMap<ProviderSpec, string | null>();

function plainPrefixOf(provider: ProviderSpec): string | undefined {
  let prefix = plainPrefixes.get(provider);
  if (prefix === undefined) {
    const { origin } = baseOf(provider);
    const rest = provider.baseUrl.startsWith(origin) ? provider.baseUrl.slice(origin.length) : undefined;
    prefix = rest !== undefined && (rest === "" || (PLAIN_PATH.test(rest) && !BAD_PATH.test(rest))) ? rest : null;
    plainPrefixes.set(provider, prefix);
  }
  return prefix ?? undefined;
}

/**
 * The upstream origin and path. Most calls (a plain path, no query, a key in a header) are
 * joined without a URL parse: a plain path below a base URL in normal form is what the parser
 * would give, on the same origin and below the base path. The others are parsed and checked.
 */
export function upstreamTarget(
  provider: ProviderSpec,
  clientPath: string,
  query: URLSearchParams | undefined,
  upstreamKey: string | undefined,
): UpstreamTarget {
  if ((query === undefined || query.size === 0) && provider.defaultQuery === undefined && provider.credential.kind !== "query") {
    const prefix = plainPrefixOf(provider);
    // Normal already (the engine ran safePath); run again so no caller can skip the check.
    const path = safePath(clientPath);
    if (prefix !== undefined && PLAIN_PATH.test(path)) return { origin: baseOf(provider).origin, path: prefix + path };
  }
  const url = upstreamUrl(provider, clientPath, query, upstreamKey);
  return { origin: url.origin, path: url.pathname + url.search };
}

/** The upstream URL, parsed (the check below needs it parsed, and the HTTP client takes it so). */
export function upstreamUrl(provider: ProviderSpec, clientPath: string, query: URLSearchParams | undefined, upstreamKey: string | undefined): URL {
  // Normal already (the engine ran safePath); run again so no caller can skip the check.
  const path = safePath(clientPath);
  let search = "";
  let params = query && query.size > 0 ? new URLSearchParams(query) : undefined;
  if (params) for (const p of TOKEN_QUERY_PARAMS) params.delete(p);
  for (const name in provider.defaultQuery) {
    params ??= new URLSearchParams();
    if (!params.has(name)) params.set(name, provider.defaultQuery[name]!);
  }
  const cred = provider.credential;
  if (cred.kind === "query" && upstreamKey !== undefined) {
    const withKey = params ?? new URLSearchParams();
    withKey.set(cred.name, upstreamKey);
    search = "?" + withKey.toString();
  } else if (params && params.size > 0) {
    search = "?" + params.toString();
  }
  // Belt and braces: the parsed result must stay on the provider's origin and base path.
  const parsed = new URL(provider.baseUrl + path + search);
  const base = baseOf(provider);
  if (parsed.origin !== base.origin || !parsed.pathname.startsWith(base.path)) {
    throw new RelayError("bad_request", "invalid path");
  }
  return parsed;
}
