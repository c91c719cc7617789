/**
 * The DPoP replay cache shared by every instance through Redis (`SET key 1 NX EX ttl`), so a
 * proof replayed to another instance is caught too. When Redis cannot answer within 250 ms
 * the check falls back to this instance's memory cache: replay protection degrades to per
 * instance, never to none. Keys are hashes of the proof id, so their length is bounded.
 */
import { createHash } from "node:crypto";
import { Redis } from "ioredis";
import { MemoryReplayCache, type ReplayCache } from "./dpop.js";

const TIMEOUT_MS = 250;

export class RedisReplayCache implements ReplayCache {
  readonly #redis: Redis;
  readonly #local = new MemoryReplayCache();

  constructor(url: string, private readonly prefix = "relayapi:dpop:") {
    this.#redis = new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false });
    this.#redis.on("error", () => {}); // reported through fallbacks, not as crashes
  }

  async seen(jti: string, ttlSec: number): Promise<boolean> {
    const key = this.prefix + createHash("sha256").update(jti).digest("base64url");
    try {
      const reply = await Promise.race([
        this.#redis.set(key, "1", "EX", Math.max(1, Math.ceil(ttlSec)), "NX"),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error("redis timeout")), TIMEOUT_MS).unref()),
      ]);
      return reply !== "OK";
    } catch {
      return this.#local.seen(jti, ttlSec);
    }
  }

  async close(): Promise<void> {
    this.#redis.disconnect();
  }
}
