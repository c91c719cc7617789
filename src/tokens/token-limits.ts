/**
 * The one table of a token's limits (issue 20, move 5): for each limit its name (the same in
 * proto TokenLimits, the `tokens` row, TokenMeta and IssueInput), its sealed-token claim, its
 * snake-case name (proto field, column, messages) and what a valid value is; with the
 * converters from and to proto, claims and rows, and the one validation. A new limit is a row
 * here plus its column (a migration), and TypeScript points at every place that must use it.
 *
 * Browser-safe (the SDK, src/sdk/seal-token.ts, and the console import it): no `node:` module,
 * and only a type import of the generated proto.
 */
import type { TokenLimits } from "../../gen/relayapi/v1/common_pb.js";

interface IntLimit {
  kind: "int";
  claim: string;
  snake: string;
  /** Valid values are whole numbers 1..max. */
  max: number;
  /** An int64 in the proto (a bigint there), an int32 otherwise. */
  wide: boolean;
}
interface ListLimit {
  kind: "list";
  claim: string;
  snake: string;
  /** Whether one entry is valid. */
  entry: (v: string) => boolean;
  /** Looked up by membership on each request: a Set in TokenMeta. */
  set: boolean;
}
interface FlagLimit {
  kind: "flag";
  claim: string;
  snake: string;
}
/** A DPoP key binding (RFC 9449): the claim is RFC 7800's `cnf: {jkt}`. */
interface KeyLimit {
  kind: "jkt";
  claim: "cnf";
  snake: string;
}
type LimitSpec = IntLimit | ListLimit | FlagLimit | KeyLimit;

const ANY = Number.MAX_SAFE_INTEGER;
export const MAX_LIST = 100;
/** An RFC 7638 SHA-256 thumbprint, base64url. */
export const JKT = /^[A-Za-z0-9_-]{43}$/;
/** Stands in for a claim of the wrong form, so checkLimits refuses it with the limit's own message. */
const MALFORMED = Symbol("malformed");

/** In the order the console's form shows them. */
export const TOKEN_LIMITS = {
  /** Maximum number of calls, counted exactly by the relay; null: no cap. */
  maxCalls: { kind: "int", claim: "max", snake: "max_calls", max: ANY, wide: true },
  /** Allowed models (empty: any). */
  models: { kind: "list", claim: "mdl", snake: "models", set: true, entry: (m: string) => m.length > 0 && m.length <= 256 && !/[\0-\x1f]/.test(m) },
  /** Allowed path prefixes below the provider root, each starting with `/` (empty: any). */
  paths: { kind: "list", claim: "pth", snake: "paths", set: false, entry: (p: string) => /^\/[A-Za-z0-9\-._~/:]{0,255}$/.test(p) && !p.includes("..") },
  /** Allowed browser origins, e.g. `https://app.example` (empty: any). */
  origins: { kind: "list", claim: "org", snake: "origins", set: true, entry: isOrigin },
  /** Largest request body in bytes; null: the relay's limit. */
  maxBodyBytes: { kind: "int", claim: "mbb", snake: "max_body_bytes", max: ANY, wide: true },
  /** Requests per minute (approximate: a token bucket, src/limits); null: no per-token rate. */
  rpm: { kind: "int", claim: "rpm", snake: "rpm", max: 1_000_000, wide: false },
  /** Cap on the output tokens a request may ask for (above: refused; absent: inserted); null: none. */
  maxOutputTokens: { kind: "int", claim: "mtk", snake: "max_output_tokens", max: 10_000_000, wide: false },
  /** Cap on `n` (choices per request); null: none. */
  maxN: { kind: "int", claim: "mxn", snake: "max_n", max: 1_000, wide: false },
  /** Budget in LLM tokens (prompt + completion) over the token's life, metered from usage; null: none. */
  budgetTokens: { kind: "int", claim: "bud", snake: "budget_tokens", max: ANY, wide: true },
  /** Longest WebSocket (Realtime) session in seconds; null: the plan's, else the relay's (issue 25). */
  maxSessionSeconds: { kind: "int", claim: "mss", snake: "max_session_seconds", max: 86_400, wide: false },
  /** Budget in micro-dollars over the token's life, metered from usage and prices (src/pricing); null: none. */
  budgetMicroUsd: { kind: "int", claim: "bus", snake: "budget_micro_usd", max: ANY, wide: true },
  /** The RFC 7638 thumbprint of the client key the token is bound to (DPoP); null: a bearer token. */
  bindJkt: { kind: "jkt", claim: "cnf", snake: "bind_jkt" },
  /** Tools, functions and similar request fields allowed (refused by default). */
  toolsAllowed: { kind: "flag", claim: "tls", snake: "tools_allowed" },
} as const satisfies Record<string, LimitSpec>;

