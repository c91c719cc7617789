/**
 * What a database failure means, in one place (issue 19 finding 2, issue 21 finding 3):
 * whether it is an outage a client should retry (503 + Retry-After, RPC `unavailable`), and a
 * readable one-line cause with its fix for start-up errors and logs.
 *
 * Drizzle wraps every driver error in DrizzleQueryError, whose message is the statement and its
 * parameters (`Failed query: CREATE SCHEMA ... params:`): never shown; the driver's error is in
 * `cause`. postgres.js errors carry `code`: a SQLSTATE from the server, or a connection code
 * (ECONNREFUSED, CONNECT_TIMEOUT, CONNECTION_CLOSED...). No import of the drivers here: this
 * module is used by the error mapping, which PGlite-only processes load too.
 */

/** Every pooled connection stayed busy for the whole bounded wait (src/db/pg-pool.ts). */
export class PoolExhaustedError extends Error {
  override name = "PoolExhaustedError";
  readonly code = "POOL_EXHAUSTED";
  constructor(size: number, waitedMs: number) {
    super(`all ${size} database connections stayed busy for ${waitedMs} ms (RELAYAPI_DB_POOL, RELAYAPI_DB_ACQUIRE_TIMEOUT_MS)`);
  }
}

/**
 * A statement got no answer within the statement timeout plus a margin. The server's own
 * statement_timeout cannot fire on a connection whose bytes are lost, so the client gives up.
 */
export class StatementDeadlineError extends Error {
  override name = "StatementDeadlineError";
  readonly code = "STATEMENT_DEADLINE";
  constructor(ms: number) {
    super(`no answer from the database within ${ms} ms; the connection was closed`);
  }
}

/** Connection codes of Node's sockets and of postgres.js: the database cannot be reached now. */
const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECTION_ENDED",
  "POOL_EXHAUSTED",
  "STATEMENT_DEADLINE",
]);

/**
 * SQLSTATEs that a retry can cure: 08 connection exception, 53 insufficient resources (too many
 * connections, disk full), 57 operator intervention (57014 is a statement timeout, 57P01-03 a
 * shutdown or start-up), 58 system error, 40001/40P01 serialization failure and deadlock,
 * 55P03 lock not available, 25006 a read-only server (a failover in progress). Data (22) and
 * integrity (23) errors, and the programming classes, are not: retrying gives the same answer.
 */
function transientState(code: string): boolean {
  return /^(08|53|57|58)/.test(code) || code === "40001" || code === "40P01" || code === "55P03" || code === "25006";
}

interface DriverError {
  code: string | undefined;
  message: string;
  /** postgres.js's server fields, when the server answered. */
  detail?: string | undefined;
  address?: string | undefined;
  port?: number | undefined;
  /** The statement, from drizzle's wrapper (its text, never its parameters). */
  query?: string | undefined;
}

/** The driver's error inside wrappers: the first in the `cause` chain with a code, else the innermost. */
export function driverError(e: unknown): DriverError {
  let query: string | undefined;
  let cur = e;
  for (let depth = 0; depth < 6; depth++) {
    if (typeof cur !== "object" || cur === null) break;
    const o = cur as {
      code?: unknown;
      message?: unknown;
      detail?: unknown;
      address?: unknown;
      port?: unknown;
      query?: unknown;
      cause?: unknown;
      errors?: unknown;
    };
    if (typeof o.query === "string" && query === undefined && !Array.isArray(o.errors)) query = o.query;
    if (typeof o.code === "string" && o.code !== "") {
      const first = Array.isArray(o.errors) ? (o.errors[0] as { address?: unknown; port?: unknown } | undefined) : undefined;
      return {
        code: o.code,
        message: typeof o.message === "string" ? o.message : String(cur),
        detail: typeof o.detail === "string" ? o.detail : undefined,
        address: typeof o.address === "string" ? o.address : typeof first?.address === "string" ? first.address : undefined,
        port: typeof o.port === "number" ? o.port : typeof first?.port === "number" ? first.port : undefined,
        query,
      };
    }
    if (o.cause === undefined) break;
    cur = o.cause;
  }
  const innermost = cur instanceof Error ? cur.message : String(cur);
  return { code: undefined, message: cur === e && query !== undefined ? "query failed" : innermost, query };
}

/** True for a failure of the database (not of the request) that a client should retry. */
export function isTransientDatabaseError(e: unknown): boolean {
  const { code } = driverError(e);
  if (code === undefined) return false;
  return CONNECTION_CODES.has(code) || (/^[0-9A-Z]{5}$/.test(code) && transientState(code));
}

