/**
 * CORS for the HTTP layer and the Connect routes, from the configured origins. Preflights are
 * answered by the relay (a preflight carries no token) and are never counted; a token's own
 * origin pin is enforced on the real request (src/relay/token-policy.ts).
 *
 * Exposed to scripts: besides the rate and request-id headers, `DPoP-Nonce` and
 * `WWW-Authenticate`, without which a browser's DPoP client cannot read the server nonce of a
 * 401 `use_dpop_nonce` and retry with it (RFC 9449 8; issue 9). The headers the provider SDKs
 * act on (`x-should-retry`, `retry-after-ms`, `request-id`, rate headers) and, by the wildcard,
 * the rest of the provider's answer: a page's SDK sees what a server's does.
 */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { AnyResponse } from "./render-error.js";

const EXPOSE = [
  "retry-after",
  "x-request-id",
  "x-relay-request-id",
  "x-ratelimit-remaining-requests",
  "x-ratelimit-limit-requests",
  "content-type",
  "dpop-nonce",
  "www-authenticate",
  // What the openai and @anthropic-ai/sdk clients read from an answer: hidden from a page, the
  // SDK retried refusals no retry cures (x-should-retry: false) and lost the provider's
  // request id (Anthropic's `request-id`), its retry hint in ms and the rate headers.
  "x-should-retry",
  "retry-after-ms",
  "request-id",
  "openai-processing-ms",
  "openai-version",
  "x-ratelimit-remaining-tokens",
  "x-ratelimit-limit-tokens",
  "x-ratelimit-reset-requests",
  "x-ratelimit-reset-tokens",
  // Every other header of the provider's answer, for requests without credentials (what the
  // SDKs send; the relay never allows credentials): the names above are for browsers without
  // the wildcard.
  "*",
].join(", ");
/**
 * What a browser RPC client must read: gRPC-web status (trailers-only answers), Retry-After, the
 * request id, and DPoP-Nonce and WWW-Authenticate to follow a nonce on RelayService.
 */
const RPC_EXPOSE = "grpc-status, grpc-message, grpc-status-details-bin, retry-after, x-request-id, dpop-nonce, www-authenticate";

export class Cors {
  readonly #any: boolean;
  readonly #origins: ReadonlySet<string>;

  constructor(origins: readonly string[]) {
    this.#any = origins.includes("*");
    this.#origins = new Set(origins);
  }

  allowed(origin: string): boolean {
    return this.#any || this.#origins.has(origin);
  }

  /** Headers to add to an actual response for this Origin (none when not allowed). */
  headersFor(origin: string | undefined): Record<string, string> {
    if (origin === undefined || !this.allowed(origin)) return {};
    return { "access-control-allow-origin": origin, "access-control-expose-headers": EXPOSE, vary: "origin" };
  }

  preflight(origin: string | undefined, requestHeaders: string | undefined, res: AnyResponse): void {
    if (origin === undefined || !this.allowed(origin)) {
      res.writeHead(204, { vary: "origin" });
      res.end();
      return;
    }
    res.writeHead(204, {
      "access-control-allow-origin": origin,
      "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
      "access-control-allow-headers": sanitizeHeaderList(requestHeaders),
      "access-control-max-age": "600",
      vary: "origin, access-control-request-headers",
    });
    res.end();
  }

  /**
   * CORS on a Connect route, for Connect-web and gRPC-web pages on another origin: answers a
   * preflight (true: the request is answered) or adds the headers to the RPC's answer.
   */
  rpc(req: IncomingMessage | Http2ServerRequest, res: AnyResponse): boolean {
    const origin = req.headers.origin;
    if (typeof origin !== "string") return false;
    if (req.method === "OPTIONS") {
      const asked = req.headers["access-control-request-headers"];
      this.preflight(origin, typeof asked === "string" ? asked : undefined, res);
      return true;
    }
    const headers = this.headersFor(origin);
    for (const name in headers) res.setHeader(name, headers[name]!);
    if (headers["access-control-expose-headers"]) res.setHeader("access-control-expose-headers", RPC_EXPOSE);
    return false;
  }
}

function sanitizeHeaderList(raw: string | undefined): string {
  if (!raw) return "authorization, content-type";
  return raw
    .split(",")
    .map((h) => h.trim().toLowerCase())
    .filter((h) => /^[a-z0-9-]{1,64}$/.test(h))
    .slice(0, 64)
    .join(", ");
}
