/**
 * `getQuota(relay, token)`: what the token's holder has left (issue 24.3), for an app to show
 * "12 of 50 left today". It calls `GET <relay>/api/quota` with the token as the bearer; the relay
 * answers the proto JSON form of TokenService.GetQuotaResponse, where int64 are strings and
 * default values are left out, so this turns counts into numbers and fills the defaults.
 * A DPoP-bound token passes `fetch: dpopFetch(keys)`.
 */
import type { FetchLike } from "./dpop-fetch.js";

export interface QuotaWindow {
  /** `token` (the token's own limit, over its life) or `plan` (the subject's, per window). */
  scope: string;
  /** `day` or `month` (calendar windows in the relay's quota time zone), or `life`. */
  period: string;
  /** `calls`, `tokens` (LLM tokens) or `micro_usd` (millionths of a US dollar). */
  unit: string;
  limit: number;
  used: number;
  /** `limit - used`, never below 0. */
  remaining: number;
  /** When the window starts again (ISO 8601); null for `life`. */
  resetsAt: string | null;
}

export interface Quota {
  /** The user the plan's windows count. */
  subject: string;
  /** The token's plan; "" when none. */
  plan: string;
  /** The IANA time zone calendar windows are counted in. */
  timeZone: string;
  /** The token's own limits first, then the plan's by period. */
  windows: QuotaWindow[];
}

export interface GetQuotaOptions {
  /** A fetch to use instead of the global one (e.g. `dpopFetch(keys)`). */
  fetch?: FetchLike;
  signal?: AbortSignal;
}

/** A refused or failed quota request: the relay's status and message (never the token). */
export class QuotaError extends Error {
  override readonly name = "QuotaError";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function getQuota(relay: string, token: string, opts: GetQuotaOptions = {}): Promise<Quota> {
  if (!/^https?:\/\//.test(relay)) throw new TypeError("relay must be an http(s) URL");
  const doFetch: FetchLike = opts.fetch ?? ((input, init) => fetch(input, init));
  const res = await doFetch(`${relay.replace(/\/+$/, "")}/api/quota`, {
    method: "GET",
    headers: { authorization: `Bearer ${token}`, accept: "application/json" },
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  const text = await res.text();
  let body: unknown;
  try {
    body = text === "" ? {} : JSON.parse(text);
  } catch {
    throw new QuotaError(res.status, `the relay answered ${res.status} with a body that is not JSON`);
  }
  if (!res.ok) throw new QuotaError(res.status, errorText(body) ?? `the relay answered ${res.status}`);
  return quotaFromJson(body);
}

/** The proto JSON form of GetQuotaResponse as a Quota; exported for tests and for callers with their own transport. */
export function quotaFromJson(json: unknown): Quota {
  const o = record(json);
  const windows = Array.isArray(o.windows) ? o.windows : [];
  return {
    subject: str(o.subject),
    plan: str(o.plan),
    timeZone: str(o.timeZone) || "UTC",
    windows: windows.map((w): QuotaWindow => {
      const r = record(w);
      return {
        scope: str(r.scope),
        period: str(r.period),
        unit: str(r.unit),
        limit: int(r.limit),
        used: int(r.used),
        remaining: int(r.remaining),
        resetsAt: typeof r.resetsAt === "string" && r.resetsAt !== "" ? isoTime(r.resetsAt) : null,
      };
    }),
  };
}

function record(v: unknown): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new TypeError("quota: the relay's answer is not a JSON object");
  return v as Record<string, unknown>;
}

/** An RFC 3339 time (proto JSON writes 0, 3, 6 or 9 fractional digits) in one form: `toISOString()`. */
function isoTime(v: string): string {
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new TypeError("quota: a reset time in the relay's answer is not a time");
  return d.toISOString();
}

const str = (v: unknown): string => (typeof v === "string" ? v : "");

/** An int64 in proto JSON: a decimal string (or a number); absent is 0. */
function int(v: unknown): number {
  if (v === undefined || v === null) return 0;
  const n = typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) throw new TypeError("quota: a count in the relay's answer is not a whole number");
  return n;
}

/** The message of a provider-shaped (`{error: {message}}`) or Connect (`{message}`) error body. */
function errorText(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const b = body as { error?: unknown; message?: unknown };
  if (typeof b.error === "object" && b.error !== null && typeof (b.error as { message?: unknown }).message === "string") {
    return (b.error as { message: string }).message;
  }
  if (typeof b.error === "string") return b.error;
  return typeof b.message === "string" ? b.message : undefined;
}
