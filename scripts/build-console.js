#!/usr/bin/env node
// `npm run build:console` (run by `npm install`'s prepare step): bundles the admin console
// (console/, plain TypeScript + DOM) with esbuild into dist/console/, served by the relay at
// /console (src/http/console-route.ts). Asset names carry a content hash so they can be cached
// for good; index.html names them and is never cached. Nothing is fetched at run time.
//
// `node scripts/build-console.js [outdir]` builds elsewhere (tests use the default).
//
// The build writes into a temporary directory beside `outdir` and renames it into place (the old
// one is renamed aside first and removed after), so a running relay serving /console never sees
// a missing or half-written index.html.
import { build } from "esbuild";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const target = resolve(process.argv[2] ?? join(root, "dist", "console"));
const out = `${target}.${process.pid}.tmp`;
const assets = join(out, "assets");

rmSync(out, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });
process.on("exit", () => rmSync(out, { recursive: true, force: true })); // after a failed build

const result = await build({
  entryPoints: { app: join(root, "console", "src", "main.ts"), styles: join(root, "console", "src", "styles.css") },
  outdir: assets,
  entryNames: "[name]-[hash]",
  bundle: true,
  format: "esm",
  platform: "browser",
  // A browser has no `process`: protobuf-es's guarded `process.env` probe folds away, and the
  // bundle holds no Node global (test/sealed-sdk.test.ts checks all of dist/ for that).
  define: { process: "undefined" },
  target: ["es2022", "chrome110", "firefox110", "safari16"],
  minify: true,
  sourcemap: "linked",
  legalComments: "linked",
  metafile: true,
  logLevel: "warning",
});

/** The hashed output file of one entry point. */
function outputOf(entry) {
  for (const [file, meta] of Object.entries(result.metafile.outputs)) {
    if (meta.entryPoint !== undefined && basename(meta.entryPoint).startsWith(entry)) return basename(file);
  }
  throw new Error(`esbuild produced no output for ${entry}`);
}

const html = readFileSync(join(root, "console", "index.html"), "utf8")
  .replace("%APP_JS%", `/console/assets/${outputOf("main.ts")}`)
  .replace("%APP_CSS%", `/console/assets/${outputOf("styles.css")}`);
writeFileSync(join(out, "index.html"), html);
writeFileSync(join(assets, "favicon.svg"), readFileSync(join(root, "console", "favicon.svg")));

const old = `${target}.old-${process.pid}.tmp`;
if (existsSync(target)) renameSync(target, old);
renameSync(out, target);
rmSync(old, { recursive: true, force: true });

const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
console.log(`console built into ${target} (${Math.round(bytes / 1024)} KiB)`);
