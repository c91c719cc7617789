/** TokenService: thin mapping between the RPCs and src/tokens. */
import { create } from "@bufbuild/protobuf";
import { timestampDate, durationMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  TokenService,
  GetTokenResponseSchema,
  IntrospectTokenResponseSchema,
  IssueTokenResponseSchema,
  GetSealingKeyResponseSchema,
  ListTokensResponseSchema,
  RevokeTokenResponseSchema,
  type GetQuotaResponse,
  type IntrospectTokenResponse,
} from "../../gen/relayapi/v1/token_service_pb.js";
import { TokenStatus } from "../../gen/relayapi/v1/common_pb.js";
import type { Db } from "../db/client.js";
import { findPlan } from "../db/queries/plans.js";
import { PLAN_NAME } from "../plans/plan-name.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { TokenRow } from "../db/schema/index.js";
import { RelayError, invalidToken } from "../errors.js";
import type { SecretBox } from "../keys/secret-box.js";
import type { PoolRegistry } from "../keys/pool-registry.js";
import type { ProviderRegistry } from "../providers/registry.js";
import { DEFAULT_TTL_MS, issueToken } from "../tokens/issue-token.js";
import type { RelayKey } from "../tokens/relay-key.js";
import { TOKEN_KIND_SEALED } from "../tokens/sealed-token.js";
import { limitsFromProto, noLimits } from "../tokens/token-limits.js";
import type { TokenFilter, TokenStore } from "../tokens/token-store.js";
import { bearerOf } from "./auth.js";
import { quotaToProto, tokenToProto } from "./convert.js";

export interface TokenServiceDeps {
  db: Db;
  box: SecretBox;
  providers: ProviderRegistry;
  tokens: TokenStore;
  relayKey: RelayKey;
  acceptByokTokens: boolean;
  audit: AuditLog;
  pools: PoolRegistry;
}

const STATUS_FILTER: Partial<Record<TokenStatus, TokenFilter["status"]>> = {
  [TokenStatus.ACTIVE]: "active",
  [TokenStatus.REVOKED]: "revoked",
  [TokenStatus.EXPIRED]: "expired",
  [TokenStatus.EXHAUSTED]: "exhausted",
};

export function createTokenService(deps: TokenServiceDeps): Partial<ServiceImpl<typeof TokenService>> {
  const { db, box, providers, tokens } = deps;
  return {
    async issueToken(req) {
      // An admin caller may learn the provider ids (ListProviders shows them): name the one sent,
      // clipped to printable ASCII, and the known ones, so a typo is fixed without a second call.
      if (!providers.get(req.provider)) {
        const sent = req.provider.replace(/[^\x21-\x7e]/g, "?").slice(0, 64);
        const known = providers
          .list()
          .map((p) => p.id)
          .sort()
          .join(", ");
        throw new RelayError("bad_request", `unknown provider "${sent}"; known providers: ${known}`);
      }
      // The plan must exist now; one deleted later (with force) refuses the token's calls.
      if (req.plan !== "" && (!PLAN_NAME.test(req.plan) || !(await findPlan(db, req.plan)))) throw new RelayError("bad_request", "unknown plan");
      const expiresAt =
        req.expiry.case === "expiresAt"
          ? timestampDate(req.expiry.value)
          : new Date(Date.now() + (req.expiry.case === "expiresIn" ? durationMs(req.expiry.value) : DEFAULT_TTL_MS));
      const issued = await issueToken(db, box, providers, deps.pools, {
        provider: req.provider,
        upstreamKey: req.credential.case === "upstreamKey" ? req.credential.value : undefined,
        pool: req.credential.case === "pool" ? req.credential.value : undefined,
        subject: req.subject,
        plan: req.plan || undefined,
        ...limitsFromProto(req.limits),
        expiresAt,
      });
      await deps.audit.record({
        actor: "admin",
        action: "IssueToken",
        target: issued.row.id,
        detail: `provider=${issued.row.provider}${issued.row.pool ? ` pool=${issued.row.pool}` : ""}${issued.row.plan ? ` plan=${issued.row.plan}` : ""}`,
      });
      return create(IssueTokenResponseSchema, { secret: issued.secret, token: tokenToProto(issued.row) });
    },

    async getToken(req) {
      const row = await tokens.find(req.id);
      if (!row) throw new RelayError("not_found", "no such token");
      return create(GetTokenResponseSchema, { token: tokenToProto(row) });
    },

    async listTokens(req) {
      const filter: TokenFilter = {
        provider: req.provider || undefined,
        subject: req.subject || undefined,
        kind: req.kind || undefined,
        status: STATUS_FILTER[req.status],
      };
      const page = await tokens.list(filter, req.pageSize, req.pageToken);
      return create(ListTokensResponseSchema, { tokens: page.rows.map(tokenToProto), nextPageToken: page.nextPageToken });
    },

    async revokeToken(req) {
      // A sealed token (`<issuer>:<jti>`) can be revoked before its first use (TokenStore.revoke).
      const row = await tokens.revoke(req.id);
      if (!row) throw new RelayError("not_found", "no such token");
      await deps.audit.record({ actor: "admin", action: "RevokeToken", target: row.id });
      return create(RevokeTokenResponseSchema, { token: tokenToProto(row) });
    },

    introspectToken: (_req, ctx) => introspectTokenFor(tokens, bearerOf(ctx.requestHeader)),

    getQuota: (_req, ctx) => quotaFor(tokens, bearerOf(ctx.requestHeader)),

    getSealingKey() {
      return create(GetSealingKeyResponseSchema, { jwk: JSON.stringify(deps.relayKey.publicJwk), enabled: deps.acceptByokTokens });
    },
  };
}

