/**
 * The one place that reads the environment and the config file. Everything else receives a
 * typed Config (STYLE habit 9).
 *
 * Precedence: built-in defaults < config file (`relayapi.config.json` in the working directory,
 * or `--config FILE` / `RELAYAPI_CONFIG`) < environment (`RELAYAPI_*`, `DATABASE_URL`,
 * `REDIS_URL`) < command-line flags. The file uses the Config field names below; an unknown key
 * or a value of the wrong type is an error that names the key.
 */
import { validTimeZone } from "./plans/quota-windows.js";
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { autoWorkers } from "./cluster/cpu-quota.js";
import { trustMatcher } from "./limits/client-ip.js";
import { BUILTIN_PROVIDERS } from "./providers/builtin/index.js";

export interface Config {
  host: string;
  port: number;
  /** Data directory for the embedded database and generated key files. */
  dataDir: string;
  /** PostgreSQL URL; when absent the embedded PGlite database in `dataDir` is used. */
  databaseUrl: string | undefined;
  /** PostgreSQL connections per instance for requests and background work (/readyz and migrations use one more each). */
  dbPool: number;
  /** PostgreSQL statement_timeout; the relay stops waiting 1 s later and closes the connection (0: no limit). */
  dbStatementTimeoutMs: number;
  /** Longest wait for a free pooled connection before a call is refused with 503. */
  dbAcquireTimeoutMs: number;
  /** Longest wait for a new PostgreSQL connection (TCP, TLS, login). */
  dbConnectTimeoutMs: number;
  /** Apply missing migrations at start (off: start refuses when some are missing; run `relayapi migrate`). */
  autoMigrate: boolean;
  /** This instance's name, in `application_name=relayapi/<name>` (default hostname:pid). */
  instanceName: string | undefined;
  /** Admin key; when absent one is generated into `dataDir/admin.key` (mode 0600). */
  adminKey: string | undefined;
  /** 32-byte master key (base64/base64url/hex) for encryption at rest; else `dataDir/master.key`. */
  masterKey: string | undefined;
  /** Override of built-in provider base URLs, e.g. `{ openai: "http://127.0.0.1:9000" }`. */
  providerBaseUrls: Record<string, string>;
  /** Largest request body the relay accepts, in bytes. */
  maxBodyBytes: number;
  /** Largest upload (multipart or binary body, streamed through unheld; issue 25), in bytes. */
  maxUploadBytes: number;
  /**
   * How long to wait for the upstream's response headers. 10 minutes, as the openai and Anthropic
   * SDKs wait: a non-streaming reasoning call may think for minutes before its answer's head.
   */
  upstreamHeadersTimeoutMs: number;
  /** Longest silence allowed between two upstream body chunks. */
  upstreamIdleTimeoutMs: number;
  /** Origins allowed to call from a browser (CORS); `*` allows any origin. Tokens may narrow it. */
  corsOrigins: string[];
  /** How long the metadata of a token is cached (its counters and revocation never are). */
  tokenCacheMs: number;
  /** Largest block of calls an instance leases at once (1: one statement per call). */
  leaseMax: number;
  /** Leased calls unused for this long go back to the database. */
  leaseIdleMs: number;
  /**
   * Accept ECDH-ES sealed tokens that carry their holder's own upstream key (DESIGN 3.2). Off by
   * default: it makes the relay usable by anyone who brings a key.
   */
  acceptByokTokens: boolean;
  /**
   * The origin clients use to reach this relay (`https://relay.example`), for DPoP's `htu`:
   * never taken from the Host header. Defaults to http://host:port.
   */
  publicOrigin: string | undefined;
  /** Require server nonces in DPoP proofs (RFC 9449 section 8), stateless (HMAC of time). */
  dpopNonces: boolean;
  /** How long one DPoP nonce lasts, in seconds; the previous one is still accepted (1-86400). */
  dpopNonceSeconds: number;
  /** Requests per minute per client IP, checked before the token (0: off). */
  ipRpm: number;
  /** Calls in flight per instance (0: unlimited). */
  maxConcurrency: number;
  /** Calls in flight per pool key per instance (0: unlimited). */
  keyConcurrency: number;
  /** Proxies (IPs or CIDRs) whose X-Forwarded-For is believed; empty: the socket address only. */
  trustProxy: string[];
  /** Redis for cluster-wide rate limits; unset: limits per instance. */
  redisUrl: string | undefined;
  /** Share per-IP limits through Redis too (costly: a heartbeat per active IP). */
  redisPerIp: boolean;
  /**
   * Deadline for in-flight calls and streams on shutdown, from the signal (the drain delay
   * included); leased calls and usage records get 2 s more (src/server.ts close()).
   */
  shutdownGraceMs: number;
  /**
   * On shutdown, how long `/readyz` answers 503 while the listener still accepts, so load
   * balancers take the instance out before its port closes (at most shutdownGraceMs).
   */
  drainDelayMs: number;
  /**
   * Worker processes serving the one port (`--workers N`, `auto`: one per core; issue 22.3).
   * Above 1 the process becomes a primary that only supervises (and, on the embedded database,
   * owns PGlite and serves it to the workers: src/cluster/).
   */
  workers: number;
  /**
   * Whether this process runs the usage tables' background work (retention passes; on PGlite,
   * VACUUM). Off only in the workers of `serve --workers` on the embedded database, whose
   * primary does it on the one PGlite (set by the primary, not by operators).
   */
  usageMaintenance: boolean;
  /** Provider attempts per call at most, failovers included (1-10). */
  upstreamAttempts: number;
  /** Longest rest a 429/403 gives a key for one model, whatever its Retry-After says. */
  keyCooldownMaxMs: number;
  /** Answers proving a key bad (401, an "invalid key" body) before the key is disabled. */
  keyAuthStrikes: number;
  /** Key errors (401/403/429) one token may draw per minute before its own calls are refused (0: off). */
  tokenKeyErrorsPerMinute: number;
  /** Bytes of request bodies held in memory across all requests; past it, 503 (0: off). */
  bodyMemoryBytes: number;
  /** Time a client has to send a request head (and, on h2c, a stream's headers). */
  headersTimeoutMs: number;
  /** Time a client has to send a whole request body, on HTTP/1.1 and h2c streams. */
  requestTimeoutMs: number;
  /** Concurrent streams per h2c session. */
  h2MaxStreams: number;
  /** Open connections (HTTP/1.1 and h2c) per client address (0: unlimited). */
  maxConnectionsPerIp: number;
  /** Longest WebSocket session (OpenAI Realtime, Gemini Live; issue 25), in seconds. */
  maxSessionSeconds: number;
  /** A WebSocket session with no message either way for this long is closed. */
  sessionIdleMs: number;
  /** Largest WebSocket message either way, in bytes (larger: closed with 1009). */
  sessionMaxMessageBytes: number;
  /** Days raw per-call usage rows are kept (0: forever); roll-ups answer for older windows (issue 23). */
  usageRetentionDays: number;
  /** Days hourly and daily usage roll-ups are kept (0: forever). */
  rollupRetentionDays: number;
  /** Days audit events are kept (0: forever). */
  auditRetentionDays: number;
  /** Days the relay remembers which subject created a stored response or file (0: forever; issue 25). */
  ownedObjectTtlDays: number;
  /**
   * Forward calls on stored objects the relay never recorded, object lists, and the stateful
   * API families it does not track (assistants, threads, containers, fine-tuning...); off: 404 / 403.
   */
  allowUnknownObjects: boolean;
  /** The IANA time zone plan quotas' days and months are counted in (issue 24; default UTC). */
  quotaTimeZone: string;
  /** Admit calls to models without a price under dollar limits, charged $0 (off: refused with 403). */
  allowUnpricedModels: boolean;
  /** Log level: silent, error, warn, info, debug. */
  logLevel: LogLevel;
  /** The git commit this build is from, for relayapi_build_info (unset: read from .git, else "unknown"). */
  buildCommit: string | undefined;
}

