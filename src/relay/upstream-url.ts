/**
 * Builds the upstream URL from a provider's base URL and the client's path and query. The
 * result always has the provider's origin and lies below its base path: dot segments, encoded
 * slashes or backslashes, and anything that could change the host are refused (SSRF).
 */
import { RelayError } from "../errors.js";
import type { ProviderSpec } from "../providers/types.js";

const BAD_PATH = /(?:^|\/)\.\.?(?:\/|$)|%2e|%2f|%5c|\\|[\0-\x1f\x7f]|@|\/\//i;

/** Query parameters that carry relay tokens (DESIGN 4) and never go upstream. */
export const TOKEN_QUERY_PARAMS = ["key", "token"] as const;

/** Refuses a path that could leave the provider's base path (before the call is counted). */
export function assertSafePath(path: string): void {
  if (!path.startsWith("/") || BAD_PATH.test(path)) throw new RelayError("bad_request", "invalid path");
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

/** The upstream URL, parsed (the check below needs it parsed, and the HTTP client takes it so). */
export function upstreamUrl(provider: ProviderSpec, path: string, query: URLSearchParams | undefined, upstreamKey: string | undefined): URL {
  assertSafePath(path);
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
