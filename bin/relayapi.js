#!/usr/bin/env -S node --max-semi-space-size=2
// The `relayapi` command: runs dist/server/relayapi.js, the relay bundled from src/ by
// scripts/build-server.js, rebuilt first when a source file changed since (a few stat calls
// otherwise), so a checkout never runs stale code and no TypeScript loader runs in production.
// V8's young generation is capped at 2 MB per semi-space (default 16): under load it held ~50 MB
// of garbage between scavenges, a third of the relay's memory (README, "Performance").
import { pathToFileURL } from "node:url";
import { bundleFresh, SERVER_BUNDLE, SERVER_ENTRY } from "../scripts/build-server.js";

await import(pathToFileURL(await bundleFresh(SERVER_ENTRY, SERVER_BUNDLE)).href);
