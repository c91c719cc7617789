/**
 * The relay's limits (DESIGN sections 9-10): per client IP (checked before the token, so bad
 * tokens are limited too), per token `rpm`, global and per-upstream-key concurrency. Over a
 * limit every method throws `LimitExceeded` at once (a RelayError `rate_limited`: HTTP 429 with
 * Retry-After); nothing ever queues.
 *
 * Semantics:
 * - A rate is a token bucket of `burst` (default: rpm) tokens refilled at rpm per minute: up
 *   to `burst` calls at once, then one every 60/rpm s. So rpm is approximate by nature: any 60 s
 *   window admits at most burst + rpm. Exact per-token call caps live in the database.
 * - IPv6 clients are limited per /64 (one subscriber's usual allocation), so address rotation
 *   within a prefix neither evades the limit nor grows memory.
 * - Concurrency is per instance, also with Redis: it protects this process's sockets and
 *   memory, costs no round trip, and a crashed instance cannot leak Redis-held slots (Bottleneck
 *   frees those only on job expiry). Behind N instances a cluster-wide key cap is ~N x perKey.
 * - With `redis`, token rates (and IP rates if `redis.perIp`) are shared by all instances through
 *   Bottleneck's Redis datastore (redis-rates.ts). Only when Redis is unreachable does a check
 *   fall back to this instance's bucket: limits degrade to per instance, never to none (counted
 *   in `stats().redisFallbacks`; `stats().redisUp` for the metric, ping() for /readyz). A flood
 *   on one key is shed with 429 instead: falling back then admitted 3x the rate (issue 18).
 *   The local bucket of a shared key holds the shared state last seen, so a fallback starts
 *   from it; a key first seen during an outage starts empty (its first call waits one refill,
 *   60/rpm s), never full: each instance handing out a fresh burst gave +60 for rpm 30 on two.
 *   Per-IP on Redis is optional because every active key costs a heartbeat script every 250 ms
 *   and two subscriptions per instance; without it each instance limits IPs on its own.
 * - A check may cost more than one call (`checkIp(ip, cost)`: a leak report pays per token).
 * - Idle keys are forgotten after `idleMs` (and once their bucket is full again), so memory
 *   follows the number of recently active clients, not every client ever seen.
 *
 * Cost (bench/limits-cost.ts, 2 shared cores under load, CPU per check): local checks ~0.3-0.5 µs
 * admitted, ~3-5 µs rejected (LimitExceeded carries no stack: capturing one cost ~6 µs), ~2-3 µs
 * for a new key, ~160 bytes per key. Bottleneck's local datastore costs ~6-10 ms latency and
 * ~0.5-1 ms CPU per job (each job awaits several setTimeout hops), ~6 KB and a 250 ms timer per
 * key, so it is used only where it adds something: the shared Redis state. That path costs
 * ~4-7 ms latency per check (three scripts in sequence) and ~0.35 ms CPU per second per live key
 * for heartbeats, which is why per-IP on Redis is off unless asked for.
 */
import { RelayError } from "../errors.js";
import { formatIp, isV4, parseIp } from "./client-ip.js";
import { LocalRates, Slots } from "./local-limits.js";
import type { RedisRates, SharedView } from "./redis-rates.js";

export interface LimitsConfig {
  /** Per client IP, checked before the token. */
  perIp: { rpm: number; burst?: number } | null;
  /** In-flight calls in this instance. */
  globalConcurrency: number | null;
  /** In-flight calls per upstream key id in this instance. */
  perKeyConcurrency: number | null;
  /** Idle limiter keys expire after this. */
  idleMs: number;
  /** Cluster mode: token rates (and IP rates with `perIp`) shared through Redis. */
  redis?: { url: string; prefix: string; perIp: boolean };
}

export type LimitScope = "ip" | "token" | "global" | "key";

export class LimitExceeded extends RelayError {
  override name = "LimitExceeded";

  constructor(
    readonly scope: LimitScope,
    readonly retryAfterSeconds: number,
  ) {
    const message = scope === "global" || scope === "key" ? "too many concurrent requests" : "rate limit exceeded";
    // A 429 needs no stack, and capturing one was most of a rejection's cost (~6 of ~10 µs).
    const depth = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super("rate_limited", message, { retryAfter: retryAfterSeconds });
    Error.stackTraceLimit = depth;
  }
}

