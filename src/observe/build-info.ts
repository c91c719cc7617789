/**
 * What build is running, for `relayapi_build_info{version, commit}` (issue 19.4): the version
 * from package.json, the commit from `RELAYAPI_COMMIT` (config `buildCommit`, set by an image
 * build that has no .git) or else read from the checkout's .git the way `git rev-parse HEAD`
 * does (HEAD, the loose ref, packed-refs; a worktree's gitdir file), so no git binary is needed
 * and nothing fails without one: "unknown" then. Read once per process.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { PACKAGE_ROOT } from "../package-root.js";

export interface BuildInfo {
  version: string;
  commit: string;
}

const SHA = /^[0-9a-f]{40}$/;
/** Label values stay short and plain, whatever the environment holds. */
const LABEL = /^[A-Za-z0-9._+-]{1,64}$/;

let cached: { version: string; commit: string | undefined } | undefined;

export function buildInfo(commitOverride?: string): BuildInfo {
  cached ??= { version: packageVersion(), commit: gitCommit(PACKAGE_ROOT) };
  const commit = commitOverride !== undefined && LABEL.test(commitOverride) ? commitOverride : cached.commit;
  return { version: cached.version, commit: commit ?? "unknown" };
}

function packageVersion(): string {
  try {
    const { version } = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version?: unknown };
    return typeof version === "string" && LABEL.test(version) ? version : "unknown";
  } catch {
    return "unknown";
  }
}

/** HEAD's commit (12 hex digits) from the .git directory under `root`; undefined when there is none. */
export function gitCommit(root: string): string | undefined {
  try {
    let gitDir = join(root, ".git");
    if (statSync(gitDir).isFile()) {
      const linked = /^gitdir:\s*(.+)$/m.exec(readFileSync(gitDir, "utf8"))?.[1];
      if (linked === undefined) return undefined;
      gitDir = resolve(root, linked.trim());
    }
    const head = readFileSync(join(gitDir, "HEAD"), "utf8").trim();
    if (SHA.test(head)) return head.slice(0, 12);
    const ref = /^ref:\s*(refs\/\S+)$/.exec(head)?.[1];
    if (ref === undefined) return undefined;
    // A worktree keeps its HEAD; branches live in the common directory.
    const commonFile = join(gitDir, "commondir");
    const common = existsSync(commonFile) ? resolve(gitDir, readFileSync(commonFile, "utf8").trim()) : gitDir;
    for (const dir of [gitDir, common]) {
      const loose = join(dir, ref);
      if (existsSync(loose)) {
        const sha = readFileSync(loose, "utf8").trim();
        if (SHA.test(sha)) return sha.slice(0, 12);
      }
    }
    const packed = join(common, "packed-refs");
    if (!existsSync(packed)) return undefined;
    for (const line of readFileSync(packed, "utf8").split("\n")) {
      const [sha, name] = line.trim().split(" ");
      if (name === ref && sha !== undefined && SHA.test(sha)) return sha.slice(0, 12);
    }
    return undefined;
  } catch {
    return undefined;
  }
}
