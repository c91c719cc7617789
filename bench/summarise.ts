/** Turns the rounds into per-target medians and per-round ratios. */
import type { RoundResult } from "./rounds.js";
import { median } from "./stats.js";

export interface TargetSummary {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuMsPerReq: number;
  /** Of cpuMsPerReq, the database server's share (PostgreSQL's backends); 0 when not counted. */
  dbCpuMsPerReq: number;
  /** Highest RSS seen under load in any round. */
  peakRssMb: number;
  loopP99Ms: number;
  c1P50Ms: number;
  c1P99Ms: number;
  /** Median over rounds of (this target's c1 p50 - direct's c1 p50). */
  c1AddedP50Ms: number;
  ttfbMs: number;
  ttfbAddedMs: number;
  transitP50Ms: number;
  transitMaxMs: number;
  /** Median over rounds of (worst frame transit through this target - direct's median transit). */
  chunkAddedMaxMs: number;
  maxGapMs: number;
  framesPerStream: number;
  /** Every round's streams ended with the include_usage frame. */
  usageFrame: boolean;
  connectH1Rps?: number;
  connectH1P50Ms?: number;
  connectH2cRps?: number;
  connectH2cP50Ms?: number;
  /** RelayService.Relay (relays): req/s, CPU ms per call, and per round its CPU / the HTTP layer's (median). */
  rpcRps?: number;
  rpcCpuMsPerReq?: number;
  rpcCpuVsHttp?: number;
  failures: number;
}

export interface RatioRound {
  round: number;
  /** target -> its rps / reference's rps, / nginx's rps and / direct's rps. */
  vsReference: Record<string, number>;
  vsNginx: Record<string, number>;
  vsDirect: Record<string, number>;
  /** target -> its CPU ms per request / the reference's and / nginx's (database CPU included). */
  cpuVsReference: Record<string, number>;
  cpuVsNginx: Record<string, number>;
  /** relay -> its rps / Portkey's rps (with --peers). */
  vsPortkey: Record<string, number>;
}

export interface Summary {
  targets: Record<string, TargetSummary>;
  ratios: RatioRound[];
  medianVsReference: Record<string, number>;
  medianVsNginx: Record<string, number>;
  medianVsDirect: Record<string, number>;
  medianCpuVsReference: Record<string, number>;
  medianCpuVsNginx: Record<string, number>;
  medianVsPortkey: Record<string, number>;
}

