/**
 * Global setup (vitest.config.ts): gives the test files a directory to record their generated
 * fuzz and fault cases in (test/support/fuzz.ts reportCases), and prints the run's totals.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    caseCountDir: string;
  }
}

export default function setup(project: TestProject): () => void {
  const dir = mkdtempSync(join(tmpdir(), "relayapi-cases-"));
  project.provide("caseCountDir", dir);
  return () => {
    for (const kind of ["fuzz", "faults"]) {
      let text = "";
      try {
        text = readFileSync(join(dir, `${kind}.txt`), "utf8");
      } catch {
        continue;
      }
      const rows = text
        .trim()
        .split("\n")
        .map((l) => l.split(" "));
      const total = rows.reduce((n, [, c]) => n + Number(c), 0);
      console.log(`${kind}: ${total} cases in total (${rows.map(([f, c]) => `${f} ${c}`).join(", ")})`);
    }
    rmSync(dir, { recursive: true, force: true });
  };
}
