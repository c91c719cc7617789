/** Prints the run as tables and writes the JSON result file. */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { CheckCosts, GoalResult } from "./goals.js";
import type { Summary } from "./summarise.js";

function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(cells[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...cells.slice(1).map(line)].join("\n");
}

const f = (n: number | undefined, d = 2): string => (n === undefined || !Number.isFinite(n) ? "-" : n.toFixed(d));
const signed = (n: number | undefined, d = 2): string => (n === undefined || !Number.isFinite(n) ? "-" : (n >= 0 ? "+" : "") + n.toFixed(d));

export function formatReport(s: Summary, goals: GoalResult[], names: string[], header: string): string {
  const out: string[] = [header, ""];
  out.push("Non-streaming POST chat/completions (medians over rounds; peak RSS = max)");
  out.push(
    table(
      ["target", "req/s", "p50 ms", "p99 ms", "CPU ms/req", "peak RSS MB", "loop delay p99 ms", "c=1 p50 ms", "c=1 p99 ms", "c=1 p50 vs direct"],
      names.map((n) => {
        const t = s.targets[n]!;
        return [n, f(t.rps, 0), f(t.p50Ms), f(t.p99Ms), f(t.cpuMsPerReq, 3), f(t.peakRssMb, 0), f(t.loopP99Ms, 1), f(t.c1P50Ms, 3), f(t.c1P99Ms, 3), n === "direct" ? "" : signed(t.c1AddedP50Ms, 3)];
      }),
    ),
  );
  out.push("", "Throughput ratios per round (req/s over req/s)");
  const others = names.filter((n) => n !== "direct");
  const vsRef = others.filter((n) => n !== "reference");
  const vsPk = Object.keys(s.medianVsPortkey);
  out.push(
    table(
      ["round", ...vsRef.map((n) => `${n}/reference`), ...others.map((n) => `${n}/direct`), ...vsPk.map((n) => `${n}/portkey`)],
      [
        ...s.ratios.map((r) => [`${r.round}`, ...vsRef.map((n) => f(r.vsReference[n], 3)), ...others.map((n) => f(r.vsDirect[n], 3)), ...vsPk.map((n) => f(r.vsPortkey[n], 1))]),
        ["median", ...vsRef.map((n) => f(s.medianVsReference[n], 3)), ...others.map((n) => f(s.medianVsDirect[n], 3)), ...vsPk.map((n) => f(s.medianVsPortkey[n], 1))],
      ],
    ),
  );
  out.push("", "Streaming SSE (TTFB = first body byte; transit = mock write -> client read, per frame)");
  out.push(
    table(
      ["target", "TTFB ms", "TTFB vs direct", "transit p50 ms", "transit max ms", "worst frame vs direct p50", "max gap ms", "frames", "usage frame"],
      names.map((n) => {
        const t = s.targets[n]!;
        return [n, f(t.ttfbMs, 3), n === "direct" ? "" : signed(t.ttfbAddedMs, 3), f(t.transitP50Ms, 3), f(t.transitMaxMs, 3), n === "direct" ? "" : signed(t.chunkAddedMaxMs, 3), f(t.maxGapMs, 2), f(t.framesPerStream, 1), t.usageFrame ? "yes" : "NO"];
      }),
    ),
  );
  const relays = names.filter((n) => s.targets[n]!.connectH1Rps !== undefined);
  if (relays.length) {
    out.push("", "Connect unary IntrospectToken");
    out.push(
      table(
        ["target", "HTTP/1.1 JSON (autocannon) req/s", "p50 ms", "h2c (connect-node client) req/s", "p50 ms"],
        relays.map((n) => {
          const t = s.targets[n]!;
          return [n, f(t.connectH1Rps, 0), f(t.connectH1P50Ms), f(t.connectH2cRps, 0), f(t.connectH2cP50Ms)];
        }),
      ),
    );
  }
  const failures = names.filter((n) => s.targets[n]!.failures > 0);
  if (failures.length) out.push("", `Failed requests: ${failures.map((n) => `${n} ${s.targets[n]!.failures}`).join(", ")}`);
  out.push("", "Targets of issue 6");
  out.push(table(["status", "goal", "target", "value"], goals.map((g) => [g.status, g.goal, g.target, g.value])));
  return out.join("\n");
}

/** The per-call cost of the safety checks, with the issue 9 targets. */
export function formatCheckCosts(c: CheckCosts, goals: GoalResult[]): string {
  const p = c.policy;
  const out = ["Per-call cost of the safety checks (in-process, the relay's own functions, best of rounds, µs)"];
  const rows = [
    [`request policy, ${p.body} (${p.bytes} B)`, f(p.policyUs), `scan alone ${f(p.scanUs)}, JSON.parse ${f(p.parseUs)}`],
    ...c.dpop.map((d) => [`DPoP ${d.alg}, key cached (CPU)`, f(d.cachedKey[1], 1), `new key ${f(d.newKey[1], 1)}, signature alone ${f(d.signatureAlone[1], 1)}`]),
  ];
  out.push(table(["check", "µs", "for scale"], rows));
  out.push("", "Targets of issue 9");
  out.push(table(["status", "goal", "target", "value"], goals.map((g) => [g.status, g.goal, g.target, g.value])));
  return out.join("\n");
}

export function writeJson(file: string, data: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(data, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) + "\n");
}
