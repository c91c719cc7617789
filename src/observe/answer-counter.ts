/**
 * Every answer of the HTTP layer and the Connect routes, counted when its response closes
 * (issue 19.4): `relayapi_responses_total{entry, status_class, reason}` and
 * `relayapi_in_flight_requests{entry}`. Before, only calls that reached a provider were counted
 * (relayapi_requests_total); a 401, 403, 404, 400, 413, 405, a 429 for spent calls or a
 * database 503 was counted nowhere.
 *
 * `reason` is the RelayError code of an answer the relay gave itself (`database_unavailable`
 * split out of `unavailable`), the Connect code of an RPC error that was not one, `ok` for a
 * success, `upstream_status` for a provider's own error status passed through, `aborted` for an
 * answer cut off before its end: a bounded set, never a token, a key or anything a client chose.
 *
 * The renderers note what they rendered on the request's Answer (`noteFailure`): sendError and
 * the RPC gate through the response, the RPC interceptor through a context value. An answer
 * with nothing noted is read from its status code. Noted 5xx answers go to `onServerError`
 * (the sampled warn line, the database state).
 */
import { Code, ConnectError, createContextKey } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { Counter, Gauge, type Registry } from "prom-client";
import { RelayError } from "../errors.js";

export type Entry = "http" | "rpc";

/** What is known of one answer while it is given. */
export interface Answer {
  readonly entry: Entry;
  /** Status and reason of an error the relay rendered itself, and the error. */
  status?: number;
  reason?: string;
  err?: unknown;
  /** Already logged at error level by its entry point (internal errors): no second line. */
  logged?: boolean;
  requestId?: string;
  provider?: string;
  /** `package.Service/Method` of an RPC. */
  method?: string;
}

interface Closable {
  readonly statusCode: number;
  readonly headersSent: boolean;
  readonly writableFinished: boolean;
  on(event: "close", listener: () => void): unknown;
}

/**
 * Answers by their request and by their response object (both lead to the same one), kept on
 * the objects themselves: two WeakMap entries per request cost the GC more (ephemerons) than a
 * property (issue 22).
 */
const ANSWER = Symbol("relayapi.answer");
type Tagged = { [ANSWER]?: Answer };

/** The RPC's Answer, for the interceptor (which never sees the Node request). */
export const kAnswer = createContextKey<Answer | undefined>(undefined, { description: "the answer being counted" });

export function answerOf(reqOrRes: object): Answer | undefined {
  return (reqOrRes as Tagged)[ANSWER];
}

/**
 * Records the error an answer is rendered from. `mapped` is the ConnectError an RPC error
 * became, for errors that are not RelayErrors (a data exception became invalid_argument).
 */
export function noteFailure(answer: Answer | undefined, e: unknown, mapped?: ConnectError): void {
  if (answer === undefined) return;
  answer.err = e;
  if (e instanceof RelayError) {
    answer.status = e.status;
    answer.reason = reasonOf(e);
    return;
  }
  const ce = e instanceof ConnectError ? e : mapped;
  answer.status = ce === undefined ? 500 : codeToHttpStatus(ce.code);
  answer.reason = ce === undefined ? "internal" : codeName(ce.code);
}

/** The reason label of a RelayError: its code, with a database outage told apart. */
export function reasonOf(e: RelayError): string {
  return e.code === "unavailable" && /^database\b/.test(e.message) ? "database_unavailable" : e.code;
}

export type ServerErrorSink = (answer: Answer, status: number, reason: string) => void;

export class AnswerCounter {
  readonly #responses: Counter<"entry" | "status_class" | "reason">;
  /** Plain numbers, read at scrape time: two prom-client updates per answer cost more. */
  readonly #inFlight: Record<Entry, number> = { http: 0, rpc: 0 };
  /**
   * `entry|class|reason` -> bound child and the answers counted since the last scrape, added at
   * scrape time: prom-client's bound child still hashes its labels on every `inc` (issue 22).
   */
  readonly #children = new Map<string, { child: { inc(n: number): void }; pending: number }>();
  /** One `close` listener for every response (`this` is the response): no closure per request. */
  readonly #onClose: (this: Closable & Tagged) => void;

