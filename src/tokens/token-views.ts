/**
 * What IntrospectToken shows of a token, from memory (issue 22, item 4): the token's row read
 * at most once per `ttlMs` per token, and the database's `used` kept current by the counting
 * statements this instance runs anyway (every lease grant and refund returns the new count).
 * CallLeases adds its own unused leased calls on top, so on the answering instance:
 *
 *   calls left = max_calls - used in the database + calls this instance leased and not used
 *
 * which is exact for a single instance (the database counts a leased block as used when it is
 * taken). On several instances the answer is lower by the blocks the *other* instances hold
 * unused (at most `leaseMax` each, given back after `leaseIdleMs` idle) and sees their calls
 * within `ttlMs`; it never shows more calls than the cap allows. `tokens_used` (budgets) and
 * `last_used_at` are those of the last read, at most `ttlMs` old.
 *
 * A read that overlaps a counting statement of this instance for the same token may or may
 * not include it, so it is read again (a few times at most) rather than trusted; two counting
 * statements in flight at once for one token (a grant beside a refund) may return their counts
 * out of order, so the view is dropped and read again at the next call.
 */
import type { TokenRow } from "../db/schema/index.js";

/** How old a view's row may be: the same second revocation and other instances' counts take. */
export const VIEW_TTL_MS = 1000;
const MAX_VIEWS = 50_000;
const READ_ATTEMPTS = 3;

export interface TokenView {
  /** The row as last read (undefined: no such row, e.g. a sealed token before its first use). */
  row: TokenRow | undefined;
  /** `used` in the database as this instance last knew it. */
  dbUsed: number;
  until: number;
}

interface Change {
  inFlight: number;
  overlapped: boolean;
  /** Calls being given back by the statements in flight (still counted as used in the database). */
  credit: number;
}

export class TokenViews {
  readonly #views = new Map<string, TokenView>();
  readonly #changes = new Map<string, Change>();
  readonly #reads = new Map<string, Promise<TokenView>>();
  /** Tokens whose read in flight overlapped a counting statement. */
  readonly #overlappedReads = new Set<string>();

  constructor(private readonly ttlMs: number = VIEW_TTL_MS) {}

  /** The token's view: from memory while fresh, else one read shared by concurrent callers. */
  async get(id: string, load: (id: string) => Promise<TokenRow | undefined>): Promise<TokenView> {
    const v = this.#views.get(id);
    if (v && v.until > Date.now()) return v;
    let read = this.#reads.get(id);
    if (!read) {
      read = this.#read(id, load).finally(() => {
        this.#reads.delete(id);
        this.#overlappedReads.delete(id);
      });
      this.#reads.set(id, read);
    }
    return read;
  }

  async #read(id: string, load: (id: string) => Promise<TokenRow | undefined>): Promise<TokenView> {
    for (let attempt = 1; ; attempt++) {
      this.#overlappedReads.delete(id);
      const busy = this.#changes.has(id);
      const row = await load(id);
      const view: TokenView = { row, dbUsed: row?.used ?? 0, until: Date.now() + this.ttlMs };
      const clean = !busy && !this.#overlappedReads.has(id);
      if (clean) {
        if (this.#views.size >= MAX_VIEWS) this.#views.clear();
        this.#views.set(id, view);
      }
      // After a few overlapped reads (a token counted without pause), answer with the last one,
      // uncached: off by at most the block in flight, for this one answer.
      if (clean || attempt >= READ_ATTEMPTS) return view;
    }
  }

  /** Calls being given back right now (counted as used in the database until the statement ends). */
  credit(id: string): number {
    return this.#changes.get(id)?.credit ?? 0;
  }

  /** A statement changing the token's `used` starts (`credit`: the calls it gives back). */
  changeStarted(id: string, credit = 0): void {
    let c = this.#changes.get(id);
    if (!c) this.#changes.set(id, (c = { inFlight: 0, overlapped: false, credit: 0 }));
    if (c.inFlight > 0) c.overlapped = true;
    c.inFlight++;
    c.credit += credit;
    if (this.#reads.has(id)) this.#overlappedReads.add(id);
  }

  /** It ended with the database's new `used` (undefined: refused or failed, the count unknown). */
  changeEnded(id: string, credit: number, used: number | undefined): void {
    const c = this.#changes.get(id);
    if (!c) return;
    c.inFlight--;
    c.credit -= credit;
    if (this.#reads.has(id)) this.#overlappedReads.add(id);
    if (c.inFlight > 0) return;
    this.#changes.delete(id);
    const v = this.#views.get(id);
    if (!v) return;
    if (!c.overlapped && used !== undefined && v.row !== undefined) v.dbUsed = used;
    else this.#views.delete(id); // read again at the next call
  }

  /** Forgets a token's view (revoked, or its lease refused). */
  drop(id: string): void {
    this.#views.delete(id);
    if (this.#reads.has(id)) this.#overlappedReads.add(id); // a read begun before is read again
  }
}
