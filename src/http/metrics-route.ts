/**
 * `GET /metrics`: the Prometheus text of src/observe/metrics.ts. A failure to render is logged
 * and answered as the relay's own 500, never with a half-written exposition.
 */
import { RelayError } from "../errors.js";
import type { Logger } from "../log.js";
import { relayErrorShape, sendError, type AnyResponse } from "./render-error.js";

export interface MetricsSource {
  render(): Promise<string>;
  readonly contentType: string;
}

export async function serveMetrics(res: AnyResponse, metrics: MetricsSource, log: Logger): Promise<void> {
  try {
    const body = await metrics.render();
    res.writeHead(200, { "content-type": metrics.contentType, "content-length": Buffer.byteLength(body), "cache-control": "no-store" });
    res.end(body);
  } catch (e) {
    log.error("metrics failed", { err: e });
    sendError(res, new RelayError("internal", "metrics failed", { cause: e }), relayErrorShape);
  }
}
