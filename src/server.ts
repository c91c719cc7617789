/**
 * build(): the whole relay as one object, not yet listening. `main.ts` listens; tests call
 * build() and listen on port 0, so they boot the real server in-process.
 */
import { toJson, type JsonValue } from "@bufbuild/protobuf";
import { invalidToken } from "./errors.js";
import { GetQuotaResponseSchema } from "../gen/relayapi/v1/token_service_pb.js";
import { quotaToProto } from "./services/convert.js";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { AuditLog } from "./audit/audit-log.js";
import type { Config } from "./config.js";
import { databaseOptions, openDatabase, type Database } from "./db/client.js";
import { appliedMigrationCount, expectedMigrations, migrateDatabase, requireMigrations } from "./db/migrate.js";
import { createApiHandler } from "./http/api-route.js";
import { Cors } from "./http/cors.js";
import { createConsoleHandler } from "./http/console-route.js";
import { checkReadiness, type ReadinessDeps } from "./http/health.js";
import { createLeakHandler } from "./http/leaked-tokens.js";
import { createRouter } from "./http/router.js";
import { AnswerCounter } from "./observe/answer-counter.js";
import { buildInfo } from "./observe/build-info.js";
import { callObserver, serverErrorObserver } from "./observe/call-observer.js";
import { DatabaseHealth } from "./observe/database-health.js";
import { Metrics } from "./observe/metrics.js";
import { loadAdminKey, loadMasterKey } from "./keys/key-files.js";
import { SecretBox } from "./keys/secret-box.js";
import { checkMasterKey } from "./keys/master-key-check.js";
import { createLogger, type Logger } from "./log.js";
import { loginUserIdPrefix } from "./logins/login-meta.js";
import { LoginStore } from "./logins/login-store.js";
import { createOnePortServer } from "./one-port.js";
import { PriceBook } from "./pricing/price-book.js";
import { PlanQuotas } from "./plans/plan-quotas.js";
import { PlanStore } from "./plans/plan-store.js";
import { QuotaClock } from "./plans/quota-windows.js";
import { RealtimeRelay } from "./realtime/realtime-relay.js";
import { ProviderRegistry } from "./providers/registry.js";
import { RelayEngine, type CallRecord } from "./relay/engine.js";
import { ObjectOwnership } from "./relay/object-ownership.js";
import { UpstreamClient } from "./relay/upstream-client.js";
import { PoolRegistry } from "./keys/pool-registry.js";
import { createDpopGate } from "./relay/dpop-gate.js";
import { clientIp, parseIp, trustMatcher, untrustedForwardWarning } from "./limits/client-ip.js";
import { ipKey, Limits } from "./limits/limits.js";
import { createRpcHandler } from "./services/rpc-handler.js";
import { createUnaryFastLane } from "./services/unary-fast-lane.js";
import { createRelayFastLane } from "./services/relay-fast-lane.js";
import { BodyBudget } from "./http/body-budget.js";
import { IssuerKeyring } from "./tokens/issuer-keyring.js";
import { loadRelayKey } from "./tokens/relay-key.js";
import { TokenStore } from "./tokens/token-store.js";
import { SHUTDOWN_MARGIN_MS } from "./shutdown-margin.js";
import { UsageWriter } from "./usage/usage-writer.js";
import { startUsageMaintenance, type UsageMaintenance } from "./usage/usage-maintenance.js";
import { replaySpilledUsage } from "./usage/usage-spill.js";

export interface BuildOptions {
  log?: Logger;
  /** Sees every counted call when it ends (usage records, tests). */
  onCall?: (record: CallRecord) => void;
  /** The clock of plan quota windows (tests cross midnight without waiting); Date.now by default. */
  quotaClock?: () => number;
}

