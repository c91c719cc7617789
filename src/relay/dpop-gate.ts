/**
 * Proof of possession on every route (RFC 9449, issue 9): a token bound to a client key
 * (`cnf.jkt` / `bind_jkt`) is refused unless the request carries a valid `DPoP` proof for this
 * method and URL. The URL is the configured public origin plus the request path, never the Host
 * header. Failures are 401 with `WWW-Authenticate: DPoP error=...`, and a fresh `DPoP-Nonce`
 * when nonces are on (a client retries once with it).
 *
 * `createDpopGate` builds it from the configuration: proofs seen are kept in Redis when the
 * relay has one (a proof replayed to another instance is caught), else in memory; nonce keys are
 * derived from the master key, so every instance with the same master key accepts the others'.
 */
import { createHmac } from "node:crypto";
import { RelayError } from "../errors.js";
import { DpopError, HmacNonceIssuer, htuFor, MemoryReplayCache, verifyDpopProof, type NonceIssuer, type ReplayCache } from "../tokens/dpop.js";
import type { TokenMeta } from "../tokens/token-meta.js";

export interface DpopRequest {
  /** The `DPoP` header. */
  proof: string | undefined;
  method: string;
  /** The path the client addressed on this relay (`/api/openai/v1/...` or the RPC path). */
  path: string;
}

export interface DpopGateOptions {
  /** The public origin; a function because a relay on port 0 knows it only once listening. */
  publicOrigin: () => string;
  /** Redis, for replay checks across instances (config redisUrl). */
  redisUrl?: string | undefined;
  /** The master key's derivation key (SecretBox.derivationKey). */
  derivationKey: Uint8Array;
  /** Seconds a server nonce lives; undefined: no nonces (config dpopNonces off). */
  nonceSeconds?: number | undefined;
}

export async function createDpopGate(opts: DpopGateOptions): Promise<DpopGate> {
  // ioredis is loaded only when Redis is configured (as in Limits).
  const replay = opts.redisUrl ? new (await import("../tokens/dpop-replay-redis.js")).RedisReplayCache(opts.redisUrl) : new MemoryReplayCache();
  const nonces =
    opts.nonceSeconds === undefined
      ? undefined
      : new HmacNonceIssuer(createHmac("sha256", opts.derivationKey).update("relayapi dpop nonces").digest(), opts.nonceSeconds);
  return new DpopGate(opts.publicOrigin, replay, nonces);
}

export class DpopGate {
  constructor(
    /** The public origin; a function because a relay on port 0 knows it only once listening. */
    private readonly publicOrigin: () => string,
    private readonly replay: ReplayCache,
    private readonly nonce: NonceIssuer | undefined,
  ) {}

  /** A token bound to no key needs no proof: nothing to wait for, so no promise (issue 22). */
  check(token: TokenMeta, accessToken: string, req: DpopRequest | undefined): void | Promise<void> {
    if (token.bindJkt !== null) return this.#verify(token.bindJkt, accessToken, req);
  }

  async #verify(jkt: string, accessToken: string, req: DpopRequest | undefined): Promise<void> {
    try {
      await verifyDpopProof({
        proof: req?.proof,
        method: req?.method ?? "",
        url: htuFor(this.publicOrigin(), req?.path ?? ""),
        accessToken,
        jkt,
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

  /** Closes the replay cache's connection, if it has one (shutdown). */
  async close(): Promise<void> {
    await (this.replay as ReplayCache & { close?: () => Promise<void> }).close?.();
  }
}
