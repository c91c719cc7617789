/**
 * IntrospectToken's serialized answers reused by the fast lane (src/services/token-service.ts
 * IntrospectAnswers): the bytes of an unchanged token are serialized once, and an answer is always
 * the one a fresh serialization of the same row gives, whatever field changed (a field the
 * comparison missed would serve a stale answer) and across the token's expiry (its status).
 */
import { create, fromJsonString, type MessageShape } from "@bufbuild/protobuf";
import { createMethodSerializationLookup, validateReadWriteMaxBytes } from "@connectrpc/connect/protocol";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TokenStatus } from "../gen/relayapi/v1/common_pb.js";
import { IntrospectTokenResponseSchema, TokenService } from "../gen/relayapi/v1/token_service_pb.js";
import type { TokenRow } from "../src/db/schema/index.js";
import { tokenToProto } from "../src/services/convert.js";
import { IntrospectAnswers } from "../src/services/token-service.js";

const serialization = createMethodSerializationLookup(
  TokenService.method.introspectToken,
  undefined,
  undefined,
  validateReadWriteMaxBytes(4096, undefined, undefined),
);
const serializer = (binary: boolean) => (m: MessageShape<typeof IntrospectTokenResponseSchema>) => serialization.getO(binary).serialize(m);
/** What the fast lane sent before the memo: the row serialized afresh. */
const fresh = (row: TokenRow, binary: boolean): Uint8Array => serializer(binary)(create(IntrospectTokenResponseSchema, { token: tokenToProto(row) }));

const HOUR = 3_600_000;

/** A row with every field set; `other` differs from it in every field. */
function rows(now: number): [TokenRow, TokenRow] {
  const base: TokenRow = {
    id: "tok_a",
    kind: 1,
    secretHash: "hash-a",
    provider: "openai",
    subject: "alice",
    upstreamKeyEnc: "enc-a",
    upstreamKeyHint: "sk-...a",
    pool: "pool-a",
    maxCalls: 100,
    used: 10,
    tokensUsed: 1000,
    models: ["gpt-a"],
    paths: ["/v1/chat/completions"],
    origins: ["https://a.example"],
    rpm: 60,
    maxOutputTokens: 512,
    maxN: 1,
    toolsAllowed: false,
    maxBodyBytes: 4096,
    budgetTokens: 5000,
    maxSessionSeconds: 60,
    budgetMicroUsd: 1_000_000,
    microUsdUsed: 1234,
    plan: "free",
    bindJkt: "jkt-a",
    expiresAt: new Date(now + HOUR),
    createdAt: new Date(now - HOUR),
    revokedAt: null,
    lastUsedAt: new Date(now - 1000),
  };
  const other: TokenRow = {
    id: "tok_a",
    kind: 2,
    secretHash: null,
    provider: "groq",
    subject: "bob",
    upstreamKeyEnc: null,
    upstreamKeyHint: "sk-...b",
    pool: null,
    maxCalls: null,
    used: 11,
    tokensUsed: 1001,
    models: ["gpt-a", "gpt-b"],
    paths: ["/v1/embeddings"],
    origins: [],
    rpm: null,
    maxOutputTokens: 513,
    maxN: null,
    toolsAllowed: true,
    maxBodyBytes: null,
    budgetTokens: 5001,
    maxSessionSeconds: null,
    budgetMicroUsd: null,
    microUsdUsed: 1235,
    plan: null,
    bindJkt: null,
    expiresAt: new Date(now + 2 * HOUR),
    createdAt: new Date(now - 2 * HOUR),
    revokedAt: new Date(now - 1),
    lastUsedAt: null,
  };
  return [base, other];
}

/** The same row as a new object, with new dates and lists (as each read of the database makes it). */
function copy(row: TokenRow): TokenRow {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) out[k] = v instanceof Date ? new Date(v.getTime()) : Array.isArray(v) ? [...v] : v;
  return out as TokenRow;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("IntrospectAnswers", () => {
  it("serializes an unchanged token once per format, with the bytes a fresh serialization gives", () => {
    const answers = new IntrospectAnswers();
    const [row] = rows(Date.now());
    for (const binary of [false, true]) {
      const serialize = vi.fn(serializer(binary));
      const first = answers.bytes(row, binary, serialize);
      expect(Buffer.from(first)).toEqual(Buffer.from(fresh(row, binary)));
      expect(answers.bytes({ ...row }, binary, serialize)).toBe(first);
      expect(answers.bytes(copy(row), binary, serialize)).toBe(first);
      expect(serialize).toHaveBeenCalledTimes(1);
    }
  });

  it("answers afresh when any field changed (each field in turn, both ways)", () => {
    const answers = new IntrospectAnswers();
    const [base, other] = rows(Date.now());
    const fields = Object.keys(base) as (keyof TokenRow)[];
    expect(fields.sort()).toEqual((Object.keys(other) as (keyof TokenRow)[]).sort());
    for (const binary of [false, true]) {
      for (const field of fields) {
        if (field === "id") continue; // the memo's key: another token
        for (const [from, to] of [
          [base, other],
          [other, base],
        ] as const) {
          const before = { ...from };
          const after = { ...from, [field]: to[field] };
          expect(Buffer.from(answers.bytes(before, binary, serializer(binary))), field).toEqual(Buffer.from(fresh(before, binary)));
          expect(Buffer.from(answers.bytes(after, binary, serializer(binary))), field).toEqual(Buffer.from(fresh(after, binary)));
        }
      }
    }
    // A list that changed in place, and one more field than the row the answer was made from.
    const listed = copy(base);
    answers.bytes(listed, false, serializer(false));
    const grown = { ...listed, models: [...listed.models.slice(0, -1), "gpt-z"] };
    expect(Buffer.from(answers.bytes(grown, false, serializer(false)))).toEqual(Buffer.from(fresh(grown, false)));
    const wider = { ...base, extra: 1 } as TokenRow;
    const serialize = vi.fn(serializer(false));
    answers.bytes(base, false, serializer(false));
    answers.bytes(wider, false, serialize);
    answers.bytes(base, false, serialize);
    expect(serialize).toHaveBeenCalledTimes(2);
  });

  it("answers EXPIRED once the token's expiry passed, not the ACTIVE answer made before it", () => {
    const t0 = Date.UTC(2026, 0, 1);
    vi.useFakeTimers({ now: t0, toFake: ["Date"] });
    const answers = new IntrospectAnswers();
    const row = { ...rows(t0)[0], expiresAt: new Date(t0 + 1000) };
    const status = (): TokenStatus =>
      fromJsonString(IntrospectTokenResponseSchema, Buffer.from(answers.bytes(row, false, serializer(false))).toString()).token!.status;
    expect(status()).toBe(TokenStatus.ACTIVE);
    vi.setSystemTime(t0 + 999);
    expect(status()).toBe(TokenStatus.ACTIVE);
    vi.setSystemTime(t0 + 1000);
    expect(status()).toBe(TokenStatus.EXPIRED);
    expect(Buffer.from(answers.bytes(row, true, serializer(true)))).toEqual(Buffer.from(fresh(row, true)));
  });
});
