/**
 * Where a relay token is read from: `relayTokenFrom` is the one extractor for every entry point
 * (the HTTP layer, RelayService and IntrospectToken, a WebSocket upgrade), so a carrier that
 * works on one works on all. DESIGN 4's order: `Authorization: Bearer` (or RFC 9449's `DPoP`
 * scheme for bound tokens), `x-api-key` (Anthropic SDK), `api-key` (Azure SDK), `x-goog-api-key`
 * (Gemini SDK), query `key` (Gemini), query `token` (original RelayAPI URLs). Every carrier is
 * removed before forwarding (src/relay/headers.ts, src/relay/upstream-url.ts).
 *
 * `bearerCredential` reads the admin key, which only ever travels as a bearer credential.
 */
import type { HeaderInput } from "../relay/headers.js";

const HEADER_CARRIERS = ["x-api-key", "api-key", "x-goog-api-key"] as const;

/** A request's headers: Node's (HTTP layer, upgrade requests) or Fetch's (Connect handlers). */
export type CarrierHeaders = HeaderInput | Headers;

/** The credential of an `Authorization: Bearer <credential>` header value (scheme case-insensitive). */
export function bearerCredential(auth: string | undefined): string | undefined {
  if (auth === undefined || auth.length <= 7 || auth.slice(0, 7).toLowerCase() !== "bearer ") return undefined;
  return auth.slice(7).trim();
}

/**
 * The relay token a request carries, or undefined. `query` is the URL's query where a token may
 * travel in it (the HTTP layer, a WebSocket upgrade); RPCs pass none.
 */
export function relayTokenFrom(headers: CarrierHeaders, query?: URLSearchParams): string | undefined {
  const auth = headerOf(headers, "authorization");
  if (auth !== undefined && auth.length > 7) {
    const bearer = bearerCredential(auth);
    if (bearer !== undefined) return bearer;
    // `DPoP <token>` is RFC 9449's scheme for bound tokens; Bearer is what SDKs send.
    if (auth.slice(0, 5).toLowerCase() === "dpop ") return auth.slice(5).trim();
  }
  for (const name of HEADER_CARRIERS) {
    const v = headerOf(headers, name);
    if (v !== undefined && v !== "") return v.trim();
  }
  return query?.get("key") ?? query?.get("token") ?? undefined;
}

/** One header's value; a repeated Node header (an array) is no carrier. */
function headerOf(headers: CarrierHeaders, name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const v = headers[name];
  return typeof v === "string" ? v : undefined;
}
