/**
 * What a login (issue 24.4) may be, checked before it is stored: the parts that need no lookup.
 * The plan, provider and pool are checked against their tables by LoginStore.add.
 */
import { RelayError } from "../errors.js";
import { PLAN_NAME } from "../plans/plan-name.js";
import type { TokenLimitValues } from "../tokens/token-limits.js";
import { validateLimits } from "../tokens/validate-limits.js";
import { jwksUrlProblem } from "./jwks-url.js";

/** A login's name: `login.<name>` prefixes its users' token ids, which SEALED_ID caps at 64 characters. */
export const LOGIN_NAME = /^[a-z0-9][a-z0-9._-]{0,57}$/;
/** A claim name: `sub`, `user_id`, or a namespaced claim such as `https://app.example/uid`. */
const CLAIM_NAME = /^[\x21-\x7e]{1,256}$/;
const PRINTABLE = /^[^\0-\x1f\x7f]+$/;

export interface LoginInput {
  name: string;
  issuer: string;
  audience: string;
  /** Undefined: discovered from the issuer when the login is added (src/logins/jwks-discovery.ts). */
  jwksUrl: string | undefined;
  subjectClaim: string;
  plan: string;
  provider: string;
  pool: string | undefined;
  upstreamKey: string | undefined;
  limits: TokenLimitValues;
}

/** Throws a 400 naming the first field that is not valid. */
export function checkLoginInput(l: LoginInput): void {
  const bad = (message: string): never => {
    throw new RelayError("bad_request", message);
  };
  if (!LOGIN_NAME.test(l.name)) bad("login name must be 1-58 of a-z, 0-9, '.', '_', '-', starting with a letter or digit");
  if (!isHttpUrl(l.issuer) || l.issuer.length > 2048) bad("issuer must be the ID tokens' `iss`: an http(s) URL");
  if (l.audience === "" || l.audience.length > 512 || !PRINTABLE.test(l.audience)) bad("audience must be 1-512 printable characters");
  const jwks = l.jwksUrl === undefined ? undefined : jwksUrlProblem(l.jwksUrl);
  if (jwks !== undefined) bad(jwks);
  if (!CLAIM_NAME.test(l.subjectClaim)) bad("subject_claim must be 1-256 printable characters without spaces");
  if (!PLAN_NAME.test(l.plan)) bad("plan must name a plan (relayapi plan list)");
  if (l.provider === "") bad("provider is required");
  if ((l.upstreamKey === undefined) === (l.pool === undefined)) bad("set exactly one of upstream_key and pool");
  // One DPoP key for every user of an app cannot be: each user's client would need its private key.
  if (l.limits.bindJkt !== null) bad("bind_jkt cannot be a login's limit");
  validateLimits({ subject: "", upstreamKey: l.upstreamKey, ...l.limits });
}

function isHttpUrl(raw: string): boolean {
  try {
    const u = new URL(raw);
    return u.protocol === "https:" || u.protocol === "http:";
  } catch {
    return false;
  }
}
