/**
 * JSON lines logger on pino (one object per line on stderr: level, time, pid, hostname, msg and
 * the fields). Secrets never reach it by design (callers pass ids, not tokens or keys). Guards
 * stand behind that: top-level fields whose names look secret are masked; errors are written as
 * name, message and code (SQLSTATE or errno) with their causes, the message cut to its first
 * line (drizzle appends a statement's parameters on the next) and cleaned of what could be a
 * secret (an upstream error can carry a URL with a key in its query: queries, userinfo, bearer
 * values, `key=`-style pairs and long token-like strings are masked); token carriers and key
 * fields (REDACTED_NAMES) are masked inside plain objects down to four levels; and pino's
 * `redact` masks the same names at the top level and in the usual containers (`headers`,
 * `req.headers`, ...).
 *
 * pino's wildcard paths (`*.authorization`) are not used: with @pinojs/redact they cost ~30 µs per
 * line per wildcard level (measured), against ~2 µs for exact paths and the walk below.
 */
import { hostname } from "node:os";
import { pino, type DestinationStream, type Logger as PinoLogger } from "pino";
import type { LogLevel } from "./config.js";

const SECRET_FIELD = /token|key|secret|authorization|password|cookie/i;
const ID_FIELD = /_id$|Id$|^id$/;
const MASK = "[redacted]";

/**
 * Names that carry a token or a key (DESIGN 4 and 12): the token carriers, cookies, and the
 * field names the code base uses for secrets.
 */
export const REDACTED_NAMES = [
  "authorization",
  "proxy-authorization",
  "x-api-key",
  "api-key",
  "x-goog-api-key",
  "dpop",
  "cookie",
  "set-cookie",
  "key",
  "apiKey",
  "token",
  "secret",
  "password",
  "upstreamKey",
  "upstream_key",
  "adminKey",
  "masterKey",
  "issuerKey",
];

const REDACTED = new Set(REDACTED_NAMES.map((n) => n.toLowerCase()));
const CONTAINERS = ["headers", "req.headers", "request.headers", "res.headers", "response.headers", "options", "config"];

/** Each name at the top level and in each container, bracketed when it is not an identifier. */
const REDACT_PATHS = REDACTED_NAMES.flatMap((name) => {
  const ident = /^[A-Za-z_$][\w$]*$/.test(name);
  const step = ident ? name : `["${name}"]`;
  return [step, ...CONTAINERS.map((c) => (ident ? `${c}.${name}` : `${c}${step}`))];
});
const MAX_DEPTH = 4;

export type Fields = Record<string, unknown>;

export interface Logger {
  error(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  debug(msg: string, fields?: Fields): void;
  /** Whether debug lines are written: a hot path builds a debug line's fields only then. */
  debugEnabled(): boolean;
}

/**
 * A logger at `level`. Lines go to `write` when given (tests collect them), else to stderr
 * asynchronously (pino flushes what is left when the process exits).
 */
export function createLogger(level: LogLevel, write?: (line: string) => void): Logger {
  const destination: DestinationStream =
    write !== undefined ? { write } : level === "silent" ? { write: () => {} } : pino.destination({ dest: 2, sync: false });
  const p: PinoLogger = pino(
    {
      level,
      messageKey: "msg",
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: MASK },
      // Errors are cleaned in formatters.log; pino's own serializer would print the raw message and the stack.
      serializers: { err: (e: unknown) => e },
      formatters: {
        level: (label) => ({ level: label }),
        log: (fields) => {
          const out: Fields = {};
          for (const k in fields) out[k] = clean(k, fields[k]);
          return out;
        },
      },
    },
    destination,
  );
  return {
    error: (m, f) => p.error(f ?? {}, m),
    warn: (m, f) => p.warn(f ?? {}, m),
    info: (m, f) => p.info(f ?? {}, m),
    debug: (m, f) => p.debug(f ?? {}, m),
    debugEnabled: () => p.isLevelEnabled("debug"),
  };
}

function clean(name: string, value: unknown): unknown {
  if (value instanceof Error) return describeError(value);
  if (SECRET_FIELD.test(name) && !ID_FIELD.test(name)) return MASK;
  return scrub(value, 1);
}

