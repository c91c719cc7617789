#!/usr/bin/env node
// The `relayapi` command: runs dist/server/relayapi.js, the relay bundled from src/ by
// scripts/build-server.js, rebuilt first when a source file changed since (a few stat calls
// otherwise), so a checkout never runs stale code and no TypeScript loader runs in production.
import { pathToFileURL } from "node:url";
import { bundleFresh, SERVER_BUNDLE, SERVER_ENTRY } from "../scripts/build-server.js";

await import(pathToFileURL(await bundleFresh(SERVER_ENTRY, SERVER_BUNDLE)).href);
