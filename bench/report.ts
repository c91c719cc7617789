/** Prints the run as tables and writes the JSON result file. */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { CheckCosts, GoalResult } from "./goals.js";
import type { RatioRound, Summary } from "./summarise.js";

function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(cells[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...cells.slice(1).map(line)].join("\n");
}

const f = (n: number | undefined, d = 2): string => (n === undefined || !Number.isFinite(n) ? "-" : n.toFixed(d));
const signed = (n: number | undefined, d = 2): string => (n === undefined || !Number.isFinite(n) ? "-" : (n >= 0 ? "+" : "") + n.toFixed(d));

export function formatReport(
  s: Summary,
  goals: GoalResult[],
  names: string[],
  header: string,
  tools = { http1: "autocannon", h2c: "connect-node client" },
): string {
  const out: string[] = [header, ""];
  out.push(
    "Non-streaming POST chat/completions (medians over rounds; peak RSS = max). CPU = the target's own process(es) from /proc; relay-postgres adds PostgreSQL's backends (the DB column is that share)",
  );
  out.push(
    table(
      ["target", "req/s", "CPU ms/req", "of which DB", "p50 ms", "p99 ms", "peak RSS MB", "loop delay p99 ms", "c=1 p50 ms", "c=1 p50 vs direct"],
      names.map((n) => {
        const t = s.targets[n]!;
        return [
          n,
          f(t.rps, 0),
          f(t.cpuMsPerReq, 3),
          t.dbCpuMsPerReq ? f(t.dbCpuMsPerReq, 3) : "",
          f(t.p50Ms),
          f(t.p99Ms),
          f(t.peakRssMb, 0),
          f(t.loopP99Ms, 1),
          f(t.c1P50Ms, 3),
          n === "direct" ? "" : signed(t.c1AddedP50Ms, 3),
        ];
      }),
    ),
  );
  const others = names.filter((n) => n !== "direct");
  const vsRef = others.filter((n) => n !== "reference" && n !== "nginx");
  const hasNginx = names.includes("nginx");
  const vsPk = Object.keys(s.medianVsPortkey);
  out.push(
    "",
    "Ratios per round: throughput (req/s over req/s) and CPU per request (ms over ms); issue 22 wants relay/reference CPU <= 1.3 and throughput >= 0.8",
  );
  const cols: [string, (r: RatioRound) => number | undefined, number | undefined, number][] = [];
  for (const n of vsRef) {
    cols.push([`${n}/reference req/s`, (r) => r.vsReference[n], s.medianVsReference[n], 3]);
    cols.push([`${n}/reference CPU`, (r) => r.cpuVsReference[n], s.medianCpuVsReference[n], 3]);
    if (hasNginx) {
      cols.push([`${n}/nginx req/s`, (r) => r.vsNginx[n], s.medianVsNginx[n], 3]);
      cols.push([`${n}/nginx CPU`, (r) => r.cpuVsNginx[n], s.medianCpuVsNginx[n], 3]);
    }
  }
  for (const n of vsPk) cols.push([`${n}/portkey req/s`, (r) => r.vsPortkey[n], s.medianVsPortkey[n], 1]);
  out.push(
    table(
      ["round", ...cols.map((c) => c[0])],
      [...s.ratios.map((r) => [`${r.round}`, ...cols.map((c) => f(c[1](r), c[3]))]), ["median", ...cols.map((c) => f(c[2], c[3]))]],
    ),
  );
  out.push("", "Streaming SSE (TTFB = first body byte; transit = mock write -> client read, per frame)");
  out.push(
    table(
      ["target", "TTFB ms", "TTFB vs direct", "transit p50 ms", "transit max ms", "worst frame vs direct p50", "max gap ms", "frames", "usage frame"],
      names.map((n) => {
        const t = s.targets[n]!;
        return [
          n,
          f(t.ttfbMs, 3),
          n === "direct" ? "" : signed(t.ttfbAddedMs, 3),
          f(t.transitP50Ms, 3),
          f(t.transitMaxMs, 3),
          n === "direct" ? "" : signed(t.chunkAddedMaxMs, 3),
          f(t.maxGapMs, 2),
          f(t.framesPerStream, 1),
          t.usageFrame ? "yes" : "NO",
        ];
      }),
    ),
  );
  const relays = names.filter((n) => s.targets[n]!.connectH1Rps !== undefined);
  if (relays.length) {
    out.push(
      "",
      "Connect unary IntrospectToken (16 connections; h2c: one stream in flight per connection); reference = a bare Node server answering a fixed JSON on HTTP/1.1 and h2c, the ceiling",
    );
    out.push(
      table(
        ["target", `HTTP/1.1 JSON (${tools.http1}) req/s`, "p50 ms", `h2c (${tools.h2c}) req/s`, tools.h2c === "h2load" ? "mean ms" : "p50 ms"],
        relays.map((n) => {
          const t = s.targets[n]!;
          return [n, f(t.connectH1Rps, 0), f(t.connectH1P50Ms), f(t.connectH2cRps, 0), f(t.connectH2cP50Ms)];
        }),
      ),
    );
  }
  const rpc = names.filter((n) => s.targets[n]!.rpcRps !== undefined);
  if (rpc.length) {
    out.push("", `The same chat call through RelayService.Relay (Connect server-streaming JSON over HTTP/1.1, ${tools.http1}) and through /api`);
    out.push(
      table(
        ["target", "Relay req/s", "Relay CPU ms/req", "/api req/s", "/api CPU ms/req", "Relay CPU / /api CPU (median of rounds)"],
        rpc.map((n) => {
          const t = s.targets[n]!;
          return [n, f(t.rpcRps, 0), f(t.rpcCpuMsPerReq, 3), f(t.rps, 0), f(t.cpuMsPerReq, 3), f(t.rpcCpuVsHttp)];
        }),
      ),
    );
  }
  const failures = names.filter((n) => s.targets[n]!.failures > 0);
  if (failures.length) out.push("", `Failed requests: ${failures.map((n) => `${n} ${s.targets[n]!.failures}`).join(", ")}`);
  out.push("", "Targets of issues 6 and 22");
  out.push(
    table(
      ["status", "goal", "target", "value"],
      goals.map((g) => [g.status, g.goal, g.target, g.value]),
    ),
  );
  return out.join("\n");
}

/** The per-call cost of the safety checks, with the issue 9 targets. */
export function formatCheckCosts(c: CheckCosts, goals: GoalResult[]): string {
  const p = c.policy;
  const out = ["Per-call cost of the safety checks (in-process, the relay's own functions, best of rounds, µs)"];
  const rows = [
    [`request policy, ${p.body} (${p.bytes} B)`, f(p.policyUs), `scan alone ${f(p.scanUs)}, JSON.parse ${f(p.parseUs)}`],
    ...c.dpop.map((d) => [
      `DPoP ${d.alg}, key cached (CPU)`,
      f(d.cachedKey[1], 1),
      `new key ${f(d.newKey[1], 1)}, signature alone ${f(d.signatureAlone[1], 1)}`,
    ]),
  ];
  out.push(table(["check", "µs", "for scale"], rows));
  out.push("", "Targets of issue 9");
  out.push(
    table(
      ["status", "goal", "target", "value"],
      goals.map((g) => [g.status, g.goal, g.target, g.value]),
    ),
  );
  return out.join("\n");
}

export function writeJson(file: string, data: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(data, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) + "\n");
}
