/**
 * The fan-out of what the relay observes (issue 20, move 1), in one place instead of closures
 * in server.ts:
 * - every counted call when it ends (the engine's CallRecord): the usage writer, the metrics,
 *   a debug line, and the embedder's own `onCall` (tests);
 * - every 5xx the relay answers itself (from the AnswerCounter): a warn line, sampled at 10 a
 *   second with a count of what was suppressed, and the database state when the answer was a
 *   database outage.
 */
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import type { Logger } from "../log.js";
import type { CallRecord } from "../relay/types.js";
import type { ServerErrorSink } from "./answer-counter.js";
import type { DatabaseHealth } from "./database-health.js";
import { SampledWarn } from "./sampled-warn.js";

export interface CallObserverDeps {
  usage: { record(r: CallRecord): void };
  metrics: { observe(r: CallRecord): void };
  log: Logger;
  /** The embedder's own observer, called last. */
  onCall?: ((r: CallRecord) => void) | undefined;
}

/** One function for the engine's `onCall`. */
export function callObserver(deps: CallObserverDeps): (record: CallRecord) => void {
  const { usage, metrics, log, onCall } = deps;
  const debug = log.debugEnabled();
  return (record) => {
    usage.record(record);
    metrics.observe(record);
    // Ids and numbers only (CallRecord holds no secret); its fields are built only at debug.
    if (debug)
      log.debug("call finished", {
        requestId: record.requestId,
        tokenId: record.tokenId,
        keyId: record.keyId,
        provider: record.provider,
        model: record.model,
        status: record.status,
        outcome: Outcome[record.outcome],
        latencyMs: Math.round(record.latencyMs),
        upstreamMs: record.upstreamMs === undefined ? undefined : Math.round(record.upstreamMs),
        bytes: record.bytes,
      });
    onCall?.(record);
  };
}

/** Lines per second at most for 5xx answers; the rest are counted in one "suppressed" line. */
const SERVER_ERROR_LINES_PER_S = 10;

/**
 * What happens on each 5xx the relay answers itself: a warn line (`5xx answer`, with the
 * entry, status, reason, request id or RPC method and the error in words) and, for a
 * database outage, the database state. Internal errors already had their error line.
 */
export function serverErrorObserver(log: Logger, database: DatabaseHealth): ServerErrorSink & { close(): void } {
  const sampled = new SampledWarn(log, SERVER_ERROR_LINES_PER_S, 1000);
  const sink = (a: Parameters<ServerErrorSink>[0], status: number, reason: string): void => {
    if (reason === "database_unavailable") database.failed("request", a.err);
    if (a.logged) return;
    sampled.warn("5xx answer", {
      entry: a.entry,
      status,
      reason,
      requestId: a.requestId,
      provider: a.provider,
      method: a.method,
      err: a.err,
    });
  };
  return Object.assign(sink, { close: () => sampled.close() });
}
