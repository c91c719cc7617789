/**
 * One process per embedded data directory (DESIGN 10; issue 17, finding 2). Two PGlite instances
 * on one directory each keep their own copy of the counters, so a cap of 50 let 100 calls through
 * (and the files end up corrupt). openDatabase() takes this lock before PGlite opens the directory.
 *
 * The lock is `<dataDir>/relayapi.lock`, made atomically (written aside, then hard-linked into
 * place: it never exists half written) and naming its holder: pid, the process's start time
 * (/proc/<pid>/stat field 22), host name, boot id and pid namespace. A lock left by a process
 * that died (kill -9, OOM, power loss) does not block a restart: on the same machine and pid
 * namespace the holder is checked for life, and a reused pid is told apart by its start time.
 *
 * Why not `proper-lockfile`: its only staleness test is the lock's mtime (10 s by default), so a
 * relay whose event loop stalls that long loses its lock to a second relay and both run. Here a
 * holder that can be seen is judged by whether it lives, never by time; the mtime (refreshed
 * every 5 s) decides only for a holder that cannot be seen at all (another host, another
 * container's pid namespace), after 30 s without a refresh, so a container restarted after a
 * crash is not locked out for good.
 */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  readlinkSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export const LOCK_FILE = "relayapi.lock";
/** How often a holder refreshes its lock's mtime, for processes that cannot see it. */
const HEARTBEAT_MS = 5_000;
/** A lock whose holder cannot be seen is abandoned after this long without a refresh. */
export const UNSEEN_STALE_MS = 30_000;
/** Removing a dead holder's lock takes microseconds; a guard older than this was left by a crash. */
const BREAK_STALE_MS = 5_000;

export interface LockHolder {
  pid: number;
  /** /proc/<pid>/stat field 22 (clock ticks after boot); "" where /proc is missing. */
  start: string;
  host: string;
  boot: string;
  pidns: string;
  since: string;
}

/** Refused: another process (or this one) holds the directory. The message says which. */
export class DataDirInUseError extends Error {
  override name = "DataDirInUseError";
}

export interface DataDirLock {
  path: string;
  /** Removes the lock file (if it is still ours). Idempotent. */
  release(): void;
}

/** Locks this process holds, by real directory path -> lock file content; released at exit. */
const held = new Map<string, { path: string; content: string; timer: NodeJS.Timeout }>();
let exitHook = false;

export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const key = realpathSync(dataDir);
  const path = join(dataDir, LOCK_FILE);
  const me = identity(process.pid);
  const content = JSON.stringify({ ...me, since: new Date().toISOString() } satisfies LockHolder) + "\n";
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  writeDurably(tmp, content);
  try {
    for (let attempt = 0; attempt < 100; attempt++) {
      if (held.has(key)) throw new DataDirInUseError(inUseMessage(dataDir, { ...me, since: "" }, ", this process"));
      if (place(tmp, path, content)) return hold(key, path, content);
      let text: string;
      let mtimeMs: number;
      try {
        text = readFileSync(path, "utf8");
        mtimeMs = statSync(path).mtimeMs;
      } catch (e) {
        if (code(e) === "ENOENT") continue; // released meanwhile: try again
        throw e;
      }
      const holder = parse(text);
      const verdict = holder ? judge(holder, me, mtimeMs) : Date.now() - mtimeMs < BREAK_STALE_MS ? "live" : "dead";
      if (verdict === "live") throw new DataDirInUseError(inUseMessage(dataDir, holder, where(holder, me)));
      if (!(await breakStale(path, text))) await sleep(20); // another process is breaking it
    }
    throw new DataDirInUseError(`data directory ${dataDir}: could not take its lock ${path}`);
  } finally {
    unlinkQuietly(tmp);
  }
}

function hold(key: string, path: string, content: string): DataDirLock {
  // The mtime tells processes that cannot see this one that it lives; a lock that stopped being
  // ours (removed by hand, or broken by an unseen process after a long stall) is not re-made.
  const timer = setInterval(() => {
    try {
      if (readFileSync(path, "utf8") !== content) throw new Error("replaced");
      const now = new Date();
      utimesSync(path, now, now);
    } catch {
      clearInterval(timer);
      process.emitWarning(`relayapi: the lock ${path} is no longer this process's; another process may open the data directory`);
    }
  }, HEARTBEAT_MS).unref();
  held.set(key, { path, content, timer });
  if (!exitHook) {
    exitHook = true;
    // process.exit() skips close(): a failed start or shutdown must not leave a lock behind.
    process.on("exit", () => {
      for (const k of [...held.keys()]) releaseKey(k);
    });
  }
  return { path, release: () => releaseKey(key) };
}

function releaseKey(key: string): void {
  const lock = held.get(key);
  if (!lock) return;
  held.delete(key);
  clearInterval(lock.timer);
  try {
    if (readFileSync(lock.path, "utf8") === lock.content) unlinkSync(lock.path);
  } catch {
    // already gone
  }
}

