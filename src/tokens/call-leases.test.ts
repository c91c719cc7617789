/**
 * Lease sizes across an idle return (issue 22): a token that calls again soon after its lease
 * was given back for idleness starts from half its last block, so a client calling in bursts
 * does not pay a counting statement (a database round trip before its first byte) on the 1st,
 * 2nd, 4th... call of every burst; the block still keeps within an eighth of the cap's rest.
 */
import { drizzle } from "drizzle-orm/postgres-js";
import { afterEach, describe, expect, it } from "vitest";
import { CallCounter } from "../db/queries/call-counter.js";
import type { UseResult } from "../db/queries/tokens.js";
import * as schema from "../db/schema/index.js";
import { CallLeases } from "./call-leases.js";
import type { TokenMeta } from "./token-meta.js";

/** Counts in memory what the database would; records the block each statement asked for. */
class FakeCounter extends CallCounter {
  used = 0;
  readonly asked: number[] = [];
  constructor(private readonly maxCalls: number | null) {
    super(drizzle.mock({ schema }));
  }
  override async use(_id: string, n: number): Promise<UseResult | undefined> {
    this.asked.push(n);
    if (this.maxCalls !== null && this.used + n > this.maxCalls) return undefined;
    this.used += n;
    return { used: this.used, maxCalls: this.maxCalls };
  }
  override async refund(_id: string, n: number): Promise<UseResult | undefined> {
    this.used -= n;
    return { used: this.used, maxCalls: this.maxCalls };
  }
}

const meta = { id: "tok_lease", sealed: undefined } as unknown as TokenMeta;
const IDLE_MS = 60;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("call leases after an idle return", () => {
  let leases: CallLeases | undefined;
  afterEach(async () => {
    await leases?.close();
  });

  async function burst(counter: FakeCounter, calls: number): Promise<void> {
    leases ??= new CallLeases(counter, { maxLease: 64, idleMs: IDLE_MS });
    for (let i = 0; i < calls; i++) expect(await leases.take(meta)).toBeDefined();
  }

  it("starts the next burst from half the last block, not from one call", async () => {
    const counter = new FakeCounter(null);
    leases = new CallLeases(counter, { maxLease: 64, idleMs: IDLE_MS });
    leases.start();
    await burst(counter, 31); // blocks of 1, 2, 4, 8, 16
    expect(counter.asked).toEqual([1, 2, 4, 8, 16]);
    await sleep(IDLE_MS * 4); // given back for idleness
    expect(leases.stats().calls).toBe(0);
    expect(counter.used).toBe(31);
    counter.asked.length = 0;
    await burst(counter, 8);
    expect(counter.asked).toEqual([8]);
    expect(counter.used).toBe(31 + 8);
  });

  it("keeps the first block of a burst within the cap when other instances used it meanwhile", async () => {
    const counter = new FakeCounter(100);
    leases = new CallLeases(counter, { maxLease: 64, idleMs: IDLE_MS });
    leases.start();
    // Blocks of 1, 2, 4, 8, then an eighth of what is left: 10 and 9 (66 left, 3 unused).
    await burst(counter, 31);
    expect(counter.asked).toEqual([1, 2, 4, 8, 10, 9]);
    await sleep(IDLE_MS * 4);
    expect(counter.used).toBe(31);
    counter.used = 98; // other instances took 67 calls meanwhile
    counter.asked.length = 0;
    await burst(counter, 2);
    // Half the last block (5) no longer fits: one call at a time, never past the cap.
    expect(counter.asked).toEqual([5, 1, 1]);
    expect(counter.used).toBe(100);
    expect(await leases.take(meta)).toBeUndefined();
  });

  it("starts from one call for a token seen for the first time", async () => {
    const counter = new FakeCounter(null);
    leases = new CallLeases(counter, { maxLease: 64, idleMs: IDLE_MS });
    await burst(counter, 1);
    expect(counter.asked).toEqual([1]);
  });
});

describe("a plan token revoked while its block is being taken", () => {
  it("gives the block back to the subject's windows (they would lose it for the rest of the window)", async () => {
    let release: () => void = () => {};
    const windowCalls = { day: 0 };
    const counter = new (class extends FakeCounter {
      override async useWithQuota(_meta: unknown, _quota: unknown, n: number) {
        await new Promise<void>((r) => (release = r));
        windowCalls.day += n;
        return { ok: true as const, token: { used: n, maxCalls: null }, calls: [windowCalls.day] };
      }
      override async refundWithQuota(_id: string, _quota: unknown, n: number) {
        windowCalls.day -= n;
        return { used: 0, maxCalls: null };
      }
    })(null);
    const quota = {
      subject: "s",
      windows: [{ period: "day" as const, key: "2026-12-06", endsAt: Date.now() + 3_600_000, limit: 100 }],
      endsAt: Date.now() + 3_600_000,
    };
    const planned = { ...meta, plan: "p" } as TokenMeta;
    const leases = new CallLeases(
      counter,
      { maxLease: 64, idleMs: IDLE_MS },
      { of: () => quota, refused: () => new Error("refused"), stamp: () => 1, now: Date.now },
    );
    const taking = leases.take(planned);
    await sleep(5);
    leases.drop(planned.id);
    release();
    expect(await taking).toBeUndefined();
    await sleep(5);
    expect(windowCalls.day).toBe(0);
  });
});
