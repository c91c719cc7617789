/**
 * `GET /metrics`: the Prometheus text of src/observe/metrics.ts. A failure to render is logged
 * and answered as the relay's own 500, never with a half-written exposition.
 *
 * Scrapes that arrive while one is being rendered share that rendering and its bytes: each
 * used to render the whole exposition for itself (with a readiness check), so one unauthenticated
 * connection pipelining GET /metrics without reading held ~60 MB and kept the event loop busy
 * for seconds per 64 KB it sent (test/probe-input.test.ts). The path is meant to stay off the
 * public internet (docs/operations.md); this keeps a slip from costing the relay.
 */
import { RelayError } from "../errors.js";
import type { Logger } from "../log.js";
import { relayErrorShape, sendError, type AnyResponse } from "./render-error.js";

export interface MetricsSource {
  render(): Promise<string>;
  readonly contentType: string;
}

/** The rendering in progress, per source. */
const rendering = new WeakMap<MetricsSource, Promise<Buffer>>();

function renderShared(metrics: MetricsSource): Promise<Buffer> {
  let pending = rendering.get(metrics);
  if (pending === undefined) {
    pending = metrics
      .render()
      .then((text) => Buffer.from(text))
      .finally(() => rendering.delete(metrics));
    rendering.set(metrics, pending);
  }
  return pending;
}

export async function serveMetrics(res: AnyResponse, metrics: MetricsSource, log: Logger): Promise<void> {
  try {
    const body = await renderShared(metrics);
    res.writeHead(200, { "content-type": metrics.contentType, "content-length": body.length, "cache-control": "no-store" });
    res.end(body);
  } catch (e) {
    log.error("metrics failed", { err: e });
    sendError(res, new RelayError("internal", "metrics failed", { cause: e }), relayErrorShape);
  }
}
