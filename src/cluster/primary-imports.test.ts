/**
 * The primary of `relayapi serve --workers N` only forks and supervises (and on the embedded
 * database serves PGlite): what it loads up to there must not be the relay (src/server.ts:
 * Connect's server, prom-client, the console...), nor a database driver, nor the CLI's client
 * commands. Each module here is loaded statically by the one before or with `await import()`
 * on the way (src/cli/main.ts -> local-commands.ts -> main.ts -> cluster/primary.ts); what the
 * relay needs is imported in the workers only. Measured: the primary's RSS 88 -> 60 MB on
 * PostgreSQL, 181 -> 136 MB on PGlite.
 */
import { build, type Metafile } from "esbuild";
import { describe, expect, test } from "vitest";

/** The modules on the primary's path, in the order it loads them. */
const PATH = ["src/cli/main.ts", "src/cli/local-commands.ts", "src/main.ts", "src/cluster/primary.ts"];

/** Everything `from` loads with static imports, files and packages alike. */
function staticClosure(meta: Metafile, from: string): Set<string> {
  const seen = new Set<string>([from]);
  const todo = [from];
  while (todo.length > 0) {
    for (const i of meta.inputs[todo.pop()!]?.imports ?? []) {
      if (i.kind !== "import-statement" || seen.has(i.path)) continue;
      seen.add(i.path);
      if (!i.external) todo.push(i.path);
    }
  }
  return seen;
}

describe("the primary of serve --workers", () => {
  test("loads neither the relay, nor a database driver, nor the client commands", async () => {
    const { metafile } = await build({
      entryPoints: PATH,
      bundle: true,
      splitting: true,
      platform: "node",
      format: "esm",
      packages: "external",
      metafile: true,
      write: false,
      outdir: "out",
      logLevel: "silent",
    });
    const loaded = new Set(PATH.flatMap((f) => [...staticClosure(metafile, f)]));
    const unwanted = [
      "src/server.ts",
      "src/db/client.ts",
      "src/cli/client.ts",
      "src/cli/token-commands.ts",
      "prom-client",
      "undici",
      "@connectrpc/connect-node",
      "@electric-sql/pglite",
      "postgres",
      "drizzle-orm",
      "esbuild",
    ];
    expect(unwanted.filter((m) => loaded.has(m))).toEqual([]);
    // The check sees the path: the primary's own modules are there.
    expect(loaded.has("node:cluster") && loaded.has("src/config.ts") && loaded.has("pino")).toBe(true);
  });
});
