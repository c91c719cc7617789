/**
 * The data directory lock's verdicts on a lock file it finds: held by this process, by a live
 * process, by a dead one, by a live process that reused a dead holder's pid, after a reboot,
 * and by a process on another host (seen only through the lock's refreshed mtime).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DataDirInUseError, LOCK_FILE, lockDataDir, startTime, UNSEEN_STALE_MS, type LockHolder } from "./data-dir-lock.js";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "relayapi-lock-"));
  dirs.push(d);
  return d;
}

/** The lock file as this machine's process `pid` would write it; fields overridable. */
function plant(dir: string, over: Partial<LockHolder>, ageMs = 0): void {
  const mine = JSON.parse(readOwn()) as LockHolder;
  const path = join(dir, LOCK_FILE);
  writeFileSync(path, JSON.stringify({ ...mine, since: "2020-01-01T00:00:00.000Z", ...over }) + "\n");
  const t = new Date(Date.now() - ageMs);
  utimesSync(path, t, t);
}

/** This process's own lock content (taken once in a scratch directory). */
let own: string | undefined;
function readOwn(): string {
  if (own) return own;
  throw new Error("call ownLock() first");
}
async function ownLock(): Promise<void> {
  const d = tmp();
  const lock = await lockDataDir(d);
  own = readFileSync(lock.path, "utf8");
  lock.release();
}

const refusal = (dir: string) =>
  lockDataDir(dir).then(
    () => undefined,
    (e: unknown) => e,
  );

describe("lockDataDir", () => {
  it("a second open in this process is refused; release removes the file; then it can be taken again", async () => {
    const dir = tmp();
    const lock = await lockDataDir(dir);
    expect(statSync(lock.path).mode & 0o777).toBe(0o600);
    const holder = JSON.parse(readFileSync(lock.path, "utf8")) as LockHolder;
    expect(holder).toMatchObject({ pid: process.pid, host: hostname() });
    if (existsSync("/proc/self/stat")) expect(holder.start).toBe(startTime(process.pid));

    const e = await refusal(dir);
    expect(e).toBeInstanceOf(DataDirInUseError);
    expect((e as Error).message).toContain(`data directory ${dir} is in use by a relayapi process (pid ${process.pid}, this process`);

    lock.release();
    lock.release(); // idempotent
    expect(readdirSync(dir)).toEqual([]);
    (await lockDataDir(dir)).release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a lock of a process that died (kill -9) is taken over", async () => {
    await ownLock();
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!; // exited: its pid names no process
    const dir = tmp();
    plant(dir, { pid: dead, start: "12345" });
    const lock = await lockDataDir(dir);
    expect(JSON.parse(readFileSync(lock.path, "utf8"))).toMatchObject({ pid: process.pid });
    lock.release();
  });

  it.skipIf(!existsSync("/proc/self/stat"))(
    "a live pid with another start time is a reused pid, not the holder; with the holder's start time it is refused",
    async () => {
      await ownLock();
      const live = process.ppid; // alive for the whole test
      const reused = tmp();
      plant(reused, { pid: live, start: String(Number(startTime(live)) + 1) });
      (await lockDataDir(reused)).release();

      const held = tmp();
      plant(held, { pid: live, start: startTime(live) });
      const e = await refusal(held);
      expect(e).toBeInstanceOf(DataDirInUseError);
      expect((e as Error).message).toContain(`(pid ${live}, since 2020-01-01T00:00:00.000Z)`);
      expect(existsSync(join(held, LOCK_FILE))).toBe(true); // left alone
    },
  );

  it("a lock from before a reboot of this machine is taken over", async () => {
    await ownLock();
    const dir = tmp();
    plant(dir, { pid: process.ppid, start: startTime(process.ppid), boot: "00000000-0000-0000-0000-000000000000" });
    (await lockDataDir(dir)).release();
  });

  it("a lock from another host holds while its mtime is refreshed, and is abandoned after UNSEEN_STALE_MS", async () => {
    await ownLock();
    const fresh = tmp();
    plant(fresh, { pid: 4242, host: "relay-elsewhere" }, 1_000);
    const e = await refusal(fresh);
    expect((e as Error).message).toContain("(pid 4242 on host relay-elsewhere, since");

    const old = tmp();
    plant(old, { pid: 4242, host: "relay-elsewhere" }, UNSEEN_STALE_MS + 5_000);
    (await lockDataDir(old)).release();
  });

  it("an unreadable lock is held while young (being written) and taken when old", async () => {
    const young = tmp();
    writeFileSync(join(young, LOCK_FILE), "");
    expect(await refusal(young)).toBeInstanceOf(DataDirInUseError);
    const old = tmp();
    writeFileSync(join(old, LOCK_FILE), "{not json");
    const t = new Date(Date.now() - 60_000);
    utimesSync(join(old, LOCK_FILE), t, t);
    (await lockDataDir(old)).release();
  });
});