export function summarise(rounds: RoundResult[], names: string[]): Summary {
  const targets: Record<string, TargetSummary> = {};
  const per = <T>(name: string, f: (r: RoundResult) => T): T[] => rounds.map(f);
  for (const name of names) {
    const t = (r: RoundResult) => r.targets[name]!;
    const d = (r: RoundResult) => r.targets.direct;
    const added = (f: (r: RoundResult) => number | undefined) => median(per(name, (r) => f(r) ?? NaN));
    const s: TargetSummary = {
      rps: median(per(name, (r) => t(r).throughput.rps)),
      p50Ms: median(per(name, (r) => t(r).throughput.p50Ms)),
      p99Ms: median(per(name, (r) => t(r).throughput.p99Ms)),
      cpuMsPerReq: median(per(name, (r) => t(r).throughput.cpuMsPerReq)),
      dbCpuMsPerReq: median(per(name, (r) => t(r).throughput.dbCpuMsPerReq ?? 0)),
      peakRssMb: Math.max(...per(name, (r) => t(r).throughput.peakRssMb)),
      loopP99Ms: median(per(name, (r) => t(r).throughput.loopP99Ms)),
      c1P50Ms: median(per(name, (r) => t(r).c1.p50Ms)),
      c1P99Ms: median(per(name, (r) => t(r).c1.p99Ms)),
      c1AddedP50Ms: added((r) => (d(r) ? t(r).c1.p50Ms - d(r)!.c1.p50Ms : undefined)),
      ttfbMs: median(per(name, (r) => t(r).stream.ttfbP50Ms)),
      ttfbAddedMs: added((r) => (d(r) ? t(r).stream.ttfbP50Ms - d(r)!.stream.ttfbP50Ms : undefined)),
      transitP50Ms: median(per(name, (r) => t(r).stream.transitP50Ms)),
      transitMaxMs: Math.max(...per(name, (r) => t(r).stream.transitMaxMs)),
      chunkAddedMaxMs: added((r) => (d(r) ? t(r).stream.transitMaxMs - d(r)!.stream.transitP50Ms : undefined)),
      maxGapMs: median(per(name, (r) => t(r).stream.maxGapMs)),
      framesPerStream: median(per(name, (r) => t(r).stream.framesPerStream)),
      usageFrame: rounds.every((r) => t(r).stream.usageSeen),
      failures: rounds.reduce((n, r) => n + t(r).throughput.non2xx + t(r).throughput.errors + t(r).c1.failures + t(r).stream.failures, 0),
    };
    if (rounds[0]?.targets[name]?.connectH1) {
      s.connectH1Rps = median(per(name, (r) => t(r).connectH1!.rps));
      s.connectH1P50Ms = median(per(name, (r) => t(r).connectH1!.p50Ms));
      s.connectH2cRps = median(per(name, (r) => t(r).connectH2c!.rps));
      s.connectH2cP50Ms = median(per(name, (r) => t(r).connectH2c!.p50Ms));
    }
    if (rounds[0]?.targets[name]?.rpcRelay) {
      s.rpcRps = median(per(name, (r) => t(r).rpcRelay!.rps));
      s.rpcCpuMsPerReq = median(per(name, (r) => t(r).rpcRelay!.cpuMsPerReq));
      s.rpcCpuVsHttp = median(per(name, (r) => t(r).rpcRelay!.cpuMsPerReq / t(r).throughput.cpuMsPerReq));
      s.failures += rounds.reduce((n, r) => n + t(r).rpcRelay!.non2xx + t(r).rpcRelay!.errors, 0);
    }
    targets[name] = s;
  }
  const ratios: RatioRound[] = rounds.map((r) => {
    const ref = r.targets.reference?.throughput;
    const ngx = r.targets.nginx?.throughput;
    const direct = r.targets.direct?.throughput.rps ?? NaN;
    const vsReference: Record<string, number> = {};
    const vsNginx: Record<string, number> = {};
    const vsDirect: Record<string, number> = {};
    const cpuVsReference: Record<string, number> = {};
    const cpuVsNginx: Record<string, number> = {};
    const vsPortkey: Record<string, number> = {};
    const portkey = r.targets.portkey?.throughput.rps;
    for (const name of names) {
      if (name === "direct") continue;
      const { rps, cpuMsPerReq } = r.targets[name]!.throughput;
      if (name !== "reference" && ref) {
        vsReference[name] = rps / ref.rps;
        cpuVsReference[name] = cpuMsPerReq / ref.cpuMsPerReq;
      }
      if (name !== "nginx" && ngx) {
        vsNginx[name] = rps / ngx.rps;
        cpuVsNginx[name] = cpuMsPerReq / ngx.cpuMsPerReq;
      }
      vsDirect[name] = rps / direct;
      if (portkey !== undefined && name.startsWith("relay")) vsPortkey[name] = rps / portkey;
    }
    return { round: r.round, vsReference, vsNginx, vsDirect, cpuVsReference, cpuVsNginx, vsPortkey };
  });
  const med = (key: "vsReference" | "vsNginx" | "vsDirect" | "cpuVsReference" | "cpuVsNginx" | "vsPortkey"): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const name of Object.keys(ratios[0]?.[key] ?? {})) out[name] = median(ratios.map((x) => x[key][name]!));
    return out;
  };
  return {
    targets,
    ratios,
    medianVsReference: med("vsReference"),
    medianVsNginx: med("vsNginx"),
    medianVsDirect: med("vsDirect"),
    medianCpuVsReference: med("cpuVsReference"),
    medianCpuVsNginx: med("cpuVsNginx"),
    medianVsPortkey: med("vsPortkey"),
  };
}
