/**
 * The one human line printed at start-up on a terminal (issue 21.10), beside the JSON logs:
 * where the relay listens, where the console is and where the admin key is. Only when stderr is
 * a TTY: a service manager or a container collects the JSON logs and needs no such line. The
 * decision and the text are plain functions so tests need no TTY.
 */
import { isAbsolute, join, relative, sep } from "node:path";

/** Whether to print the line: stderr is a terminal. */
export function shouldPrintStartupLine(stderr: { readonly isTTY?: boolean }): boolean {
  return stderr.isTTY === true;
}

export interface StartupFacts {
  url: string;
  dataDir: string;
  /** The admin key came from the configuration (no file to point at). */
  adminKeyConfigured: boolean;
  cwd: string;
}

/** `RelayAPI listening on http://127.0.0.1:8080 — console at /console — admin key in ./data/admin.key` */
export function startupLine(f: StartupFacts): string {
  return `RelayAPI listening on ${f.url} — console at /console — admin key ${f.adminKeyConfigured ? "from the configuration" : `in ${shown(join(f.dataDir, "admin.key"), f.cwd)}`}`;
}

/** A path below the working directory as `./…`, any other as it is. */
function shown(path: string, cwd: string): string {
  const rel = relative(cwd, path);
  if (rel === "" || rel.startsWith("..") || isAbsolute(rel)) return path;
  return "." + sep + rel;
}
