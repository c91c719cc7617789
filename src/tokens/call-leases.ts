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
 *
 * A token with a plan (issue 24) takes each block from its subject's calendar windows as well,
 * all or none in one transaction (src/db/queries/quota-counter.ts), so calls per window never
 * pass the plan across tokens, instances and workers. A block serves calls only until the first
 * of its windows ends; what is left of it then goes back to the windows it came from. Blocks are
 * also bounded by an eighth of what the tightest window has left.
 *
 * The same state answers IntrospectToken without a database read per call (`view`, issue 22):
 * each counting statement here reports the database's new count to TokenViews, and the calls
 * leased and not used are added back (src/tokens/token-views.ts has the rule and its limits).
 */
import type { CallCounter } from "../db/queries/call-counter.js";
import type { CallQuota } from "../plans/plan-quotas.js";
import type { UseResult } from "../db/queries/tokens.js";
import type { TokenRow } from "../db/schema/index.js";
import type { TokenMeta } from "./token-meta.js";
import { TokenViews } from "./token-views.js";

const LEASE_WINDOW_MS = 1000;
/**
 * A token whose lease was given back for idleness and that calls again within this long starts
 * from half its last block, not from 1: a client calling in bursts a few seconds apart would
 * otherwise pay a counting statement on its 1st, 2nd, 4th, 8th... call of every burst, a
 * database round trip in its time to first byte (issue 22). Blocks still never pass an eighth
 * of what the cap has left.
 */
const RECENT_MS = 10_000;

interface Lease {
  left: number;
  size: number;
  grantedAt: number;
  lastUse: number;
  /** max_calls minus used in the database after the last grant; null for an uncapped token. */
  remaining: number | null;
  /** The plan windows the block was taken from (undefined: no plan call limits). */
  quota: CallQuota | undefined;
  /** What the tightest of those windows had left after the last grant; null without windows. */
  windowRemaining: number | null;
  /** The version of the token's plan the block was granted under (QuotaDeps.stamp); undefined: no plan. */
  planStamp: number | undefined;
  /**
   * The cap of the token the block was granted for (TokenMeta.maxCalls). Sealed tokens sharing a
   * jti share one lease by id but may each claim another cap: a block serves only the cap it was
   * granted under, or a token could pass its own cap on calls leased for another.
   */
  cap: number | null;
  pending: Promise<boolean> | undefined;
}

export interface LeaseOptions {
  maxLease: number;
  idleMs: number;
}

export interface Taken {
  /** Calls left as this instance sees them: the database's count plus its own unused lease. */
  callsLeft: number | null;
  /** The plan windows the call was taken from: a refund goes back to them. */
  quota?: CallQuota | undefined;
}

/** Finds the plan windows a token's block is taken from now (src/plans/plan-quotas.ts); may throw a RelayError. */
export type QuotaOf = (meta: TokenMeta) => CallQuota | undefined;

/** A block the plan windows refused: the RelayError to answer with. */
export type WindowRefusal = (quota: CallQuota, index: number) => Error;

/** How leases meet plans (src/plans/plan-quotas.ts). */
export interface QuotaDeps {
  of: QuotaOf;
  refused: WindowRefusal;
  /** The version of a token's plan (its last change); a block granted under another serves no call. */
  stamp: (meta: TokenMeta) => number | undefined;
  /** The clock the windows are read from. */
  now: () => number;
}

