/**
 * The one place that reads the environment. Everything else receives a typed Config.
 *
 * Precedence: built-in defaults < environment (`RELAYAPI_*`, `DATABASE_URL`) < command-line flags.
 */
import { resolve } from "node:path";

export interface Config {
  host: string;
  port: number;
  /** Data directory for the embedded database and generated key files. */
  dataDir: string;
  /** PostgreSQL URL; when absent the embedded PGlite database in `dataDir` is used. */
  databaseUrl: string | undefined;
  /** Admin key; when absent one is generated into `dataDir/admin.key` (mode 0600). */
  adminKey: string | undefined;
  /** 32-byte master key (base64/base64url/hex) for encryption at rest; else `dataDir/master.key`. */
  masterKey: string | undefined;
  /** Override of built-in provider base URLs, e.g. `{ openai: "http://127.0.0.1:9000" }`. */
  providerBaseUrls: Record<string, string>;
  /** Largest request body the relay accepts, in bytes. */
  maxBodyBytes: number;
  /** How long to wait for the upstream's response headers. */
  upstreamHeadersTimeoutMs: number;
  /** Longest silence allowed between two upstream body chunks. */
  upstreamIdleTimeoutMs: number;
  /** Origins allowed to call from a browser (CORS); `*` allows any origin. Tokens may narrow it. */
  corsOrigins: string[];
  /** How long the metadata of a token is cached (its counters and revocation never are). */
  tokenCacheMs: number;
  /**
   * Accept ECDH-ES sealed tokens that carry their holder's own upstream key (DESIGN 3.2). Off by
   * default: it makes the relay usable by anyone who brings a key.
   */
  acceptByokTokens: boolean;
  /** Deadline for in-flight streams on shutdown. */
  shutdownGraceMs: number;
  /** Log level: silent, error, warn, info, debug. */
  logLevel: LogLevel;
}

export type LogLevel = "silent" | "error" | "warn" | "info" | "debug";

export type ConfigOverrides = Partial<Config>;

export class ConfigError extends Error {
  override name = "ConfigError";
}

const PROVIDER_URL_ENV = /^RELAYAPI_PROVIDER_([A-Z0-9_]+)_BASE_URL$/;

/** Reads defaults, then the environment, then `overrides` (parsed flags), and validates once. */
export function loadConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): Config {
  const providerBaseUrls: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    const m = PROVIDER_URL_ENV.exec(name);
    if (m?.[1] && value) providerBaseUrls[m[1].toLowerCase().replaceAll("_", "-")] = value;
  }
  const config: Config = {
    host: env.RELAYAPI_HOST ?? "127.0.0.1",
    port: int(env.RELAYAPI_PORT, 8080, "RELAYAPI_PORT"),
    dataDir: resolve(env.RELAYAPI_DATA_DIR ?? "./data"),
    databaseUrl: env.DATABASE_URL || undefined,
    adminKey: env.RELAYAPI_ADMIN_KEY || undefined,
    masterKey: env.RELAYAPI_MASTER_KEY || undefined,
    providerBaseUrls,
    maxBodyBytes: int(env.RELAYAPI_MAX_BODY_BYTES, 10 * 1024 * 1024, "RELAYAPI_MAX_BODY_BYTES"),
    upstreamHeadersTimeoutMs: int(env.RELAYAPI_UPSTREAM_HEADERS_TIMEOUT_MS, 120_000, "RELAYAPI_UPSTREAM_HEADERS_TIMEOUT_MS"),
    upstreamIdleTimeoutMs: int(env.RELAYAPI_UPSTREAM_IDLE_TIMEOUT_MS, 120_000, "RELAYAPI_UPSTREAM_IDLE_TIMEOUT_MS"),
    corsOrigins: (env.RELAYAPI_CORS_ORIGINS ?? "*").split(",").map((s) => s.trim()).filter(Boolean),
    tokenCacheMs: int(env.RELAYAPI_TOKEN_CACHE_MS, 5_000, "RELAYAPI_TOKEN_CACHE_MS"),
    acceptByokTokens: bool(env.RELAYAPI_ACCEPT_BYOK_TOKENS, false, "RELAYAPI_ACCEPT_BYOK_TOKENS"),
    shutdownGraceMs: int(env.RELAYAPI_SHUTDOWN_GRACE_MS, 10_000, "RELAYAPI_SHUTDOWN_GRACE_MS"),
    logLevel: level(env.RELAYAPI_LOG_LEVEL ?? "info"),
  };
  const merged: Config = { ...config, ...definedOnly(overrides) };
  if (overrides.providerBaseUrls) merged.providerBaseUrls = { ...config.providerBaseUrls, ...overrides.providerBaseUrls };
  merged.dataDir = resolve(merged.dataDir);
  validate(merged);
  return merged;
}

function validate(c: Config): void {
  if (!Number.isInteger(c.port) || c.port < 0 || c.port > 65535) throw new ConfigError(`port must be 0-65535, got ${c.port}`);
  if (c.maxBodyBytes < 1) throw new ConfigError("maxBodyBytes must be positive");
  if (c.databaseUrl && !/^postgres(ql)?:\/\//.test(c.databaseUrl)) {
    throw new ConfigError("DATABASE_URL must start with postgres:// or postgresql://");
  }
  for (const [id, url] of Object.entries(c.providerBaseUrls)) {
    if (!/^https?:\/\//.test(url)) throw new ConfigError(`base URL of provider ${id} must be http(s)`);
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function int(raw: string | undefined, fallback: number, name: string): number {
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new ConfigError(`${name} must be a non-negative integer`);
  return n;
}

function bool(raw: string | undefined, fallback: boolean, name: string): boolean {
  if (raw === undefined || raw === "") return fallback;
  if (raw === "1" || raw === "true") return true;
  if (raw === "0" || raw === "false") return false;
  throw new ConfigError(`${name} must be true or false`);
}

function level(raw: string): LogLevel {
  if (raw === "silent" || raw === "error" || raw === "warn" || raw === "info" || raw === "debug") return raw;
  throw new ConfigError(`RELAYAPI_LOG_LEVEL must be one of silent, error, warn, info, debug`);
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
