/**
 * V8 settings the relay sets on itself at start (so `npm start`, `npx relayapi serve` and the
 * benchmark run alike), each measured under load on the 2-core machine (README, Performance).
 * A flag already given to node (`node --heap-growing-percent=50 bin/relayapi.js`, or in
 * NODE_OPTIONS) is left as given.
 */
import { PerformanceObserver } from "node:perf_hooks";
import { getHeapSpaceStatistics, setFlagsFromString } from "node:v8";

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
  holdYoungGeneration();
}

/** The young generation's size tuneHeap holds: two semi-spaces of this many MB. */
export const SEMI_SPACE_MB = 4;

/**
 * Holds the young generation at two 4 MB semi-spaces instead of V8's up to two 16 MB ones.
 * Under load V8 doubled it to the most within a few seconds, and the two semi-spaces are used
 * in turn, so 32 MB of the relay's peak RSS was new space holding a few calls' garbage. Issue
 * 22, non-streaming calls over 8 connections: peak RSS 191-195 MB on PGlite and 132-141 MB on
 * PostgreSQL with 16 MB semi-spaces, 167-170 MB on PGlite with 4 MB ones (the same heap with
 * `--max-semi-space-size=4`), 162-167 and 115-127 MB with 1 MB ones. Smaller is not free: a
 * scavenge has a fixed cost beside what survives it, and in a model of relayed calls (8 in
 * flight, ~60 KB allocated each) CPU per call was 24.1 us with 16 MB, 23.6 with 4, 24.9 with 2
 * and 28.5 with 1 (medians of 3 runs that varied by 10-20%): 4 MB is the smallest that cost
 * nothing there. (The relay's own CPU per call was not measurable apart on the shared machine.)
 *
 * The most V8 may use (--max-semi-space-size) is read only when the heap is made, before any of
 * our code runs; the growth factor is read at each growth. So growth is allowed (x2, V8's own)
 * while the space is under 4 MB per semi-space and stopped (x1) once there, rechecked after
 * collections because V8 shrinks the space again when the process is quiet. A space that grew
 * past 4 MB before this ran stays as it is until V8 shrinks it, so it runs before the relay's
 * modules are loaded (`serve`, src/main.ts). A semi-space size or growth factor given to node
 * is left to V8.
 */
function holdYoungGeneration(): void {
  if (givenAny(["max-semi-space-size", "min-semi-space-size", "semi-space-growth-factor"])) return;
  let growing: boolean | undefined;
  const hold = (): void => {
    // new_space's committed size is both semi-spaces.
    const grow = (getHeapSpaceStatistics().find((s) => s.space_name === "new_space")?.space_size ?? 0) < 2 * SEMI_SPACE_MB * 2 ** 20;
    if (grow === growing) return;
    growing = grow;
    setFlagsFromString(`--semi-space-growth-factor=${grow ? 2 : 1}`);
  };
  hold();
  // Entries arrive in batches after collections, not during them: a lookup per batch.
  new PerformanceObserver(hold).observe({ entryTypes: ["gc"] });
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
  if (givenAny([flag.replace(/^--(no-)?/, "").split("=")[0]!])) return;
  setFlagsFromString(flag);
}

/** Whether node was started with any of these V8 flags (names without `--`/`--no-`). */
function givenAny(names: string[]): boolean {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)];
  return given.some((a) =>
    names.includes(
      a
        .replace(/^--(no-)?/, "")
        .replace(/_/g, "-")
        .split("=")[0]!,
    ),
  );
}
