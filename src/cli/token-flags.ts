/**
 * The one table of token flags `token issue` and `token seal` share: every limit a token can
 * carry (proto TokenLimits, the sealed-token claims of src/sdk/seal-token.ts) is a row here, so
 * the two commands, their `--help` and the README cannot drift apart. Bounds are the relay's
 * own (src/tokens/limits.ts, issue-token.ts): the CLI refuses what the relay would refuse,
 * with the same rule, before any call.
 */
import type { TokenLimits } from "../../gen/relayapi/v1/common_pb.js";
import type { SealInput } from "../sdk/seal-token.js";
import { listFlag, UsageError } from "./args.js";
import type { FlagHelp } from "./help.js";

type IntLimit = { kind: "int"; flag: string; help: string; max: number; proto: "maxCalls" | "rpm" | "maxOutputTokens" | "maxN" | "maxBodyBytes" | "budgetTokens"; claim: "max" | "rpm" | "mtk" | "mxn" | "mbb" | "bud"; rule: string };
type ListLimit = { kind: "list"; flag: string; help: string; proto: "models" | "paths" | "origins"; claim: "mdl" | "pth" | "org" };

const INT_LIMITS: IntLimit[] = [
  { kind: "int", flag: "max-calls", help: "calls relayed over the token's life (default: no cap)", max: Number.MAX_SAFE_INTEGER, proto: "maxCalls", claim: "max", rule: "max_calls must be at least 1" },
  { kind: "int", flag: "rpm", help: "requests per minute (default: no cap)", max: 1_000_000, proto: "rpm", claim: "rpm", rule: "rpm must be 1-1000000" },
  { kind: "int", flag: "max-output-tokens", help: "output tokens one request may ask for (default: no cap)", max: 10_000_000, proto: "maxOutputTokens", claim: "mtk", rule: "max_output_tokens must be 1-10000000" },
  { kind: "int", flag: "max-n", help: "choices (`n`) per request (default: no cap)", max: 1_000, proto: "maxN", claim: "mxn", rule: "max_n must be 1-1000" },
  { kind: "int", flag: "budget", help: "LLM tokens (prompt + completion) over the token's life (default: no cap)", max: Number.MAX_SAFE_INTEGER, proto: "budgetTokens", claim: "bud", rule: "budget_tokens must be at least 1" },
  { kind: "int", flag: "max-body-bytes", help: "bytes in one request body (default: the relay's limit)", max: Number.MAX_SAFE_INTEGER, proto: "maxBodyBytes", claim: "mbb", rule: "max_body_bytes must be positive" },
];

const LIST_LIMITS: ListLimit[] = [
  { kind: "list", flag: "models", help: "comma-separated models a request may name (default: any)", proto: "models", claim: "mdl" },
  { kind: "list", flag: "paths", help: "comma-separated path prefixes, e.g. /v1/chat (default: any)", proto: "paths", claim: "pth" },
  { kind: "list", flag: "origins", help: "comma-separated browser origins, e.g. https://app.example (default: any)", proto: "origins", claim: "org" },
];

/** The flags, with help text, in the order `--help` shows them. */
export const TOKEN_FLAG_HELP: FlagHelp[] = [
  { flag: "provider", arg: "ID", help: "the only provider the token can call (required)" },
  { flag: "upstream-key", arg: "KEY", help: "the upstream API key the relay uses (or --pool)" },
  { flag: "pool", arg: "NAME", help: "a key pool held by the relay (or --upstream-key)" },
  { flag: "expires-in", arg: "DUR", help: "lifetime: 90s, 10m, 1h, 7d (default: 1h)" },
  { flag: "subject", arg: "S", help: "the end user the token is for (default: none)" },
  ...INT_LIMITS.map((l) => ({ flag: l.flag, arg: "N", help: l.help })),
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
  if (n < 1 || n > l.max) throw new UsageError(`--${l.flag}: ${l.rule}`);
  return n;
}

const JKT = /^[A-Za-z0-9_-]{43}$/;
function jkt(raw: string | undefined): string | undefined {
  if (raw !== undefined && !JKT.test(raw)) throw new UsageError("--bind-jkt must be an RFC 7638 SHA-256 thumbprint (43 base64url characters)");
  return raw;
}

/** The limits flags as proto TokenLimits (for IssueToken). */
export function protoLimits(values: Values): Omit<Partial<TokenLimits>, "$typeName"> {
  const out: Omit<Partial<TokenLimits>, "$typeName"> = { toolsAllowed: values.tools === true, bindJkt: jkt(values["bind-jkt"]) ?? "" };
  for (const l of INT_LIMITS) {
    const n = intValue(l, values[l.flag as keyof Values] as string | undefined);
    if (n === undefined) continue;
    if (l.proto === "maxCalls" || l.proto === "maxBodyBytes" || l.proto === "budgetTokens") out[l.proto] = BigInt(n);
    else out[l.proto] = n;
  }
  for (const l of LIST_LIMITS) out[l.proto] = listFlag(values[l.flag as keyof Values] as string | undefined);
  return out;
}

/** The limits flags as sealed-token claims (for `token seal`), set only when given. */
export function sealClaims(values: Values, claims: SealInput): void {
  for (const l of INT_LIMITS) {
    const n = intValue(l, values[l.flag as keyof Values] as string | undefined);
    if (n !== undefined) claims[l.claim] = n;
  }
  for (const l of LIST_LIMITS) {
    const list = listFlag(values[l.flag as keyof Values] as string | undefined);
    if (list.length > 0) claims[l.claim] = list;
  }
  if (values.tools) claims.tls = true;
  const j = jkt(values["bind-jkt"]);
  if (j !== undefined) claims.cnf = { jkt: j };
}
