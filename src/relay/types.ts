/** The engine's vocabulary, shared by its entry points (HTTP layer, RelayService) and its parts. */
import type { EventEmitter } from "node:events";
import type { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import type { Usage } from "../providers/types.js";
import type { DpopRequest } from "./dpop-gate.js";
import type { HeaderInput } from "./headers.js";
import type { UploadBody, UploadKind } from "./upload-body.js";

/** An AbortSignal, or any emitter of `abort` with `aborted` (the upstream client listens to either). */
export type CallSignal = AbortSignal | (EventEmitter & { readonly aborted: boolean });

export interface RelayInput {
  providerId: string;
  method: string;
  /** Path below the provider root, starting with `/`. */
  path: string;
  query: URLSearchParams | undefined;
  headers: HeaderInput;
  /**
   * The request body, or a reader of it: the HTTP layer passes a reader, so no byte of the body
   * is read (or held in memory) before the token was checked (issue 17).
   */
  body: Buffer | BodyReader;
  /**
   * Charges bytes a decoded body holds beyond its raw bytes to the global body budget (a small
   * gzip body can decode to the body limit); throws a 503 RelayError when the budget is spent.
   */
  holdDecoded?: (extraBytes: number) => void;
  /** The relay token as the client sent it. */
  token: string | undefined;
  origin: string | undefined;
  /** The DPoP proof, method and path, for tokens bound to a client key. */
  dpop?: DpopRequest;
  /** Aborts when the client goes away; passed on to the upstream request. */
  signal: CallSignal;
  /** The request's id (`x-request-id`), for logs. */
  requestId?: string;
}

/**
 * Reads the body whole, or with `stream` (the engine asks for uploads: issue 25) opens it as
 * an UploadBody that streams through; a reader that cannot stream returns the Buffer.
 */
export type BodyReader = (opts?: { stream: UploadKind }) => Promise<Buffer | UploadBody>;

/** A RelayInput whose body has been read (and decoded): what the policy and the sender see. */
export interface ReadInput extends RelayInput {
  body: Buffer;
  /** A streamed body (then `body` is empty): sent in place of `body`. */
  upload?: UploadBody;
}

export interface RelayEnd {
  outcome: Outcome;
  usage: Usage | undefined;
  callsLeft: number | null;
  /** Fixed, secret-free text when the outcome is not COMPLETE. */
  error: string | undefined;
}

/** Where the answer goes: an HTTP response or a RelayService stream. */
export interface RelaySink {
  /**
   * The answer's status and headers. `bodyLength` is the upstream's Content-Length when the body
   * is not an event stream and passes unchanged, so an HTTP answer can be sent unchunked.
   */
  head(status: number, headers: Record<string, string | string[]>, bodyLength?: number): void;
  /** Resolves when the chunk may be followed by the next one (backpressure). */
  write(chunk: Buffer): void | Promise<void>;
  end(end: RelayEnd): void | Promise<void>;
}

/** One finished call, for usage records and metrics. Holds ids only, never secrets. */
export interface CallRecord {
  tokenId: string;
  subject: string;
  /** The token's plan (issue 24); undefined when it has none. */
  plan?: string | undefined;
  /** What the call cost in micro-dollars (src/pricing); undefined when its model has no price. */
  costMicroUsd?: number | undefined;
  provider: string;
  model: string | undefined;
  /** Id of the pool key that served the call (or was tried last); undefined for an inline key. */
  keyId: string | undefined;
  /**
   * Every provider attempt, when there was more than one (failover): `key_id:status` joined by
   * commas, `connect` for an attempt that never reached the provider (`key_a:429,key_b:200`).
   */
  attempts?: string;
  status: number;
  outcome: Outcome;
  usage: Usage | undefined;
  bytes: number;
  latencyMs: number;
  /** The request's id, when the entry point gave one. */
  requestId?: string;
  /** Time the relay spent before sending upstream (token check, limits, counting). */
  overheadMs?: number;
  /** From sending upstream to the upstream's response headers; unset when none arrived. */
  upstreamMs?: number;
}