export class CallLeases {
  readonly #leases = new Map<string, Lease>();
  /** Block size of leases given back for idleness in the last RECENT_MS, by token id. */
  readonly #recent = new Map<string, { size: number; at: number; remaining: number | null }>();
  readonly #views = new TokenViews();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly counter: CallCounter,
    private readonly opts: LeaseOptions,
    private readonly quotas?: QuotaDeps,
  ) {}

  start(): void {
    this.#timer = setInterval(() => void this.#returnIdle(), Math.max(50, this.opts.idleMs / 2));
    this.#timer.unref();
  }

  /** Calls leased here from a subject's window and not used yet (GetQuota). */
  unusedInWindow(subject: string, windowKey: string): number {
    let n = 0;
    for (const lease of this.#leases.values()) {
      if (lease.quota?.subject === subject && lease.quota.windows.some((w) => w.key === windowKey)) n += lease.left;
    }
    return n;
  }

  /** Tokens with a lease here, and the leased calls not used yet (for metrics). */
  stats(): { tokens: number; calls: number } {
    let calls = 0;
    for (const lease of this.#leases.values()) calls += lease.left;
    return { tokens: this.#leases.size, calls };
  }

  /**
   * Takes one call; undefined when the database refused (exhausted, revoked or expired). From a
   * lease with calls left it answers at once, without a promise (issue 22: most calls).
   */
  take(meta: TokenMeta): Taken | Promise<Taken | undefined> {
    const lease = this.#leases.get(meta.id);
    const now = Date.now();
    // Expiry too, as the counting statement checks it: a call authenticated before the token
    // expired may reach its count after (its body was still arriving), and is refused then.
    if (lease && lease.left > 0 && lease.cap === (meta.maxCalls ?? null) && !(meta.expiresAtMs <= now)) {
      if (lease.planStamp === undefined && (meta.plan === undefined || this.quotas === undefined)) {
        lease.left--;
        lease.lastUse = now;
        return { callsLeft: lease.remaining === null ? null : lease.remaining + lease.left };
      }
      if (this.#current(lease, meta)) {
        lease.left--;
        lease.lastUse = now;
        return { callsLeft: lease.remaining === null ? null : lease.remaining + lease.left, quota: lease.quota };
      }
    }
    return this.#takeGranted(meta);
  }

  /** Whether a lease may serve a call of this token now: same cap, same plan version, windows not ended. */
  #current(lease: Lease, meta: TokenMeta): boolean {
    if (lease.cap !== (meta.maxCalls ?? null)) return false;
    const q = this.quotas;
    if (q === undefined) return true;
    if (q.stamp(meta) !== lease.planStamp) return false;
    return lease.quota === undefined || q.now() < lease.quota.endsAt;
  }

  /** Takes one call once a lease was granted (several requests for one token share the statement). */
  async #takeGranted(meta: TokenMeta): Promise<Taken | undefined> {
    for (;;) {
      // Expired by this instance's clock: refused here, not granted again and again by a
      // database whose clock is a little behind (its statement checks expiry by its own).
      if (meta.expiresAtMs <= Date.now()) return undefined;
      let lease = this.#leases.get(meta.id);
      // A block of windows that ended, or granted under another version of the plan (a call
      // limit added or changed), serves no more calls: what is left goes back where it came from.
      if (lease && !lease.pending && !this.#current(lease, meta)) {
        this.#leases.delete(meta.id);
        if (lease.left > 0) void this.#refund(meta.id, lease.left, lease.quota).catch(() => {});
        lease = undefined;
      }
      if (lease && lease.left > 0 && this.#current(lease, meta)) {
        lease.left--;
        lease.lastUse = Date.now();
        return { callsLeft: lease.remaining === null ? null : lease.remaining + lease.left, quota: lease.quota };
      }
      if (!lease) {
        // Granted at 0 (long ago): the first block is half the last one (see RECENT_MS).
        const recent = this.#recent.get(meta.id);
        this.#recent.delete(meta.id);
        const warm = recent !== undefined && Date.now() - recent.at < RECENT_MS ? recent : undefined;
        // `remaining` as last seen keeps the first block within an eighth of what the cap has left.
        lease = {
          left: 0,
          size: warm?.size ?? 0,
          grantedAt: 0,
          lastUse: Date.now(),
          remaining: warm?.remaining ?? null,
          quota: undefined,
          windowRemaining: null,
          planStamp: undefined,
          cap: meta.maxCalls ?? null,
          pending: undefined,
        };
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
  async giveBack(meta: TokenMeta, taken?: Taken): Promise<void> {
    await this.#refund(meta.id, 1, taken?.quota);
  }

  /**
   * The token's row as this instance sees it, read from the database at most once a second:
   * `used` is the calls served (the database's count minus this instance's unused lease), so
   * `max_calls - used` is the calls left, exact on this instance (src/tokens/token-views.ts).
   */
  async view(id: string, load: (id: string) => Promise<TokenRow | undefined>): Promise<TokenRow | undefined> {
    const v = await this.#views.get(id, load);
    if (v.row === undefined) return undefined;
    const unused = (this.#leases.get(id)?.left ?? 0) + this.#views.credit(id);
    return { ...v.row, used: Math.max(0, v.dbUsed - unused) };
  }

  /**
   * Drops a token's lease (the token was revoked): its calls are not given back to the token,
   * but a plan's windows get theirs, or the subject would lose them for the rest of the window.
   */
  drop(id: string): void {
    const lease = this.#leases.get(id);
    if (lease?.quota && lease.left > 0 && !lease.pending) void this.#refund(id, lease.left, lease.quota).catch(() => {});
    this.#leases.delete(id);
    this.#recent.delete(id);
    this.#views.drop(id);
  }

  /** Gives every unused call back; on shutdown. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await Promise.all([...this.#leases.keys()].map((id) => this.#giveBackAll(id)));
  }

  async #grant(meta: TokenMeta, lease: Lease): Promise<boolean> {
    // The view learns the database's new count in the same turn as the lease grows, so no
    // IntrospectToken answer sees one without the other.
    this.#views.changeStarted(meta.id);
    let used: number | undefined;
    try {
      const now = Date.now();
      let size = lease.size === 0 ? 1 : now - lease.grantedAt < LEASE_WINDOW_MS ? lease.size * 2 : Math.ceil(lease.size / 2);
      size = Math.min(size, this.opts.maxLease);
      if (lease.remaining !== null) size = Math.max(1, Math.min(size, Math.floor(lease.remaining / 8)));
      const stamp = this.quotas?.stamp(meta);
      const quota = this.quotas?.of(meta);
      lease.planStamp = stamp;
      lease.cap = meta.maxCalls ?? null;
      if (quota === undefined) {
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
        lease.remaining = remainingOf(result, meta);
        lease.quota = undefined;
        used = result.used;
        return true;
      }
      // Windows of another day than the lease's: the lease is empty here (take() returned what was left).
      if (lease.quota !== undefined && lease.quota.endsAt !== quota.endsAt) lease.windowRemaining = null;
      if (lease.windowRemaining !== null) size = Math.max(1, Math.min(size, Math.floor(lease.windowRemaining / 8)));
      let result = await this.counter.useWithQuota(meta, quota, size);
      if (!result.ok && size > 1) {
        size = 1;
        result = await this.counter.useWithQuota(meta, quota, 1);
      }
      if (!result.ok) {
        this.#leases.delete(meta.id);
        if (result.refused === "token") return false;
        throw this.quotas!.refused(quota, result.index);
      }
      lease.left += size;
      lease.size = size;
      lease.grantedAt = now;
      lease.remaining = remainingOf(result.token, meta);
      lease.quota = quota;
      lease.windowRemaining = Math.min(...quota.windows.map((w, i) => w.limit - result.calls[i]!));
      used = result.token.used;
      // Revoked while the block was being taken (drop() left the pending lease alone): the
      // subject's windows get the block back, as drop() gives them an idle one.
      if (this.#leases.get(meta.id) !== lease) {
        void this.#refund(meta.id, size, quota).catch(() => {});
        return false;
      }
      return true;
    } finally {
      this.#views.changeEnded(meta.id, 0, used);
    }
  }

  #use(meta: TokenMeta, n: number): Promise<UseResult | undefined> {
    return meta.sealed ? this.counter.useSealed(meta.sealed.firstRow, n) : this.counter.use(meta.id, n);
  }

  /** Gives `n` calls back in the database (and to the plan windows they came from); the view counts them as unused until it answers. */
  async #refund(id: string, n: number, quota?: CallQuota): Promise<void> {
    this.#views.changeStarted(id, n);
    let result: UseResult | undefined;
    try {
      result = quota === undefined ? await this.counter.refund(id, n) : await this.counter.refundWithQuota(id, quota, n);
    } finally {
      this.#views.changeEnded(id, n, result?.used);
    }
  }

  async #returnIdle(): Promise<void> {
    const now = Date.now();
    for (const [id, r] of this.#recent) if (now - r.at >= RECENT_MS) this.#recent.delete(id);
    const cutoff = now - this.opts.idleMs;
    for (const [id, lease] of this.#leases) {
      if (lease.pending || lease.lastUse > cutoff) continue;
      if (lease.size > 1) this.#recent.set(id, { size: lease.size, at: now, remaining: lease.remaining === null ? null : lease.remaining + lease.left });
      await this.#giveBackAll(id).catch(() => {});
    }
  }

  async #giveBackAll(id: string): Promise<void> {
    const lease = this.#leases.get(id);
    if (!lease || lease.pending) return;
    this.#leases.delete(id);
    if (lease.left > 0) await this.#refund(id, lease.left, lease.quota);
  }
}

/** Calls left under the row's cap and the token's own (a sealed token's claim may be the smaller); null: no cap. */
function remainingOf(row: UseResult, meta: TokenMeta): number | null {
  const max = capOf(row.maxCalls, meta);
  return max === null ? null : max - row.used;
}

/** The smaller of a token row's cap and the presented token's own (CallCounter.useSealed); null: neither caps. */
export function capOf(rowMax: number | null, meta: TokenMeta): number | null {
  const own = meta.maxCalls ?? null;
  return rowMax === null ? own : own === null ? rowMax : Math.min(rowMax, own);
}