export const LOG_LEVELS = ["silent", "error", "warn", "info", "debug"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type ConfigOverrides = Partial<Config>;

export class ConfigError extends Error {
  override name = "ConfigError";
}

export interface LoadOptions {
  /**
   * The config file: a path (it must exist), `false` for none, or undefined for `RELAYAPI_CONFIG`,
   * else `relayapi.config.json` in `cwd` when it exists.
   */
  configFile?: string | false | undefined;
  /** Where the default config file is looked for (default: the process's working directory). */
  cwd?: string;
}

export const DEFAULT_CONFIG_FILE = "relayapi.config.json";

/** How one field is read from the environment and from the file. */
interface Field<T> {
  env: string;
  default: T;
  /** From an environment string; undefined when the string means "not set". */
  fromEnv(raw: string, name: string): T | undefined;
  /** From a JSON value; throws a ConfigError naming `name`. */
  fromJson(value: unknown, name: string): T;
}

const intField = (env: string, dflt: number): Field<number> => ({
  env,
  default: dflt,
  fromEnv: (raw, name) => (raw === "" ? undefined : nonNegativeInt(Number(raw), name)),
  fromJson: (v, name) => nonNegativeInt(v, name),
});

const stringField = (env: string, dflt: string): Field<string> => ({
  env,
  default: dflt,
  fromEnv: (raw) => (raw === "" ? undefined : raw),
  fromJson: (v, name) => {
    if (typeof v !== "string") throw new ConfigError(`${name} must be a string`);
    return v;
  },
});

/** An optional string: "" (env) or null (file) leave it unset. */
const optionalField = (env: string): Field<string | undefined> => ({
  env,
  default: undefined,
  fromEnv: (raw) => (raw === "" ? undefined : raw),
  fromJson: (v, name) => {
    if (v === null) return undefined;
    if (typeof v !== "string") throw new ConfigError(`${name} must be a string`);
    return v || undefined;
  },
});

const boolField = (env: string, dflt: boolean): Field<boolean> => ({
  env,
  default: dflt,
  fromEnv: (raw, name) => {
    if (raw === "") return undefined;
    if (raw === "1" || raw === "true") return true;
    if (raw === "0" || raw === "false") return false;
    throw new ConfigError(`${name} must be true or false`);
  },
  fromJson: (v, name) => {
    if (typeof v !== "boolean") throw new ConfigError(`${name} must be true or false`);
    return v;
  },
});

/** A list: comma-separated in the environment ("" is the empty list), an array in the file. */
const listField = (env: string, dflt: string[]): Field<string[]> => ({
  env,
  default: dflt,
  fromEnv: (raw) => list(raw),
  fromJson: (v, name) => {
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw new ConfigError(`${name} must be an array of strings`);
    return v.map((s) => s.trim()).filter(Boolean);
  },
});

const levelField: Field<LogLevel> = {
  env: "RELAYAPI_LOG_LEVEL",
  default: "info",
  fromEnv: (raw, name) => (raw === "" ? undefined : logLevel(raw, name)),
  fromJson: (v, name) => logLevel(v, name),
};

/** `auto` is one worker per core the process may use, its cgroup CPU quota included (src/cluster/cpu-quota.ts). */
export function parseWorkers(v: unknown, name: string): number {
  if (v === "auto") return autoWorkers();
  const n = typeof v === "string" && /^\d+$/.test(v.trim()) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 256) throw new ConfigError(`${name} must be "auto" or a whole number from 1 to 256`);
  return n;
}

