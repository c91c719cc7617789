/**
 * The package's root directory (package.json, drizzle/, dist/), found by walking up from this
 * module: it runs from src/ under a TypeScript loader (tests, bench) and from dist/server/ as
 * the bundled relay (scripts/build-server.js), so no path here counts `../` steps.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "relayapi") return dir;
    if (dirname(dir) === dir) throw new Error(`relayapi: no package.json named "relayapi" above ${from}`);
  }
}

export const PACKAGE_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));