type Table = typeof TOKEN_LIMITS;
export type LimitName = keyof Table;
export const LIMIT_NAMES = Object.keys(TOKEN_LIMITS) as LimitName[];

type ValueOf<S> = S extends IntLimit ? number | null : S extends ListLimit ? string[] : S extends FlagLimit ? boolean : string | null;
type ClaimOf<S> = S extends IntLimit ? number : S extends ListLimit ? string[] : S extends FlagLimit ? boolean : { jkt: string };
type MetaOf<S> = S extends { kind: "list"; set: true } ? ReadonlySet<string> : S extends ListLimit ? readonly string[] : ValueOf<S>;
type ProtoOf<S> = S extends { kind: "int"; wide: true }
  ? bigint | undefined
  : S extends IntLimit
    ? number | undefined
    : S extends ListLimit
      ? string[]
      : S extends FlagLimit
        ? boolean
        : string;

/** The names of the limits of one kind (`"int"`: the number limits). */
export type LimitsOfKind<Kind extends LimitSpec["kind"]> = { [K in LimitName]: Table[K]["kind"] extends Kind ? K : never }[LimitName];

/** A token's limits as stored (the `tokens` row's columns) and issued: null, empty or false for none. */
export type TokenLimitValues = { [K in LimitName]: ValueOf<Table[K]> };
/** The limits as the check path reads them (TokenMeta). */
export type MetaLimits = { [K in LimitName]: MetaOf<Table[K]> };
/** The limit claims of a sealed token (all optional). */
export type LimitClaims = { [K in LimitName as Table[K]["claim"]]?: ClaimOf<Table[K]> };
/** The limits as proto TokenLimits carries them (a message init or the message itself). */
export type ProtoLimits = { [K in LimitName]: ProtoOf<Table[K]> };

/** No limits (null, empty or false each): what a token carries when none was given. */
export function noLimits(): TokenLimitValues {
  return fromEach(() => undefined);
}

/** A limit that is not valid; `message` names the proto/column field, `claimMessage` the claim. */
export class LimitError extends Error {
  override readonly name = "LimitError";
  constructor(
    readonly limit: LimitName,
    message: string,
    readonly claimMessage: string,
  ) {
    super(message);
  }
}

/** The rule a number limit follows, as messages show it: `rpm must be 1-1000000`. */
export function intRule(name: LimitName): string {
  const spec: LimitSpec = TOKEN_LIMITS[name];
  if (spec.kind !== "int") throw new TypeError(`${name} is not a number limit`);
  return spec.max === ANY ? `${spec.snake} must be at least 1` : `${spec.snake} must be 1-${spec.max}`;
}

/** Checks every limit; throws LimitError for the first that is not valid. */
export function checkLimits(v: TokenLimitValues): void {
  for (const name of LIMIT_NAMES) {
    const spec: LimitSpec = TOKEN_LIMITS[name];
    const value: unknown = v[name];
    const fail = (message: string, claimMessage: string): never => {
      throw new LimitError(name, message, claimMessage);
    };
    switch (spec.kind) {
      case "int":
        if (value !== null && !(Number.isSafeInteger(value) && (value as number) >= 1 && (value as number) <= spec.max)) {
          fail(intRule(name), `${spec.claim} must be a positive integer${spec.max === ANY ? "" : ` of at most ${spec.max}`}`);
        }
        break;
      case "list":
        if (!Array.isArray(value) || value.length > MAX_LIST)
          fail(`${spec.snake}: at most ${MAX_LIST} entries`, `${spec.claim} must be a list of at most ${MAX_LIST} strings`);
        for (const e of value as unknown[]) if (typeof e !== "string" || !spec.entry(e)) fail(`${spec.snake}: invalid entry`, `${spec.claim}: invalid entry`);
        break;
      case "flag":
        if (typeof value !== "boolean") fail(`${spec.snake} must be true or false`, `${spec.claim} must be a boolean`);
        break;
      case "jkt":
        if (value !== null && (typeof value !== "string" || !JKT.test(value))) {
          fail(`${spec.snake} must be an RFC 7638 SHA-256 thumbprint (base64url, 43 characters)`, "cnf.jkt must be a SHA-256 JWK thumbprint");
        }
        break;
    }
  }
}

