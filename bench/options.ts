/** Command-line options of `npm run bench -- [flags]`. */
import { parseArgs } from "node:util";

export interface BenchOptions {
  rounds: number;
  /** Seconds per throughput measurement. */
  duration: number;
  connections: number;
  /** Seconds of warm-up load per target before the first round. */
  warmup: number;
  /** SSE frames per streamed answer and the mock's delay between them. */
  chunks: number;
  chunkDelayMs: number;
  /** Sequential streams per target per round. */
  streams: number;
  postgres: boolean;
  peers: boolean;
  /** Filler rows added to each relay's tokens table for the "CPU flat in table size" check (0 = off). */
  tokenRows: number;
  /** Targets (comma-separated) CPU-profiled over one extra throughput window each after the rounds (e.g. relay-pglite,reference). */
  cpuProf: string | undefined;
  /** nginx as the C ceiling when installed. */
  nginx: boolean;
  /** autocannon even when wrk is installed. */
  autocannon: boolean;
  /** Also measure the pre-issue-22 reference pass-through (reference-old). */
  oldReference: boolean;
  /** Also measure `serve --workers 1` against `--workers 2` (bench/workers-scaling.ts). */
  workers: boolean;
  out: string;
}

export const USAGE = `npm run bench -- [--quick] [--rounds N] [--duration S] [--connections C] [--warmup S]
  [--chunks N] [--chunk-delay MS] [--streams N] [--no-postgres] [--no-nginx] [--autocannon]
  [--old-reference] [--workers] [--peers] [--token-rows N] [--cpu-prof TARGET[,TARGET...]] [--out FILE]

  --quick   1 round x 3 s, 1 s warm-up, 5 streams (~1.5 min); explicit flags still win
  defaults  3 rounds x 4 s at 16 connections (~3 min)`;

export function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      rounds: { type: "string" },
      duration: { type: "string" },
      connections: { type: "string", default: "16" },
      warmup: { type: "string" },
      chunks: { type: "string", default: "20" },
      "chunk-delay": { type: "string", default: "5" },
      streams: { type: "string" },
      "no-postgres": { type: "boolean", default: false },
      "no-nginx": { type: "boolean", default: false },
      autocannon: { type: "boolean", default: false },
      "old-reference": { type: "boolean", default: false },
      workers: { type: "boolean", default: false },
      peers: { type: "boolean", default: false },
      "token-rows": { type: "string", default: "0" },
      "cpu-prof": { type: "string" },
      out: { type: "string", default: "bench/results/latest.json" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const num = (name: string, raw: string, min: number): number => {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}, got ${raw}`);
    return n;
  };
  const q = values.quick;
  return {
    rounds: Math.floor(num("rounds", values.rounds ?? (q ? "1" : "3"), 1)),
    duration: num("duration", values.duration ?? (q ? "3" : "4"), 1),
    connections: Math.floor(num("connections", values.connections, 1)),
    warmup: num("warmup", values.warmup ?? (q ? "1" : "2"), 0),
    chunks: Math.floor(num("chunks", values.chunks, 1)),
    chunkDelayMs: num("chunk-delay", values["chunk-delay"], 0),
    streams: Math.floor(num("streams", values.streams ?? (q ? "5" : "10"), 1)),
    nginx: !values["no-nginx"],
    autocannon: values.autocannon,
    oldReference: values["old-reference"],
    workers: values.workers,
    postgres: !values["no-postgres"],
    peers: values.peers,
    tokenRows: Math.floor(num("token-rows", values["token-rows"], 0)),
    cpuProf: values["cpu-prof"],
    out: values.out,
  };
}
