/**
 * RelayService.Relay: the engine of the HTTP layer behind a server stream. The stream sends
 * `head`, then `chunk`s, then exactly one `end`. A failure before the head is an RPC error
 * (same codes as the HTTP layer's statuses); after it, the `end` says how the call ended.
 */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { RelayResponseSchema, RelayService, type RelayResponse } from "../../gen/relayapi/v1/relay_service_pb.js";
import { RelayError } from "../errors.js";
import type { RelayEngine, RelayEnd, RelaySink } from "../relay/engine.js";
import { bearerOf } from "./auth.js";
import { usageToProto } from "./convert.js";

export interface RelayServiceDeps {
  engine: RelayEngine;
}

const METHOD = /^(GET|POST|PUT|PATCH|DELETE|HEAD)$/;

export function createRelayService(deps: RelayServiceDeps): Partial<ServiceImpl<typeof RelayService>> {
  return {
    async *relay(req, ctx) {
      const method = req.method === "" ? "POST" : req.method.toUpperCase();
      if (!METHOD.test(method)) throw new RelayError("bad_request", "unsupported method");
      const headers: Record<string, string> = {};
      for (const h of req.headers) headers[h.name.toLowerCase()] = h.value;
      const channel = new Channel<RelayResponse>();
      const sink: RelaySink = {
        head: (status, hs) => {
          const list = Object.entries(hs).flatMap(([name, v]) => (Array.isArray(v) ? v : [v]).map((value) => ({ name, value })));
          void channel.push(create(RelayResponseSchema, { part: { case: "head", value: { status, headers: list } } }));
        },
        write: (data) => channel.push(create(RelayResponseSchema, { part: { case: "chunk", value: { data } } })),
        end: (end: RelayEnd) => {
          void channel.push(
            create(RelayResponseSchema, {
              part: {
                case: "end",
                value: {
                  outcome: end.outcome,
                  usage: usageToProto(end.usage),
                  callsLeft: end.callsLeft === null ? undefined : BigInt(end.callsLeft),
                  error: end.error ?? "",
                },
              },
            }),
          );
        },
      };
      deps.engine
        .relay(
          {
            providerId: req.provider,
            method,
            path: req.path.startsWith("/") ? req.path : "/" + req.path,
            query: req.query ? new URLSearchParams(req.query) : undefined,
            headers,
            body: Buffer.from(req.body.buffer, req.body.byteOffset, req.body.byteLength),
            token: bearerOf(ctx.requestHeader),
            origin: ctx.requestHeader.get("origin") ?? undefined,
            signal: ctx.signal,
          },
          sink,
        )
        .then(
          () => channel.close(),
          (e: unknown) => channel.fail(e),
        );
      yield* channel;
    },
  };
}

/**
 * A one-producer, one-consumer queue: `push` resolves once the consumer has taken the item,
 * so a slow RPC client slows the upstream read instead of filling memory.
 */
class Channel<T> implements AsyncIterable<T> {
  #items: { value: T; taken: () => void }[] = [];
  #wake: (() => void) | undefined;
  #done = false;
  #error: unknown;
  #abandoned = false;

  push(value: T): Promise<void> {
    if (this.#abandoned) return Promise.resolve();
    return new Promise((taken) => {
      this.#items.push({ value, taken });
      this.#wake?.();
    });
  }

  close(): void {
    this.#done = true;
    this.#wake?.();
  }

  fail(e: unknown): void {
    this.#error = e ?? new Error("relay failed");
    this.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    try {
      yield* this.#drain();
    } finally {
      // The consumer left (client gone): release the producer, drop what is left.
      this.#abandoned = true;
      for (const item of this.#items.splice(0)) item.taken();
    }
  }

  async *#drain(): AsyncGenerator<T> {
    for (;;) {
      const item = this.#items.shift();
      if (item) {
        item.taken();
        yield item.value;
        continue;
      }
      if (this.#done) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
  }
}
