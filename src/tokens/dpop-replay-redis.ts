/**
 * The DPoP replay cache shared by every instance through Redis (`SET key 1 NX EX ttl`), so a
 * proof replayed to another instance is caught too. Keys are hashes of the proof id, so their
 * length is bounded.
 *
 * While Redis is unreachable (not connected, or no answer within 250 ms; then not asked again
 * for a second) an instance can vouch only for proofs it saw itself: falling back to memory
 * alone let a proof used on A pass on B (issue 18). So the window narrows: a proof is accepted
 * only while |now - iat| <= LOCAL_WINDOW_SEC (5 s, against 60 s normally), and is remembered
 * here. The exposure while Redis is down is exactly this: a proof captured in flight can be
 * replayed once on each other instance until its iat + 5 s (at most 10 s after its first use,
 * for a proof dated 5 s ahead). Clients whose clocks are off by more than 5 s are refused
 * meanwhile ("too old or in the future"). Two more gaps are closed:
 * - proofs accepted on memory alone are written to Redis as soon as it is back (the backlog, at
 *   most BACKLOG_MAX per instance, the oldest dropped beyond), so another instance does not
 *   accept them in the rest of their 60 s;
 * - every proof accepted through Redis is also remembered here for the local window, so an
 *   outage starting right after a proof does not let this instance accept it again.
 */
import { createHash } from "node:crypto";
import { Redis } from "ioredis";
import { MemoryReplayCache, type ReplayCache } from "./dpop.js";

/** How far from now a proof's `iat` may be while only this instance can check it. */
export const LOCAL_WINDOW_SEC = 5;
const TIMEOUT_MS = 250;
const SKIP_AFTER_FAILURE_MS = 1_000;
/** Proofs accepted while Redis was away, waiting to be written there (~150 bytes each). */
const BACKLOG_MAX = 100_000;

/** Reconnect 100, 200, 400, then every 500 ms (ioredis 6 backs off to 5 s by default). */
const retryStrategy = (times: number): number => Math.min(50 * 2 ** Math.min(times, 4), 500);

export class RedisReplayCache implements ReplayCache {
  readonly #redis: Redis;
  readonly #local = new MemoryReplayCache();
  /** Redis key -> expiry (ms) of proofs accepted while Redis was unreachable. */
  readonly #backlog = new Map<string, number>();
  #skipUntil = 0;
  #flushing = false;

  constructor(
    url: string,
    private readonly prefix = "relayapi:dpop:",
  ) {
    this.#redis = new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy });
    this.#redis.on("error", () => {}); // reported through the local window, not as crashes
    this.#redis.on("ready", () => void this.#flush());
  }

  async seen(jti: string, ttlSec: number, ageSec = 0): Promise<boolean | "stale"> {
    const key = this.prefix + createHash("sha256").update(jti).digest("base64url");
    const ttl = Math.max(1, Math.ceil(ttlSec));
    if (this.#local.has(key)) return true;
    if (this.#redis.status === "ready" && Date.now() >= this.#skipUntil) {
      try {
        const reply = await Promise.race([
          this.#redis.set(key, "1", "EX", ttl, "NX"),
          new Promise<never>((_, reject) => setTimeout(() => reject(new Error("redis timeout")), TIMEOUT_MS).unref()),
        ]);
        if (reply !== "OK") return true;
        void this.#local.seen(key, Math.max(1, Math.ceil(LOCAL_WINDOW_SEC - ageSec) + 1));
        if (this.#backlog.size > 0) void this.#flush();
        return false;
      } catch {
        this.#skipUntil = Date.now() + SKIP_AFTER_FAILURE_MS;
      }
    }
    if (!(Math.abs(ageSec) <= LOCAL_WINDOW_SEC)) return "stale";
    // Here, past the local window the proof is stale anyway; elsewhere the backlog covers it.
    if (await this.#local.seen(key, Math.max(1, Math.ceil(LOCAL_WINDOW_SEC - ageSec) + 1))) return true;
    if (this.#backlog.size >= BACKLOG_MAX) this.#prune();
    // Insertion order is about expiry order (iat within 5 s of now for all): drop the first.
    if (this.#backlog.size >= BACKLOG_MAX) this.#backlog.delete(this.#backlog.keys().next().value!);
    this.#backlog.set(key, Date.now() + ttl * 1000);
    return false;
  }

  /** Writes the backlog to Redis (NX, with each proof's remaining TTL); kept for later on failure. */
  async #flush(): Promise<void> {
    if (this.#flushing || this.#redis.status !== "ready") return;
    this.#prune();
    if (this.#backlog.size === 0) return;
    this.#flushing = true;
    const batch = [...this.#backlog];
    this.#backlog.clear();
    const now = Date.now();
    try {
      const pipeline = this.#redis.pipeline();
      for (const [key, expiry] of batch) pipeline.set(key, "1", "PX", Math.max(1, expiry - now), "NX");
      const results = (await pipeline.exec()) ?? [];
      batch.forEach(([key, expiry], i) => void (results[i]?.[0] == null || this.#backlog.set(key, expiry)));
    } catch {
      for (const [key, expiry] of batch) this.#backlog.set(key, expiry);
    } finally {
      this.#flushing = false;
    }
  }

  #prune(): void {
    const now = Date.now();
    for (const [key, expiry] of this.#backlog) if (expiry <= now) this.#backlog.delete(key);
  }

  async close(): Promise<void> {
    this.#redis.disconnect();
  }
}