/**
 * A transaction that lost to another (a deadlock, a serialization failure, a NOWAIT lock): its
 * call is answered 503 (transient), but the database answered it; it is not an outage.
 */
export function isTransactionConflict(e: unknown): boolean {
  const { code } = driverError(e);
  return code === "40001" || code === "40P01" || code === "55P03";
}

export function isPoolExhausted(e: unknown): boolean {
  return driverError(e).code === "POOL_EXHAUSTED";
}

interface Target {
  where: string;
  database: string | undefined;
  user: string | undefined;
  password: string | undefined;
}

function target(databaseUrl: string | undefined, err: DriverError): Target {
  let url: URL | undefined;
  try {
    url = databaseUrl === undefined ? undefined : new URL(databaseUrl);
  } catch {
    url = undefined;
  }
  const host = err.address ?? (url?.hostname || "localhost");
  const port = err.port ?? (url?.port ? Number(url.port) : 5432);
  const user = url?.username ? decodeURIComponent(url.username) : undefined;
  const path = url?.pathname.slice(1);
  return {
    where: host.startsWith("/") ? host : `${host}:${port}`,
    database: path ? decodeURIComponent(path) : user,
    user,
    password: url?.password ? decodeURIComponent(url.password) : undefined,
  };
}

const MAX_TEXT = 500;

/**
 * One line that names the cause and, where there is one, the fix: `database "x" does not exist
 * on 127.0.0.1:5432: create it with createdb x (3D000)`. Never the password of `databaseUrl`
 * (masked wherever it would appear), never a statement's parameters.
 */
export function describeDatabaseError(e: unknown, databaseUrl?: string): string {
  const err = driverError(e);
  const t = target(databaseUrl, err);
  const code = err.code ?? "";
  const tail = code === "" ? "" : ` (${code})`;
  let text: string;
  switch (code) {
    case "3D000": {
      const name = /database "(.+)" does not exist/.exec(err.message)?.[1] ?? t.database ?? "?";
      text = `database "${name}" does not exist on ${t.where}: create it with createdb ${name}${tail}`;
      break;
    }
    case "28000":
    case "28P01": {
      const user = t.user ?? /user "(.+?)"/.exec(err.message)?.[1] ?? /role "(.+?)"/.exec(err.message)?.[1] ?? "?";
      text = `authentication failed for user "${user}" on ${t.where}: ${err.message}${tail}; check the user and password in DATABASE_URL`;
      break;
    }
    case "ECONNREFUSED":
      text = `cannot connect to ${t.where}: connection refused${tail}; is PostgreSQL running and listening there?`;
      break;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      text = `cannot connect to ${t.where}: host not found${tail}`;
      break;
    case "ETIMEDOUT":
    case "CONNECT_TIMEOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      text = `cannot connect to ${t.where}: no answer${tail}; check the host, the port and any firewall`;
      break;
    case "ECONNRESET":
    case "EPIPE":
    case "CONNECTION_CLOSED":
    case "CONNECTION_DESTROYED":
    case "CONNECTION_ENDED":
      text = `connection to ${t.where} lost${tail}`;
      break;
    case "53300":
      text = `${t.where} refuses new connections: ${err.message}${tail}; lower RELAYAPI_DB_POOL or raise the server's max_connections`;
      break;
    case "POOL_EXHAUSTED":
    case "STATEMENT_DEADLINE":
      text = `${err.message}${tail}`;
      break;
    default:
      text = `${err.message}${tail}`;
      if (err.detail) text += `: ${err.detail}`;
      // Which statement failed helps with a migration that cannot run (permissions, a clash).
      if (/^[0-9A-Z]{5}$/.test(code) && err.query) text += ` in: ${err.query.replace(/\s+/g, " ").slice(0, 80)}`;
  }
  if (t.password) text = text.replaceAll(t.password, "****").replaceAll(encodeURIComponent(t.password), "****");
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text;
}

/**
 * A database failure at start-up or in `relayapi migrate`, its message readable as it is: the
 * CLI prints it in one line (`relayapi: <message>`).
 */
export class DatabaseStartError extends Error {
  override name = "DatabaseStartError";
  readonly code: string | undefined;
  /** `text`: the description already made by Database.describeError (which knows the URL). */
  constructor(e: unknown, databaseUrl: string | undefined, text?: string) {
    super(text ?? describeDatabaseError(e, databaseUrl), { cause: e });
    this.code = driverError(e).code;
  }
}
