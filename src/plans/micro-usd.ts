/**
 * Dollars as people type them ("0.25") and micro-dollars as the relay counts them (250000),
 * converted on the decimal digits, never through a float: 1.005 * 1e6 is 1004999.9999999999 in
 * IEEE doubles, and a budget must not lose a micro-dollar to that. Browser-safe (the console's
 * forms and the CLI's flags both use it).
 */

/** Micro-dollars in one dollar. */
export const MICRO_PER_USD = 1_000_000;

const DOLLARS = /^(\d{1,9})(?:\.(\d{0,6}))?$|^\.(\d{1,6})$/;

/** `"0.25"` -> 250000; undefined for anything but a non-negative amount with at most 6 decimals. */
export function usdToMicro(raw: string): number | undefined {
  const m = DOLLARS.exec(raw.trim());
  if (!m) return undefined;
  const whole = m[1] ?? "0";
  const fraction = (m[2] ?? m[3] ?? "").padEnd(6, "0");
  return Number(whole) * MICRO_PER_USD + Number(fraction);
}

/** 250000 -> `"0.25"`, 1 -> `"0.000001"`, 3000000 -> `"3.00"`: exact, at least two decimals. */
export function microToUsd(micro: number | bigint): string {
  const n = BigInt(micro);
  const sign = n < 0n ? "-" : "";
  const abs = n < 0n ? -n : n;
  const whole = abs / 1_000_000n;
  const fraction = (abs % 1_000_000n).toString().padStart(6, "0").replace(/0+$/, "").padEnd(2, "0");
  return `${sign}${whole}.${fraction}`;
}
