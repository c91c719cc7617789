// Issue 21.10: usage chart axes show dates when the window crosses midnight (console/src/chart.ts).
import { expect, it } from "vitest";
import { spansDays } from "../console/src/chart.js";

const at = (day: number, hour: number) => new Date(2026, 0, day, hour);

it("labels need the date exactly when the buckets span two local days", () => {
  const hourly = (fromDay: number, fromHour: number, n: number) => Array.from({ length: n }, (_, i) => at(fromDay, fromHour + i));
  expect(spansDays(hourly(5, 0, 24))).toBe(false); // 00:00 to 23:00 the same day
  expect(spansDays(hourly(5, 14, 24))).toBe(true); // a 24 h window from 14:00 crosses midnight
  expect(spansDays(hourly(5, 22, 3))).toBe(true); // three hours across midnight
  expect(spansDays([at(31, 12), new Date(2026, 1, 1, 12)])).toBe(true); // month change
  expect(spansDays([at(5, 1)])).toBe(false);
  expect(spansDays([])).toBe(false);
});
