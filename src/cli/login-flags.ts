/**
 * The flags of `relayapi login add` (issue 24.4) and their help: the login's own (issuer,
 * audience, key set, plan) plus the token flags of token-flags.ts its users' calls carry as a
 * template. A login has no expiry (each ID token's `exp` is checked), no subject (each token
 * names its user) and no DPoP binding (one key cannot belong to every user).
 */
import type { FlagHelp } from "./help.js";
import { TOKEN_FLAG_HELP, TOKEN_FLAGS } from "./token-flags.js";

const NOT_FOR_LOGINS = new Set(["expires-in", "subject", "bind-jkt", "plan", "provider", "upstream-key", "pool", "json"]);

const { "expires-in": _expiresIn, subject: _subject, "bind-jkt": _bindJkt, ...TEMPLATE_FLAGS } = TOKEN_FLAGS;

export const LOGIN_FLAGS = {
  ...TEMPLATE_FLAGS,
  issuer: { type: "string" },
  audience: { type: "string" },
  "jwks-url": { type: "string" },
  "subject-claim": { type: "string" },
  server: { type: "string" },
  "admin-key": { type: "string" },
} as const;

export const LOGIN_FLAG_HELP: FlagHelp[] = [
  { flag: "issuer", arg: "URL", help: "the ID tokens' `iss`, e.g. https://securetoken.google.com/<project> (required)" },
  { flag: "audience", arg: "AUD", help: "the ID tokens' `aud`: the app's client or project id (required)" },
  {
    flag: "jwks-url",
    arg: "URL",
    help: "the issuer's public keys (JWKS): https, or http on loopback (default: the jwks_uri of <issuer>/.well-known/openid-configuration, read once now)",
  },
  { flag: "subject-claim", arg: "NAME", help: "the claim naming the user (default: sub); a user's subject is <name>/<its value>" },
  { flag: "plan", arg: "NAME", help: "the plan each user's calls count against (required; relayapi plan create)" },
  { flag: "provider", arg: "ID", help: "the only provider the users can call (required)" },
  { flag: "upstream-key", arg: "KEY", help: "the upstream API key the relay uses (or --pool)" },
  { flag: "pool", arg: "NAME", help: "a key pool held by the relay (or --upstream-key)" },
  ...TOKEN_FLAG_HELP.filter((f) => !NOT_FOR_LOGINS.has(f.flag)),
];
