/**
 * Connect unary load: IntrospectToken through a real connect-node client (HTTP/1.1 or h2c),
 * `concurrency` calls in flight for `durationS` seconds. HTTP/1.1 with the Connect JSON
 * protocol is also driven by autocannon (see main.ts), which costs the generator far less.
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { performance } from "node:perf_hooks";
import { TokenService } from "../gen/relayapi/v1/token_service_pb.js";
import { quantile, Samples } from "./stats.js";

export interface ConnectLoadResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  ok: number;
  failures: number;
}

export const INTROSPECT_PATH = "/relayapi.v1.TokenService/IntrospectToken";

export async function runConnectLoad(
  baseUrl: string,
  token: string,
  httpVersion: "1.1" | "2",
  concurrency: number,
  durationS: number,
): Promise<ConnectLoadResult> {
  const sessionManager = httpVersion === "2" ? new Http2SessionManager(baseUrl) : undefined;
  const transport =
    httpVersion === "2" ? createConnectTransport({ baseUrl, httpVersion, sessionManager: sessionManager! }) : createConnectTransport({ baseUrl, httpVersion });
  const client = createClient(TokenService, transport);
  const headers = { authorization: `Bearer ${token}` };
  const samples = new Samples();
  let failures = 0;
  const start = performance.now();
  const deadline = start + durationS * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      try {
        await client.introspectToken({}, { headers });
        samples.push(performance.now() - t0);
      } catch {
        failures++;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    sessionManager?.abort();
  }
  const seconds = (performance.now() - start) / 1000;
  const values = samples.values();
  return { rps: samples.length / seconds, p50Ms: quantile(values, 0.5), p99Ms: quantile(values, 0.99), ok: samples.length, failures };
}
