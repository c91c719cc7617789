/**
 * `--peers`: installs Portkey's open-source gateway into a temporary folder (reused by later
 * runs while the pinned versions match) with npm. `@hono/node-server` is pinned to 1.14.1 via
 * `overrides`, because the gateway otherwise gets its own newer copy, which breaks its streaming.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

export const PORTKEY_VERSION = "1.15.2";
export const HONO_NODE_SERVER_VERSION = "1.14.1";

function installed(dir: string): boolean {
  try {
    const pk = JSON.parse(readFileSync(join(dir, "node_modules/@portkey-ai/gateway/package.json"), "utf8")) as { version: string };
    const hono = JSON.parse(readFileSync(join(dir, "node_modules/@hono/node-server/package.json"), "utf8")) as { version: string };
    const nested = join(dir, "node_modules/@portkey-ai/gateway/node_modules/@hono/node-server");
    return pk.version === PORTKEY_VERSION && hono.version === HONO_NODE_SERVER_VERSION && !existsSync(nested);
  } catch {
    return false;
  }
}

/** Returns the path of the gateway's server entry (build/start-server.js). */
export async function installPortkey(log: (s: string) => void): Promise<string> {
  const dir = join(tmpdir(), `relayapi-bench-peers-${PORTKEY_VERSION}`);
  const entry = join(dir, "node_modules/@portkey-ai/gateway/build/start-server.js");
  if (installed(dir)) return entry;
  mkdirSync(dir, { recursive: true });
  const pkg = {
    private: true,
    dependencies: { "@portkey-ai/gateway": PORTKEY_VERSION, "@hono/node-server": HONO_NODE_SERVER_VERSION },
    overrides: { "@hono/node-server": HONO_NODE_SERVER_VERSION },
  };
  writeFileSync(join(dir, "package.json"), JSON.stringify(pkg, null, 2));
  log(`installing @portkey-ai/gateway@${PORTKEY_VERSION} (@hono/node-server@${HONO_NODE_SERVER_VERSION}) into ${dir}`);
  await promisify(execFile)("npm", ["install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error"], { cwd: dir, timeout: 180_000 });
  if (!installed(dir)) throw new Error(`Portkey install in ${dir} did not produce the pinned versions`);
  return entry;
}
