/**
 * Where a WebSocket session's relay token comes from (issue 25). Browsers cannot set headers on
 * a WebSocket, so besides the HTTP carriers (DESIGN 4: Authorization and the SDK headers, query
 * `key`/`token`) the token may travel as a subprotocol in OpenAI's browser convention,
 * `openai-insecure-api-key.<token>`. Every carrier is stripped before the provider is dialled
 * (no subprotocol is forwarded: src/realtime/framing.ts `upstreamHeaders`);
 * the provider gets the real key in its own style (src/relay/headers.ts, upstream-url.ts).
 *
 * A DPoP-bound token presents its proof in the query, `dpop=<proof>` (method `GET`, `htu` the
 * path without the query), removed before the provider is dialled.
 */
import { relayTokenFrom } from "../http/token-carrier.js";
import type { HeaderInput } from "../relay/headers.js";

const KEY_PROTOCOL = "openai-insecure-api-key.";
/** Subprotocols that name an account to bill (as the headers the relay drops) or carry a secret. */
const PRIVATE_PROTOCOL = /^(?:openai-insecure-api-key|openai-organization|openai-project)\./i;
/** The protocol the relay answers with when offered (OpenAI's browser convention). */
export const REALTIME_PROTOCOL = "realtime";
/** The query parameter that carries a DPoP proof. */
export const DPOP_QUERY_PARAM = "dpop";

/** The subprotocols a client offered, in order. */
export function offeredProtocols(header: string | string[] | undefined): string[] {
  const raw = Array.isArray(header) ? header.join(",") : (header ?? "");
  return raw
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
}

/** The relay token: from a subprotocol, else from the HTTP carriers. */
export function sessionToken(headers: HeaderInput, query: URLSearchParams, protocols: readonly string[]): string | undefined {
  const carried = protocols.find((p) => p.startsWith(KEY_PROTOCOL));
  if (carried !== undefined && carried.length > KEY_PROTOCOL.length) return carried.slice(KEY_PROTOCOL.length);
  return relayTokenFrom(headers, query);
}

/**
 * The subprotocol the relay accepts: `realtime` when offered, else the first one that is not
 * private (a browser that offered protocols fails a handshake that selects none); never one
 * that carries the token.
 */
export function acceptedProtocol(protocols: ReadonlySet<string>): string | false {
  if (protocols.has(REALTIME_PROTOCOL)) return REALTIME_PROTOCOL;
  for (const p of protocols) if (!PRIVATE_PROTOCOL.test(p)) return p;
  return false;
}
