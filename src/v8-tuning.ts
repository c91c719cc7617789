/**
 * V8 settings the relay sets on itself at start (so `npm start`, `npx relayapi serve` and the
 * benchmark run alike), each measured under load on the 2-core machine (README, Performance).
 * A flag already given to node (`node --heap-growing-percent=50 bin/relayapi.js`, or in
 * NODE_OPTIONS) is left as given.
 */
import { setFlagsFromString } from "node:v8";

/**
 * The old generation grows to 1.3x what the last full collection kept, instead of V8's
 * adaptive 1.1-4x. Under load the relay keeps ~20 MB live but allocates ~35 KB per request;
 * with the adaptive factor the old space climbed to 50-90 MB between collections (relay on
 * PostgreSQL: peak RSS 170-200 MB), with 1.3x it stays near 125-135 MB. The price is more
 * full collections (24 instead of 6 in 10 s of load), about 2-3% of the relay's CPU; they
 * are mostly concurrent marking of a small heap, so latency did not move beyond noise.
 */
export function tuneHeap(): void {
  setUnlessGiven("--heap-growing-percent=30");
  youngGenerationFixed();
}

/**
 * The young generation stays at its initial 1 MB semi-spaces instead of doubling up to 16 MB:
 * under load V8 grew it to 32 MB (two semi-spaces) in every relay process, all of it resident,
 * and a worker of `serve --workers` carried the same 32 MB for half the load. Measured on
 * PostgreSQL, one process under load: peak RSS 133-135 MB -> ~103 MB. A request's garbage is
 * small and short-lived; the cost is more, cheaper scavenges, within the noise of CPU per call
 * (README, Performance). `--max-semi-space-size` cannot be changed once the heap exists, the
 * growth factor can; an operator's own young-generation flag is left as given.
 */
function youngGenerationFixed(): void {
  if (given("max-semi-space-size") || given("min-semi-space-size")) return;
  setUnlessGiven("--semi-space-growth-factor=1");
}

/**
 * WebAssembly compiled by Liftoff only, never tiered up to TurboFan: PGlite is ~9 MB of WASM
 * whose hot functions TurboFan compiled again, ~35-60 MB of code beside the Liftoff code and
 * ~40% more CPU for the first thousands of queries; the steady per-query CPU stays within the
 * machine's noise. Set before PGlite is compiled; it is process-wide (undici's llhttp too).
 */
export function wasmLiftoffOnly(): void {
  setUnlessGiven("--liftoff-only");
}

/** The flags the initdb child needs for the same effect. */
export const LIFTOFF_ONLY_ARGS = ["--liftoff-only"];

function setUnlessGiven(flag: string): void {
  if (!given(flag.replace(/^--(no-)?/, "").split("=")[0]!)) setFlagsFromString(flag);
}

/** Whether node was started with the flag `name` (on its command line or in NODE_OPTIONS). */
function given(name: string): boolean {
  return [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)].some(
    (a) =>
      a
        .replace(/^--(no-)?/, "")
        .replace(/_/g, "-")
        .split("=")[0] === name,
  );
}
