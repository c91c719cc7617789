/**
 * A relay started with another master key than the one its database was written with refuses
 * in plain words (issue 17, finding 8), on PGlite and on PostgreSQL: the database keeps a check
 * value (a MAC under the key, never the key), written at the first start; a database from before
 * the check gets it only when the key opens a secret already stored.
 */
import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { settings } from "../src/db/schema/index.js";
import { build, type RelayApp } from "../src/server.js";
import { createTestDatabase, postgresAvailable, type TestDatabase } from "./support/databases.js";

const ROOT = join(import.meta.dirname, "..");
const pgEnabled = await postgresAvailable();
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "relayapi-masterkey-"));
  dirs.push(d);
  return d;
}

const newKey = () => randomBytes(32).toString("base64url");

function boot(dataDir: string, masterKey: string | undefined, databaseUrl?: string): Promise<RelayApp> {
  const config = loadConfig({ dataDir, port: 0, logLevel: "silent", ipRpm: 0, masterKey, databaseUrl }, {}, { configFile: false });
  return build(config);
}

/** What the check value must be, computed here from the key's definition, not by the relay. */
function expectedCheck(masterKey: string): string {
  const derivation = createHmac("sha256", Buffer.from(masterKey, "base64url")).update("relayapi derivation key").digest();
  return "v1." + createHmac("sha256", derivation).update("relayapi master key check").digest("base64url");
}

async function storedCheck(app: RelayApp): Promise<string | undefined> {
  const [row] = await app.database.db.select().from(settings).where(eq(settings.name, "master_key_check"));
  return row?.value;
}

const refused = (p: Promise<RelayApp>) =>
  p.then(
    async (app) => {
      await app.close();
      return "started";
    },
    (e: unknown) => (e as Error).message,
  );

const MISMATCH =
  /^the master key \(from (RELAYAPI_MASTER_KEY|.+master\.key)\) differs from the one this database was created with; start every instance with that same key, in RELAYAPI_MASTER_KEY or in the data directory's master\.key$/;

/** Runs the scenario on one database: `dataDir()` gives each instance its data directory. */
function scenario(driver: string, setup: () => Promise<{ dataDir: () => string; url?: string; drop?: () => Promise<void> }>): void {
  const right = newKey(); // the key the database is written with
  it(`${driver}: the first start records the check value; another key is refused, the right key starts`, async () => {
    const db = await setup();
    try {
      const first = await boot(db.dataDir(), right, db.url);
      const check = await storedCheck(first);
      await first.close();
      expect(check).toBe(expectedCheck(right));
      expect(check).not.toContain(right);

      const wrong = await refused(boot(db.dataDir(), newKey(), db.url));
      expect(wrong).toMatch(MISMATCH);
      expect(wrong).toContain("(from RELAYAPI_MASTER_KEY)");

      const again = await boot(db.dataDir(), right, db.url);
      expect(await storedCheck(again)).toBe(check);
      await again.close();
    } finally {
      await db.drop?.();
    }
  });

  it(`${driver}: a database from before the check: another key is refused and not recorded; the right key is`, async () => {
    const db = await setup();
    try {
      const first = await boot(db.dataDir(), right, db.url); // stores the relay's own key pair, encrypted
      await first.database.db.delete(settings).where(eq(settings.name, "master_key_check"));
      await first.close();

      expect(await refused(boot(db.dataDir(), newKey(), db.url))).toMatch(MISMATCH);
      const again = await boot(db.dataDir(), right, db.url);
      expect(await storedCheck(again)).toBe(expectedCheck(right));
      await again.close();
    } finally {
      await db.drop?.();
    }
  });
}

describe("master key check", { timeout: 60_000 }, () => {
  // One PGlite directory for the whole file: a new one costs seconds of initdb.
  const pgliteDir = tmp();
  scenario("pglite", async () => ({ dataDir: () => pgliteDir }));

  describe.skipIf(!pgEnabled)("postgres", () => {
    scenario("postgres", async () => {
      const pg: TestDatabase = await createTestDatabase();
      return { dataDir: () => tmp(), url: pg.url, drop: () => pg.drop() }; // instances share only the database
    });
  });

  it("relayapi serve with another RELAYAPI_MASTER_KEY: one line, exit 1", async () => {
    const dir = pgliteDir; // written with the pglite scenarios' key

    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("RELAYAPI_") && k !== "DATABASE_URL"));
    const child = spawn(process.execPath, [join(ROOT, "bin", "relayapi.js"), "serve", "--port", "0", "--data-dir", dir], {
      cwd: ROOT,
      env: { ...env, RELAYAPI_MASTER_KEY: newKey() },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect({ code, stdout }).toEqual({ code: 1, stdout: "" });
    const lines = stderr
      .trimEnd()
      .split("\n")
      .filter((l) => !l.startsWith("{")); // JSON log lines before the failure
    expect(lines).toHaveLength(1);
    expect(lines[0]!.replace(/^relayapi: /, "")).toMatch(MISMATCH);
    expect(stderr).not.toMatch(/\bat .+:\d+:\d+/);
  });
});
