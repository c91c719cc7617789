/**
 * `/healthz`: the process answers. `/readyz`: the relay can serve calls, that is the database
 * answers, has every migration this build ships (counted once at start from the journal), and
 * Redis answers when one is configured. Not ready is a 503 with the first failing reason and
 * every check's state; each check is bounded by a timeout so a hung dependency cannot hang the
 * probe.
 */
import type { AnyResponse } from "./render-error.js";
import { sendJson } from "./render-error.js";

export function healthz(res: AnyResponse): void {
  sendJson(res, 200, { status: "ok" });
}

export interface ReadinessDeps {
  /** Throws when the database does not answer. */
  pingDatabase(): Promise<void>;
  /** Migrations the database has applied. */
  appliedMigrations(): Promise<number>;
  /** Migrations this build ships. */
  expectedMigrations: number;
  /** Redis answers (true when none is configured). */
  pingRedis(): Promise<boolean>;
  redisConfigured: boolean;
  /** True once shutdown began: the balancer should send no more calls. */
  stopping(): boolean;
}

export type CheckState = "ok" | "failed" | "not configured" | "skipped";

export interface Readiness {
  ready: boolean;
  /** The first failing check, in words. */
  reason?: string;
  checks: { database: CheckState; migrations: string; redis: CheckState };
}

const CHECK_TIMEOUT_MS = 2_000;

export async function checkReadiness(deps: ReadinessDeps): Promise<Readiness> {
  if (deps.stopping()) return { ready: false, reason: "shutting down", checks: { database: "skipped", migrations: "skipped", redis: "skipped" } };
  const redisP = deps.redisConfigured ? bounded(deps.pingRedis()).catch(() => false) : Promise.resolve(true);
  let reason: string | undefined;
  let database: CheckState = "ok";
  let migrations = "skipped";
  try {
    await bounded(deps.pingDatabase());
    // A database that answers but has no migrations table was never migrated: 0 applied.
    const applied = await bounded(deps.appliedMigrations()).catch(() => 0);
    migrations = `${applied}/${deps.expectedMigrations}`;
    if (applied < deps.expectedMigrations) reason = `database migrations not applied (${migrations}): run relayapi migrate`;
  } catch {
    database = "failed";
    reason = "database unreachable";
  }
  const redisOk = await redisP;
  const redis: CheckState = !deps.redisConfigured ? "not configured" : redisOk ? "ok" : "failed";
  if (!redisOk) reason ??= "redis unreachable";
  return { ready: reason === undefined, ...(reason === undefined ? {} : { reason }), checks: { database, migrations, redis } };
}

export async function readyz(res: AnyResponse, deps: ReadinessDeps): Promise<void> {
  const r = await checkReadiness(deps);
  sendJson(res, r.ready ? 200 : 503, r.ready ? { status: "ready", checks: r.checks } : { status: "not ready", reason: r.reason, checks: r.checks });
}

/** `p`, or a rejection after CHECK_TIMEOUT_MS. */
function bounded<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("timeout")), CHECK_TIMEOUT_MS);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