const workersField: Field<number> = {
  env: "RELAYAPI_WORKERS",
  default: 1,
  fromEnv: (raw, name) => (raw === "" ? undefined : parseWorkers(raw, name)),
  fromJson: (v, name) => parseWorkers(v, name),
};

function parseTimeZone(v: unknown, name: string): string {
  const tz = typeof v === "string" ? validTimeZone(v.trim()) : undefined;
  if (tz === undefined) throw new ConfigError(`${name} must be an IANA time zone name such as "UTC" or "Europe/Berlin"`);
  return tz;
}

const timeZoneField: Field<string> = {
  env: "RELAYAPI_QUOTA_TZ",
  default: "UTC",
  fromEnv: (raw, name) => (raw === "" ? undefined : parseTimeZone(raw, name)),
  fromJson: (v, name) => parseTimeZone(v, name),
};

const providerUrlsField: Field<Record<string, string>> = {
  env: "RELAYAPI_PROVIDER_<ID>_BASE_URL",
  default: {},
  fromEnv: () => undefined, // read by pattern in loadConfig
  fromJson: (v, name) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ConfigError(`${name} must be an object of provider id -> URL`);
    for (const [id, url] of Object.entries(v)) {
      if (typeof url !== "string") throw new ConfigError(`${name}.${id} must be a string`);
    }
    return { ...(v as Record<string, string>) };
  },
};

