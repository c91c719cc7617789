/**
 * The usage records a shutdown could not write in time (the database stalled or down past the
 * deadline, src/server.ts close()) go to a spill file in the data directory, and the next start
 * writes them to the database, so SIGTERM never loses usage (issue 19, finding 2).
 *
 * One file per spill, `usage-spill-<epoch ms>-<pid>-<n>.jsonl`, mode 0600: one JSON object per line,
 * the row exactly as `usage_events` would hold it (ids, the subject, the model name, numbers; a
 * usage record never holds a token secret or a key: src/relay/types.ts CallRecord). A crash
 * while writing leaves at most a partial last line: replay skips a line it cannot read, logs
 * where it was, and writes the rest.
 *
 * Replay claims a file by renaming it (atomic), so two instances sharing a data directory never
 * both write it; a claim older than CLAIM_STALE_MS (its replayer died) may be taken over. Rows
 * are written as the usage writer writes them (a refused row goes to the dead letters); on a
 * failure the rows not yet written go to a new spill file, so each row is written once.
 */
import { closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Db } from "../db/client.js";
import { insertUsageDeadLetter, type UsageInsert } from "../db/queries/usage.js";
import type { Logger } from "../log.js";
import { describeError, isDataError, writeIsolating } from "./usage-batches.js";

const PREFIX = "usage-spill-";
const SPILL = /^usage-spill-\d+-\d+-\d+\.jsonl$/;
const CLAIMED = /^(usage-spill-\d+-\d+-\d+\.jsonl)\.replaying-(\d+)$/;
/** A claim this old belongs to a start that died while replaying. */
const CLAIM_STALE_MS = 60_000;
const BATCH = 500;
/** Bad lines logged one by one (the rest only counted). */
const LOGGED_BAD_LINES = 10;
/** Spills made by this process: part of the name, so two in one millisecond never collide. */
let spills = 0;

/** Writes `rows` to a new spill file in `dir` (created 0700 if missing); returns its path. Throws on failure. */
export function spillUsage(dir: string, rows: readonly UsageInsert[]): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `${PREFIX}${Date.now()}-${process.pid}-${++spills}.jsonl`);
  // Created 0600 (and made so whatever the umask): the rows are no secret, but they are the
  // operator's business, like the database they belong in.
  const fd = openSync(path, "wx", 0o600);
  try {
    fchmodSync(fd, 0o600);
    let text = "";
    for (const row of rows) {
      text += `${JSON.stringify(row)}\n`;
      if (text.length >= 1 << 20) {
        writeSync(fd, text);
        text = "";
      }
    }
    if (text.length > 0) writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return path;
}

export interface ReplayResult {
  files: number;
  rows: number;
  skipped: number;
}

/** Writes every spill file found in `dir` to the database and deletes it. Never throws. */
export async function replaySpilledUsage(dir: string, db: Db, log: Logger): Promise<ReplayResult> {
  const result: ReplayResult = { files: 0, rows: 0, skipped: 0 };
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.startsWith(PREFIX));
  } catch {
    return result; // no data directory yet: nothing was spilled
  }
  for (const name of names) {
    const claimed = claim(dir, name);
    if (claimed === undefined) continue;
    try {
      const { rows, skipped } = readSpill(claimed, name, log);
      const written = await writeRows(db, rows, dir, log);
      rmSync(claimed, { force: true });
      result.files++;
      result.rows += written;
      result.skipped += skipped;
      log.info("usage spill replayed", { file: name, rows: written, skipped, respilled: rows.length - written });
    } catch (e) {
      log.error("usage spill not replayed; it is kept for the next start", { file: name, err: e });
    }
  }
  return result;
}

/** Takes a spill file (or a stale claim) by renaming it to a claim of ours; undefined when not ours. */
function claim(dir: string, name: string): string | undefined {
  const stale = CLAIMED.exec(name);
  if (!SPILL.test(name) && !(stale && Date.now() - Number(stale[2]) > CLAIM_STALE_MS)) return undefined;
  const target = join(dir, `${stale ? stale[1] : name}.replaying-${Date.now()}`);
  try {
    renameSync(join(dir, name), target);
    return target;
  } catch {
    return undefined; // another instance took it first
  }
}

function readSpill(path: string, name: string, log: Logger): { rows: UsageInsert[]; skipped: number } {
  const rows: UsageInsert[] = [];
  let skipped = 0;
  const lines = readFileSync(path, "utf8").split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === "") continue;
    const row = parseRow(line);
    if (row !== undefined) {
      rows.push(row);
      continue;
    }
    // Where, never what: a line's text is not logged.
    if (++skipped <= LOGGED_BAD_LINES) log.warn("usage spill line skipped", { file: name, line: i + 1, length: line.length });
  }
  return { rows, skipped };
}

const TEXT_FIELDS = ["tokenId", "subject", "provider", "model", "keyId"] as const;
const NUMBER_FIELDS = ["at", "status", "outcome", "promptTokens", "completionTokens", "totalTokens", "bytes", "latencyMs"] as const;

/** One spilled row, checked field by field; undefined when the line is not one. */
function parseRow(line: string): UsageInsert | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  for (const f of TEXT_FIELDS) if (typeof o[f] !== "string") return undefined;
  for (const f of NUMBER_FIELDS) if (typeof o[f] !== "number" || !Number.isSafeInteger(o[f]) || (o[f] as number) < 0) return undefined;
  if (o.attempts !== undefined && typeof o.attempts !== "string") return undefined;
  if (o.flags !== undefined && !Number.isSafeInteger(o.flags)) return undefined;
  const row: UsageInsert = {
    at: o.at as number,
    tokenId: o.tokenId as string,
    subject: o.subject as string,
    provider: o.provider as string,
    model: o.model as string,
    keyId: o.keyId as string,
    status: o.status as number,
    outcome: o.outcome as UsageInsert["outcome"],
    promptTokens: o.promptTokens as number,
    completionTokens: o.completionTokens as number,
    totalTokens: o.totalTokens as number,
    bytes: o.bytes as number,
    latencyMs: o.latencyMs as number,
  };
  if (o.attempts !== undefined) row.attempts = o.attempts as string;
  if (o.flags !== undefined) row.flags = o.flags as number;
  return row;
}

/** Writes the rows in batches; on a failure spills what is left again. Returns the rows written. */
async function writeRows(db: Db, rows: UsageInsert[], dir: string, log: Logger): Promise<number> {
  for (let at = 0; at < rows.length; at += BATCH) {
    const failed = await writeIsolating(db, rows.slice(at, at + BATCH), (row, refusal) => deadLetter(db, row, refusal));
    if (failed === undefined) continue;
    const left = [...failed.unwritten, ...rows.slice(at + BATCH)];
    spillUsage(dir, left);
    log.warn("usage spill partly replayed; the rest is spilled again", { rows: left.length, err: describeError(failed.error) });
    return rows.length - left.length;
  }
  return rows.length;
}

/** As the usage writer keeps a row the database refused for its data (src/usage/usage-writer.ts). */
async function deadLetter(db: Db, row: UsageInsert, refusal: unknown): Promise<unknown> {
  try {
    await insertUsageDeadLetter(db, JSON.stringify({ ...row, at: new Date(row.at).toISOString() }), describeError(refusal).slice(0, 1000));
    return undefined;
  } catch (e) {
    return isDataError(e) ? undefined : e;
  }
}
