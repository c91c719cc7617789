import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Test files boot their own relays and databases; two cores -> two at a time.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
