/**
 * A TokenMeta for unit tests of the engine and the policy (no database): an issued openai token
 * of subject `unit` with a key, every limit at its "none", valid for an hour; `over` sets the rest.
 */
import { metaLimitsOf, noLimits } from "../../src/tokens/token-limits.js";
import type { TokenMeta } from "../../src/tokens/token-meta.js";

export function tokenMeta(over: Partial<TokenMeta> = {}): TokenMeta {
  return {
    id: "tok_unit",
    kind: 1,
    provider: "openai",
    subject: "unit",
    upstreamKey: "sk-unit",
    pool: undefined,
    plan: undefined,
    ...metaLimitsOf(noLimits()),
    toolsAllowed: true,
    expiresAtMs: Date.now() + 3_600_000,
    ...over,
  };
}
