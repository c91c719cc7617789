/**
 * The models one pool key rests for (DESIGN 8, issue 17): after a 403 or 429 the key is not
 * used for that model until the rest ends, and still serves every other model. In memory, per
 * instance, and bounded: past MAX_RESTS models at once, the oldest rests end early.
 */
const MAX_RESTS = 256;

export class ModelRests {
  /** Model ("" for calls that name none) -> end of its rest, epoch ms; oldest rest first. */
  readonly #until = new Map<string, number>();

  /** Resting for `model` at `now`. */
  has(model: string | undefined, now: number): boolean {
    return this.#until.size > 0 && (this.#until.get(model ?? "") ?? 0) > now;
  }

  /** Milliseconds left of the rest for `model`; 0 when it is not resting. */
  left(model: string | undefined, now: number): number {
    return Math.max(0, (this.#until.get(model ?? "") ?? 0) - now);
  }

  /** True while the key rests for some model. */
  any(now: number): boolean {
    for (const until of this.#until.values()) if (until > now) return true;
    return false;
  }

  /** Rests `model` until `until` (a longer rest stays); true when this began a rest. */
  add(model: string | undefined, until: number, now: number): boolean {
    const name = model ?? "";
    const was = this.#until.get(name) ?? 0;
    if (until <= was) return false;
    this.#until.delete(name); // set again below, as the newest
    this.#until.set(name, until);
    if (this.#until.size > MAX_RESTS) this.#trim(now);
    return was <= now;
  }

  /** Drops ended rests, then the oldest, down to MAX_RESTS. */
  #trim(now: number): void {
    for (const [model, until] of this.#until) if (until <= now) this.#until.delete(model);
    for (const model of this.#until.keys()) {
      if (this.#until.size <= MAX_RESTS) break;
      this.#until.delete(model);
    }
  }
}
