/**
 * How in-memory views of shared rows (providers, pools, issuer keys) stay fresh across
 * instances: load once at start, then again every `ms`. A failed reload keeps the last good
 * view (the next one retries); the timer never keeps the process alive. A reload still running
 * when the next is due is not doubled: behind a stalled or locked database, overlapping polls
 * would take every pooled connection and starve the requests (issue 19).
 */
export class PeriodicReload {
  #timer: NodeJS.Timeout | undefined;
  #running = false;

  constructor(private readonly reload: () => Promise<void>) {}

  async start(ms: number): Promise<void> {
    await this.reload();
    if (ms > 0) {
      this.#timer = setInterval(() => void this.#once(), ms);
      this.#timer.unref();
    }
  }

  async #once(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      await this.reload();
    } catch {
      // The last good view stays; the next tick retries.
    } finally {
      this.#running = false;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
