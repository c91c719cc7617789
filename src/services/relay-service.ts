/**
 * RelayService.Relay: the engine of the HTTP layer behind a server stream. The stream sends
 * `head`, then `chunk`s, then exactly one `end`. A failure before the head is an RPC error
 * (same codes as the HTTP layer's statuses); after it, the `end` says how the call ended.
 *
 * `body_text` and `text_chunks` (issue 26) only change the rendering: the text is sent as its
 * UTF-8 bytes, and the answer's bytes go out as whole-character text (src/services/text-chunks.ts),
 * through the same engine, limits and counting as bytes.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { RelayResponseSchema, RelayService, type RelayRequest, type RelayResponse } from "../../gen/relayapi/v1/relay_service_pb.js";
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import { RelayError } from "../errors.js";
import type { Usage } from "../providers/types.js";
import type { RelayEngine, RelayEnd, RelaySink } from "../relay/engine.js";
import type { CallSignal } from "../relay/types.js";
import { relayTokenFrom, type CarrierHeaders } from "../http/token-carrier.js";
import { requestIdOf } from "../http/request-id.js";
import { kAnswer } from "../observe/answer-counter.js";
import { usageToProto } from "./convert.js";
import { NOT_UTF8, TextChunks, utf8Body } from "./text-chunks.js";

export interface RelayServiceDeps {
  engine: RelayEngine;
}

const METHOD = /^(GET|POST|PUT|PATCH|DELETE|HEAD)$/;
/** RFC 9110 5.1 token; field values without control characters other than tab (5.5). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** What a Relay call takes from its transport: connect-node's context, or the fast lane's request. */
export interface RelayCallContext {
  /** The request's headers: Fetch's (connect-node) or Node's (the fast lane). */
  headers: CarrierHeaders;
  signal: CallSignal;
  requestId: string;
}

/**
 * One message of a Relay answer before it is a protobuf message: connect-node's path makes it
 * one (`relayMessage`); the fast lane writes its JSON straight from it (relay-message-json.ts),
 * sparing a reflective `create` of every message and of each header (issue 22).
 */
export type RelayPart =
  | { case: "head"; status: number; headers: Record<string, string | string[]> }
  | { case: "chunk"; data: Uint8Array }
  | { case: "text"; text: string }
  | { case: "end"; end: EndPart };

/** An `end` message's fields, as the engine gave them. */
export interface EndPart {
  outcome: Outcome;
  usage: Usage | undefined;
  callsLeft: number | null;
  error: string;
}

/** Receives the stream's messages in order; a returned promise holds the answer's next chunk. */
export type RelayEmit = (part: RelayPart) => void | Promise<void>;

/** A part as the RelayResponse message protobuf-es serializes. */
export function relayMessage(part: RelayPart): RelayResponse {
  switch (part.case) {
    case "head": {
      const headers = Object.entries(part.headers).flatMap(([name, v]) => (Array.isArray(v) ? v : [v]).map((value) => ({ name, value })));
      return create(RelayResponseSchema, { part: { case: "head", value: { status: part.status, headers } } });
    }
    case "chunk":
      return create(RelayResponseSchema, { part: { case: "chunk", value: { data: part.data } } });
    case "text":
      return create(RelayResponseSchema, { part: { case: "chunk", value: { text: part.text } } });
    case "end": {
      const { outcome, usage, callsLeft, error } = part.end;
      return create(RelayResponseSchema, {
        part: { case: "end", value: { outcome, usage: usageToProto(usage), callsLeft: callsLeft === null ? undefined : BigInt(callsLeft), error } },
      });
    }
  }
}

/**
 * One Relay call: the request checked and turned into the engine's input, the answer emitted as
 * `head`, `chunk`s and one `end`. Rejects with a RelayError before `head` (nothing was emitted),
 * or after `end` when the answer could not be text; otherwise resolves after `end`.
 */
