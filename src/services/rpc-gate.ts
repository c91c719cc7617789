/**
 * The front door of the Connect routes (DESIGN 3.4 and 9, issue 17). connect-node's adapter
 * reads a request's whole body (up to readMaxBytes) before any interceptor runs, so checks that
 * must come before the body are made here, on the Node request, before it is handed over:
 * - the per-IP limit (every route, as on the HTTP layer);
 * - the admin key of admin-only methods, from the `authorization` header;
 * - the global body budget: a body is counted as connect-node reads it, up to the body limit
 *   per request (the most connect-node holds for one request: one message of at most
 *   readMaxBytes). A declared length is not taken at once: a client could then hold the whole
 *   budget with bodies it never sends (test/probe-input-budget.test.ts).
 * A refusal is answered in the request's own protocol (Connect JSON error with the status
 * Connect uses, a Connect end-of-stream message, or gRPC / gRPC-Web trailers-only) from the one
 * RelayError -> ConnectError mapping (errors.ts). The interceptors stay as the second line.
 */
import type { ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, endStreamFlag, endStreamToJson, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { BodyAccount, BodyBudget } from "../http/body-budget.js";
import { declaredLength, discardUnread } from "../http/read-body.js";
import type { Limits } from "../limits/limits.js";
import { answerOf, noteFailure } from "../observe/answer-counter.js";
import { adminKeyRequired, isAdminAuthorization } from "./auth.js";
import { toConnectError } from "./errors.js";
import { respecGrpcMessage } from "./grpc-message.js";

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

/** What every door to the Connect routes checks with: connect-node's adapter and the fast lanes. */
export interface FrontDoorDeps {
  limits: Limits;
  ipOf: (req: AnyRequest) => string;
  adminKey: string;
  /** The bytes of request bodies held in memory, shared with the HTTP layer. */
  budget: BodyBudget;
  /** The adapter's readMaxBytes. */
  maxBodyBytes: number;
}

export interface RpcGateDeps extends FrontDoorDeps {
  /** `/<service>/<method>` of every admin-only method (auth.ts adminOnlyPaths). */
  adminOnly: ReadonlySet<string>;
  /**
   * The reader is a fast lane's `readMessage`, which reads a body of declared length by events
   * and takes each chunk from `declaredAccount(req)`; else (connect-node) the request's async
   * iterator is wrapped to count it.
   */
  readsByEvents?: boolean;
}

/** Accounts of declared-length bodies a fast lane reads by events (holdBody). */
const declaredAccounts = new WeakMap<AnyRequest, BodyAccount>();

/** The budget account a fast lane takes a declared-length body's chunks from, as they arrive. */
export function declaredAccount(req: AnyRequest): BodyAccount | undefined {
  return declaredAccounts.get(req);
}

export interface RpcGate {
  /** Applies the checks. True: hand the request to the adapter; false: it has been answered. */
  admit(req: AnyRequest, res: AnyResponse, pathname: string): boolean | Promise<boolean>;
  /** The address the per-IP limit was applied to for this request, if the gate admitted it. */
  checkedIp(req: AnyRequest): string | undefined;
}

export function createRpcGate(deps: RpcGateDeps): RpcGate {
  const { limits, ipOf, adminKey, adminOnly, budget, maxBodyBytes } = deps;
  const admitted = new WeakMap<AnyRequest, string>();
  return {
    admit(req, res, pathname) {
      const refused = (e: unknown): false => {
        const err = toConnectError(e);
        // Counted by the RelayError's reason (rate_limited, unauthenticated, unavailable).
        noteFailure(answerOf(res), e, err);
        refuse(req, res, err);
        discardUnread(req, maxBodyBytes);
        return false;
      };
      const pass = (ip: string): boolean => {
        try {
          if (adminOnly.has(pathname) && !isAdminAuthorization(headerText(req.headers.authorization), adminKey)) throw adminKeyRequired();
          if (budget.capacity > 0) holdBody(req, res, budget.open(maxBodyBytes), maxBodyBytes, deps.readsByEvents === true);
        } catch (e) {
          return refused(e);
        }
        admitted.set(req, ip);
        // A body the adapter answered without reading (404, 415, over readMaxBytes) is let go,
        // within a bound, once the answer is out (Node's own discard has none).
        res.once("finish", () => discardUnread(req, maxBodyBytes));
        return true;
      };
      let ip: string;
      let limited: void | Promise<void>;
      try {
        ip = ipOf(req);
        limited = limits.checkIp(ip);
      } catch (e) {
        return refused(e);
      }
      // Admitted locally (most calls): answered at once, with no promise (issue 22).
      return limited === undefined ? pass(ip) : limited.then(() => pass(ip), refused);
    },
    checkedIp: (req) => admitted.get(req),
  };
}

/** Takes the body's bytes from the budget as they are read (throws past it) and gives them back when the request ends. */
function holdBody(req: AnyRequest, res: AnyResponse, account: BodyAccount, limit: number, byEvents: boolean): void {
  const declared = declaredLength(req);
  if (declared === 0 || req.complete) return;
  // Over the limit the adapter refuses it unread (readMaxBytes): nothing will be held.
  if (declared !== undefined && declared > limit) return;
  res.once("close", account.release);
  // Taken at once, a declared length held budget the client never had to send: one h2c
  // connection of streams each declaring a length and sending a byte refused every body of
  // every client for requestTimeoutMs, unauthenticated. Bytes are counted as they come.
  if (declared !== undefined && byEvents) {
    declaredAccounts.set(req, account);
    return;
  }
  // connect-es's readAllBytes allocates a declared length before a byte came: the header goes.
  // The length is still enforced where the body is framed: Node's HTTP/1.1 parser reads
  // exactly that many bytes, nghttp2 resets an h2 stream whose DATA does not add up to it.
  if (declared !== undefined) delete req.headers["content-length"];
  countAsRead(req, account, limit);
}

/**
 * Counts a body of unknown length as connect-node reads it. The adapter reads the request with
 * `for await`, so the request's async iterator is wrapped (on this one object): every chunk is
 * taken from the budget before it is handed on. A 'data' listener would switch the stream to
 * flowing mode and lose chunks before the adapter starts reading. The inner iterator does not
 * destroy the request when the reader stops early (over the budget, or over readMaxBytes):
 * the rest is discarded, so the error answer reaches the client and its connection stays usable.
 */
function countAsRead(req: AnyRequest, account: BodyAccount, limit: number): void {
  const chunks = async function* (): AsyncGenerator<Buffer> {
    let ended = false;
    try {
      for await (const chunk of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        try {
          account.take(chunk.length);
        } catch (e) {
          const err = toConnectError(e);
          noteFailure(answerOf(req), e, err);
          throw err;
        }
        yield chunk;
      }
      ended = true;
    } finally {
      if (!ended) discardUnread(req, limit);
    }
  };
  Object.defineProperty(req, Symbol.asyncIterator, { value: chunks, configurable: true });
}

const GRPC = /^application\/grpc(-web(-text)?)?([+;]|$)/i;
const CONNECT_STREAM = /^application\/connect\+/i;

/** Answers `err` the way the request's protocol expects an error before any message. */
function refuse(req: AnyRequest, res: AnyResponse, err: ConnectError): void {
  // A client that reset its h2c stream while the gate awaited (the per-IP limit on Redis) has
  // no one to answer, and respond() on that stream throws: unhandled, it ended the process.
  if ("stream" in res && (res.stream.destroyed || res.stream.closed)) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const contentType = headerText(req.headers["content-type"]) ?? "";
  const headers: Record<string, string> = {};
  let status = 200;
  let body: Uint8Array | undefined;
  if (GRPC.test(contentType)) {
    // Trailers-only: status and message in the one header block, no body.
    // grpc-message in the spec's encoding, as @grpc/grpc-js decodes it (grpc-message.ts).
    const trailer = setTrailerStatus(new Headers(), err);
    respecGrpcMessage(trailer);
    trailer.forEach((value, name) => (headers[name] = value));
    headers["content-type"] = contentType;
  } else if (CONNECT_STREAM.test(contentType)) {
    // The error's metadata once, in the end message, as connect-node sends it: a client adds the
    // headers' values to the end message's, and endStreamToJson adds the error's to the trailers
    // given, so headers plus both made `retry-after: 60, 60, 60` (NaN to a client).
    headers["content-type"] = contentType;
    body = envelope(endStreamFlag, new TextEncoder().encode(JSON.stringify(endStreamToJson(new Headers(), err, undefined))));
  } else {
    // Connect unary (POST or GET), and anything unrecognised: the adapter would answer it so.
    status = codeToHttpStatus(err.code);
    headers["content-type"] = "application/json";
    err.metadata.forEach((value, name) => (headers[name] = value));
    body = errorToJsonBytes(err, undefined);
  }
  if (body !== undefined) headers["content-length"] = String(body.byteLength);
  headers["cache-control"] = "no-store";
  if (body === undefined && "stream" in res) {
    // gRPC's trailers-only answer is one HEADERS frame that ends the stream; the compatibility
    // API would send the headers, then an empty DATA frame to end it.
    res.stream.respond({ ...res.getHeaders(), ...headers, ":status": status }, { endStream: true });
    return;
  }
  res.writeHead(status, headers);
  if (body === undefined) res.end();
  else res.end(body);
}

/** One enveloped message: a flags byte, a big-endian length, the data (Connect streaming framing). */
function envelope(flags: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + data.byteLength);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, data.byteLength);
  out.set(data, 5);
  return out;
}

/** A header's value; Node's repeats joined. */
export function headerText(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(",") : v;
}