/** A sealed token's limit claims, checked (LimitError for a malformed one); absent claims are no limit. */
export function limitsFromClaims(claims: object): TokenLimitValues {
  const c = claims as Readonly<Record<string, unknown>>;
  const v = fromEach((spec) => {
    const claim = c[spec.claim];
    // A claim that is present says something: `null` is malformed, not "no limit".
    if (claim === null) return MALFORMED;
    // `cnf` is an object holding the thumbprint.
    if (spec.kind === "jkt" && claim !== undefined) {
      const jkt: unknown = typeof claim === "object" && !Array.isArray(claim) ? (claim as { jkt?: unknown }).jkt : undefined;
      return typeof jkt === "string" ? jkt : MALFORMED;
    }
    return claim;
  });
  checkLimits(v);
  return v;
}

/** The limit claims that say something (no null, empty list or false). */
export function limitsToClaims(v: TokenLimitValues): LimitClaims {
  const out: Record<string, unknown> = {};
  for (const name of LIMIT_NAMES) {
    const spec: LimitSpec = TOKEN_LIMITS[name];
    const value: unknown = v[name];
    if (value === null || value === false || (Array.isArray(value) && value.length === 0)) continue;
    out[spec.claim] = spec.kind === "jkt" ? { jkt: value } : Array.isArray(value) ? [...(value as string[])] : value;
  }
  return out as LimitClaims;
}

/** Proto TokenLimits (absent: none) as values, unchecked: an int64 beyond 2^53 is caught by checkLimits. */
export function limitsFromProto(p: Partial<Omit<TokenLimits, "$typeName" | "$unknown">> | undefined): TokenLimitValues {
  const proto = (p ?? {}) as Readonly<Record<string, unknown>>;
  return fromEach((spec, name) => {
    const value = proto[name];
    if (spec.kind === "int") return typeof value === "bigint" ? Number(value) : value;
    if (spec.kind === "jkt") return value === "" ? undefined : value;
    return value;
  });
}

/** Values as proto TokenLimits fields (int64 as bigint, no jkt as ""). */
export function limitsToProto(v: TokenLimitValues): ProtoLimits {
  const out: Record<string, unknown> = {};
  for (const name of LIMIT_NAMES) {
    const spec: LimitSpec = TOKEN_LIMITS[name];
    const value: unknown = v[name];
    if (spec.kind === "int") out[name] = value === null ? undefined : spec.wide ? BigInt(value as number) : value;
    else if (spec.kind === "jkt") out[name] = value ?? "";
    else out[name] = Array.isArray(value) ? [...(value as string[])] : value;
  }
  return out as ProtoLimits;
}

/** Just the limits of a row (or anything that has them). */
export function limitsOf(row: TokenLimitValues): TokenLimitValues {
  return fromEach((_, name) => row[name]);
}

/** The limits as TokenMeta holds them: lists looked up per request become Sets. */
export function metaLimitsOf(v: TokenLimitValues): MetaLimits {
  const out: Record<string, unknown> = {};
  for (const name of LIMIT_NAMES) {
    const spec: LimitSpec = TOKEN_LIMITS[name];
    out[name] = spec.kind === "list" && spec.set ? new Set(v[name] as string[]) : v[name];
  }
  return out as MetaLimits;
}

/** Builds values limit by limit; undefined becomes the limit's "none" (null, [] or false). */
function fromEach(read: (spec: LimitSpec, name: LimitName) => unknown): TokenLimitValues {
  const out: Record<string, unknown> = {};
  for (const name of LIMIT_NAMES) {
    const spec: LimitSpec = TOKEN_LIMITS[name];
    const value = read(spec, name);
    out[name] = value !== undefined ? value : spec.kind === "list" ? [] : spec.kind === "flag" ? false : null;
  }
  return out as TokenLimitValues;
}

function isOrigin(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === "https:" || u.protocol === "http:") && u.origin === v;
  } catch {
    return false;
  }
}
