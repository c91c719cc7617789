/** Small numeric helpers for the bench: quantiles, medians, rounding. */

/** The q-quantile (0..1) of `values` (nearest rank on a sorted copy); NaN when empty. */
export function quantile(values: ArrayLike<number>, q: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

export function median(values: ArrayLike<number>): number {
  const finite = Array.from(values).filter(Number.isFinite);
  if (finite.length === 0) return NaN;
  const s = finite.sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function round(n: number, digits = 2): number {
  if (!Number.isFinite(n)) return n;
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** A growable Float64 buffer, so recording a sample in a hot loop does not allocate. */
export class Samples {
  #buf = new Float64Array(1 << 16);
  #n = 0;
  push(v: number): void {
    if (this.#n === this.#buf.length) {
      const next = new Float64Array(this.#buf.length * 2);
      next.set(this.#buf);
      this.#buf = next;
    }
    this.#buf[this.#n++] = v;
  }
  get length(): number {
    return this.#n;
  }
  values(): Float64Array {
    return this.#buf.subarray(0, this.#n);
  }
}
