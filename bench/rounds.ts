/**
 * The measured rounds. Each round runs every phase over every target, targets alternating
 * (the order rotates each round, so drift on the box spreads evenly): throughput at C
 * connections (with the target's CPU from /proc, the PostgreSQL server's for relay-postgres,
 * and peak RSS), latency at concurrency 1, streaming (TTFB and per-frame transit), and for the
 * relays Connect IntrospectToken and the same chat call through RelayService.Relay.
 */
import { INTROSPECT_PATH, runConnectLoad } from "./connect-load.js";
import { driver, runSequentialLatency, runThroughput, type HttpCall, type LatencyResult, type ThroughputResult } from "./load.js";
import { H2LOAD, runH2load } from "./wrk.js";
import type { BenchOptions } from "./options.js";
import { runStreamProbe, type StreamResult } from "./stream-probe.js";
import type { TargetHandle } from "./targets.js";

export interface BenchTarget {
  name: string;
  relay: boolean;
  handle: TargetHandle;
  call: HttpCall;
  streamCall: HttpCall;
  /** The relay token (relays only). */
  token?: string;
  /** CPU ms of the database server working for this target (PostgreSQL's backends), if counted. */
  databaseCpuMs?: () => number;
}

export interface MeasuredThroughput extends ThroughputResult {
  /** The target's own process(es), plus the database server's CPU when it is counted. */
  cpuMsPerReq: number;
  /** Of which the database server's (PostgreSQL's backends); 0 when none is counted. */
  dbCpuMsPerReq: number;
  peakRssMb: number;
  /** The target's event-loop delay under this load (ms): what a ready socket or chunk waited. */
  loopP99Ms: number;
}

export interface TargetRound {
  throughput: MeasuredThroughput;
  c1: LatencyResult;
  stream: StreamResult;
  connectH1?: ThroughputResult;
  connectH2c?: ThroughputResult;
  /** The throughput call as RelayService.Relay (Connect server-streaming, HTTP/1.1), CPU as for `throughput`. */
  rpcRelay?: MeasuredThroughput;
}

export interface RoundResult {
  round: number;
  order: string[];
  targets: Record<string, TargetRound>;
}

/** With `profileTo`, the target's CPU profile covers exactly this measurement. */
export async function measureThroughput(
  t: BenchTarget,
  connections: number,
  durationS: number,
  profileTo?: string,
  call: HttpCall = t.call,
): Promise<MeasuredThroughput> {
  if (profileTo) await t.handle.startProfile();
  await t.handle.sample(); // resets the peak RSS and loop delay windows
  const cpu0 = await t.handle.cpuMs();
  const db0 = t.databaseCpuMs?.() ?? 0;
  const r = await runThroughput(call, connections, durationS);
  const cpu1 = await t.handle.cpuMs();
  const db1 = t.databaseCpuMs?.() ?? 0;
  const after = await t.handle.sample();
  if (profileTo) await t.handle.stopProfile(profileTo);
  const n = Math.max(1, r.ok + r.non2xx);
  const dbCpuMsPerReq = (db1 - db0) / n;
  return { ...r, cpuMsPerReq: (cpu1 - cpu0) / n + dbCpuMsPerReq, dbCpuMsPerReq, peakRssMb: after.peakRss / 2 ** 20, loopP99Ms: after.loopDelayP99Ms };
}

/** Connect unary IntrospectToken at `connections`: h2c with h2load (or connect-node), HTTP/1.1 with the throughput driver. */
export async function introspectLoad(t: BenchTarget, http: "1.1" | "2", connections: number, durationS: number): Promise<ThroughputResult> {
  if (http === "1.1") return runThroughput(connectCall(t), connections, durationS);
  if (H2LOAD && driver.wrk) return runH2load(connectCall(t), connections, durationS);
  const r = await runConnectLoad(t.relay ? t.handle.url : t.handle.unaryUrl!, t.token ?? "none", "2", connections, durationS);
  return { rps: r.rps, p50Ms: r.p50Ms, p99Ms: r.p99Ms, ok: r.ok, non2xx: 0, errors: r.failures, seconds: durationS };
}

/** Targets that answer Connect unary: the relays, and the reference's bare unary server (the ceiling). */
export function answersUnary(t: BenchTarget): boolean {
  return t.relay || t.handle.unaryUrl !== undefined;
}

