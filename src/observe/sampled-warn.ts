/**
 * Warn lines under a rate (issue 19.5): at most `perWindow` lines per `windowMs`; past that
 * lines are counted, not written, and one line says how many were suppressed when the window
 * ends. Every 5xx the relay answers is worth a line, but a storm of them (a provider down, the
 * database gone, thousands of calls a second) must neither flood the log pipeline nor spend the
 * relay's CPU on formatting.
 */
import type { Fields, Logger } from "../log.js";

export class SampledWarn {
  #windowStart = 0;
  #written = 0;
  #suppressed = 0;
  #suppressedMsg = "";
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: Logger,
    private readonly perWindow = 10,
    private readonly windowMs = 1000,
  ) {}

  warn(msg: string, fields: Fields): void {
    const now = Date.now();
    if (now - this.#windowStart >= this.windowMs) {
      this.#windowStart = now;
      this.#written = 0;
    }
    if (this.#written < this.perWindow) {
      this.#written++;
      this.log.warn(msg, fields);
      return;
    }
    this.#suppressed++;
    this.#suppressedMsg = msg;
    // One timer per window with suppressions: the count is told even if no line follows.
    this.#timer ??= setTimeout(() => this.#flush(), Math.max(1, this.windowMs - (now - this.#windowStart)));
    this.#timer.unref();
  }

  /** Tells what is still untold. */
  close(): void {
    clearTimeout(this.#timer);
    this.#flush();
  }

  #flush(): void {
    this.#timer = undefined;
    if (this.#suppressed === 0) return;
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    // A fresh window starts with the summary, so the next line is written whenever it comes.
    this.#windowStart = Date.now();
    this.#written = 0;
    this.log.warn(`${this.#suppressedMsg} lines suppressed`, { suppressed, windowMs: this.windowMs, perWindow: this.perWindow });
  }
}
