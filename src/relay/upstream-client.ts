/**
 * The HTTP client for providers: one undici Agent, which keeps a keep-alive pool per upstream
 * origin. Failures before the response headers are classified here, because the refund rule
 * (DESIGN 3.3) depends on them.
 */
import { Agent, request, type Dispatcher } from "undici";
import { RelayError } from "../errors.js";
import type { CallSignal } from "./types.js";

export interface UpstreamOptions {
  headersTimeoutMs: number;
  idleTimeoutMs: number;
}

export interface UpstreamResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: AsyncIterable<Buffer> & { destroy(err?: Error): unknown; dump(opts?: { limit?: number }): Promise<void> };
}

export class UpstreamClient {
  readonly #agent: Agent;

  constructor(private readonly opts: UpstreamOptions) {
    this.#agent = new Agent({
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000,
      connections: 256,
      connect: { timeout: 10_000, noDelay: true },
      headersTimeout: opts.headersTimeoutMs,
      bodyTimeout: opts.idleTimeoutMs,
    });
  }

  /**
   * Sends the request. A failure before the response headers throws a RelayError with
   * `cause` set and `reachedProvider` false (502/504); the caller refunds the call.
   */
  async send(
    url: string,
    method: string,
    headers: Record<string, string>,
    body: Buffer | undefined,
    signal: CallSignal,
  ): Promise<UpstreamResponse> {
    try {
      const res = await request(url, {
        method: method as Dispatcher.HttpMethod,
        headers,
        body: body && body.length > 0 ? body : undefined,
        signal,
        dispatcher: this.#agent,
      });
      return res as unknown as UpstreamResponse;
    } catch (e) {
      if (signal.aborted) throw new ClientGone();
      const code = (e as { code?: string }).code;
      if (code === "UND_ERR_HEADERS_TIMEOUT") throw new RelayError("upstream_timeout", "upstream timed out", { cause: e });
      // Refused by the client library before anything was sent (say, a header it will not
      // write): the request's fault, not the provider's.
      if (code === "UND_ERR_INVALID_ARG") throw new RelayError("bad_request", "invalid request", { cause: e });
      throw new RelayError("upstream_unreachable", "upstream unreachable", { cause: e });
    }
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}

/** The client went away before the upstream answered. */
export class ClientGone extends Error {
  override name = "ClientGone";
}
