/**
 * Upload URLs in answers (issue 25): Gemini's resumable upload answers its `start` command
 * with `X-Goog-Upload-URL`, an absolute URL on the provider's own host
 * (`https://generativelanguage.googleapis.com/upload/v1beta/files?upload_id=…`), where the
 * client sends the file's bytes next. Left as is, the client would take the relay token to
 * Google (and past the relay's limits). It is rewritten to the same path and query below the
 * relay's `/api/<provider>`, so the bytes come back through the relay, which sends them on to
 * the provider's base URL as any other path: a client never names the host the relay calls.
 * A URL that is not on the provider's origin and base path is dropped, never passed on.
 */
import type { ProviderSpec } from "../providers/types.js";
import { TOKEN_QUERY_PARAMS } from "./upstream-url.js";

/** The HTTP layer's prefix (DESIGN 5: `/<prefix>/<provider>/<rest>`, prefix `api`). */
const API_PREFIX = "/api/";

/** Rewrites (or drops) the shape's upload URL headers in an answer's headers, in place. */
export function rewriteUploadUrls(headers: Record<string, string | string[]>, provider: ProviderSpec, publicOrigin: string | undefined): void {
  for (const name of provider.shape.uploads?.urlHeaders ?? []) {
    const value = headers[name];
    if (value === undefined) continue;
    const relayed = typeof value === "string" && publicOrigin !== undefined ? relayUrlOf(value, provider, publicOrigin) : undefined;
    if (relayed === undefined) delete headers[name];
    else headers[name] = relayed;
  }
}

/** The relay's URL for a provider URL below its base URL, or undefined for any other URL. */
export function relayUrlOf(raw: string, provider: ProviderSpec, publicOrigin: string): string | undefined {
  let url: URL;
  let base: URL;
  try {
    url = new URL(raw);
    base = new URL(provider.baseUrl);
  } catch {
    return undefined;
  }
  const basePath = base.pathname.replace(/\/+$/, "");
  if (url.origin !== base.origin || url.username !== "" || url.password !== "") return undefined;
  if (url.pathname !== basePath && !url.pathname.startsWith(basePath + "/")) return undefined;
  // A key in the query (Google echoes `key=` when it came so) never reaches the client.
  for (const p of TOKEN_QUERY_PARAMS) url.searchParams.delete(p);
  if (provider.credential.kind === "query") url.searchParams.delete(provider.credential.name);
  const rest = url.pathname.slice(basePath.length) || "/";
  return publicOrigin.replace(/\/+$/, "") + API_PREFIX + provider.id + rest + url.search;
}