const noRelease = (): void => {};

export class Limits {
  private readonly ipRates: LocalRates;
  private readonly tokenRates: LocalRates;
  private readonly global: Slots | null;
  private readonly keys: Slots | null;
  private readonly sweeper: ReturnType<typeof setInterval>;
  private readonly rejections: Record<LimitScope, number> = { ip: 0, token: 0, global: 0, key: 0 };
  private redisFallbacks = 0;

  private constructor(
    private readonly cfg: LimitsConfig,
    private readonly redis: RedisRates | null,
  ) {
    this.ipRates = new LocalRates(cfg.idleMs);
    this.tokenRates = new LocalRates(cfg.idleMs);
    this.global = cfg.globalConcurrency === null ? null : new Slots(cfg.globalConcurrency);
    this.keys = cfg.perKeyConcurrency === null ? null : new Slots(cfg.perKeyConcurrency);
    this.sweeper = setInterval(
      () => {
        const now = Date.now();
        this.ipRates.sweep(now);
        this.tokenRates.sweep(now);
      },
      Math.max(10, cfg.idleMs / 2),
    ).unref();
  }

  static async create(cfg: LimitsConfig): Promise<Limits> {
    validate(cfg);
    // Loaded only when configured: ioredis and Bottleneck are ~25 MB of a relay's memory.
    const redis = cfg.redis === undefined ? null : await (await import("./redis-rates.js")).RedisRates.connect(cfg.redis.url, cfg.redis.prefix);
    return new Limits(cfg, redis);
  }

  /** One request from `ip`, costing `cost` calls (1 to ipBurst, an integer). */
  checkIp(ip: string, cost = 1): void | Promise<void> {
    const rate = this.cfg.perIp;
    if (rate === null) return;
    const burst = rate.burst ?? wholeBurst(rate.rpm);
    if (!(Number.isSafeInteger(cost) && cost >= 1 && cost <= burst))
      return Promise.reject(new RangeError(`cost must be an integer from 1 to ${burst}, got ${cost}`));
    return this.rate("ip", this.ipRates, ipKey(ip), rate.rpm, burst, this.cfg.redis?.perIp === true, cost);
  }

  /** The most one IP may spend at once (its burst), or null without a per-IP limit. */
  get ipBurst(): number | null {
    const rate = this.cfg.perIp;
    return rate === null ? null : (rate.burst ?? wholeBurst(rate.rpm));
  }

  /** `rpm` comes from the token (claims or issue options): a positive number. */
  checkToken(tokenId: string, rpm: number): void | Promise<void> {
    if (!(rpm > 0 && Number.isFinite(rpm))) return Promise.reject(new RangeError(`rpm must be a positive number, got ${rpm}`));
    return this.rate("token", this.tokenRates, tokenId, rpm, wholeBurst(rpm), true, 1);
  }

  /** A slot of the instance's in-flight calls, or LimitExceeded at once (never waits). */
  acquireGlobal(): () => void {
    if (this.global === null) return noRelease;
    return this.global.tryAcquire("") ?? this.throwFull("global");
  }

  /** A slot of one upstream key's in-flight calls, or LimitExceeded at once (never waits). */
  acquireKey(keyId: string): () => void {
    if (this.keys === null) return noRelease;
    return this.keys.tryAcquire(keyId) ?? this.throwFull("key");
  }

  /** `redisUp` only with Redis: false while shared checks are decided per instance (degraded). */
  stats(): { localKeys: number; rejections: Record<LimitScope, number>; redisFallbacks: number; redisUp?: boolean } {
    return {
      localKeys: this.ipRates.size + this.tokenRates.size + (this.keys?.size ?? 0) + (this.redis?.size ?? 0),
      rejections: { ...this.rejections },
      redisFallbacks: this.redisFallbacks,
      ...(this.redis === null ? {} : { redisUp: this.redis.up }),
    };
  }

  /** Redis reachable (true without Redis). */
  ping(): Promise<boolean> {
    return this.redis === null ? Promise.resolve(true) : this.redis.ping();
  }