/** Every Config field: its environment variable, default and parsers. */
export const FIELDS: { [K in keyof Config]: Field<Config[K]> } = {
  host: stringField("RELAYAPI_HOST", "127.0.0.1"),
  port: intField("RELAYAPI_PORT", 8080),
  dataDir: stringField("RELAYAPI_DATA_DIR", "./data"),
  databaseUrl: optionalField("DATABASE_URL"),
  dbPool: intField("RELAYAPI_DB_POOL", 10),
  dbStatementTimeoutMs: intField("RELAYAPI_DB_STATEMENT_TIMEOUT_MS", 5_000),
  dbAcquireTimeoutMs: intField("RELAYAPI_DB_ACQUIRE_TIMEOUT_MS", 3_000),
  dbConnectTimeoutMs: intField("RELAYAPI_DB_CONNECT_TIMEOUT_MS", 5_000),
  autoMigrate: boolField("RELAYAPI_AUTO_MIGRATE", true),
  instanceName: optionalField("RELAYAPI_INSTANCE_NAME"),
  adminKey: optionalField("RELAYAPI_ADMIN_KEY"),
  masterKey: optionalField("RELAYAPI_MASTER_KEY"),
  providerBaseUrls: providerUrlsField,
  maxBodyBytes: intField("RELAYAPI_MAX_BODY_BYTES", 10 * 1024 * 1024),
  maxUploadBytes: intField("RELAYAPI_MAX_UPLOAD_BYTES", 100 * 1024 * 1024),
  upstreamHeadersTimeoutMs: intField("RELAYAPI_UPSTREAM_HEADERS_TIMEOUT_MS", 600_000),
  upstreamIdleTimeoutMs: intField("RELAYAPI_UPSTREAM_IDLE_TIMEOUT_MS", 120_000),
  corsOrigins: listField("RELAYAPI_CORS_ORIGINS", ["*"]),
  tokenCacheMs: intField("RELAYAPI_TOKEN_CACHE_MS", 5_000),
  leaseMax: intField("RELAYAPI_LEASE_MAX", 256),
  leaseIdleMs: intField("RELAYAPI_LEASE_IDLE_MS", 1_000),
  acceptByokTokens: boolField("RELAYAPI_ACCEPT_BYOK_TOKENS", false),
  publicOrigin: optionalField("RELAYAPI_PUBLIC_ORIGIN"),
  dpopNonces: boolField("RELAYAPI_DPOP_NONCES", false),
  dpopNonceSeconds: intField("RELAYAPI_DPOP_NONCE_SECONDS", 300),
  ipRpm: intField("RELAYAPI_IP_RPM", 600),
  maxConcurrency: intField("RELAYAPI_MAX_CONCURRENCY", 4096),
  keyConcurrency: intField("RELAYAPI_KEY_CONCURRENCY", 0),
  trustProxy: listField("RELAYAPI_TRUST_PROXY", []),
  redisUrl: optionalField("REDIS_URL"),
  redisPerIp: boolField("RELAYAPI_REDIS_PER_IP", false),
  shutdownGraceMs: intField("RELAYAPI_SHUTDOWN_GRACE_MS", 10_000),
  drainDelayMs: intField("RELAYAPI_DRAIN_DELAY_MS", 5_000),
  workers: workersField,
  usageMaintenance: boolField("RELAYAPI_USAGE_MAINTENANCE", true),
  upstreamAttempts: intField("RELAYAPI_UPSTREAM_ATTEMPTS", 3),
  keyCooldownMaxMs: intField("RELAYAPI_KEY_COOLDOWN_MAX_MS", 60_000),
  keyAuthStrikes: intField("RELAYAPI_KEY_AUTH_STRIKES", 3),
  tokenKeyErrorsPerMinute: intField("RELAYAPI_TOKEN_KEY_ERRORS_PER_MINUTE", 5),
  bodyMemoryBytes: intField("RELAYAPI_BODY_MEMORY_BYTES", 256 * 1024 * 1024),
  headersTimeoutMs: intField("RELAYAPI_HEADERS_TIMEOUT_MS", 30_000),
  requestTimeoutMs: intField("RELAYAPI_REQUEST_TIMEOUT_MS", 300_000),
  h2MaxStreams: intField("RELAYAPI_H2_MAX_STREAMS", 100),
  maxConnectionsPerIp: intField("RELAYAPI_MAX_CONNECTIONS_PER_IP", 256),
  maxSessionSeconds: intField("RELAYAPI_MAX_SESSION_SECONDS", 900),
  sessionIdleMs: intField("RELAYAPI_SESSION_IDLE_MS", 120_000),
  sessionMaxMessageBytes: intField("RELAYAPI_SESSION_MAX_MESSAGE_BYTES", 4 * 1024 * 1024),
  usageRetentionDays: intField("RELAYAPI_USAGE_RETENTION_DAYS", 30),
  rollupRetentionDays: intField("RELAYAPI_ROLLUP_RETENTION_DAYS", 400),
  auditRetentionDays: intField("RELAYAPI_AUDIT_RETENTION_DAYS", 400),
  ownedObjectTtlDays: intField("RELAYAPI_OWNED_OBJECT_TTL_DAYS", 30),
  allowUnknownObjects: boolField("RELAYAPI_ALLOW_UNKNOWN_OBJECTS", false),
  quotaTimeZone: timeZoneField,
  allowUnpricedModels: boolField("RELAYAPI_ALLOW_UNPRICED_MODELS", false),
  logLevel: levelField,
  buildCommit: optionalField("RELAYAPI_COMMIT"),
};