/** Links the prepared file into place; false when a lock exists. */
function place(tmp: string, path: string, content: string): boolean {
  try {
    linkSync(tmp, path);
    return true;
  } catch (e) {
    if (code(e) === "EEXIST") return false;
    // A file system without hard links: exclusive create, with a moment where it is empty
    // (an unreadable lock younger than BREAK_STALE_MS counts as held).
    if (!["EPERM", "ENOTSUP", "EOPNOTSUPP", "EXDEV", "ENOSYS"].includes(code(e) ?? "")) throw e;
  }
  try {
    writeFileSync(path, content, { flag: "wx", mode: 0o600 });
    return true;
  } catch (e) {
    if (code(e) === "EEXIST") return false;
    throw e;
  }
}

/**
 * Removes a dead holder's lock, under a short-lived guard so that two processes breaking it at
 * once cannot remove the new lock one of them has made meanwhile. False when another process holds the guard.
 */
async function breakStale(path: string, staleText: string): Promise<boolean> {
  const guard = `${path}.break`;
  try {
    writeFileSync(guard, String(process.pid), { flag: "wx", mode: 0o600 });
  } catch (e) {
    if (code(e) !== "EEXIST") throw e;
    try {
      if (Date.now() - statSync(guard).mtimeMs > BREAK_STALE_MS) unlinkSync(guard);
    } catch {
      // removed meanwhile
    }
    return false;
  }
  try {
    if (readFileSync(path, "utf8") === staleText) unlinkSync(path);
  } catch (e) {
    if (code(e) !== "ENOENT") throw e;
  } finally {
    unlinkQuietly(guard);
  }
  return true;
}

/** Whether the holder still runs. Seen directly when it shares our machine and pid namespace. */
export function judge(h: LockHolder, me: Omit<LockHolder, "since">, mtimeMs: number): "live" | "dead" {
  const unseen = (): "live" | "dead" => (Date.now() - mtimeMs < UNSEEN_STALE_MS ? "live" : "dead");
  if (h.host !== me.host) return unseen();
  // Same machine, booted since: every process of the old boot is gone.
  if (h.boot && me.boot && h.boot !== me.boot) return "dead";
  // Another container on this machine: its processes are invisible from here.
  if (h.pidns && me.pidns && h.pidns !== me.pidns) return unseen();
  // This pid is ours, and this process does not hold the lock (checked before): a previous
  // process with our pid left it (common for pid 1 in a container).
  if (h.pid === process.pid) return "dead";
  if (!alive(h.pid)) return "dead";
  const start = startTime(h.pid);
  // A live process with another start time reused the pid: the holder is gone.
  if (start && h.start && start !== h.start) return "dead";
  return "live";
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return code(e) === "EPERM"; // exists, owned by another user
  }
}

function identity(pid: number): Omit<LockHolder, "since"> {
  return { pid, start: startTime(pid), host: hostname(), boot: readOr("/proc/sys/kernel/random/boot_id").trim(), pidns: linkOr("/proc/self/ns/pid") };
}

/** Field 22 of /proc/<pid>/stat; the command name (field 2) may hold spaces and parentheses. */
export function startTime(pid: number): string {
  const stat = readOr(`/proc/${pid}/stat`);
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "";
}

function parse(text: string): LockHolder | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockHolder>;
    if (!Number.isSafeInteger(v.pid) || (v.pid ?? 0) <= 0) return undefined; // never kill(0) or a group
    const s = (x: unknown): string => (typeof x === "string" ? x : "");
    return { pid: v.pid!, start: s(v.start), host: s(v.host), boot: s(v.boot), pidns: s(v.pidns), since: s(v.since) };
  } catch {
    return undefined;
  }
}

function where(h: LockHolder | undefined, me: Omit<LockHolder, "since">): string {
  if (!h) return "(its lock file is being written)";
  if (h.host !== me.host) return ` on host ${h.host}`;
  if (h.pidns && me.pidns && h.pidns !== me.pidns) return " in another container";
  return "";
}

function inUseMessage(dir: string, h: LockHolder | undefined, whereText: string): string {
  const who = h ? `(pid ${h.pid}${whereText}${h.since ? `, since ${h.since}` : ""})` : whereText;
  return (
    `data directory ${dir} is in use by a relayapi process ${who}; only one process at a time may open an embedded database: ` +
    `stop it first, or use PostgreSQL (DATABASE_URL) to run several relays`
  );
}

function writeDurably(path: string, content: string): void {
  const fd = openSync(path, "wx", 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd); // a power loss must not leave an empty lock behind the link
  } finally {
    closeSync(fd);
  }
}

function readOr(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function linkOr(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return "";
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // not there
  }
}

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}