  constructor(
    registry: Registry,
    private readonly onServerError: ServerErrorSink,
  ) {
    const registers = [registry];
    const counter = this;
    this.#onClose = function (this: Closable & Tagged) {
      const answer = this[ANSWER];
      if (answer === undefined) return;
      this[ANSWER] = undefined; // counted once, whatever emits `close` again
      counter.#inFlight[answer.entry]--;
      counter.#count(answer, this);
    };
    const children = this.#children;
    this.#responses = new Counter({
      collect() {
        for (const c of children.values()) {
          if (c.pending === 0) continue;
          c.child.inc(c.pending);
          c.pending = 0;
        }
      },
      name: "relayapi_responses_total",
      help: "Answers of the HTTP layer (entry=http) and the Connect routes (entry=rpc) by status class and reason (a RelayError code, ok, upstream_status, aborted).",
      labelNames: ["entry", "status_class", "reason"] as const,
      registers,
    });
    const inFlight = this.#inFlight;
    new Gauge({
      name: "relayapi_in_flight_requests",
      help: "Requests being answered (streams included) by entry.",
      labelNames: ["entry"] as const,
      registers,
      collect() {
        this.set({ entry: "http" }, inFlight.http);
        this.set({ entry: "rpc" }, inFlight.rpc);
      },
    });
  }

  /** Starts counting one request's answer; it is counted once, when the response closes. */
  track(entry: Entry, req: object, res: Closable): Answer {
    const answer: Answer = { entry };
    (req as Tagged)[ANSWER] = answer;
    (res as Closable & Tagged)[ANSWER] = answer;
    this.#inFlight[entry]++;
    // A response emits `close` once: `on` spares `once`'s wrapper.
    res.on("close", this.#onClose);
    return answer;
  }

  #count(a: Answer, res: Closable): void {
    let status: number;
    let reason: string;
    if (a.reason !== undefined && a.status !== undefined) {
      status = a.status;
      reason = a.reason;
    } else if (!res.writableFinished) {
      status = res.headersSent ? res.statusCode : 0;
      reason = "aborted";
    } else {
      // gRPC answers 200 and puts errors in trailers: those raised before the interceptor
      // (a malformed message) count as ok; every handler error is noted.
      status = res.statusCode;
      reason = status < 400 ? "ok" : a.entry === "http" ? "upstream_status" : statusReason(status);
    }
    const cls = statusClass(status);
    const key = `${a.entry}|${cls}|${reason}`;
    let counted = this.#children.get(key);
    if (counted === undefined) {
      counted = { child: this.#responses.labels({ entry: a.entry, status_class: cls, reason }), pending: 0 };
      this.#children.set(key, counted);
    }
    counted.pending++;
    if (a.reason !== undefined && status >= 500) {
      try {
        this.onServerError(a, status, reason);
      } catch {
        // Reporting must not break the next answer's counting.
      }
    }
  }
}

function statusClass(status: number): string {
  return status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : "none";
}

/** Statuses the Connect adapter answers itself (unknown route, wrong content type, ...). */
const STATUS_REASON: Record<number, string> = {
  400: "bad_request",
  404: "not_found",
  405: "method_not_allowed",
  408: "timeout",
  413: "payload_too_large",
  415: "unsupported_media_type",
  429: "rate_limited",
  500: "internal",
  503: "unavailable",
};

function statusReason(status: number): string {
  return STATUS_REASON[status] ?? `http_${statusClass(status)}`;
}

/** `Code.InvalidArgument` -> `invalid_argument` (the names Connect puts on the wire). */
function codeName(code: Code): string {
  const name = (Code[code] as string | undefined) ?? "unknown";
  return name.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? "" : "_") + c.toLowerCase());
}