export interface RelayApp {
  config: Config;
  database: Database;
  providers: ProviderRegistry;
  tokens: TokenStore;
  usage: UsageWriter;
  /** The prices in force: shipped table and admin overrides (issue 24). */
  prices: PriceBook;
  /** Plans as calls read them (issue 24); `reload()` after a write applies it here at once. */
  plans: PlanStore;
  /** Retention passes and storage samples (issue 23). */
  usageMaintenance: UsageMaintenance;
  /** Who created each stored response and file (issue 25). */
  ownership: ObjectOwnership;
  audit: AuditLog;
  adminKey: string;
  metrics: Metrics;
  /** Set by listen(): `http://host:port`. */
  url: string;
  listen(port?: number, host?: string): Promise<AddressInfo>;
  /**
   * Drains and stops (issue 19): `/readyz` 503 for `drainDelayMs` while the listener accepts,
   * then calls and streams until `shutdownGraceMs` after the call (open streams then end with
   * an error event), leased calls and usage until SHUTDOWN_MARGIN_MS later (the rest spilled).
   */
  close(opts?: ShutdownOptions): Promise<void>;
}

export interface ShutdownOptions {
  /** How long `/readyz` says draining before the listener closes (main.ts: config.drainDelayMs; tests: 0). */
  drainDelayMs?: number;
  /** Aborting it cuts the drain delay and the grace short; leases and usage still get the margin. */
  hurry?: AbortSignal;
}

/** After the grace, the time leased calls and usage have to reach the database (src/shutdown-margin.ts). */
export { SHUTDOWN_MARGIN_MS };
/** Of that margin, what is kept for writing the spill file and closing the database. */
const SPILL_RESERVE_MS = 250;

/**
 * How often custom providers and issuer keys are re-read, so other instances' changes arrive
 * within it. Only on PostgreSQL: PGlite's data directory belongs to this one process, whose own
 * changes reach its views at once (each registry reloads after a write; a revoked token is
 * dropped by the instance that revokes it), and PGlite runs every query synchronously on the
 * event loop, where five polls a second held requests and stream chunks for nothing.
 */
const PROVIDER_REFRESH_MS = 1000;
const KEY_REFRESH_MS = 1000;
/** How often the admin's price overrides are re-read (issue 24: a new price everywhere within 1 s). */
const PRICE_REFRESH_MS = 1000;
/** How often plans are re-read: a changed or deleted plan applies everywhere within 1 s. */
const PLAN_REFRESH_MS = 1000;
/** How often logins are re-read: one disabled on another instance is refused within 1 s (issue 24.4). */
const LOGIN_REFRESH_MS = 500;
/** How often revocations made on other instances are picked up (issue 5: within 1 s). */
const REVOCATION_POLL_MS = 500;
/** Between two prunes of expired owned-object records. */
const OWNED_OBJECTS_PRUNE_MS = 3_600_000;
/** Rate limiter entries idle this long are forgotten (memory follows active clients). */
const LIMITER_IDLE_MS = 120_000;

function headerText(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(",") : v;
}

