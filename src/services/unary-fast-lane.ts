/**
 * Connect unary IntrospectToken and GetQuota served straight from the router (issue 22, item 4).
 * Through connect-node a unary call costs ~0.3 ms of CPU on HTTP/1.1 and ~0.5 ms on h2c, nearly
 * all of it the adapter's own machinery (a linked AbortController aborted per call with a
 * DOMException, WHATWG Headers from the bundled undici, the universal request and response),
 * not the answer, which comes from memory (src/tokens/token-views.ts). These two RPCs are
 * authenticated by the caller's own token and called in a loop by apps, so their plain case is
 * answered here, the way connect-node answers it, byte for byte; anything else goes to the
 * Connect routes (rpc-handler.ts) unchanged.
 *
 * Taken only when (`eligible`), each because connect-node would do something else otherwise:
 * - `POST` to the method's path: GET unary carries the message and its encoding in the query;
 * - `Content-Type` exactly Connect's unary JSON (charset utf-8 allowed) or proto: other types
 *   are gRPC, gRPC-Web, Connect streaming (their own framing) or a 415;
 * - no `Content-Encoding` (or `identity`): a compressed body, or an unknown encoding's error;
 * - `Connect-Timeout-Ms` absent or valid: an invalid one is an error answer; a valid one
 *   changes nothing here (connect only aborts the handler's signal, which these never read);
 * - `Content-Length` absent or plain digits (connect-node parses a prefix of anything else);
 * - a host (`Host` or `:authority`): without one connect-node throws before answering.
 * `Accept-Encoding` is honoured as connect-node does (gzip or br, from 1 KiB).
 *
 * The same checks in the same order as the Connect path, with the same answers: the front door
 * (rpc-gate.ts: per-IP limit, body budget), the body limit (connect's readAllBytes messages:
 * resource_exhausted past readMaxBytes, invalid_argument for a short or long body), the message
 * parsed by connect's own serialization (unknown JSON fields ignored, as connect-es does;
 * malformed JSON or proto is invalid_argument, as parse-errors.ts makes it), then the one
 * implementation (token-service.ts) with its errors mapped and noted on the Answer as the
 * error interceptor does (errors.ts mapFailure); IntrospectToken's answer is serialized once
 * per token while it stays the same (token-service.ts IntrospectAnswers). Calls taken are
 * counted in `relayapi_rpc_fast_lane_total{method}`.
 */