const KEYS = Object.keys(FIELDS) as (keyof Config)[];
const PROVIDER_URL_ENV = /^RELAYAPI_PROVIDER_([A-Z0-9_]+)_BASE_URL$/;

/**
 * Reads defaults, then the config file, then the environment, then `overrides` (parsed flags),
 * and validates once.
 */
export function loadConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env, opts: LoadOptions = {}): Config {
  // Copies, so a caller changing its Config cannot change the defaults.
  const config = Object.fromEntries(KEYS.map((k) => [k, copy(FIELDS[k].default)])) as unknown as Config;
  const values = config as unknown as Record<keyof Config, unknown>;

  const file = configFilePath(env, opts);
  if (file !== undefined) {
    const fromFile = readConfigFile(file);
    Object.assign(config, fromFile);
    config.providerBaseUrls = { ...fromFile.providerBaseUrls };
  }

  for (const key of KEYS) {
    const { env: name } = FIELDS[key];
    const raw = env[name];
    if (raw === undefined) continue;
    const value = FIELDS[key].fromEnv(raw, name);
    if (value !== undefined) values[key] = value;
  }
  for (const [name, value] of Object.entries(env)) {
    const m = PROVIDER_URL_ENV.exec(name);
    if (m?.[1] && value) config.providerBaseUrls[m[1].toLowerCase().replaceAll("_", "-")] = value;
  }

  const merged: Config = { ...config, ...definedOnly(overrides) };
  if (overrides.providerBaseUrls) merged.providerBaseUrls = { ...config.providerBaseUrls, ...overrides.providerBaseUrls };
  merged.dataDir = resolve(merged.dataDir);
  validate(merged);
  return merged;
}

