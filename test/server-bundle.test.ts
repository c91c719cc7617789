/**
 * The relay runs bundled (scripts/build-server.js): rebuilt when a file it was made from changes
 * and only then, and, run from dist/, it finds the migrations and the console by the package root.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, expect, it } from "vitest";
import { bundleFresh, ROOT, SERVER_BUNDLE } from "../scripts/build-server.js";

const dir = mkdtempSync(join(tmpdir(), "relayapi-bundle-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("rebuilds when an input changes, and not otherwise", async () => {
  const entry = join(dir, "entry.ts");
  const part = join(dir, "part.ts");
  writeFileSync(part, "export const word: string = 'one';\n");
  writeFileSync(entry, "import { word } from './part.js';\nconsole.log(word);\n");
  const past = new Date(Date.now() - 60_000);
  utimesSync(part, past, past);
  utimesSync(entry, past, past);
  const out = join(dir, "out", "entry.js");
  const run = async () => (await promisify(execFile)(process.execPath, [out])).stdout.trim();

  await bundleFresh(entry, out);
  expect(await run()).toBe("one");
  const built = statSync(out).mtimeMs;

  await bundleFresh(entry, out);
  expect(statSync(out).mtimeMs).toBe(built);

  writeFileSync(part, "export const word: string = 'two';\n");
  await bundleFresh(entry, out);
  expect(await run()).toBe("two");

  rmSync(part);
  writeFileSync(entry, "console.log('three');\n");
  await bundleFresh(entry, out);
  expect(await run()).toBe("three");
});

it("the relay's bundle migrates a new data directory from dist/server/", async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [join(ROOT, "bin", "relayapi.js"), "migrate", "--data-dir", join(dir, "data")], {
    cwd: dir,
    timeout: 60_000,
  });
  expect(stdout).toBe("migrations applied (pglite)\n");
  expect(statSync(SERVER_BUNDLE).isFile()).toBe(true);
}, 90_000);