export async function relayCall(engine: RelayEngine, req: RelayRequest, call: RelayCallContext, emit: RelayEmit): Promise<void> {
  const method = req.method === "" ? "POST" : req.method.toUpperCase();
  if (!METHOD.test(method)) throw new RelayError("bad_request", "unsupported method");
  const headers: Record<string, string> = {};
  for (const h of req.headers) {
    // HTTP/1.1 and h2 clients cannot send these; a message can. Refused before the call is
    // counted, so a CRLF can never split an upstream request (header injection).
    if (!HEADER_NAME.test(h.name) || !HEADER_VALUE.test(h.value)) throw new RelayError("bad_request", "invalid header");
    // Repeats are joined as Node joins them on the HTTP layer, so `content-encoding: gzip`
    // twice reads as two codings (refused) there and here alike.
    const name = h.name.toLowerCase();
    headers[name] = headers[name] === undefined ? h.value : `${headers[name]}, ${h.value}`;
  }
  // Refused before the call is counted: which of the two the client meant is unknowable.
  if (req.body.byteLength > 0 && req.bodyText !== "") throw new RelayError("bad_request", "set body or body_text, not both");
  const body = req.bodyText !== "" ? utf8Body(req.bodyText) : Buffer.from(req.body.buffer, req.body.byteOffset, req.body.byteLength);
  const text = req.textChunks ? new TextChunks() : undefined;
  const sink: RelaySink = {
    head: (status, headers) => void emit({ case: "head", status, headers }),
    write: (data) => {
      if (!text) return emit({ case: "chunk", data });
      // Throws on bytes that are not UTF-8: the engine then stops reading the answer and
      // ends the call as TRUNCATED, so nothing after the bad bytes is sent.
      const piece = text.push(data);
      // Only part of a character so far: nothing to send until the next chunk completes it.
      if (piece === "") return;
      return emit({ case: "text", text: piece });
    },
    end: (end: RelayEnd) => {
      try {
        text?.end(end.outcome === Outcome.TRUNCATED);
      } catch {
        // text.failed is now set: reported below.
      }
      // Cut by the call's deadline, not by a client that left: said so (the RPC then ends DEADLINE_EXCEEDED).
      const error = text?.failed ? NOT_UTF8 : end.outcome === Outcome.TRUNCATED && deadlineOf(call.signal) ? DEADLINE_PASSED : (end.error ?? "");
      void emit({ case: "end", end: { outcome: end.outcome, usage: end.usage, callsLeft: end.callsLeft, error } });
    },
  };
  // A call the deadline ended fails with the deadline's own DEADLINE_EXCEEDED: the engine sees
  // only an aborted signal, as of a client that left ("client closed the request",
  // INVALID_ARGUMENT), which misled the client. After a cut `end`, the RPC ends so too.
  try {
    await engine.relay(
      {
        providerId: req.provider,
        method,
        // A path only: the engine normalises and checks it as it does the HTTP layer's
        // (src/relay/upstream-url.ts safePath: no `?`, no `#`); a query goes in `query`.
        path: req.path,
        query: req.query ? new URLSearchParams(req.query) : undefined,
        headers,
        body,
        token: relayTokenFrom(call.headers),
        dpop: { proof: headerText(call.headers, "dpop"), method: "POST", path: RELAY_PATH },
        origin: headerText(call.headers, "origin"),
        signal: call.signal,
        requestId: call.requestId,
      },
      sink,
    );
  } catch (e) {
    throw deadlineOf(call.signal) ?? e;
  }
  const deadline = deadlineOf(call.signal);
  if (deadline) throw deadline;
  // After `end`, an answer that could not be text fails the RPC with INVALID_ARGUMENT.
  if (text?.failed) throw new RelayError("bad_request", NOT_UTF8);
}

/** The `end.error` of an answer the call's deadline cut. */
export const DEADLINE_PASSED = "deadline exceeded";

/** The deadline's error when it is what aborted `signal`. */
function deadlineOf(signal: CallSignal): ConnectError | undefined {
  if (!signal.aborted || !("reason" in signal)) return undefined;
  const reason: unknown = signal.reason;
  return reason instanceof ConnectError && reason.code === Code.DeadlineExceeded ? reason : undefined;
}

/** A header's value; Node's repeats joined as Fetch's Headers join them. */
function headerText(headers: CarrierHeaders, name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const v = headers[name];
  return Array.isArray(v) ? v.join(", ") : v;
}

/** `/relayapi.v1.RelayService/Relay`. */
export const RELAY_PATH = `/${RelayService.typeName}/Relay`;

export function createRelayService(deps: RelayServiceDeps): Partial<ServiceImpl<typeof RelayService>> {
  return {
    async *relay(req, ctx) {
      // The request's id as on the HTTP layer: echoed, on the 5xx log line and in the CallRecord.
      const requestId = requestIdOf(ctx.requestHeader.get("x-request-id"));
      ctx.responseHeader.set("x-request-id", requestId);
      const answer = ctx.values.get(kAnswer);
      if (answer !== undefined) answer.requestId = requestId;
      const channel = new Channel<RelayResponse>();
      const call: RelayCallContext = { headers: ctx.requestHeader, signal: ctx.signal, requestId };
      relayCall(deps.engine, req, call, (part) => channel.push(relayMessage(part))).then(
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