/**
 * IntrospectToken's answer for the relay token `secret` (undefined: the call carried none). The
 * one body of the RPC: the Connect route above and the unary fast lane (unary-fast-lane.ts) call it.
 */
export async function introspectTokenFor(tokens: TokenStore, secret: string | undefined): Promise<IntrospectTokenResponse> {
  return introspectResponse(await introspectRowFor(tokens, secret));
}

/** The row IntrospectToken describes for `secret`; throws as the RPC answers (a 401). */
export async function introspectRowFor(tokens: TokenStore, secret: string | undefined): Promise<TokenRow> {
  if (secret === undefined) throw invalidToken();
  const meta = await tokens.authenticate(secret);
  // From the token cache and this instance's lease state, not a database read per call:
  // calls left are exact on this instance (src/tokens/token-views.ts says what others see).
  const row = (await tokens.introspect(meta.id)) ?? (meta.sealed ? { ...UNUSED_SEALED, ...meta.sealed.firstRow } : undefined);
  if (!row || row.revokedAt) throw invalidToken();
  return row;
}

const introspectResponse = (row: TokenRow): IntrospectTokenResponse => create(IntrospectTokenResponseSchema, { token: tokenToProto(row) });

/**
 * Answers kept at most (~1 KB each with their row); past it the memo starts over, as the token
 * views do: with more tokens than that asking at once, answers are serialized per call as before.
 */
const MAX_ANSWERS = 10_000;

interface SerializedAnswer {
  /** The row it was serialized from (rows are never changed in place: each read makes new ones). */
  row: TokenRow;
  /** How many fields the row has. */
  fields: number;
  /** Its status was decided before the token's expiry: the bytes hold until then. */
  untilMs: number;
  bytes: [json: Uint8Array | undefined, proto: Uint8Array | undefined];
}

/**
 * IntrospectToken's serialized answers, one per token, for the fast lane: the protobuf JSON of
 * an answer was ~17% of an h2c call's CPU (bench/README.md, "Connect fast lanes"), and apps ask
 * for the same token again and again. An answer depends on its row and, for its status, on the
 * clock against the row's expiry (tokenToProto); so the bytes are reused only while the row is
 * the same field by field (calls used and left, budgets, revocation, last use...) and the token
 * has not expired since: a changed row is serialized again, whatever changed it.
 */
export class IntrospectAnswers {
  readonly #answers = new Map<string, SerializedAnswer>();

  /** The answer for `row`, in JSON or (`binary`) proto; `serialize` makes it in that format. */
  bytes(row: TokenRow, binary: boolean, serialize: (message: IntrospectTokenResponse) => Uint8Array): Uint8Array {
    const now = Date.now();
    let a = this.#answers.get(row.id);
    if (a === undefined || now >= a.untilMs || !sameRow(a.row, a.fields, row)) {
      const expiresMs = row.expiresAt.getTime();
      a = { row, fields: Object.keys(row).length, untilMs: expiresMs > now ? expiresMs : Number.POSITIVE_INFINITY, bytes: [undefined, undefined] };
      if (this.#answers.size >= MAX_ANSWERS) this.#answers.clear();
      this.#answers.set(row.id, a);
    }
    const i = binary ? 1 : 0;
    return (a.bytes[i] ??= serialize(introspectResponse(a.row)));
  }
}

/** Field by field: primitives, dates by their time, string lists by their items; anything else differs. */
function sameRow(a: TokenRow, fields: number, b: TokenRow): boolean {
  let keys = 0;
  for (const key in b) {
    keys++;
    const x: unknown = a[key as keyof TokenRow];
    const y: unknown = b[key as keyof TokenRow];
    if (x === y) continue;
    if (x instanceof Date && y instanceof Date) {
      if (x.getTime() !== y.getTime()) return false;
    } else if (Array.isArray(x) && Array.isArray(y)) {
      if (x.length !== y.length || x.some((v, j) => typeof v !== "string" || v !== y[j])) return false;
    } else return false;
  }
  return keys === fields;
}

/** GetQuota's answer for the credential `secret`: the Connect route and the fast lane call it. */
export async function quotaFor(tokens: TokenStore, secret: string | undefined): Promise<GetQuotaResponse> {
  if (secret === undefined) throw invalidToken();
  const report = await tokens.quota(await tokens.authenticate(secret));
  if (report === undefined) throw invalidToken();
  return quotaToProto(report);
}

/** Defaults of a sealed token's row before its first use inserts it. */
const UNUSED_SEALED: TokenRow = {
  id: "",
  kind: TOKEN_KIND_SEALED,
  provider: "",
  subject: "",
  upstreamKeyHint: "",
  ...noLimits(),
  expiresAt: new Date(0),
  secretHash: null,
  upstreamKeyEnc: null,
  pool: null,
  used: 0,
  tokensUsed: 0,
  microUsdUsed: 0,
  plan: null,
  createdAt: new Date(0),
  revokedAt: null,
  lastUsedAt: null,
};
