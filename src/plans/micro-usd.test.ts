/** Dollars to micro-dollars on the digits, never through a float (1.005 * 1e6 is not 1005000 in IEEE doubles). */
import { describe, expect, it } from "vitest";
import { microToUsd, usdToMicro } from "./micro-usd.js";

describe("usdToMicro / microToUsd", () => {
  it("converts exactly, where floating point would not", () => {
    expect(Number("1.005") * 1e6).not.toBe(1_005_000);
    expect(usdToMicro("1.005")).toBe(1_005_000);
    expect(usdToMicro("0.29")).toBe(290_000);
    expect(usdToMicro("0.25")).toBe(250_000);
    expect(usdToMicro("1")).toBe(1_000_000);
    expect(usdToMicro("1.")).toBe(1_000_000);
    expect(usdToMicro(".5")).toBe(500_000);
    expect(usdToMicro("0.000001")).toBe(1);
    expect(usdToMicro("123456789.123456")).toBe(123_456_789_123_456);
    expect(usdToMicro(" 2.50 ")).toBe(2_500_000);
  });

  it("refuses what is not a plain non-negative amount with at most 6 decimals", () => {
    for (const bad of ["", ".", "-1", "1e3", "0.0000001", "1,5", "$1", "NaN", "Infinity", "0x10", "1234567890"]) expect(usdToMicro(bad), bad).toBeUndefined();
  });

  it("prints micro-dollars back exactly, with at least two decimals", () => {
    expect(microToUsd(250_000)).toBe("0.25");
    expect(microToUsd(1)).toBe("0.000001");
    expect(microToUsd(3_000_000)).toBe("3.00");
    expect(microToUsd(290_000n)).toBe("0.29");
    for (const micro of [0, 1, 99, 290_000, 123_456_789_123_456]) expect(usdToMicro(microToUsd(micro))).toBe(micro);
  });
});
