import { describe, expect, it } from "vitest";
import { QuotaClock, validTimeZone } from "./quota-windows.js";

describe("QuotaClock", () => {
  it("keys and ends the UTC day and month", () => {
    const w = new QuotaClock("UTC").windowsAt(Date.parse("2026-12-31T23:59:59.999Z"));
    expect(w.day).toEqual({ period: "day", key: "2026-12-31", endsAt: Date.parse("2027-01-01T00:00:00Z") });
    expect(w.month).toEqual({ period: "month", key: "2026-12", endsAt: Date.parse("2027-01-01T00:00:00Z") });
    expect(new QuotaClock("UTC").windowsAt(Date.parse("2027-01-01T00:00:00Z")).day.key).toBe("2027-01-01");
  });

  it("reads UTC without Intl exactly as Intl reads it (leap days, month and year ends)", () => {
    // "Etc/UTC" takes the Intl path; "UTC" the Date one.
    const plain = new QuotaClock("UTC");
    const intl = new QuotaClock("Etc/UTC");
    const starts = [Date.UTC(2024, 1, 28, 23, 59, 59), Date.UTC(2024, 11, 31, 23, 0, 0), Date.UTC(2025, 0, 1, 0, 0, 0), Date.UTC(1999, 11, 31, 12)];
    for (let i = 0; i < 200; i++) starts.push(Date.UTC(2000, 0, 1) + Math.floor((((i * 7919) % 1000) / 1000) * 40 * 365.25 * 86_400_000) + i * 3_600_001);
    for (const at of starts) expect(plain.windowsAt(at)).toEqual(intl.windowsAt(at));
  });

  it("counts days in the configured zone", () => {
    const tokyo = new QuotaClock("Asia/Tokyo");
    // 2026-12-06 15:30 UTC is 2026-12-07 00:30 in Tokyo (UTC+9).
    const w = tokyo.windowsAt(Date.parse("2026-12-06T15:30:00Z"));
    expect(w.day.key).toBe("2026-12-07");
    expect(w.day.endsAt).toBe(Date.parse("2026-12-07T15:00:00Z"));
    expect(w.month.endsAt).toBe(Date.parse("2026-12-31T15:00:00Z"));
  });

  it("follows daylight saving: a 23-hour and a 25-hour day", () => {
    const ny = new QuotaClock("America/New_York");
    // 2026-03-08: clocks spring forward at 02:00; the day is 23 hours long.
    const spring = ny.windowsAt(Date.parse("2026-03-08T12:00:00Z"));
    expect(spring.day.key).toBe("2026-03-08");
    expect(spring.day.endsAt).toBe(Date.parse("2026-03-09T04:00:00Z"));
    const before = ny.windowsAt(Date.parse("2026-03-07T12:00:00Z"));
    expect(before.day.endsAt).toBe(Date.parse("2026-03-08T05:00:00Z"));
    // 2026-11-01: clocks fall back; the day is 25 hours long.
    const fall = ny.windowsAt(Date.parse("2026-11-01T12:00:00Z"));
    expect(fall.day.endsAt - ny.windowsAt(Date.parse("2026-10-31T12:00:00Z")).day.endsAt).toBe(25 * 3_600_000);
  });

  it("caches the current windows until the day ends, then moves on", () => {
    let now = Date.parse("2026-12-06T23:59:59Z");
    const clock = new QuotaClock("UTC", () => now);
    const first = clock.windows();
    expect(clock.windows()).toBe(first);
    now = Date.parse("2026-12-07T00:00:00Z");
    expect(clock.windows().day.key).toBe("2026-12-07");
  });

  it("validates zone names", () => {
    expect(validTimeZone("Europe/Berlin")).toBe("Europe/Berlin");
    expect(validTimeZone("Mars/Olympus")).toBeUndefined();
  });
});
