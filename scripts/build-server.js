#!/usr/bin/env node
// The relay runs as JavaScript bundled by esbuild from src/ (an entry file and chunks; packages
// stay imports of node_modules), not through a TypeScript loader: tsx's loader thread and its
// esbuild service process cost ~45 MB of memory and start-up time for every process.
//
// `bundleFresh(entry, outfile)` rebuilds only when a file the last bundle was made from changed
// (the list is kept beside the bundle), so `bin/relayapi.js` is always current after an edit
// and costs a few stat calls otherwise. Each file is written to a temporary name and renamed into
// place, the entry last, so processes starting at the same moment never read half a bundle.
//
// `node scripts/build-server.js` (run by `npm install`'s prepare step and `npm run build`) builds
// the relay again whatever the record says, in place and file by file as above. Old chunks (a
// chunk's name carries its hash) stay beside new ones while a relay may still load them: every
// `await import()` in src/ runs while a process starts (serve, migrate, database, Redis), so this
// removes only chunks the new build did not write and older than CHUNK_GRACE_MS.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const SERVER_ENTRY = join(ROOT, "src", "cli", "main.ts");
export const SERVER_BUNDLE = join(ROOT, "dist", "server", "relayapi.js");

/** Bundles `entry` into `outfile` unless the bundle is newer than every file it was built from. */
export async function bundleFresh(entry, outfile, { force = false } = {}) {
  if (!force && isFresh(outfile)) return outfile;
  const started = Date.now();
  // Loaded only to build: bin/relayapi.js runs this in every relay process of a checkout
  // (`serve --workers` forks it again per worker), and esbuild's module is ~14 MB of RSS.
  const { build } = await import("esbuild");
  const result = await build({
    entryPoints: { [basename(outfile, ".js")]: entry },
    bundle: true,
    // A module src/ imports with `await import()` becomes a chunk loaded at that moment, with the
    // packages it imports (ioredis and Bottleneck only when Redis is configured). Chunk names
    // carry a hash; a rebuild leaves old ones behind until `npm run build:server`.
    splitting: true,
    chunkNames: "chunks/[name]-[hash]",
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    sourcemap: "linked",
    metafile: true,
    write: false,
    outdir: dirname(outfile),
    absWorkingDir: ROOT, // the metafile's input paths are relative to it
    logLevel: "warning",
  });
  mkdirSync(join(dirname(outfile), "chunks"), { recursive: true });
  const inputs = Object.keys(result.metafile.inputs).map((f) => relative(dirname(outfile), resolve(ROOT, f)));
  const outputs = result.outputFiles.map((f) => relative(dirname(outfile), f.path));
  const files = [...result.outputFiles.map((f) => [f.path, f.contents]), [inputsFile(outfile), JSON.stringify({ started, inputs, outputs })]];
  // Chunks, maps and the inputs list first, the entry last: an entry present means they are too.
  files.sort(([a], [b]) => (a === outfile ? 1 : b === outfile ? -1 : 0));
  for (const [path, contents] of files) {
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, contents);
    renameSync(tmp, path);
  }
  return outfile;
}

const CHUNK_GRACE_MS = 10 * 60_000;

/** Removes chunks beside `outfile` that its last build did not write, once older than the grace. */
export function pruneChunks(outfile, now = Date.now()) {
  const chunks = join(dirname(outfile), "chunks");
  const { outputs } = JSON.parse(readFileSync(inputsFile(outfile), "utf8"));
  if (!Array.isArray(outputs)) return; // recorded by an older build: keep everything
  const current = new Set(outputs.map((f) => resolve(dirname(outfile), f)));
  for (const name of readdirSync(chunks)) {
    const path = join(chunks, name);
    if (!current.has(path) && statSync(path).mtimeMs < now - CHUNK_GRACE_MS) rmSync(path, { force: true });
  }
}

const inputsFile = (outfile) => `${outfile}.inputs.json`;

/** Fresh when every input is older than the start of the build that read it (an edit made
 *  while esbuild ran counts as newer). */
function isFresh(outfile) {
  let record;
  try {
    statSync(outfile);
    record = JSON.parse(readFileSync(inputsFile(outfile), "utf8"));
  } catch {
    return false;
  }
  try {
    return record.inputs.every((f) => statSync(resolve(dirname(outfile), f)).mtimeMs < record.started);
  } catch {
    return false; // an input was removed or renamed
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await bundleFresh(SERVER_ENTRY, SERVER_BUNDLE, { force: true });
  pruneChunks(SERVER_BUNDLE);
}
