#!/usr/bin/env node
// The `relayapi` command: runs dist/server/relayapi.js, the relay bundled from src/ by
// scripts/build-server.js. In a checkout (src/ present) the bundle is rebuilt first when a source
// file changed since (a few stat calls otherwise), so a checkout never runs stale code and no
// TypeScript loader runs in production. An installed package (`npm pack`: dist/ without src/)
// runs the shipped bundle as it is and builds nothing.
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

const bundle = fileURLToPath(new URL("../dist/server/relayapi.js", import.meta.url));
if (existsSync(fileURLToPath(new URL("../src/cli/main.ts", import.meta.url)))) {
  const { bundleFresh, SERVER_BUNDLE, SERVER_ENTRY } = await import("../scripts/build-server.js");
  await bundleFresh(SERVER_ENTRY, SERVER_BUNDLE);
}
await import(pathToFileURL(bundle).href);
