/**
 * JSON lines logger. Secrets never reach it by design (callers pass ids, not tokens or keys);
 * as a second guard, fields whose names look secret are masked, and errors are reduced to their
 * name and code (an upstream error message can carry a URL with a key in its query).
 */
import type { LogLevel } from "./config.js";

const RANK: Record<LogLevel, number> = { silent: 0, error: 1, warn: 2, info: 3, debug: 4 };
const SECRET_FIELD = /token|key|secret|authorization|password|cookie/i;

export type Fields = Record<string, unknown>;

export interface Logger {
  error(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  debug(msg: string, fields?: Fields): void;
}

export function createLogger(level: LogLevel, write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const rank = RANK[level];
  const emit = (lvl: Exclude<LogLevel, "silent">, msg: string, fields?: Fields): void => {
    if (RANK[lvl] > rank) return;
    const entry: Fields = { level: lvl, time: new Date().toISOString(), msg };
    if (fields) for (const [k, v] of Object.entries(fields)) entry[k] = clean(k, v);
    write(JSON.stringify(entry) + "\n");
  };
  return {
    error: (m, f) => emit("error", m, f),
    warn: (m, f) => emit("warn", m, f),
    info: (m, f) => emit("info", m, f),
    debug: (m, f) => emit("debug", m, f),
  };
}

function clean(name: string, value: unknown): unknown {
  if (value instanceof Error) {
    const cause = value.cause as { code?: unknown; name?: unknown } | undefined;
    return { name: value.name, code: (value as { code?: unknown }).code, cause: cause?.code ?? cause?.name };
  }
  if (SECRET_FIELD.test(name) && !/_id$|Id$|^id$/.test(name)) return "[redacted]";
  return value;
}