  /** Stops the sweeper and disconnects the shared Redis connections so the process can exit. */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await this.redis?.close();
  }

  /** `cost` tokens from the shared bucket when `shared` and Redis decides, else from the local one. */
  /**
   * An admitted local check returns nothing, not a promise: a relayed call's path creates a
   * promise only where it waits (issue 22). A refusal is a rejected promise, as from Redis.
   */
  private rate(scope: "ip" | "token", local: LocalRates, key: string, rpm: number, burst: number, shared: boolean, cost: number): void | Promise<void> {
    if (shared && this.redis !== null) return this.sharedRate(scope, local, key, rpm, burst, cost, this.redis);
    const waitMs = local.take(key, rpm, burst, Date.now(), cost);
    if (waitMs > 0) return Promise.reject(this.refusal(scope, waitMs));
  }

  /** `cost` tokens from the shared bucket when Redis decides, else from the local one. */
  private async sharedRate(scope: "ip" | "token", local: LocalRates, key: string, rpm: number, burst: number, cost: number, redis: RedisRates): Promise<void> {
    const view: SharedView = {
      available: (now) => local.peek(key, rpm, burst, now),
      seen: (tokens, now) => local.observe(key, rpm, burst, tokens, now),
    };
    const verdict = await redis.admit(scope, key, rpm, burst, this.cfg.idleMs, cost, view);
    let waitMs = 0;
    if (verdict === null) {
      this.redisFallbacks++;
      waitMs = local.take(key, rpm, burst, Date.now(), cost, 0);
    } else if (verdict !== "ok") {
      // Refused or shed: retry when the shared state last seen has `cost` again (1 s at least).
      waitMs = Math.max(1, (cost - (local.peek(key, rpm, burst, Date.now()) ?? 0)) / (rpm / 60_000));
    }
    if (waitMs > 0) throw this.refusal(scope, waitMs);
  }

  /** The refusal of a check that says to wait `waitMs`, counted. */
  private refusal(scope: "ip" | "token", waitMs: number): LimitExceeded {
    this.rejections[scope]++;
    return new LimitExceeded(scope, Math.max(1, Math.ceil(waitMs / 1000)));
  }

  /** A slot frees when some call ends, which cannot be predicted: ask to retry in a second. */
  private throwFull(scope: LimitScope): never {
    this.rejections[scope]++;
    throw new LimitExceeded(scope, 1);
  }
}

/** The default burst: a minute's worth, in whole calls. */
function wholeBurst(rpm: number): number {
  return Math.max(1, Math.floor(rpm));
}

/** The per-IP limiter key: the address, or its /64 for IPv6. */
export function ipKey(ip: string): string {
  if (!ip.includes(":")) return ip;
  const g = parseIp(ip);
  if (g === null) return ip;
  if (isV4(g)) return formatIp(g);
  return `${g
    .slice(0, 4)
    .map((x) => x.toString(16))
    .join(":")}::/64`;
}

function validate(cfg: LimitsConfig): void {
  const positive = (v: number): boolean => v > 0 && Number.isFinite(v);
  const count = (v: number | null): boolean => v === null || (Number.isSafeInteger(v) && v >= 1);
  if (cfg.perIp !== null && !positive(cfg.perIp.rpm)) throw new RangeError("limits.perIp.rpm must be positive");
  const burst = cfg.perIp?.burst;
  if (burst !== undefined && !(Number.isSafeInteger(burst) && burst >= 1)) throw new RangeError("limits.perIp.burst must be an integer >= 1");
  if (!count(cfg.globalConcurrency)) throw new RangeError("limits.globalConcurrency must be an integer >= 1 or null");
  if (!count(cfg.perKeyConcurrency)) throw new RangeError("limits.perKeyConcurrency must be an integer >= 1 or null");
  if (!positive(cfg.idleMs)) throw new RangeError("limits.idleMs must be positive");
  if (cfg.redis !== undefined && !/^rediss?:\/\//.test(cfg.redis.url)) throw new RangeError("limits.redis.url must be redis:// or rediss://");
  if (cfg.redis !== undefined && /[{}]/.test(cfg.redis.prefix)) throw new RangeError("limits.redis.prefix must not contain { or } (Redis Cluster hash tags)");
}
