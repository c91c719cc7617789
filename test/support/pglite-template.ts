/**
 * Global setup (vitest.config.ts): one embedded database, created and migrated once per run, that
 * startRelay (test/support/relay.ts) copies into each new PGlite relay's data directory. A new
 * directory costs ~3 s of initdb (a child process: src/db/pglite-initdb.js) and migrations; a
 * copy of this one ~0.4 s, and the relay opens it as it opens any directory it wrote before (a
 * restart). The copy is real PGlite data, made by the relay's own start-up; suites about the
 * first start itself (a new directory, its keys, initdb) use directories of their own.
 *
 * The admin key is not copied (each relay makes its own); the master key is, as the database
 * holds its check (src/keys/master-key-check.ts).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { loadConfig } from "../../src/config.js";
import { build } from "../../src/server.js";

declare module "vitest" {
  export interface ProvidedContext {
    pgliteTemplate: string;
  }
}

export default async function setup(project: TestProject): Promise<() => void> {
  const dir = mkdtempSync(join(tmpdir(), "relayapi-template-"));
  const app = await build(loadConfig({ dataDir: dir, port: 0, logLevel: "silent" }, {}, { configFile: false }));
  await app.close();
  rmSync(join(dir, "admin.key"), { force: true });
  project.provide("pgliteTemplate", dir);
  return () => rmSync(dir, { recursive: true, force: true });
}
