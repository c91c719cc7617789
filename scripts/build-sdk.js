#!/usr/bin/env node
// `npm run build:sdk` (part of `npm run build`, run by `npm install`'s prepare step): compiles
// src/sdk and the gen/ files it imports (tsconfig.sdk.json) into a temporary directory beside
// dist/, then swaps dist/src and dist/gen in by rename. A test or app importing `relayapi/sdk`
// while this runs sees the old files or the new ones, never a missing or half-written tree.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const dist = join(root, "dist");
const stage = join(dist, `.sdk-${process.pid}.tmp`);
mkdirSync(dist, { recursive: true });
rmSync(stage, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
try {
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.sdk.json"), "--outDir", stage], { stdio: "inherit" });
  for (const dir of ["src", "gen"]) swapIn(join(stage, dir), join(dist, dir));
} finally {
  rmSync(stage, { recursive: true, force: true });
}

/** Moves `fresh` to `target`; the old `target` is renamed aside first and removed after, so the
 *  only moment without `target` is between two renames. */
export function swapIn(fresh, target) {
  const old = `${target}.old-${process.pid}.tmp`;
  if (existsSync(target)) renameSync(target, old);
  renameSync(fresh, target);
  rmSync(old, { recursive: true, force: true });
}
