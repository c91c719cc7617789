/**
 * Proof of possession on every route (RFC 9449, issue 9): a token bound to a client key
 * (`cnf.jkt` / `bind_jkt`) is refused unless the request carries a valid `DPoP` proof for this
 * method and URL. The URL is the configured public origin plus the request path, never the Host
 * header. Failures are 401 with `WWW-Authenticate: DPoP error=...`, and a fresh `DPoP-Nonce`
 * when nonces are on (a client retries once with it).
 */
import { RelayError } from "../errors.js";
import { DpopError, htuFor, verifyDpopProof, type NonceIssuer, type ReplayCache } from "../tokens/dpop.js";
import type { TokenMeta } from "../tokens/token-meta.js";

export interface DpopRequest {
  /** The `DPoP` header. */
  proof: string | undefined;
  method: string;
  /** The path the client addressed on this relay (`/api/openai/v1/...` or the RPC path). */
  path: string;
}

export class DpopGate {
  constructor(
    /** The public origin; a function because a relay on port 0 knows it only once listening. */
    private readonly publicOrigin: () => string,
    private readonly replay: ReplayCache,
    private readonly nonce: NonceIssuer | undefined,
  ) {}

  async check(token: TokenMeta, accessToken: string, req: DpopRequest | undefined): Promise<void> {
    if (token.bindJkt === null) return;
    try {
      await verifyDpopProof({
        proof: req?.proof,
        method: req?.method ?? "",
        url: htuFor(this.publicOrigin(), req?.path ?? ""),
        accessToken,
        jkt: token.bindJkt,
        nowSec: Date.now() / 1000,
        replay: this.replay,
        ...(this.nonce ? { nonce: this.nonce } : {}),
      });
    } catch (e) {
      if (!(e instanceof DpopError)) throw e;
      const headers: Record<string, string> = { "www-authenticate": `DPoP error="${e.code}", algs="ES256 EdDSA"` };
      if (this.nonce) headers["dpop-nonce"] = this.nonce.issue();
      throw new RelayError("unauthenticated", e.message, { headers });
    }
  }
}
