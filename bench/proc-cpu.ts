/**
 * CPU time read from /proc, so each target is charged only for its own process (or its own
 * process tree: nginx's master and worker, PostgreSQL's backends serving the bench database).
 * utime + stime of /proc/<pid>/stat, in clock ticks (CLK_TCK, 100 on Linux): 10 ms resolution,
 * fine over a window of seconds. Children's times (cutime/cstime) are not included.
 */
import { readdirSync, readFileSync } from "node:fs";

/** Linux's USER_HZ; every mainstream kernel uses 100. */
const TICKS_PER_S = 100;

interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime in ms. */
  cpuMs: number;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined; // gone, or not Linux
  }
  // The command name is in parentheses and may hold spaces: the fields start after the last ')'.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  return { pid, ppid: Number(rest[1]), cpuMs: ((Number(rest[11]) + Number(rest[12])) * 1000) / TICKS_PER_S };
}

/** True when /proc/<pid>/stat can be read (Linux, same PID namespace). */
export function procAvailable(pid: number = process.pid): boolean {
  return readStat(pid) !== undefined;
}

/** CPU ms of one process since it started; NaN when it cannot be read. */
export function processCpuMs(pid: number): number {
  return readStat(pid)?.cpuMs ?? NaN;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
  } catch {
    return "";
  }
}

/** The direct children of `parent` (one scan of /proc). */
export function childrenOf(parent: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const s = readStat(pid);
    if (s?.ppid === parent) out.push(pid);
  }
  return out;
}

/**
 * The whole machine's CPU from /proc/stat, in ms summed over all cores: `busyMs` is every state
 * but idle and iowait (user, nice, system, irq, softirq, steal), so loopback networking done in
 * softirq and every process on the box (load generator, mock, database) count. Undefined off Linux.
 */
export function machineCpuMs(): { busyMs: number; totalMs: number } | undefined {
  let line: string | undefined;
  try {
    line = readFileSync("/proc/stat", "utf8").split("\n")[0];
  } catch {
    return undefined;
  }
  if (!line?.startsWith("cpu ")) return undefined;
  // user nice system idle iowait irq softirq steal (guest time is already inside user).
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busyMs: ((total - idle) * 1000) / TICKS_PER_S, totalMs: (total * 1000) / TICKS_PER_S };
}

/** CPU ms of a process and its direct children (nginx master + workers). */
export function treeCpuMs(root: number): number {
  let ms = processCpuMs(root);
  for (const pid of childrenOf(root)) ms += processCpuMs(pid);
  return ms;
}

/**
 * The PostgreSQL server's CPU charged to one database: its backends (the processes whose
 * parent is the postmaster and whose title names the database) plus the server's own
 * background processes (WAL writer, checkpointer, background writer, autovacuum), which work
 * for every database. Other databases' backends (other work on the box) are left out.
 * Backends are found again at every reading, so a connection opened mid-window counts; one
 * that closed mid-window loses its CPU (the relay's pool keeps its connections).
 */
export class PostgresCpu {
  constructor(
    readonly postmasterPid: number,
    private readonly database: string,
  ) {}

  /** From any backend's pid (`select pg_backend_pid()`): its parent is the postmaster. */
  static fromBackend(backendPid: number, database: string): PostgresCpu | undefined {
    const s = readStat(backendPid);
    return s && s.ppid > 1 ? new PostgresCpu(s.ppid, database) : undefined;
  }

  cpuMs(): number {
    let ms = 0;
    for (const pid of childrenOf(this.postmasterPid)) {
      const title = cmdline(pid);
      // Client backends' titles read "postgres: <user> <database> <host> <state>".
      const isClient = / \d+\.\d+\.\d+\.\d+\(\d+\)| \[local\]/.test(title);
      if (!isClient || title.includes(` ${this.database} `)) ms += processCpuMs(pid);
    }
    return ms;
  }
}
