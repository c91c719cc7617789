#!/usr/bin/env node
// The `relayapi` command. TypeScript sources run through tsx's loader (compiled once per
// file at load time), so the checkout needs no build step.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
