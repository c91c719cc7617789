import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { SEMI_SPACE_MB } from "./v8-tuning.js";

const run = promisify(execFile);

/**
 * A child process that keeps every object of one allocation site through scavenges (so V8
 * pretenures the site, which took 17-29 rounds here), until a new object of that site is
 * allocated old or 150 rounds passed; prints whether the last one was still young.
 */
async function probeIsYoung(tune: boolean): Promise<boolean> {
  const code = `
    ${tune ? 'const { tuneHeap } = await import("./src/v8-tuning.ts"); tuneHeap();' : ""}
    function make(i) { return { a: i, b: null }; }
    // The allocations in a function of their own, optimized as relay code is: in the module's
    // top-level loop they depended on when on-stack replacement came, and V8's default then
    // pretenured the site within 150 rounds in only 1 of 3 runs (18-29 rounds this way, loaded
    // or not).
    function fill(keep) {
      for (let i = 0; i < 20000; i++) keep.push(make(i));
      for (let j = 0; j < 20000; j++) new Array(16);
    }
    const keep = [];
    let young = true;
    for (let round = 0; round < 150 && young; round++) {
      fill(keep);
      young = %InYoungGeneration(make(1));
    }
    process.stdout.write(String(young));
  `;
  const { stdout } = await run(process.execPath, ["--allow-natives-syntax", "--import", "tsx", "--input-type=module", "-e", code], {
    timeout: 60_000,
  });
  return stdout.trim() === "true";
}

/**
 * A child process that allocates as a loaded relay does (short-lived objects, some of each batch
 * kept a little while), which makes V8 grow the young generation to its most; prints the new
 * space's committed size in MB (both semi-spaces), with `args` given to node.
 */
async function probeNewSpaceMb(tune: boolean, args: string[] = []): Promise<number> {
  const code = `
    ${tune ? 'const { tuneHeap } = await import("./src/v8-tuning.ts"); tuneHeap();' : ""}
    const { getHeapSpaceStatistics } = await import("node:v8");
    // ~0.5 MB per turn of the event loop, as a loaded relay allocates for its calls of one turn,
    // and the last ~1 MB kept: V8 grows the space when what survives outgrows it.
    let keep = [];
    for (let round = 0; round < 400; round++) {
      for (let i = 0; i < 10000; i++) {
        keep.push({ a: i, b: [i] });
        if (keep.length > 20000) keep = [];
      }
      await new Promise((r) => setImmediate(r));
    }
    const space = getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
    process.stdout.write(String(space.space_size / 2 ** 20));
  `;
  const { stdout } = await run(process.execPath, [...args, "--import", "tsx", "--input-type=module", "-e", code], { timeout: 60_000 });
  return Number(stdout.trim());
}

describe("tuneHeap", () => {
  // Two 16 MB semi-spaces were 32 MB of the relay's peak RSS under load (issue 22).
  it("holds the young generation at two SEMI_SPACE_MB semi-spaces under allocation pressure", async () => {
    expect(await probeNewSpaceMb(false)).toBeGreaterThan(2 * SEMI_SPACE_MB);
    const tuned = await probeNewSpaceMb(true);
    expect(tuned).toBeGreaterThan(0);
    expect(tuned).toBeLessThanOrEqual(2 * SEMI_SPACE_MB);
  }, 120_000);

  it("leaves a semi-space size given to node to V8", async () => {
    expect(await probeNewSpaceMb(true, ["--max-semi-space-size=8"])).toBe(16);
  }, 60_000);

  // Pretenured sites kept every young object stored into their dead objects alive through each
  // scavenge: ~20% of a relayed call's allocations survived and most were promoted (issue 22).
  it("turns off allocation-site pretenuring: a surviving site still allocates young", async () => {
    // V8's default pretenures the site (the probe has the power to show the flag), when its
    // compiler and collector get there within the rounds: under the whole suite's load one run
    // in many did not, so the control has three tries.
    let pretenured = false;
    for (let i = 0; i < 3 && !pretenured; i++) pretenured = !(await probeIsYoung(false));
    expect(pretenured).toBe(true);
    expect(await probeIsYoung(true)).toBe(true);
  }, 240_000);
});
