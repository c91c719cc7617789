/**
 * The package as an app gets it (issue 21, finding 11): `npm pack` of this checkout installs into
 * an empty project without building anything (dist/ is in the tarball, `prepare` does not run for
 * a tarball dependency), and from there `npx relayapi serve` runs the relay and `relayapi/sdk`
 * imports in Node and bundles with esbuild.
 *
 * Packing uses `--ignore-scripts`: it packs the dist/ that `npm install` built and leaves it alone
 * (others may be running from it). The install asks the npm registry only for what the npm cache
 * lacks (`--prefer-offline`): this machine's cache does not hold every dependency, so a fully
 * offline install is not possible; the registry is reachable here and in CI.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..");
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "relayapi-package-"));
const app = join(dir, "app");
let tarball = "";
let relayPid = 0; // signalled in afterAll too, should a check fail before the relay stopped

/** The environment without any RELAYAPI_* / DATABASE_URL of the machine running the tests. */
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("RELAYAPI_") && k !== "DATABASE_URL" && !k.startsWith("npm_")));

beforeAll(async () => {
  const { stdout } = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], {
    cwd: ROOT,
    env,
    timeout: 60_000,
    maxBuffer: 64 << 20,
  });
  const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  tarball = join(dir, packed!.filename);
  const paths = packed!.files.map((f) => f.path);
  expect(paths).toEqual(
    expect.arrayContaining([
      "bin/relayapi.js",
      "dist/server/relayapi.js",
      "dist/src/sdk/index.js",
      "dist/src/sdk/index.d.ts",
      "dist/console/index.html",
      "drizzle/0000_init.sql",
      "drizzle/meta/_journal.json",
      "src/db/pglite-initdb.js",
    ]),
  );
  // Only what runs: no TypeScript sources, tests, build scripts or half-written build files.
  expect(paths.filter((p) => /\.ts$/.test(p) && !p.endsWith(".d.ts"))).toEqual([]);
  expect(paths.filter((p) => /^(test|scripts|bench|console|proto)\/|\.tmp$/.test(p))).toEqual([]);

  writeFileSync(join(dir, "package.json"), "{}"); // npm stops looking for a project root here
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", tarball], { cwd: app, env, timeout: 120_000 });
}, 180_000);
afterAll(() => {
  try {
    if (relayPid > 0) process.kill(relayPid, "SIGKILL");
  } catch {
    // already gone
  }
  rmSync(dir, { recursive: true, force: true });
});

it("installs without building: the shipped dist/ is used as it is", () => {
  const pkg = join(app, "node_modules", "relayapi");
  expect(existsSync(join(pkg, "dist", "server", "relayapi.js"))).toBe(true);
  expect(existsSync(join(pkg, "src", "cli", "main.ts"))).toBe(false); // bin/relayapi.js runs the bundle, no rebuild
  expect(existsSync(join(pkg, "scripts"))).toBe(false); // `prepare` (npm run build) could not have run
  // A server build records its inputs beside the bundle; the tarball leaves that record out.
  expect(existsSync(join(pkg, "dist", "server", "relayapi.js.inputs.json"))).toBe(false);
});

it("`npx relayapi serve` runs the relay from the installed package, and stops on SIGTERM", async () => {
  const child = spawn("npx", ["--no-install", "relayapi", "serve", "--port", "0", "--data-dir", join(dir, "data")], {
    cwd: app,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const listening = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 60_000);
    const read = (d: Buffer): void => {
      output += d.toString();
      if (output.includes("relay listening")) {
        clearTimeout(timer);
        resolve(true);
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  // npx runs the bin through `sh -c` and does not pass SIGTERM on to it, so the signal goes to the
  // relay's own pid (in its log lines). "close": the relay (sharing npx's output pipes) has exited.
  const pid = (relayPid = Number(/"pid":(\d+)/.exec(output)?.[1] ?? 0));
  const closed = new Promise<void>((resolve) => (child.stdout.closed ? resolve() : child.once("close", () => resolve())));
  if (pid > 0) process.kill(pid, "SIGTERM");
  else child.kill("SIGTERM");
  await closed;
  relayPid = 0;
  expect(listening, output).toBe(true);
  expect(output).toMatch(/"url":"http:\/\/127\.0\.0\.1:\d+"/);
  expect(output).toMatch(/"msg":"shut down"/);
  expect([0, null]).toContain(child.exitCode);
}, 120_000);

it("`relayapi/sdk` imports in Node and bundles with esbuild", async () => {
  const script = 'import { sealToken } from "relayapi/sdk";\nconsole.log(typeof sealToken);\n';
  writeFileSync(join(app, "check.mjs"), script);
  expect((await run(process.execPath, ["check.mjs"], { cwd: app, env, timeout: 30_000 })).stdout).toBe("function\n");

  // esbuild is a dependency of relayapi, so the app has it: bundle for the browser, run the result.
  const esbuild = join(app, "node_modules", "esbuild", "bin", "esbuild");
  await run(esbuild, ["check.mjs", "--bundle", "--platform=browser", "--format=esm", "--outfile=out/bundle.js", "--log-level=error"], {
    cwd: app,
    env,
    timeout: 30_000,
  });
  const bundle = readFileSync(join(app, "out", "bundle.js"), "utf8");
  expect(bundle).not.toMatch(/from "relayapi\/sdk"|require\("node:/);
  writeFileSync(join(app, "out", "package.json"), JSON.stringify({ type: "module" }));
  expect((await run(process.execPath, ["out/bundle.js"], { cwd: app, env, timeout: 30_000 })).stdout).toBe("function\n");
});
