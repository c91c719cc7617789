/**
 * Exact counting at pass-through speed (DESIGN 3.3, issue 6): instead of one statement per call,
 * an instance leases a small block of calls in one atomic statement and hands them out from
 * memory. The block is taken only if it fits under the cap, so the calls served plus the calls
 * leased and unused, summed over every instance, never pass `max_calls`; a crash can waste a
 * leased call, never add one.
 *
 * Lease sizes adapt: 1 for a token seen rarely (exactly one statement per call, as before),
 * doubling while a block is used up within LEASE_WINDOW_MS, up to `maxLease`, and never more
 * than an eighth of what the cap has left, so the last calls of a token go one by one and other
 * instances are not starved. Unused calls are given back after `idleMs` without use, and all of
 * them on shutdown. Concurrent requests for one token share a single statement.
 */
import type { CallCounter } from "../db/queries/call-counter.js";
import type { UseResult } from "../db/queries/tokens.js";
import type { TokenMeta } from "./token-meta.js";

const LEASE_WINDOW_MS = 1000;

interface Lease {
  left: number;
  size: number;
  grantedAt: number;
  lastUse: number;
  /** max_calls minus used in the database after the last grant; null for an uncapped token. */
  remaining: number | null;
  pending: Promise<boolean> | undefined;
}

export interface LeaseOptions {
  maxLease: number;
  idleMs: number;
}

export interface Taken {
  /** Calls left as this instance sees them: the database's count plus its own unused lease. */
  callsLeft: number | null;
}

export class CallLeases {
  readonly #leases = new Map<string, Lease>();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly counter: CallCounter,
    private readonly opts: LeaseOptions,
  ) {}

  start(): void {
    this.#timer = setInterval(() => void this.#returnIdle(), Math.max(50, this.opts.idleMs / 2));
    this.#timer.unref();
  }

  /** Tokens with a lease here, and the leased calls not used yet (for metrics). */
  stats(): { tokens: number; calls: number } {
    let calls = 0;
    for (const lease of this.#leases.values()) calls += lease.left;
    return { tokens: this.#leases.size, calls };
  }

  /** Takes one call; undefined when the database refused (exhausted, revoked or expired). */
  async take(meta: TokenMeta): Promise<Taken | undefined> {
    for (;;) {
      let lease = this.#leases.get(meta.id);
      if (lease && lease.left > 0) {
        lease.left--;
        lease.lastUse = Date.now();
        return { callsLeft: lease.remaining === null ? null : lease.remaining + lease.left };
      }
      if (!lease) {
        lease = { left: 0, size: 0, grantedAt: 0, lastUse: Date.now(), remaining: null, pending: undefined };
        this.#leases.set(meta.id, lease);
      }
      lease.pending ??= this.#grant(meta, lease).finally(() => {
        lease.pending = undefined;
      });
      if (!(await lease.pending)) return undefined;
    }
  }

  /**
   * Gives back a call that never reached the provider, in the database at once (a rare path),
   * so the token's count is exact even while this instance holds a lease.
   */
  async giveBack(meta: TokenMeta): Promise<void> {
    await this.counter.refund(meta.id, 1);
  }

  /** Drops a token's lease without giving it back (the token was revoked). */
  drop(id: string): void {
    this.#leases.delete(id);
  }

  /** Gives every unused call back; on shutdown. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await Promise.all([...this.#leases.keys()].map((id) => this.#giveBackAll(id)));
  }

  async #grant(meta: TokenMeta, lease: Lease): Promise<boolean> {
    const now = Date.now();
    let size = lease.size === 0 ? 1 : now - lease.grantedAt < LEASE_WINDOW_MS ? lease.size * 2 : Math.ceil(lease.size / 2);
    size = Math.min(size, this.opts.maxLease);
    if (lease.remaining !== null) size = Math.max(1, Math.min(size, Math.floor(lease.remaining / 8)));
    let result = await this.#use(meta, size);
    if (!result && size > 1) {
      size = 1;
      result = await this.#use(meta, 1);
    }
    if (!result) {
      this.#leases.delete(meta.id);
      return false;
    }
    lease.left += size;
    lease.size = size;
    lease.grantedAt = now;
    lease.remaining = result.maxCalls === null ? null : result.maxCalls - result.used;
    return true;
  }

  #use(meta: TokenMeta, n: number): Promise<UseResult | undefined> {
    return meta.sealed ? this.counter.useSealed(meta.sealed.firstRow, n) : this.counter.use(meta.id, n);
  }

  async #returnIdle(): Promise<void> {
    const cutoff = Date.now() - this.opts.idleMs;
    for (const [id, lease] of this.#leases) {
      if (lease.pending || lease.lastUse > cutoff) continue;
      await this.#giveBackAll(id).catch(() => {});
    }
  }

  async #giveBackAll(id: string): Promise<void> {
    const lease = this.#leases.get(id);
    if (!lease || lease.pending) return;
    this.#leases.delete(id);
    if (lease.left > 0) await this.counter.refund(id, lease.left);
  }
}