/** Causes followed (drizzle -> driver -> socket is three). */
const MAX_CAUSES = 3;
const MAX_MESSAGE = 200;
const CODE = /^[A-Za-z0-9_.-]{1,32}$/;

/**
 * An error as log fields: `{name, message, code, cause}` (e.g. `{"name":"DrizzleQueryError",
 * "message":"Failed query: select 1","cause":{"name":"error","message":"terminating connection
 * due to administrator command","code":"57P01"}}`). An AggregateError (a connect attempt per
 * address) shows its first errors.
 */
export function describeError(e: Error, depth = 0): Fields {
  const out: Fields = { name: e.name };
  const message = safeMessage(e.message);
  if (message !== "") out.message = message;
  const code = (e as { code?: unknown }).code;
  if ((typeof code === "string" && CODE.test(code)) || typeof code === "number") out.code = code;
  if (depth < MAX_CAUSES) {
    const { cause } = e;
    if (cause instanceof Error) out.cause = describeError(cause, depth + 1);
    else if (typeof cause === "string" || typeof cause === "number") out.cause = safeMessage(String(cause));
    if (e instanceof AggregateError && Array.isArray(e.errors)) {
      out.errors = e.errors.slice(0, 3).map((x: unknown) => (x instanceof Error ? describeError(x, depth + 1) : safeMessage(String(x))));
    }
  }
  return out;
}

/** Patterns masked in error messages, each replaced by its group 1 plus the mask. */
const MESSAGE_SECRETS: readonly RegExp[] = [
  // A URL's query (keys travel there: `?key=`) and its userinfo (`postgres://user:pass@`).
  /(\b[a-z][a-z0-9+.-]*:\/\/)[^\s/@]*(?=@)/gi,
  /(\b[a-z][a-z0-9+.-]*:\/\/[^\s?#]*\?)[^\s#]*/gi,
  /(\b(?:bearer|basic|dpop)\s+)[^\s"',]+/gi,
  /(\b[\w-]*(?:key|token|secret|password|passwd|pwd|authorization)["']?\s*[=:]\s*["']?)[^\s"'&,;]+/gi,
  // Relay tokens, admin keys, provider keys by their prefixes.
  /(\b(?:rai|rak|sk|pk|ghp|xox[abp]|AIza)[_-])[A-Za-z0-9_-]{6,}/g,
];
/**
 * A long run of token characters with letters and digits: a key with an unknown prefix, a JWE
 * segment. Without `/` and `.`, so file paths and host names stay readable.
 */
const LONG_SECRET = /[A-Za-z0-9_\-+=]{24,}/g;

function safeMessage(message: unknown): string {
  if (typeof message !== "string" || message === "") return "";
  const nl = message.indexOf("\n");
  let text = (nl === -1 ? message : message.slice(0, nl)).slice(0, MAX_MESSAGE * 2);
  for (const re of MESSAGE_SECRETS) text = text.replace(re, `$1${MASK}`);
  text = text.replace(LONG_SECRET, (run) => (/[0-9]/.test(run) && /[A-Za-z]/.test(run) ? MASK : run));
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE)}...` : text;
}

/**
 * A fatal start-up error as one JSON line in the logger's shape (level "fatal"), written
 * synchronously by the caller just before it exits (pino's asynchronous stream would lose it).
 */
export function fatalLine(msg: string, err: unknown): string {
  const fields: Fields = { level: "fatal", time: new Date().toISOString(), pid: process.pid, hostname: hostname(), msg };
  fields.err = err instanceof Error ? describeError(err) : safeMessage(String(err));
  return `${JSON.stringify(fields)}\n`;
}

/** A copy of plain objects and arrays with REDACTED_NAMES masked and errors reduced. */
function scrub(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== "object") return value;
  if (value instanceof Error) return describeError(value);
  if (depth > MAX_DEPTH) return value;
  if (Array.isArray(value)) return value.map((v: unknown) => scrub(v, depth + 1));
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Fields = {};
  for (const [k, v] of Object.entries(value)) out[k] = REDACTED.has(k.toLowerCase()) ? MASK : scrub(v, depth + 1);
  return out;
}