export async function build(config: Config, opts: BuildOptions = {}): Promise<RelayApp> {
  const log = opts.log ?? createLogger(config.logLevel);
  const adminKey = loadAdminKey(config.adminKey, config.dataDir);
  if (adminKey.createdAt) log.info("generated an admin key", { path: adminKey.createdAt });
  const box = new SecretBox(loadMasterKey(config.masterKey, config.dataDir));

  const database = await openDatabase(databaseOptions(config, log));
  try {
    // --no-auto-migrate: a separate `relayapi migrate` job owns the schema.
    await (config.autoMigrate ? migrateDatabase(database, log) : requireMigrations(database));
    // Before anything is decrypted: another master key refuses here in plain words.
    await checkMasterKey(database.db, box, config.masterKey ? "RELAYAPI_MASTER_KEY" : join(config.dataDir, "master.key"));
  } catch (e) {
    await database.close();
    throw e;
  }
  const { db } = database;
  // Usage the last shutdown could not write (src/usage/usage-spill.ts), before any new call.
  await replaySpilledUsage(config.dataDir, db, log);
  // Prices (issue 24): loaded before the first call; the usage writer prices what comes unpriced.
  const prices = new PriceBook(db);
  await prices.start(database.driver === "postgres" ? PRICE_REFRESH_MS : 0);
  const usage = new UsageWriter(db, { log, prices });
  const maintenance = startUsageMaintenance(database, config, log, { background: config.usageMaintenance });
  const audit = new AuditLog(db);
  /** Aborted when the listener closes: long-lived streams (WatchUsage) end so connections can drain. */
  const stopping = new AbortController();
  /** Shutdown began: `/readyz` says draining while calls are still served. */
  let draining = false;
  const shared = database.driver === "postgres";
  const providers = new ProviderRegistry(db, config.providerBaseUrls);
  await providers.start(shared ? PROVIDER_REFRESH_MS : 0);
  const pools = new PoolRegistry(db, box, providers, {
    authStrikes: config.keyAuthStrikes,
    cooldownMaxMs: config.keyCooldownMaxMs,
    tokenKeyErrorsPerMinute: config.tokenKeyErrorsPerMinute,
  });
  // Automatic key health changes reach the audit log; writing it never holds up a call.
  pools.onHealthChange((e) => {
    audit
      .record({ actor: "system", action: e.action, target: e.keyId, detail: `pool ${e.pool}: ${e.detail}` })
      .catch((err: unknown) => log.warn("audit write failed", { err }));
  });
  await pools.start(shared ? KEY_REFRESH_MS : 0);
  const keyring = new IssuerKeyring(db, box);
  await keyring.start(shared ? KEY_REFRESH_MS : 0);
  const relayKey = await loadRelayKey(db, box);
  // Plans (issue 24): every instance reads a change within a second (admin writes reload at once here).
  const plans = new PlanStore(db);
  await plans.start(PLAN_REFRESH_MS);
  const logins = new LoginStore({ db, box, providers, pools });
  await logins.start(shared ? LOGIN_REFRESH_MS : 0);
  const tokens = new TokenStore(
    db,
    box,
    {
      cacheMs: config.tokenCacheMs,
      maxLease: config.leaseMax,
      idleMs: config.leaseIdleMs,
      revocationPollMs: shared ? REVOCATION_POLL_MS : 0,
      prepare: database.prepare,
      plans: new PlanQuotas(plans, new QuotaClock(config.quotaTimeZone, opts.quotaClock)),
      prices,
      allowUnpriced: config.allowUnpricedModels,
    },
    {
      keyring,
      providers,
      pools,
      relayKey: config.acceptByokTokens ? relayKey : undefined,
    },
    logins,
  );
  tokens.start();
  const upstream = new UpstreamClient({
    headersTimeoutMs: config.upstreamHeadersTimeoutMs,
    idleTimeoutMs: config.upstreamIdleTimeoutMs,
  });
  const limits = await Limits.create({
    perIp: config.ipRpm > 0 ? { rpm: config.ipRpm } : null,
    globalConcurrency: config.maxConcurrency || null,
    perKeyConcurrency: config.keyConcurrency || null,
    idleMs: LIMITER_IDLE_MS,
    ...(config.redisUrl ? { redis: { url: config.redisUrl, prefix: "relayapi:", perIp: config.redisPerIp } } : {}),
  });
  // Metrics, answer counting, the database state and the per-call fan-out: src/observe/.
  const metrics = new Metrics(
    { limits, pools, usage, tokens, storage: maintenance.storage, ready: async () => (await checkReadiness(readiness)).ready },
    buildInfo(config.buildCommit),
  );
  const databaseHealth = new DatabaseHealth({ log, ping: database.ping, registry: metrics.registry });
  const serverErrors = serverErrorObserver(log, databaseHealth);
  const answers = new AnswerCounter(metrics.registry, serverErrors);
  const onCall = callObserver({ usage, metrics, log, onCall: opts.onCall });
  const readiness: ReadinessDeps = {
    // /readyz and each scrape's relayapi_ready tell the database state their outcome.
    pingDatabase: () => databaseHealth.watch(database.ping(), "readiness"),
    appliedMigrations: () => appliedMigrationCount(db),
    expectedMigrations: expectedMigrations(),
    pingRedis: () => limits.ping(),
    redisConfigured: config.redisUrl !== undefined,
    stopping: () => draining,
  };
  const warnForwarded = untrustedForwardWarning(config.trustProxy, log);
  const ipOf = (req: IncomingMessage | Http2ServerRequest): string => {
    const forwardedFor = headerText(req.headers["x-forwarded-for"]);
    warnForwarded(req.socket?.remoteAddress, forwardedFor);
    return clientIp(req.socket?.remoteAddress, forwardedFor, config.trustProxy);
  };
  const dpop = await createDpopGate({
    publicOrigin: () => config.publicOrigin ?? app.url,
    redisUrl: config.redisUrl,
    derivationKey: box.derivationKey,
    nonceSeconds: config.dpopNonces ? config.dpopNonceSeconds : undefined,
  });
  // Stored responses and files: their creator's subject only (issue 25); expired records pruned hourly.
  const ownership = new ObjectOwnership(db, {
    ttlDays: config.ownedObjectTtlDays,
    allowUnknown: config.allowUnknownObjects,
    pruneIntervalMs: config.usageMaintenance ? OWNED_OBJECTS_PRUNE_MS : 0,
    vacuum: database.driver === "pglite",
    log,
  });
  const engine = new RelayEngine({
    providers,
    tokens,
    upstream,
    pools,
    limits,
    dpop,
    upstreamAttempts: config.upstreamAttempts,
    maxBodyBytes: config.maxBodyBytes,
    maxUploadBytes: config.maxUploadBytes,
    publicOrigin: () => config.publicOrigin ?? app.url,
    ownership,
    prices,
    onCall,
  });
  // WebSocket sessions (issue 25): the one port's upgrade requests.
  const realtime = new RealtimeRelay({ providers, tokens, pools, limits, dpop, ipOf, onCall, log, prices, config });
  // A login disabled or removed (here, or seen by the reload from another instance) ends its users' sessions (issue 24.4).
  logins.onGone((name) => realtime.revokePrefix(loginUserIdPrefix(name)));

  const cors = new Cors(config.corsOrigins);
  const leaks = createLeakHandler({ tokens, limits, audit, ipOf });
  // One budget for the request bodies held in memory, on the HTTP layer and the RPC routes.
  const budget = new BodyBudget(config.bodyMemoryBytes);
  // `GET /api/quota`: GetQuota's answer as JSON, for apps that speak plain HTTP (issue 24).
  const quota = async (secret: string): Promise<JsonValue> => {
    const report = await tokens.quota(await tokens.authenticate(secret));
    if (report === undefined) throw invalidToken();
    return toJson(GetQuotaResponseSchema, quotaToProto(report));
  };
  const api = createApiHandler({ engine, providers, cors, limits, ipOf, maxBodyBytes: config.maxBodyBytes, budget, log, quota });
  // Per-IP limit, admin key and body budget before connect-node reads a byte of the body.
  // The Connect routes' front door, the same for connect-node's adapter and the fast lanes.
  const frontDoor = { limits, ipOf, adminKey: adminKey.value, budget, maxBodyBytes: config.maxBodyBytes, log };
  const rpc = createRpcHandler({
    ...frontDoor,
    services: {
      db,
      box,
      providers,
      tokens,
      engine,
      keyring,
      pools,
      logins,
      relayKey,
      usage,
      prices,
      plans,
      audit,
      metrics,
      maintenance,
      acceptByokTokens: config.acceptByokTokens,
      shutdown: stopping.signal,
    },
  });
  // IntrospectToken and GetQuota over plain Connect unary, and RelayService.Relay over Connect
  // streaming, answered without connect-node (issue 22.4; bench/README.md, "Connect fast lanes").
  const rpcFast = createUnaryFastLane({ ...frontDoor, tokens, registry: metrics.registry });
  const relayFast = createRelayFastLane({ ...frontDoor, engine, registry: metrics.registry });
  const handler = createRouter({
    api,
    leaks,
    console: createConsoleHandler(),
    readiness,
    metrics,
    cors,
    rpc,
    rpcFast: (req, res, pathname) => relayFast(req, res, pathname) || rpcFast(req, res, pathname),
    answers,
    log,
  });
  // Connections are counted per socket address (IPv6 per /64, as the per-IP limits); a trusted
  // proxy carries many clients on its few addresses, so it is not capped here.
  const trustedProxy = trustMatcher(config.trustProxy);
  const server = createOnePortServer(handler, {
    headersTimeoutMs: config.headersTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    connectionsCheckingIntervalMs: 500,
    h2MaxStreams: config.h2MaxStreams,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    upgrade: realtime.upgrade,
    connectionKey: (address) => {
      const ip = config.trustProxy.length > 0 ? parseIp(address) : null;
      return ip !== null && trustedProxy(ip) ? undefined : ipKey(address);
    },
  });

  const app: RelayApp = {
    config,
    database,
    providers,
    tokens,
    usage,
    prices,
    plans,
    usageMaintenance: maintenance,
    ownership,
    audit,
    metrics,
    adminKey: adminKey.value,
    url: "",
    async listen(port = config.port, host = config.host) {
      const address = await server.listen(port, host);
      app.url = `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`;
      return address;
    },
    async close({ drainDelayMs = 0, hurry } = {}) {
      // Deadlines run from here (the signal): calls and streams until graceEnd, then leased
      // calls and usage records until hardEnd; a hurry (second signal) brings both forward.
      const started = Date.now();
      const graceEnd = started + config.shutdownGraceMs;
      draining = true;
      // The listener still accepts, so a balancer sees the 503 before connections are refused.
      await sleep(Math.min(drainDelayMs, config.shutdownGraceMs), undefined, { signal: hurry }).catch(() => {});
      stopping.abort();
      realtime.goingAway();
      const onDeadline = (): void => {
        realtime.terminate();
        const cut = engine.cutStreams();
        if (cut > 0) log.warn("streams cut at the shutdown deadline", { streams: cut });
      };
      // close() shuts the listener before it first yields: only then is "stopped accepting" true
      // (logged earlier, a connection could still land in the kernel's backlog and be reset).
      const closing = server.close(Math.max(0, graceEnd - Date.now()), { onDeadline, hurry });
      log.info("stopped accepting", { drainedMs: Date.now() - started });
      await closing;
      const hardEnd = (hurry?.aborted ? Math.min(graceEnd, Date.now()) : graceEnd) + SHUTDOWN_MARGIN_MS;
      databaseHealth.close();
      serverErrors.close();
      providers.stop();
      prices.stop();
      plans.stop();
      realtime.close();
      keyring.stop();
      logins.stop();
      pools.stop();
      // Each step bounded, none stopping the others: a stalled or failing database, Redis or
      // provider never holds the exit nor costs the usage records (issue 19). After every call
      // ended (their records are queued) and before the database goes.
      const steps = await Promise.allSettled([
        usage.close({ deadline: hardEnd - SPILL_RESERVE_MS, spillDir: config.dataDir }),
        settledBy(hardEnd, upstream.close()).then(() => settledBy(hardEnd, tokens.close())),
        settledBy(hardEnd, limits.close()),
        settledBy(hardEnd, dpop.close()),
        settledBy(hardEnd, maintenance.stop()),
        settledBy(hardEnd, ownership.stop()),
      ]);
      if (steps[1].status === "fulfilled" && !steps[1].value) log.warn("leased calls not given back by the deadline: they stay counted");
      await settledBy(hardEnd, database.close());
      const failed = steps.find((step) => step.status === "rejected");
      if (failed) throw failed.reason;
    },
  };
  return app;
}

/** Waits for `p` until epoch ms `at`: true when it settled by then (its failure is thrown). */
async function settledBy(at: number, p: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, at - Date.now()))));
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}