export function connectCall(t: BenchTarget): HttpCall {
  return {
    url: (t.relay ? t.handle.url : t.handle.unaryUrl!) + INTROSPECT_PATH,
    headers: { "content-type": "application/json", authorization: `Bearer ${t.token ?? "none"}` },
    body: "{}",
  };
}

/**
 * The throughput call (a chat completion) through RelayService.Relay: Connect server-streaming
 * JSON over HTTP/1.1, one enveloped RelayRequest with the chat body as `body_text`. A stream
 * answers 200 even when the call failed (the error is in its end message): `rpcProbe` checks one
 * answer before the rounds, and the bench token's count after them covers the rest.
 */
export function rpcRelayCall(t: BenchTarget): HttpCall {
  const body = typeof t.call.body === "string" ? t.call.body : t.call.body.toString("utf8");
  const message = Buffer.from(JSON.stringify({ provider: "openai", path: "/v1/chat/completions", bodyText: body }));
  const envelope = Buffer.alloc(5 + message.length);
  envelope.writeUInt32BE(message.length, 1);
  message.copy(envelope, 5);
  return {
    url: t.handle.url + RELAY_PATH,
    headers: { "content-type": "application/connect+json", "connect-protocol-version": "1", authorization: `Bearer ${t.token}` },
    body: envelope,
  };
}

const RELAY_PATH = "/relayapi.v1.RelayService/Relay";

/** Throws unless the RelayService.Relay call streams the provider's answer and ends without an error. */
export function checkRpcAnswer(status: number, body: string): void {
  if (status !== 200) throw new Error(`RelayService.Relay answered ${status}: ${body.slice(0, 300)}`);
  if (!body.includes('"chunk"') || !body.includes('"OUTCOME_COMPLETE"') || body.includes('"error"'))
    throw new Error(`RelayService.Relay did not relay the call: ${body.slice(0, 300)}`);
}

export async function warmUp(targets: BenchTarget[], opts: BenchOptions, log: (s: string) => void): Promise<void> {
  if (opts.warmup <= 0) return;
  for (const t of targets) {
    log(`  warm-up ${t.name}`);
    await runThroughput(t.call, opts.connections, opts.warmup);
    await runSequentialLatency(t.call, Math.min(1, opts.warmup));
    await runStreamProbe(t.streamCall, 2);
    if (t.relay) {
      await runThroughput(rpcRelayCall(t), opts.connections, Math.min(1, opts.warmup));
    }
    if (answersUnary(t)) {
      await introspectLoad(t, "1.1", opts.connections, Math.min(1, opts.warmup));
      await introspectLoad(t, "2", opts.connections, Math.min(1, opts.warmup));
    }
  }
}

export async function runRound(round: number, targets: BenchTarget[], opts: BenchOptions, log: (s: string) => void): Promise<RoundResult> {
  const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
  const results: Record<string, Partial<TargetRound>> = Object.fromEntries(order.map((t) => [t.name, {}]));
  const c1Seconds = Math.max(1, opts.duration * 0.4);
  const connectSeconds = Math.max(1, opts.duration * 0.5);
  for (const t of order) {
    const r = (results[t.name]!.throughput = await measureThroughput(t, opts.connections, opts.duration));
    log(
      `  round ${round + 1} ${t.name.padEnd(15)} ${Math.round(r.rps)} req/s, ${r.cpuMsPerReq.toFixed(3)} CPU ms/req${r.non2xx || r.errors ? `, ${r.non2xx} non-2xx, ${r.errors} errors` : ""}`,
    );
  }
  for (const t of order) results[t.name]!.c1 = await runSequentialLatency(t.call, c1Seconds);
  for (const t of order) results[t.name]!.stream = await runStreamProbe(t.streamCall, opts.streams);
  for (const t of order) {
    if (!t.relay) continue;
    const r = (results[t.name]!.rpcRelay = await measureThroughput(t, opts.connections, opts.duration, undefined, rpcRelayCall(t)));
    log(`  round ${round + 1} ${`${t.name} rpc`.padEnd(15)} ${Math.round(r.rps)} req/s, ${r.cpuMsPerReq.toFixed(3)} CPU ms/req (RelayService.Relay)`);
  }
  for (const t of order) {
    if (!answersUnary(t)) continue;
    results[t.name]!.connectH1 = await introspectLoad(t, "1.1", opts.connections, connectSeconds);
    results[t.name]!.connectH2c = await introspectLoad(t, "2", opts.connections, connectSeconds);
  }
  return { round: round + 1, order: order.map((t) => t.name), targets: results as Record<string, TargetRound> };
}
