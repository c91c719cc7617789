/**
 * The token flags `token issue` and `token seal` share: each limit of the relay's limits table
 * (src/tokens/token-limits.ts: proto field, claim, bounds) has its flag and help here, so the
 * two commands, their `--help` and the README cannot drift apart. Bounds and rules are the
 * table's: the CLI refuses what the relay would refuse, with the same rule, before any call.
 */
import type { TokenLimits } from "../../gen/relayapi/v1/common_pb.js";
import { usdToMicro } from "../plans/micro-usd.js";
import type { SealInput } from "../sdk/seal-token.js";
import { intRule, JKT, limitsToClaims, limitsToProto, noLimits, TOKEN_LIMITS, type LimitsOfKind, type TokenLimitValues } from "../tokens/token-limits.js";
import { listFlag, UsageError } from "./args.js";
import type { FlagHelp } from "./help.js";

type IntLimit = { limit: LimitsOfKind<"int">; flag: string; help: string };
type ListLimit = { limit: LimitsOfKind<"list">; flag: string; help: string };

const INT_LIMITS: IntLimit[] = [
  { limit: "maxCalls", flag: "max-calls", help: "calls relayed over the token's life (default: no cap)" },
  { limit: "rpm", flag: "rpm", help: "requests per minute (default: no cap)" },
  { limit: "maxOutputTokens", flag: "max-output-tokens", help: "output tokens one request may ask for (default: no cap)" },
  { limit: "maxN", flag: "max-n", help: "choices (`n`) per request (default: no cap)" },
  { limit: "budgetTokens", flag: "budget", help: "LLM tokens (prompt + completion) over the token's life (default: no cap)" },
  { limit: "maxBodyBytes", flag: "max-body-bytes", help: "bytes in one request body (default: the relay's limit)" },
  { limit: "maxSessionSeconds", flag: "max-session-seconds", help: "seconds one Realtime session may last, 1-86400 (default: the plan's, else the relay's)" },
];

const LIST_LIMITS: ListLimit[] = [
  { limit: "models", flag: "models", help: "comma-separated models a request may name (default: any)" },
  { limit: "paths", flag: "paths", help: "comma-separated path prefixes, e.g. /v1/chat (default: any)" },
  { limit: "origins", flag: "origins", help: "comma-separated browser origins, e.g. https://app.example (default: any)" },
];

/** The flags, with help text, in the order `--help` shows them. */
export const TOKEN_FLAG_HELP: FlagHelp[] = [
  { flag: "provider", arg: "ID", help: "the only provider the token can call (required)" },
  { flag: "upstream-key", arg: "KEY", help: "the upstream API key the relay uses (or --pool)" },
  { flag: "pool", arg: "NAME", help: "a key pool held by the relay (or --upstream-key)" },
  { flag: "expires-in", arg: "DUR", help: "lifetime: 90s, 10m, 1h, 7d (default: 1h)" },
  { flag: "subject", arg: "S", help: "the end user the token is for (default: none)" },
  { flag: "plan", arg: "NAME", help: "a plan (relayapi plan create): the subject's calls count against its quotas; needs --subject" },
  ...INT_LIMITS.map((l) => ({ flag: l.flag, arg: "N", help: l.help })),
  { flag: "budget-usd", arg: "X", help: "US dollars over the token's life, e.g. 2.50 (up to 6 decimals; default: no cap)" },
  ...LIST_LIMITS.map((l) => ({ flag: l.flag, arg: "A,B", help: l.help })),
  { flag: "tools", help: "allow tools, functions and similar request fields (default: refused)" },
  { flag: "bind-jkt", arg: "JKT", help: "bind to a DPoP key: its RFC 7638 thumbprint (default: unbound)" },
  { flag: "json", help: "print JSON" },
];

export const TOKEN_FLAGS = {
  provider: { type: "string" },
  "upstream-key": { type: "string" },
  pool: { type: "string" },
  "expires-in": { type: "string" },
  subject: { type: "string" },
  plan: { type: "string" },
  "budget-usd": { type: "string" },
  "max-calls": { type: "string" },
  rpm: { type: "string" },
  "max-output-tokens": { type: "string" },
  "max-n": { type: "string" },
  budget: { type: "string" },
  "max-body-bytes": { type: "string" },
  models: { type: "string" },
  paths: { type: "string" },
  origins: { type: "string" },
  tools: { type: "boolean" },
  "bind-jkt": { type: "string" },
  json: { type: "boolean" },
} as const;

type Values = { [K in keyof typeof TOKEN_FLAGS]?: (typeof TOKEN_FLAGS)[K]["type"] extends "boolean" ? boolean | undefined : string | undefined };

function intValue(l: IntLimit, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`--${l.flag} must be a non-negative integer`);
  if (n < 1 || n > TOKEN_LIMITS[l.limit].max) throw new UsageError(`--${l.flag}: ${intRule(l.limit)}`);
  return n;
}

function jkt(raw: string | undefined): string | undefined {
  if (raw !== undefined && !JKT.test(raw)) throw new UsageError("--bind-jkt must be an RFC 7638 SHA-256 thumbprint (43 base64url characters)");
  return raw;
}

/** `--budget-usd 2.50` as micro-dollars (exact: src/plans/micro-usd.ts); null when not given. */
function budgetMicroUsd(raw: string | undefined): number | null {
  if (raw === undefined) return null;
  const micro = usdToMicro(raw);
  if (micro === undefined) throw new UsageError("--budget-usd must be an amount in US dollars with at most 6 decimals, e.g. 2.50");
  if (micro < 1) throw new UsageError("--budget-usd must be at least 0.000001");
  return micro;
}

/** The limits flags as the limits table's values (none where a flag is not given). */
function limitValues(values: Values): TokenLimitValues {
  const out = noLimits();
  for (const l of INT_LIMITS) out[l.limit] = intValue(l, values[l.flag as keyof Values] as string | undefined) ?? null;
  for (const l of LIST_LIMITS) out[l.limit] = listFlag(values[l.flag as keyof Values] as string | undefined);
  out.budgetMicroUsd = budgetMicroUsd(values["budget-usd"]);
  out.toolsAllowed = values.tools === true;
  out.bindJkt = jkt(values["bind-jkt"]) ?? null;
  return out;
}

/** The limits flags as proto TokenLimits (for IssueToken). */
export function protoLimits(values: Values): Omit<Partial<TokenLimits>, "$typeName"> {
  return limitsToProto(limitValues(values));
}

/** The limits flags as sealed-token claims (for `token seal`), set only when given. */
export function sealClaims(values: Values, claims: SealInput): void {
  Object.assign(claims, limitsToClaims(limitValues(values)));
}
