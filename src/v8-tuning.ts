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
 *
 * No allocation-site pretenuring. V8 allocates objects of a site whose objects were seen to
 * survive straight into the old generation. Under load that turned on for some of a relayed
 * call's objects, and every young object stored into one of them afterwards (a listener, a
 * promise's reaction, the next chunk's state) was kept by it through each scavenge after the
 * call ended, until a mark-compact: ~20% of everything a call allocates survived its first
 * scavenge and 75% of that was promoted (2.4 MB survived and 1.8 MB promoted per scavenge at
 * ~3,000 calls/s, 7-20 ms scavenges, a mark-compact every ~0.5 s; `--trace-gc-nvp`). Without it
 * a scavenge keeps 0.2-0.7 MB, pauses 1-3 ms, and the relay spends ~20% less CPU per call
 * (bench/README.md, issue 22).
 */
export function tuneHeap(): void {
  setUnlessGiven("--heap-growing-percent=30");
  setUnlessGiven("--no-allocation-site-pretenuring");
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
  const name = flag.replace(/^--(no-)?/, "").split("=")[0]!;
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)];
  if (
    given.some(
      (a) =>
        a
          .replace(/^--(no-)?/, "")
          .replace(/_/g, "-")
          .split("=")[0] === name,
    )
  )
    return;
  setFlagsFromString(flag);
}