function configFilePath(env: NodeJS.ProcessEnv, opts: LoadOptions): string | undefined {
  if (opts.configFile === false) return undefined;
  const explicit = opts.configFile || env.RELAYAPI_CONFIG || undefined;
  if (explicit !== undefined) {
    const path = resolve(opts.cwd ?? process.cwd(), explicit);
    if (!existsSync(path)) throw new ConfigError(`config file ${explicit} does not exist`);
    return path;
  }
  const path = resolve(opts.cwd ?? process.cwd(), DEFAULT_CONFIG_FILE);
  return existsSync(path) ? path : undefined;
}

/** The file's settings; a relative `dataDir` is taken relative to the file. */
function readConfigFile(path: string): Partial<Config> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${path} must hold a JSON object`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (!Object.hasOwn(FIELDS, key)) throw new ConfigError(`config file ${path}: unknown key "${key}"`);
    const field = FIELDS[key as keyof Config] as Field<unknown>;
    try {
      out[key] = field.fromJson(value, `"${key}"`);
    } catch (e) {
      throw new ConfigError(`config file ${path}: ${(e as Error).message}`);
    }
  }
  if (typeof out.dataDir === "string") out.dataDir = resolve(dirname(path), out.dataDir);
  return out as Partial<Config>;
}

/** Checks across the merged result, whatever layer a value came from; names the key. */
/** The longest delay a Node timer holds (~24.8 days); past it, setTimeout fires at once. */
export const TIMER_MAX_MS = 2 ** 31 - 1;

function validate(c: Config): void {
  const name = (key: keyof Config): string => `${key} (${FIELDS[key].env})`;
  for (const key of KEYS) {
    const v = c[key];
    if (typeof FIELDS[key].default !== "number") continue;
    nonNegativeInt(v, name(key));
    // A Node timer holds at most 2^31-1 ms and fires at once past it: a "very long" timeout
    // would end every request (or session) at once.
    if (key.endsWith("Ms") && (v as number) > TIMER_MAX_MS) throw new ConfigError(`${name(key)} must be at most ${TIMER_MAX_MS} ms`);
    if (key.endsWith("Seconds") && (v as number) * 1000 > TIMER_MAX_MS)
      throw new ConfigError(`${name(key)} must be at most ${Math.floor(TIMER_MAX_MS / 1000)} s`);
  }
  if (c.port > 65535) throw new ConfigError(`${name("port")} must be 0-65535, got ${c.port}`);
  if (c.maxBodyBytes < 1) throw new ConfigError(`${name("maxBodyBytes")} must be positive`);
  if (c.maxUploadBytes < 1) throw new ConfigError(`${name("maxUploadBytes")} must be positive`);
  if (c.dpopNonceSeconds < 1 || c.dpopNonceSeconds > 86_400) throw new ConfigError(`${name("dpopNonceSeconds")} must be 1-86400`);
  if (c.leaseMax < 1) throw new ConfigError(`${name("leaseMax")} must be at least 1`);
  if (c.dbPool < 1) throw new ConfigError(`${name("dbPool")} must be at least 1`);
  if (c.dbConnectTimeoutMs < 100) throw new ConfigError(`${name("dbConnectTimeoutMs")} must be at least 100`);
  if (c.upstreamAttempts < 1 || c.upstreamAttempts > 10) throw new ConfigError(`${name("upstreamAttempts")} must be 1-10`);
  if (c.keyAuthStrikes < 1) throw new ConfigError(`${name("keyAuthStrikes")} must be at least 1`);
  if (c.headersTimeoutMs < 1000) throw new ConfigError(`${name("headersTimeoutMs")} must be at least 1000`);
  if (c.requestTimeoutMs < c.headersTimeoutMs) throw new ConfigError(`${name("requestTimeoutMs")} must be at least headersTimeoutMs`);
  if (c.h2MaxStreams < 1) throw new ConfigError(`${name("h2MaxStreams")} must be at least 1`);
  if (c.maxSessionSeconds < 1) throw new ConfigError(`${name("maxSessionSeconds")} must be at least 1`);
  if (c.sessionIdleMs < 100) throw new ConfigError(`${name("sessionIdleMs")} must be at least 100`);
  if (c.sessionMaxMessageBytes < 1024) throw new ConfigError(`${name("sessionMaxMessageBytes")} must be at least 1024`);
  logLevel(c.logLevel, name("logLevel"));
  if (c.redisUrl && !/^rediss?:\/\//.test(c.redisUrl)) throw new ConfigError(`${name("redisUrl")} must start with redis:// or rediss://`);
  try {
    trustMatcher(c.trustProxy);
  } catch {
    throw new ConfigError(`${name("trustProxy")} must list IP addresses or CIDRs`);
  }
  if (c.databaseUrl && !/^postgres(ql)?:\/\//.test(c.databaseUrl)) {
    throw new ConfigError(`${name("databaseUrl")} must start with postgres:// or postgresql://`);
  }
  const known = BUILTIN_PROVIDERS.map((p) => p.id);
  for (const [id, url] of Object.entries(c.providerBaseUrls)) {
    // Only built-in providers take a base URL here (custom ones carry theirs: `provider add`); an
    // unknown id would otherwise be ignored without a word, e.g. a misspelt environment variable.
    if (!known.includes(id)) {
      throw new ConfigError(`unknown provider "${id}" in ${name("providerBaseUrls")}; known: ${known.join(", ")}`);
    }
    if (!/^https?:\/\//.test(url)) throw new ConfigError(`base URL of provider ${id} must be http(s)`);
  }
}

