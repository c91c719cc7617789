/**
 * The database's state as this instance sees it (issue 19.4 and 19.5): up or down, with one
 * log line per transition, `database down` (what failed, the error in words) and `database
 * recovered` (how long it was down, how many failures were seen meanwhile).
 *
 * Kept simple on purpose: the state is derived from what already happens, requests answered
 * `database_unavailable` and readiness checks (/readyz, and each scrape's `relayapi_ready`);
 * nothing polls while the database is up. Once it is down, a ping every `probeMs` notices the
 * recovery even when no request or probe comes (a quiet instance would otherwise stay "down").
 *
 * Metrics: `relayapi_database_up` (1/0) and `relayapi_database_errors_total{source}`
 * (`request`: an answer the relay gave with database_unavailable; `readiness`: a failed check).
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { Logger } from "../log.js";
import { isTransactionConflict } from "../db/db-errors.js";

export type DatabaseErrorSource = "request" | "readiness";

export interface DatabaseHealthOptions {
  log: Logger;
  /** Throws while the database does not answer. */
  ping(): Promise<void>;
  /** Recovery probe period while down. */
  probeMs?: number;
  /** Where the metrics go; none in unit tests. */
  registry?: Registry;
}

const PROBE_MS = 1000;
/** A ping to a stalled database must not keep the probe waiting forever. */
const PING_TIMEOUT_MS = 2000;

export class DatabaseHealth {
  readonly #opts: DatabaseHealthOptions;
  readonly #errors: Counter<"source"> | undefined;
  #up = true;
  #downSince = 0;
  #failuresWhileDown = 0;
  #probe: NodeJS.Timeout | undefined;
  #probing = false;

  constructor(opts: DatabaseHealthOptions) {
    this.#opts = opts;
    if (opts.registry === undefined) return;
    const registers = [opts.registry];
    this.#errors = new Counter({
      name: "relayapi_database_errors_total",
      help: "Database failures seen: request (an answer given as database_unavailable), readiness (a failed /readyz or scrape check).",
      labelNames: ["source"] as const,
      registers,
    });
    for (const source of ["request", "readiness"] as const) this.#errors.inc({ source }, 0);
    const isUp = (): boolean => this.#up;
    new Gauge({
      name: "relayapi_database_up",
      help: "1 while the database answers as this instance last saw it; 0 from a failure until a ping succeeds.",
      registers,
      collect() {
        this.set(isUp() ? 1 : 0);
      },
    });
  }

  get up(): boolean {
    return this.#up;
  }

  /** A database failure on a request or a readiness check. */
  failed(source: DatabaseErrorSource, err: unknown): void {
    this.#errors?.inc({ source });
    // The database answered: a transaction lost to another (counted, not an outage).
    if (isTransactionConflict(err)) return;
    if (!this.#up) {
      this.#failuresWhileDown++;
      return;
    }
    this.#up = false;
    this.#downSince = Date.now();
    this.#failuresWhileDown = 1;
    this.#opts.log.warn("database down", { source, err });
    this.#probe = setInterval(() => void this.#ping(), this.#opts.probeMs ?? PROBE_MS);
    this.#probe.unref();
  }

  /** The database answered. */
  ok(): void {
    if (this.#up) return;
    this.#up = true;
    clearInterval(this.#probe);
    this.#probe = undefined;
    this.#opts.log.warn("database recovered", { downMs: Date.now() - this.#downSince, errors: this.#failuresWhileDown });
  }

  /** `check` through this tracker: its outcome updates the state. */
  async watch<T>(check: Promise<T>, source: DatabaseErrorSource): Promise<T> {
    try {
      const v = await check;
      this.ok();
      return v;
    } catch (e) {
      this.failed(source, e);
      throw e;
    }
  }

  close(): void {
    clearInterval(this.#probe);
    this.#probe = undefined;
  }

  async #ping(): Promise<void> {
    if (this.#probing) return;
    this.#probing = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([this.#opts.ping(), new Promise((_, reject) => (timer = setTimeout(reject, PING_TIMEOUT_MS, new Error("ping timed out"))))]);
      this.ok();
    } catch {
      // Still down: probe failures are not counted (one a second would drown the real ones).
    } finally {
      clearTimeout(timer);
      this.#probing = false;
    }
  }
}
