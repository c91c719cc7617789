/**
 * The embedded database's socket (src/cluster/embedded-db-server.ts) takes no password: whoever
 * can connect to it reads and writes the whole database (token counters, encrypted keys). It is
 * made 0600, but it was made so after listen(): for that moment it stood at its path with the
 * umask's permissions (0775 under the common umask 002: group-writable, so connectable by the
 * group), and a connection made then stays open. It is now bound in a private directory, made
 * 0600 there, and only then moved to its path.
 */
import * as fs from "node:fs";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { afterAll, describe, expect, it, vi } from "vitest";
import { SOCKET_NAME, serveEmbeddedDb } from "../src/cluster/embedded-db-server.js";

/** The socket's mode at its final path whenever its permissions are set (absent: not there yet). */
const seen: Array<number | "absent"> = [];
let watched: string | undefined;
vi.mock("node:fs", async (original) => {
  const real = await original<typeof import("node:fs")>();
  const wrap =
    <A extends unknown[], R>(fn: (...a: A) => R) =>
    (...args: A): R => {
      if (watched !== undefined) seen.push(real.existsSync(watched) ? real.statSync(watched).mode & 0o777 : "absent");
      return fn(...args);
    };
  return {
    ...real,
    default: { ...real, chmodSync: wrap(real.chmodSync), renameSync: wrap(real.renameSync) },
    chmodSync: wrap(real.chmodSync),
    renameSync: wrap(real.renameSync),
  };
});

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("the embedded database's socket", () => {
  it("is never at its path with other permissions than 0600, whatever the umask", { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "relayapi-probe-sock-"));
    dirs.push(dir);
    fs.chmodSync(dir, 0o775); // an operator's directory, open to its group
    const pg = await PGlite.create();
    const umask = process.umask(0o002);
    watched = join(dir, SOCKET_NAME);
    try {
      const server = await serveEmbeddedDb(pg, dir);
      watched = undefined;
      expect(server.path).toBe(join(dir, SOCKET_NAME));
      expect(statSync(server.path).mode & 0o777).toBe(0o600);
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.filter((m) => m !== "absent" && m !== 0o600)).toEqual([]);
      // It still answers at its path, and nothing else is left in the directory.
      await new Promise<void>((resolve, reject) => {
        const s = connect(server.path, () => {
          s.end();
          resolve();
        });
        s.on("error", reject);
      });
      expect(fs.readdirSync(dir)).toEqual([SOCKET_NAME]);
      await server.close();
      expect(fs.readdirSync(dir)).toEqual([]);
    } finally {
      process.umask(umask);
      watched = undefined;
      await pg.close();
    }
  });

  it("binds at the longest path the primary uses (100 bytes) as before", { timeout: 30_000 }, async () => {
    const base = mkdtempSync(join(tmpdir(), "relayapi-probe-sock-"));
    dirs.push(base);
    // The primary serves in the data directory while `<dir>/.s.PGSQL.5432` fits in 100 bytes.
    const dir = join(base, "d".repeat(100 - base.length - 2 - SOCKET_NAME.length));
    fs.mkdirSync(dir);
    expect(join(dir, SOCKET_NAME).length).toBe(100);
    const pg = await PGlite.create();
    try {
      const server = await serveEmbeddedDb(pg, dir);
      expect(statSync(server.path).mode & 0o777).toBe(0o600);
      await server.close();
    } finally {
      await pg.close();
    }
  });
});