function copy<T>(v: T): T {
  return Array.isArray(v) ? (v.slice() as T) : typeof v === "object" && v !== null ? { ...v } : v;
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function nonNegativeInt(v: unknown, name: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new ConfigError(`${name} must be a non-negative integer`);
  return v;
}

function list(raw: string): string[] {
  return raw
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

function logLevel(v: unknown, name: string): LogLevel {
  if (typeof v === "string" && (LOG_LEVELS as readonly string[]).includes(v)) return v as LogLevel;
  throw new ConfigError(`${name} must be one of ${LOG_LEVELS.join(", ")}`);
}

const MASK = "[redacted]";

/**
 * The config as `serve --print-config` shows it: secrets masked (the admin and master keys,
 * passwords and secret-looking query parameters of URLs), everything else as it will be used.
 */
export function printableConfig(c: Config): Record<string, unknown> {
  const providerBaseUrls: Record<string, string> = {};
  for (const [id, url] of Object.entries(c.providerBaseUrls)) providerBaseUrls[id] = maskUrl(url);
  const shown: Record<string, unknown> = {
    ...c,
    adminKey: c.adminKey === undefined ? undefined : MASK,
    masterKey: c.masterKey === undefined ? undefined : MASK,
    databaseUrl: c.databaseUrl === undefined ? undefined : maskUrl(c.databaseUrl),
    redisUrl: c.redisUrl === undefined ? undefined : maskUrl(c.redisUrl),
    providerBaseUrls,
  };
  // Unset values print as null, so every key shows.
  for (const k in shown) if (shown[k] === undefined) shown[k] = null;
  return shown;
}

const SECRET_PARAM = /pass|secret|token|key|auth/i;

/** A URL with its password (and secret-looking query values) masked; unparsable: all of it. */
export function maskUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return MASK;
  }
  const secretParams = [...url.searchParams.keys()].filter((name) => SECRET_PARAM.test(name));
  if (!url.password && secretParams.length === 0) return raw;
  if (url.password) url.password = "****";
  for (const name of secretParams) url.searchParams.set(name, "****");
  return url.toString();
}

/**
 * Defaults for CLI commands: the relay they talk to, the admin key, and the issuer key
 * (`kid:secret`) that `token seal` uses when `--issuer-key` is not given (so the secret need not
 * appear in the process list).
 */
export function cliDefaults(env: NodeJS.ProcessEnv = process.env): { server: string; adminKey: string | undefined; issuerKey: string | undefined } {
  return {
    server: env.RELAYAPI_SERVER ?? "http://127.0.0.1:8080",
    adminKey: env.RELAYAPI_ADMIN_KEY || undefined,
    issuerKey: env.RELAYAPI_ISSUER_KEY || undefined,
  };
}
