/**
 * The plans as every call reads them (issue 24): all rows of `plans` in memory, reloaded every
 * second so an admin's change reaches every instance and worker within a second (the same rule
 * as providers and pools, src/periodic-reload.ts). Plans are few; the whole table is one read.
 */
import type { Db } from "../db/client.js";
import { listPlans } from "../db/queries/plans.js";
import type { PlanRow } from "../db/schema/index.js";
import { PeriodicReload } from "../periodic-reload.js";

/** A plan as the check path reads it: models as a Set. */
export interface Plan extends Omit<PlanRow, "models"> {
  models: ReadonlySet<string>;
}

export class PlanStore {
  #plans = new Map<string, Plan>();
  readonly #refresh = new PeriodicReload(() => this.reload());

  constructor(private readonly db: Db) {}

  /** Loads the plans, then reloads them every `ms` (0: never again). */
  start(ms = 1000): Promise<void> {
    return this.#refresh.start(ms);
  }

  stop(): void {
    this.#refresh.stop();
  }

  async reload(): Promise<void> {
    const rows = await listPlans(this.db);
    this.#plans = new Map(rows.map((r) => [r.name, { ...r, models: new Set(r.models) }]));
  }

  get(name: string): Plan | undefined {
    return this.#plans.get(name);
  }
}
