/**
 * How in-memory views of shared rows (providers, pools, issuer keys) stay fresh across
 * instances: load once at start, then again every `ms`. A failed reload keeps the last good
 * view (the next one retries); the timer never keeps the process alive.
 */
export class PeriodicReload {
  #timer: NodeJS.Timeout | undefined;

  constructor(private readonly reload: () => Promise<void>) {}

  async start(ms: number): Promise<void> {
    await this.reload();
    if (ms > 0) {
      this.#timer = setInterval(() => void this.reload().catch(() => {}), ms);
      this.#timer.unref();
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
