/** The targets of issues 6 and 22, checked against a run's summary: met, not met or not measured. */
import type { DpopCost } from "./dpop-cost.js";
import type { PolicyCost } from "./policy-cost.js";
import type { Summary } from "./summarise.js";

export type GoalStatus = "met" | "not met" | "not measured";

export interface GoalResult {
  goal: string;
  target: string;
  status: GoalStatus;
  value: string;
}

const RELAYS = ["relay-pglite", "relay-postgres"];

function check(goal: string, target: string, value: number | undefined, limit: number, higherIsBetter: boolean, unit: string, why?: string): GoalResult {
  if (value === undefined || !Number.isFinite(value)) return { goal, target, status: "not measured", value: why ?? "target not run" };
  const ok = higherIsBetter ? value >= limit : value <= limit;
  const digits = Math.abs(value) < 10 ? 3 : 1;
  return { goal, target, status: ok ? "met" : "not met", value: `${value.toFixed(digits)}${unit} (limit ${higherIsBetter ? ">=" : "<="} ${limit}${unit})` };
}

export interface TokenRowsResult {
  rows: number;
  seedSeconds: number;
  beforeCpuMsPerReq: number;
  afterCpuMsPerReq: number;
  beforeRps: number;
  afterRps: number;
}

/** "Flat" = CPU per request with the filler rows at most this much above the run just before seeding. */
export const FLAT_CPU_LIMIT = 1.25;

export function evaluateGoals(s: Summary, opts: { peersMeasured: boolean; tokenRows: Record<string, TokenRowsResult> }): GoalResult[] {
  const out: GoalResult[] = [];
  const ref = s.targets.reference;
  /** The bare pass-through's figure on the same measure: the floor this box and the load generator allow. */
  const withRef = (g: GoalResult, v: number | undefined): GoalResult => {
    if (g.status !== "not measured" && v !== undefined && Number.isFinite(v)) g.value += `; reference ${v.toFixed(3)} ms`;
    return g;
  };
  /** A bare Node server's unary req/s on the same run (bench/bare-unary.ts): what this box allows. */
  const withCeiling = (g: GoalResult, v: number | undefined): GoalResult => {
    if (g.status !== "not measured" && v !== undefined && Number.isFinite(v)) g.value += `; bare Node server ${v.toFixed(0)}`;
    return g;
  };
  /** Issue 22, item 5: one relay process at load. */
  const RSS_LIMIT: Record<string, number> = { "relay-pglite": 200, "relay-postgres": 150 };
  for (const relay of RELAYS) {
    const t = s.targets[relay];
    out.push(check("CPU per call vs reference (PostgreSQL's backends counted)", relay, s.medianCpuVsReference[relay], 1.3, false, "x"));
    out.push(check("non-streaming throughput vs reference", relay, s.medianVsReference[relay], 0.8, true, "x"));
    out.push(check("RSS at load", relay, t?.peakRssMb, RSS_LIMIT[relay]!, false, " MB"));
    out.push(withRef(check("added p50 latency at concurrency 1 over direct", relay, t?.c1AddedP50Ms, 0.3, false, " ms"), ref?.c1AddedP50Ms));
    out.push(withRef(check("streaming TTFB over direct", relay, t?.ttfbAddedMs, 1, false, " ms"), ref?.ttfbAddedMs));
    out.push(
      withRef(check("each chunk forwarded within 2 ms (worst frame vs direct median)", relay, t?.chunkAddedMaxMs, 2, false, " ms"), ref?.chunkAddedMaxMs),
    );
    out.push(withCeiling(check("IntrospectToken req/s, Connect unary HTTP/1.1, 16 connections", relay, t?.connectH1Rps, 5000, true, ""), ref?.connectH1Rps));
    out.push(withCeiling(check("IntrospectToken req/s, Connect unary h2c, 16 connections", relay, t?.connectH2cRps, 5000, true, ""), ref?.connectH2cRps));
    out.push(check("RelayService.Relay CPU per call vs the HTTP layer's", relay, t?.rpcCpuVsHttp, 1.3, false, "x"));
    if (opts.peersMeasured) out.push(check(">= 10x Portkey's throughput", relay, s.medianVsPortkey[relay], 10, true, "x"));
  }
  const goal = "per-request CPU flat from 10 to 1,000,000 token rows (CPU after / before seeding)";
  if (Object.keys(opts.tokenRows).length === 0) out.push({ goal, target: "relays", status: "not measured", value: "needs --token-rows 1000000" });
  for (const [relay, r] of Object.entries(opts.tokenRows)) {
    const g = check(goal, relay, r.afterCpuMsPerReq / r.beforeCpuMsPerReq, FLAT_CPU_LIMIT, false, "x");
    g.value += `, ${r.beforeCpuMsPerReq.toFixed(3)} -> ${r.afterCpuMsPerReq.toFixed(3)} ms at ${r.rows} rows`;
    if (r.rows < 1_000_000 && g.status === "met") g.value += " (fewer rows than the target's 1,000,000)";
    out.push(g);
  }
  return out;
}

/** What the per-token safety checks add to a call, measured in-process on the real functions. */
export interface CheckCosts {
  policy: PolicyCost;
  dpop: DpopCost[];
}

/** The targets of issue 9: policy <= 10 µs on a 3 KB body, DPoP verification <= 150 µs (CPU, key cached). */
export function evaluateCheckGoals(c: CheckCosts): GoalResult[] {
  const out = [check("request policy per call, 3 KB body (scan + every rule + inserted cap)", "relay", c.policy.policyUs, 10, false, " µs")];
  for (const d of c.dpop) out.push(check(`DPoP proof verification per call (${d.alg}, key cached, CPU)`, "relay", d.cachedKey[1], 150, false, " µs"));
  return out;
}
