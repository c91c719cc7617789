/**
 * `/healthz`: the process answers. `/readyz`: the relay can serve calls, that is the database
 * answers and has every migration this build ships (counted once at start from the journal).
 * Not ready is a 503 with the first failing reason and every check's state; each check is
 * bounded by a timeout so a hung dependency cannot hang the probe.
 *
 * Redis is not a readiness condition (issue 18): without it every instance still serves, with
 * rate limits and DPoP replay checks per instance. A 503 there made a load balancer drop every
 * instance at once. So Redis down is 200 `{"status":"degraded","redis":"unreachable",...}`,
 * and `relayapi_redis_up` (metrics.ts) says the same to alerting.
 */
import { isPoolExhausted, isTransientDatabaseError } from "../db/db-errors.js";
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
  /** Ready, but Redis does not answer: limits and DPoP replay checks are per instance. */
  degraded: boolean;
  /** The first failing check, in words. */
  reason?: string;
  checks: { database: CheckState; migrations: string; redis: CheckState };
}

const CHECK_TIMEOUT_MS = 2_000;

/** The reason while shutdown drains (issue 19): the balancer should stop sending calls here. */
const SHUTTING_DOWN = "shutting down";

export async function checkReadiness(deps: ReadinessDeps): Promise<Readiness> {
  if (deps.stopping())
    return { ready: false, degraded: false, reason: SHUTTING_DOWN, checks: { database: "skipped", migrations: "skipped", redis: "skipped" } };
  const redisP = deps.redisConfigured ? bounded(deps.pingRedis()).catch(() => false) : Promise.resolve(true);
  let reason: string | undefined;
  let database: CheckState = "ok";
  let migrations = "skipped";
  try {
    await bounded(deps.pingDatabase());
    // A database that answers but has no migrations table was never migrated: 0 applied. An
    // outage (the pool filled up since the ping) is reported as one, not as missing migrations.
    const applied = await bounded(deps.appliedMigrations()).catch((e: unknown) => {
      if (isTransientDatabaseError(e)) throw e;
      return 0;
    });
    migrations = `${applied}/${deps.expectedMigrations}`;
    if (applied < deps.expectedMigrations) reason = `database migrations not applied (${migrations}): run relayapi migrate`;
  } catch (e) {
    database = "failed";
    // The ping has a connection of its own (src/db/client.ts): it answered, but every pooled
    // connection is busy (a lock, slow statements), which no restart of the database cures.
    reason = isPoolExhausted(e) ? "database pool exhausted" : "database unreachable";
  }
  const redisOk = await redisP;
  const redis: CheckState = !deps.redisConfigured ? "not configured" : redisOk ? "ok" : "failed";
  return { ready: reason === undefined, degraded: !redisOk, ...(reason === undefined ? {} : { reason }), checks: { database, migrations, redis } };
}

export async function readyz(res: AnyResponse, deps: ReadinessDeps): Promise<void> {
  const r = await checkReadiness(deps);
  // Draining: the listener still accepts (RELAYAPI_DRAIN_DELAY_MS) and calls are still served.
  if (!r.ready) sendJson(res, 503, { status: r.reason === SHUTTING_DOWN ? "draining" : "not ready", reason: r.reason, checks: r.checks });
  else if (r.degraded)
    sendJson(res, 200, {
      status: "degraded",
      redis: "unreachable",
      detail: "rate limits and DPoP replay checks are per instance until Redis answers",
      checks: r.checks,
    });
  else sendJson(res, 200, { status: "ready", checks: r.checks });
}

/** `p`, or a rejection after CHECK_TIMEOUT_MS. */
function bounded<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("timeout")), CHECK_TIMEOUT_MS);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
