/**
 * Where a relay token is read from, in DESIGN 4's order: `Authorization: Bearer`, `x-api-key`
 * (Anthropic SDK), `api-key` (Azure SDK), `x-goog-api-key` (Gemini SDK), query `key` (Gemini),
 * query `token` (original RelayAPI URLs). Every carrier is removed before forwarding
 * (src/relay/headers.ts, src/relay/upstream-url.ts). `bearerCredential` is the one reader of a
 * bearer credential, for the HTTP layer and the RPC routes (admin key, IntrospectToken) alike.
 */
import type { HeaderInput } from "../relay/headers.js";

const HEADER_CARRIERS = ["x-api-key", "api-key", "x-goog-api-key"] as const;

/** The credential of an `Authorization: Bearer <credential>` header value (scheme case-insensitive). */
export function bearerCredential(auth: string | undefined): string | undefined {
  if (auth === undefined || auth.length <= 7 || auth.slice(0, 7).toLowerCase() !== "bearer ") return undefined;
  return auth.slice(7).trim();
}

export function tokenFromRequest(headers: HeaderInput, query: URLSearchParams | undefined): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === "string" && auth.length > 7) {
    const bearer = bearerCredential(auth);
    if (bearer !== undefined) return bearer;
    // `DPoP <token>` is RFC 9449's scheme for bound tokens; Bearer is what SDKs send.
    if (auth.slice(0, 5).toLowerCase() === "dpop ") return auth.slice(5).trim();
  }
  for (const name of HEADER_CARRIERS) {
    const v = headers[name];
    if (typeof v === "string" && v !== "") return v.trim();
  }
  return query?.get("key") ?? query?.get("token") ?? undefined;
}
