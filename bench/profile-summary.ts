/**
 * Reads a V8 .cpuprofile and answers "where does the time go": top self-time functions, self
 * time by module (package, node: internal, or src/ file), and time by the innermost src/
 * function on the stack (so library time is charged to the relay code that called it).
 * Percentages are of busy time: "(idle)" samples and the profiler's own calls are left out.
 * Targets run bundled (dist/), so a bundled function is named by the `// src/<file>` comment
 * esbuild writes before each module's code.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** Per bundle file: the 0-based line of each `// src/...` module marker and its path. */
const bundleMarkers = new Map<string, [number, string][]>();

/** The src/ file a line of a bundle belongs to; undefined outside bundles. */
function bundleSource(url: string, line: number): string | undefined {
  if (!url.includes("/dist/")) return undefined;
  let markers = bundleMarkers.get(url);
  if (!markers) {
    markers = [];
    try {
      const lines = readFileSync(url.startsWith("file:") ? fileURLToPath(url) : url, "utf8").split("\n");
      lines.forEach((l, i) => {
        if (l.startsWith("// src/") || l.startsWith("// bench/")) markers!.push([i, l.slice(3).trim()]);
      });
    } catch {
      // the bundle was rebuilt or removed since: fall back to its own name
    }
    bundleMarkers.set(url, markers);
  }
  let found: string | undefined;
  for (const [at, file] of markers) {
    if (at > line) break;
    found = file;
  }
  return found;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

interface Row {
  name: string;
  ms: number;
  pct: number;
}

export interface ProfileSummary {
  file: string;
  busyMs: number;
  idleMs: number;
  topFunctions: Row[];
  byModule: Row[];
  byRelayFunction: Row[];
}

function moduleOf(url: string, name: string, line = 0): string {
  if (!url) return name.startsWith("(") ? name : "(native)";
  const bundled = bundleSource(url, line);
  if (bundled) return bundled;
  if (url.startsWith("node:") || url.startsWith("wasm:")) return url.startsWith("wasm:") ? "wasm (PGlite, undici llhttp)" : url;
  const nm = url.lastIndexOf("node_modules/");
  if (nm !== -1) {
    const rest = url.slice(nm + 13).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const src = url.lastIndexOf("/src/");
  return src !== -1 ? url.slice(src + 1) : url.replace(/^file:\/\//, "");
}

function rows(map: Map<string, number>, busy: number, top: number): Row[] {
  return [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => ({ name, ms: Math.round(us / 1000), pct: Math.round((1000 * us) / busy) / 10 }));
}

const add = (m: Map<string, number>, k: string, v: number): void => void m.set(k, (m.get(k) ?? 0) + v);

export function summariseProfile(dir: string, top = 12): ProfileSummary | undefined {
  const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
  if (!file) return undefined;
  const p = JSON.parse(readFileSync(join(dir, file), "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (n: ProfileNode): string => {
    const { functionName, url, lineNumber } = n.callFrame;
    const bundled = bundleSource(url, lineNumber);
    return `${functionName || "(anonymous)"}  ${bundled ?? moduleOf(url, functionName)}${bundled ? "" : lineNumber > 0 ? `:${lineNumber + 1}` : ""}`;
  };
  const owner = new Map<number, string>();
  const ownerOf = (id: number): string => {
    const hit = owner.get(id);
    if (hit !== undefined) return hit;
    const n = byId.get(id)!;
    const inRelay = n.callFrame.url.includes("/src/") || bundleSource(n.callFrame.url, n.callFrame.lineNumber)?.startsWith("src/") === true;
    const o = inRelay ? label(n) : parent.has(id) ? ownerOf(parent.get(id)!) : "(outside relay code)";
    owner.set(id, o);
    return o;
  };
  const profiler = new Map<number, boolean>();
  const inProfiler = (id: number): boolean => {
    let hit = profiler.get(id);
    if (hit === undefined) {
      hit = byId.get(id)!.callFrame.url === "node:inspector" || (parent.has(id) && inProfiler(parent.get(id)!));
      profiler.set(id, hit);
    }
    return hit;
  };
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const fn = new Map<string, number>();
  const mod = new Map<string, number>();
  const relay = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    if (n.callFrame.functionName === "(idle)" || inProfiler(id)) {
      idle += us;
      continue;
    }
    busy += us;
    add(fn, label(n), us);
    add(mod, moduleOf(n.callFrame.url, n.callFrame.functionName, n.callFrame.lineNumber), us);
    add(relay, ownerOf(id), us);
  }
  return {
    file: join(dir, file),
    busyMs: Math.round(busy / 1000),
    idleMs: Math.round(idle / 1000),
    topFunctions: rows(fn, busy, top),
    byModule: rows(mod, busy, top),
    byRelayFunction: rows(relay, busy, top),
  };
}

export function formatProfile(s: ProfileSummary, what: string): string {
  const lines = [`CPU profile of ${what}: ${s.busyMs} ms busy, ${s.idleMs} ms idle (${s.file})`];
  const section = (title: string, r: Row[]): void => {
    lines.push(`  ${title}:`);
    for (const x of r) lines.push(`    ${x.pct.toFixed(1).padStart(5)}%  ${x.name}`);
  };
  section("top self time, by function", s.topFunctions);
  section("self time by module", s.byModule);
  section("time by innermost relay (src/) function on the stack", s.byRelayFunction.slice(0, 8));
  return lines.join("\n");
}