import type { DescMethodUnary, DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  compressionNegotiate,
  createMethodSerializationLookup,
  readAllBytes,
  validateReadWriteMaxBytes,
  type MethodSerializationLookup,
} from "@connectrpc/connect/protocol";
import { codeToHttpStatus, contentTypeUnaryJson, contentTypeUnaryProto, contentTypeUnaryRegExp, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { Counter, type Registry } from "prom-client";
import { TokenService } from "../../gen/relayapi/v1/token_service_pb.js";
import { discardUnread } from "../http/read-body.js";
import type { AnyResponse } from "../http/render-error.js";
import { relayTokenFrom } from "../http/token-carrier.js";
import type { Logger } from "../log.js";
import { answerOf, noteFailure } from "../observe/answer-counter.js";
import type { TokenStore } from "../tokens/token-store.js";
import { adminOnlyPaths } from "./auth.js";
import { ACCEPT_COMPRESSION } from "./compression.js";
import { mapFailure, toConnectError } from "./errors.js";
import { createRpcGate, declaredAccount, type FrontDoorDeps } from "./rpc-gate.js";
import { IntrospectAnswers, introspectRowFor, quotaFor } from "./token-service.js";

type AnyRequest = IncomingMessage | Http2ServerRequest;

/** What a fast lane needs besides its implementation: the front door's deps, the log and the metrics. */
export interface FastLaneDeps extends FrontDoorDeps {
  log: Logger;
  /** Where the lane's counter of calls taken is registered. */
  registry: Registry;
}

export interface UnaryFastLaneDeps extends FastLaneDeps {
  tokens: TokenStore;
}

/** True when the call was taken (it is answered); false: hand it to the Connect routes. */
export type UnaryFastLane = (req: AnyRequest, res: AnyResponse, pathname: string) => boolean;

interface FastMethod<T = unknown> {
  /** `package.Service/Method`, as the error interceptor names it. */
  name: string;
  serialization: MethodSerializationLookup<DescMessage, DescMessage>;
  /** What the answer is made from, for the caller's token. */
  run: (secret: string | undefined) => Promise<T>;
  /** The answer's bytes: proto when `binary`, else JSON. */
  serialize: (output: T, binary: boolean) => Uint8Array;
  taken: number;
}

const TIMEOUT = /^\d{1,10}$/;
const DIGITS = /^\d+$/;
const PROTO = /proto$/i;
/** connect-es's request-decoding failure, which parse-errors.ts answers as invalid_argument. */
const PARSE_BINARY = /^parse binary:/;

export function createUnaryFastLane(deps: UnaryFastLaneDeps): UnaryFastLane {
  const { tokens, log, maxBodyBytes } = deps;
  const gate = createRpcGate({ ...deps, adminOnly: adminOnlyPaths([TokenService]), readsByEvents: true });
  // The limits connect-node's adapter runs with (readMaxBytes; the rest its defaults).
  const io = validateReadWriteMaxBytes(maxBodyBytes, undefined, undefined);
  const method = <I extends DescMessage, O extends DescMessage, T>(
    desc: DescMethodUnary<I, O>,
    run: (secret: string | undefined) => Promise<T>,
    serialize: (output: T, binary: boolean, serialization: MethodSerializationLookup<I, O>) => Uint8Array,
  ) => {
    const serialization = createMethodSerializationLookup(desc, undefined, undefined, io);
    return [
      `/${desc.parent.typeName}/${desc.name}`,
      {
        name: `${desc.parent.typeName}/${desc.name}`,
        serialization,
        run,
        serialize: (output: T, binary: boolean) => serialize(output, binary, serialization),
        taken: 0,
      } as FastMethod,
    ] as const;
  };
  const introspected = new IntrospectAnswers();
  const methods = new Map<string, FastMethod>([
    method(
      TokenService.method.introspectToken,
      (secret) => introspectRowFor(tokens, secret),
      (row, binary, serialization) => introspected.bytes(row, binary, (message) => serialization.getO(binary).serialize(message)),
    ),
    method(
      TokenService.method.getQuota,
      (secret) => quotaFor(tokens, secret),
      (output, binary, serialization) => serialization.getO(binary).serialize(output),
    ),
  ]);
  new Counter({
    name: "relayapi_rpc_fast_lane_total",
    help: "Connect unary calls answered by the fast lane (src/services/unary-fast-lane.ts) instead of connect-node, by method.",
    labelNames: ["method"] as const,
    registers: [deps.registry],
    collect() {
      this.reset();
      // `package.Service.Method`: label values carry no slash (test/observability.test.ts).
      for (const m of methods.values()) this.inc({ method: m.name.replace("/", ".") }, m.taken);
    },
  });

  const serve = async (req: AnyRequest, res: AnyResponse, pathname: string, m: FastMethod, binary: boolean): Promise<void> => {
    const admitting = gate.admit(req, res, pathname);
    if (!(admitting instanceof Promise ? await admitting : admitting)) return;
    let status = 200;
    let body: Uint8Array;
    let error: ConnectError | undefined;
    try {
      const bytes = await readMessage(req, maxBodyBytes);
      // What nearly every client sends for these empty requests parses to the empty message.
      if (!(bytes.byteLength === 0 ? binary : bytes.byteLength === 2 && bytes[0] === 0x7b && bytes[1] === 0x7d && !binary))
        m.serialization.getI(binary).parse(bytes);
      let output: unknown;
      try {
        output = await m.run(relayTokenFrom(req.headers));
      } catch (e) {
        // The error interceptor's mapping, noted on the Answer (counted by reason, 5xx logged once).
        throw mapFailure(e, log, m.name, answerOf(req));
      }
      body = m.serialize(output, binary);
    } catch (e) {
      error = e instanceof ConnectError ? e : new ConnectError("internal error", Code.Internal, undefined, undefined, e);
      if (error.code === Code.Internal && PARSE_BINARY.test(error.rawMessage)) error = new ConnectError(error.rawMessage, Code.InvalidArgument);
      status = codeToHttpStatus(error.code);
      body = errorToJsonBytes(error, undefined);
    }
    const headers: Record<string, string> = {};
    const accepted = req.headers["accept-encoding"];
    if (accepted !== undefined && accepted !== "" && body.byteLength >= io.compressMinBytes) {
      const compression = compressionNegotiate(ACCEPT_COMPRESSION, null, accepted, "Accept-Encoding").response;
      if (compression !== null) {
        body = await compression.compress(body);
        headers["content-encoding"] = compression.name;
      }
    }
    headers["content-length"] = String(body.byteLength);
    headers["content-type"] = error === undefined && binary ? contentTypeUnaryProto : contentTypeUnaryJson;
    // connect-node writes headers from WHATWG Headers, which iterate in name order.
    error?.metadata.forEach((value, name) => (headers[name] = value));
    send(res, status, error === undefined ? headers : sorted(headers), body);
  };

  return (req, res, pathname) => {
    const m = methods.get(pathname);
    if (m === undefined || req.method !== "POST") return false;
    const h = req.headers;
    const type = h["content-type"];
    let binary: boolean;
    if (type === contentTypeUnaryJson) binary = false;
    else if (type === contentTypeUnaryProto) binary = true;
    else if (type !== undefined && contentTypeUnaryRegExp.test(type)) binary = PROTO.test(type);
    else return false;
    const encoding = h["content-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    const timeout = h["connect-timeout-ms"];
    if (timeout !== undefined && (typeof timeout !== "string" || !TIMEOUT.test(timeout))) return false;
    const length = h["content-length"];
    if (length !== undefined && !DIGITS.test(length)) return false;
    if (("authority" in req ? req.authority : h.host) === undefined) return false;
    m.taken++;
    serve(req, res, pathname, m, binary).catch((e: unknown) => {
      log.error("rpc fast lane failed", { method: m.name, err: e });
      if (!isGone(res) && !res.headersSent) {
        res.writeHead(500);
        res.end();
      } else res.destroy();
    });
    return true;
  };
}

/**
 * The request's body, as connect-node's readAllBytes reads it (the same limits and messages).
 * A body of unknown length that the front door meters (rpc-gate.ts wraps the request's async
 * iterator to take each chunk from the budget) is read through that iterator; any other by
 * events, which costs less than an async iterator per call, each chunk taken from the front
 * door's account of a declared length as it arrives (rpc-gate.ts `declaredAccount`).
 */
export function readMessage(req: AnyRequest, limit: number): Promise<Uint8Array> {
  const lengthHeader = req.headers["content-length"];
  if (Object.hasOwn(req, Symbol.asyncIterator)) return readAllBytes(req as AsyncIterable<Uint8Array>, limit, lengthHeader ?? null);
  const hint = lengthHeader === undefined ? undefined : Number(lengthHeader);
  if (hint !== undefined && hint > limit)
    return Promise.reject(new ConnectError(`message size ${hint} is larger than configured readMaxBytes ${limit}`, Code.ResourceExhausted));
  const account = declaredAccount(req);
  return new Promise<Uint8Array>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (err: ConnectError): void => {
      settled = true;
      req.off("data", onData);
      // As the front door does for a body connect-node stops reading: the rest is let go.
      discardUnread(req, limit);
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      const before = size;
      size += chunk.length;
      if (hint !== undefined && size > hint) return fail(promised(hint, before + chunk.length));
      if (hint === undefined && size > limit)
        return fail(new ConnectError(`message size is larger than configured readMaxBytes ${limit}`, Code.ResourceExhausted));
      if (account !== undefined) {
        try {
          account.take(chunk.length);
        } catch (e) {
          // Over the global budget: unavailable with Retry-After, counted by its reason.
          const err = toConnectError(e);
          noteFailure(answerOf(req), e, err);
          return fail(err);
        }
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      if (settled) return;
      settled = true;
      if (hint !== undefined && size < hint) reject(promised(hint, size));
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    // Cut short: nobody is left to answer (connect-node's answer would go nowhere either).
    const onGone = (): void => {
      if (settled) return;
      settled = true;
      reject(new ConnectError("request body incomplete", Code.Canceled));
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onGone);
    req.on("close", onGone);
  });
}

const promised = (hint: number, received: number): ConnectError =>
  new ConnectError(`protocol error: promised ${hint} bytes, received ${received}`, Code.InvalidArgument);

/**
 * Writes the answer. On h2c straight to the stream, headers and body in one go: the compatibility
 * API would send the headers, the body, then wait for trailers and send an empty frame to end the
 * stream (the response still emits finish and close, and keeps the status for the Answer).
 */
function send(res: AnyResponse, status: number, headers: Record<string, string>, body: Uint8Array): void {
  if (isGone(res)) return;
  if ("stream" in res) {
    res.statusCode = status;
    const stream = res.stream;
    stream.respond({ ...res.getHeaders(), ...headers, ":status": status });
    stream.write(body, () => stream.end());
    return;
  }
  res.writeHead(status, headers);
  res.end(body);
}

/**
 * Whether the client is gone (its connection, or its h2 stream), so nothing can be written. An
 * h2 stream closed but not yet destroyed counts (respond() throws on it): one cut at
 * requestTimeoutMs is closed at once by src/one-port.ts, and destroyed only a turn later.
 */
export function isGone(res: AnyResponse): boolean {
  return "stream" in res ? res.stream.destroyed || res.stream.closed : res.destroyed;
}

function sorted(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of Object.keys(headers).sort()) out[name] = headers[name]!;
  return out;
}
