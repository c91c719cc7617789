import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // Prints the generated fuzz and fault case counts of the run (test/support/fuzz.ts); makes
    // the migrated embedded database new PGlite relays start from (test/support/pglite-template.ts).
    globalSetup: ["test/support/fuzz-summary.ts", "test/support/pglite-template.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Test files boot their own relays and databases; two cores -> two at a time.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
