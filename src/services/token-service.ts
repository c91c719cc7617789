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
} from "../../gen/relayapi/v1/token_service_pb.js";
import { TokenStatus } from "../../gen/relayapi/v1/common_pb.js";
import type { Db } from "../db/client.js";
import type { AuditLog } from "../audit/audit-log.js";
import type { TokenRow } from "../db/schema/index.js";
import { findTokenById, insertRevokedSealed, listTokens, revokeToken, type PageCursor, type TokenFilter } from "../db/queries/tokens.js";
import { RelayError, invalidToken } from "../errors.js";
import type { SecretBox } from "../keys/secret-box.js";
import type { PoolRegistry } from "../keys/pool-registry.js";
import type { ProviderRegistry } from "../providers/registry.js";
import { DEFAULT_TTL_MS, issueToken } from "../tokens/issue-token.js";
import type { RelayKey } from "../tokens/relay-key.js";
import { JKT, TOKEN_KIND_SEALED } from "../tokens/sealed-token.js";
import type { TokenStore } from "../tokens/token-store.js";
import { MAX_TTL_MS } from "../tokens/limits.js";
import { bearerOf } from "./auth.js";
import { tokenToProto } from "./convert.js";

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
      const limits = req.limits;
      // An admin caller may learn the provider ids (ListProviders shows them): name the one sent,
      // clipped to printable ASCII, and the known ones, so a typo is fixed without a second call.
      if (!providers.get(req.provider)) {
        const sent = req.provider.replace(/[^\x21-\x7e]/g, "?").slice(0, 64);
        const known = providers.list().map((p) => p.id).sort().join(", ");
        throw new RelayError("bad_request", `unknown provider "${sent}"; known providers: ${known}`);
      }
      if (limits && limits.bindJkt !== "" && !JKT.test(limits.bindJkt)) {
        throw new RelayError("bad_request", "bind_jkt must be an RFC 7638 SHA-256 thumbprint (base64url, 43 characters)");
      }
      const expiresAt =
        req.expiry.case === "expiresAt"
          ? timestampDate(req.expiry.value)
          : new Date(Date.now() + (req.expiry.case === "expiresIn" ? durationMs(req.expiry.value) : DEFAULT_TTL_MS));
      const issued = await issueToken(db, box, providers, deps.pools, {
        provider: req.provider,
        upstreamKey: req.credential.case === "upstreamKey" ? req.credential.value : undefined,
        pool: req.credential.case === "pool" ? req.credential.value : undefined,
        subject: req.subject,
        maxCalls: limits?.maxCalls === undefined ? undefined : Number(limits.maxCalls),
        models: limits?.models ?? [],
        paths: limits?.paths ?? [],
        origins: limits?.origins ?? [],
        maxBodyBytes: limits?.maxBodyBytes === undefined ? undefined : Number(limits.maxBodyBytes),
        rpm: limits?.rpm,
        maxOutputTokens: limits?.maxOutputTokens,
        maxN: limits?.maxN,
        toolsAllowed: limits?.toolsAllowed ?? false,
        budgetTokens: limits?.budgetTokens === undefined ? undefined : Number(limits.budgetTokens),
        bindJkt: limits?.bindJkt || undefined,
        expiresAt,
      });
      await deps.audit.record({ actor: "admin", action: "IssueToken", target: issued.row.id, detail: `provider=${issued.row.provider}${issued.row.pool ? ` pool=${issued.row.pool}` : ""}` });
      return create(IssueTokenResponseSchema, { secret: issued.secret, token: tokenToProto(issued.row) });
    },

    async getToken(req) {
      const row = await findTokenById(db, req.id);
      if (!row) throw new RelayError("not_found", "no such token");
      return create(GetTokenResponseSchema, { token: tokenToProto(row) });
    },

    async listTokens(req) {
      const pageSize = req.pageSize <= 0 ? 50 : Math.min(req.pageSize, 500);
      const after = req.pageToken ? decodeCursor(req.pageToken) : undefined;
      const rows = await listTokens(
        db,
        { provider: req.provider || undefined, subject: req.subject || undefined, kind: req.kind || undefined, status: STATUS_FILTER[req.status] },
        pageSize + 1,
        after,
      );
      const page = rows.slice(0, pageSize);
      const last = page[page.length - 1];
      return create(ListTokensResponseSchema, {
        tokens: page.map(tokenToProto),
        nextPageToken: rows.length > pageSize && last ? encodeCursor({ createdAt: last.createdAt, id: last.id }) : "",
      });
    },

    async revokeToken(req) {
      // A sealed token (`<issuer>:<jti>`) can be revoked before its first use: its row is
      // inserted already revoked, and outlives any token the issuer could mint.
      const row =
        (await revokeToken(db, req.id)) ??
        (SEALED_ID.test(req.id) ? await insertRevokedSealed(db, req.id, new Date(Date.now() + MAX_TTL_MS)) : undefined);
      if (!row) throw new RelayError("not_found", "no such token");
      tokens.forget(row.id);
      await deps.audit.record({ actor: "admin", action: "RevokeToken", target: row.id });
      return create(RevokeTokenResponseSchema, { token: tokenToProto(row) });
    },

    async introspectToken(_req, ctx) {
      const secret = bearerOf(ctx.requestHeader);
      if (secret === undefined) throw invalidToken();
      const meta = await tokens.authenticate(secret);
      const row = (await findTokenById(db, meta.id)) ?? (meta.sealed ? { ...UNUSED_SEALED, ...meta.sealed.firstRow } : undefined);
      if (!row || row.revokedAt) throw invalidToken();
      return create(IntrospectTokenResponseSchema, { token: tokenToProto(row) });
    },

    getSealingKey() {
      return create(GetSealingKeyResponseSchema, { jwk: JSON.stringify(deps.relayKey.publicJwk), enabled: deps.acceptByokTokens });
    },
  };
}

/** Public ids of sealed tokens: `<issuer or byok scope>:<jti>`. */
const SEALED_ID = /^[a-z0-9][a-z0-9._-]{0,63}:[A-Za-z0-9._~:-]{1,128}$/;

/** Defaults of a sealed token's row before its first use inserts it. */
const UNUSED_SEALED: TokenRow = {
  id: "",
  kind: TOKEN_KIND_SEALED,
  provider: "",
  subject: "",
  upstreamKeyHint: "",
  maxCalls: null,
  models: [],
  paths: [],
  origins: [],
  maxBodyBytes: null,
  toolsAllowed: false,
  expiresAt: new Date(0),
  secretHash: null,
  upstreamKeyEnc: null,
  pool: null,
  used: 0,
  tokensUsed: 0,
  rpm: null,
  maxOutputTokens: null,
  maxN: null,
  budgetTokens: null,
  bindJkt: null,
  createdAt: new Date(0),
  revokedAt: null,
  lastUsedAt: null,
};

function encodeCursor(c: PageCursor): string {
  return Buffer.from(`${c.createdAt.getTime()}.${c.id}`).toString("base64url");
}

function decodeCursor(token: string): PageCursor {
  const text = Buffer.from(token, "base64url").toString("utf8");
  const dot = text.indexOf(".");
  const ms = Number(text.slice(0, dot));
  const id = text.slice(dot + 1);
  if (dot < 1 || !Number.isSafeInteger(ms) || !/^[A-Za-z0-9._~:-]{1,200}$/.test(id)) {
    throw new RelayError("bad_request", "invalid page_token");
  }
  return { createdAt: new Date(ms), id };
}
