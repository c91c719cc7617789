/**
 * Calendar windows of plan quotas (issue 24): the day and the month a moment falls in, in the
 * relay's quota time zone (RELAYAPI_QUOTA_TZ, UTC by default), each with its key (`2026-12-06`,
 * `2026-12`: the `window` of its quota_counters row) and the instant it ends (the next local
 * midnight, the 1st of the next month), daylight-saving changes included.
 *
 * The hot path asks for the current windows on every call of a plan token: they are computed
 * once and kept until the day ends, so a call costs one clock read and one comparison.
 */

export interface QuotaWindow {
  /** `day` or `month`. */
  period: "day" | "month";
  /** The quota_counters `window` key. */
  key: string;
  /** When the window ends (epoch ms): the next one starts here. */
  endsAt: number;
}

export interface Windows {
  day: QuotaWindow;
  month: QuotaWindow;
}

/** Checks a time zone name; undefined when Intl does not know it. */
export function validTimeZone(tz: string): string | undefined {
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone: tz }).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
}

export class QuotaClock {
  /**
   * Made on first use, and only for a zone other than UTC: the first Intl.DateTimeFormat of a
   * process maps ICU's time zone data, ~6.5 MB of the relay's RSS (issue 22), which the default
   * zone does without.
   */
  #format: Intl.DateTimeFormat | undefined;
  #current: Windows | undefined;

  constructor(
    readonly timeZone = "UTC",
    /** The clock; tests pass their own to cross midnight without waiting for it. */
    readonly now: () => number = Date.now,
  ) {}

  /** The windows the present moment falls in. */
  windows(): Windows {
    const now = this.now();
    const cur = this.#current;
    if (cur !== undefined && now < cur.day.endsAt && now >= cur.day.endsAt - 26 * 3_600_000) return cur;
    this.#current = this.windowsAt(now);
    return this.#current;
  }

  /** The windows of any moment. */
  windowsAt(ms: number): Windows {
    const { y, m, d } = this.#local(ms);
    const nextDay = this.#startOfLocalDay(y, m, d + 1);
    const nextMonth = this.#startOfLocalDay(y, m + 1, 1);
    const mm = String(m).padStart(2, "0");
    return {
      day: { period: "day", key: `${y}-${mm}-${String(d).padStart(2, "0")}`, endsAt: nextDay },
      month: { period: "month", key: `${y}-${mm}`, endsAt: nextMonth },
    };
  }

  /** Local calendar fields of an instant. */
  #local(ms: number): { y: number; m: number; d: number; h: number; min: number; s: number } {
    if (this.timeZone === "UTC") {
      const t = new Date(ms);
      return { y: t.getUTCFullYear(), m: t.getUTCMonth() + 1, d: t.getUTCDate(), h: t.getUTCHours(), min: t.getUTCMinutes(), s: t.getUTCSeconds() };
    }
    this.#format ??= new Intl.DateTimeFormat("en-US", {
      timeZone: this.timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    });
    const parts: Record<string, number> = {};
    for (const p of this.#format.formatToParts(ms)) if (p.type !== "literal") parts[p.type] = Number(p.value);
    return { y: parts.year!, m: parts.month!, d: parts.day!, h: parts.hour!, min: parts.minute!, s: parts.second! };
  }

  /** The zone's offset from UTC at an instant, in ms (local time minus UTC). */
  #offset(ms: number): number {
    const l = this.#local(ms);
    const asUtc = Date.UTC(l.y, l.m - 1, l.d, l.h, l.min, l.s);
    return asUtc - Math.floor(ms / 1000) * 1000;
  }

  /**
   * The instant local midnight starts the day `y-m-d` (fields may overflow: day 32, month 13).
   * Found by correcting a UTC guess with the zone's offset twice (once more across a DST change).
   * A zone whose clocks skip midnight itself starts that day at the first instant after the gap.
   */
  #startOfLocalDay(y: number, m: number, d: number): number {
    const wall = Date.UTC(y, m - 1, d);
    let t = wall - this.#offset(wall);
    t = wall - this.#offset(t);
    // Midnight fell in a gap (clocks sprang forward over it): the day starts where the gap ends.
    const l = this.#local(t);
    const want = new Date(wall);
    if (l.d !== want.getUTCDate()) t += 3_600_000;
    return t;
  }
}
