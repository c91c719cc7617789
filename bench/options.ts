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
  /** Target CPU-profiled over one extra throughput window after the rounds (e.g. relay-pglite). */
  cpuProf: string | undefined;
  out: string;
}

export const USAGE = `npm run bench -- [--rounds N] [--duration S] [--connections C] [--warmup S]
  [--chunks N] [--chunk-delay MS] [--streams N] [--no-postgres] [--peers]
  [--token-rows N] [--cpu-prof TARGET] [--out FILE]`;

export function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      rounds: { type: "string", default: "3" },
      duration: { type: "string", default: "5" },
      connections: { type: "string", default: "16" },
      warmup: { type: "string", default: "2" },
      chunks: { type: "string", default: "20" },
      "chunk-delay": { type: "string", default: "5" },
      streams: { type: "string", default: "10" },
      "no-postgres": { type: "boolean", default: false },
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
  return {
    rounds: Math.floor(num("rounds", values.rounds, 1)),
    duration: num("duration", values.duration, 1),
    connections: Math.floor(num("connections", values.connections, 1)),
    warmup: num("warmup", values.warmup, 0),
    chunks: Math.floor(num("chunks", values.chunks, 1)),
    chunkDelayMs: num("chunk-delay", values["chunk-delay"], 0),
    streams: Math.floor(num("streams", values.streams, 1)),
    postgres: !values["no-postgres"],
    peers: values.peers,
    tokenRows: Math.floor(num("token-rows", values["token-rows"], 0)),
    cpuProf: values["cpu-prof"],
    out: values.out,
  };
}
