/** Maps database rows and core objects to the protobuf messages of relayapi.v1. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AuthStyle, ProviderSchema, ApiShape as ApiShapeEnum, type Provider } from "../../gen/relayapi/v1/admin_service_pb.js";
import { TokenSchema, TokenStatus, UsageSchema, type Token, type Usage as UsageMsg } from "../../gen/relayapi/v1/common_pb.js";
import type { TokenRow } from "../db/schema/index.js";
import { GetQuotaResponseSchema, type GetQuotaResponse } from "../../gen/relayapi/v1/token_service_pb.js";
import type { QuotaReport } from "../plans/quota-report.js";
import { shapeNumber } from "../providers/shapes/index.js";
import type { ProviderSpec, Usage } from "../providers/types.js";
import { limitsToProto } from "../tokens/token-limits.js";

export function tokenStatus(row: TokenRow, now = Date.now()): TokenStatus {
  if (row.revokedAt) return TokenStatus.REVOKED;
  if (row.expiresAt.getTime() <= now) return TokenStatus.EXPIRED;
  if (row.maxCalls !== null && row.used >= row.maxCalls) return TokenStatus.EXHAUSTED;
  return TokenStatus.ACTIVE;
}

export function tokenToProto(row: TokenRow): Token {
  return create(TokenSchema, {
    id: row.id,
    kind: row.kind,
    provider: row.provider,
    subject: row.subject,
    limits: limitsToProto(row),
    callsUsed: BigInt(row.used),
    callsLeft: row.maxCalls === null ? undefined : BigInt(Math.max(0, row.maxCalls - row.used)),
    expiresAt: timestampFromDate(row.expiresAt),
    createdAt: timestampFromDate(row.createdAt),
    revokedAt: row.revokedAt ? timestampFromDate(row.revokedAt) : undefined,
    status: tokenStatus(row),
    upstreamKeyHint: row.upstreamKeyHint,
    pool: row.pool ?? "",
    tokensUsed: BigInt(row.tokensUsed),
    plan: row.plan ?? "",
    microUsdUsed: BigInt(row.microUsdUsed),
  });
}

export function providerToProto(p: ProviderSpec): Provider {
  const cred = p.credential;
  return create(ProviderSchema, {
    id: p.id,
    baseUrl: p.baseUrl,
    authStyle: cred.kind === "bearer" ? AuthStyle.BEARER : cred.kind === "header" ? AuthStyle.HEADER : AuthStyle.QUERY,
    authName: cred.kind === "bearer" ? "" : cred.name,
    defaultHeaders: { ...p.defaultHeaders },
    shape: shapeNumber(p.shape) as ApiShapeEnum,
    builtin: p.builtin,
  });
}

export function usageToProto(u: Usage | undefined): UsageMsg | undefined {
  if (!u) return undefined;
  return create(UsageSchema, {
    promptTokens: BigInt(u.promptTokens),
    completionTokens: BigInt(u.completionTokens),
    totalTokens: BigInt(u.totalTokens),
  });
}

/** A holder's quota report (src/plans/quota-report.ts) as GetQuotaResponse. */
export function quotaToProto(q: QuotaReport): GetQuotaResponse {
  return create(GetQuotaResponseSchema, {
    subject: q.subject,
    plan: q.plan,
    timeZone: q.timeZone,
    windows: q.windows.map((w) => ({
      scope: w.scope,
      period: w.period,
      unit: w.unit,
      limit: BigInt(w.limit),
      used: BigInt(w.used),
      remaining: BigInt(w.remaining),
      ...(w.resetsAt === undefined ? {} : { resetsAt: timestampFromDate(new Date(w.resetsAt)) }),
    })),
  });
}
