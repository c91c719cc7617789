/**
 * The limits table (issue 20, move 5), row by row: every limit has its proto field, its column
 * and its claim, and a value goes proto -> values -> claims (through a real sealed token) ->
 * values -> row -> proto unchanged. Table-driven, so a limit added to the table is covered here
 * without a new case; the type checks below fail to compile when its column or field is missing.
 */
import { ScalarType } from "@bufbuild/protobuf";
import { getTableColumns } from "drizzle-orm";
import { base64url, jwtDecrypt } from "jose";
import { describe, expect, it } from "vitest";
import { TokenLimitsSchema, type TokenLimits } from "../../gen/relayapi/v1/common_pb.js";
import { tokens, type TokenRow } from "../db/schema/index.js";
import { sealToken } from "../sdk/seal-token.js";
import {
  checkLimits,
  intRule,
  LIMIT_NAMES,
  LimitError,
  limitsFromClaims,
  limitsFromProto,
  limitsOf,
  limitsToClaims,
  limitsToProto,
  MAX_LIST,
  metaLimitsOf,
  noLimits,
  TOKEN_LIMITS,
  type LimitName,
  type MetaLimits,
  type ProtoLimits,
  type TokenLimitValues,
} from "./token-limits.js";
import type { TokenMeta } from "./token-meta.js";

// Compile-time: the row, the proto message and TokenMeta carry every limit of the table.
const rowHasLimits = (row: TokenRow): TokenLimitValues => row;
const protoHasLimits = (p: Required<TokenLimits>): ProtoLimits => p;
const metaHasLimits = (m: TokenMeta): MetaLimits => m;
void [rowHasLimits, protoHasLimits, metaHasLimits];

/** A valid entry for a list limit: the first of these its rule accepts. */
const ENTRIES = ["gpt-4o-mini", "/v1/chat", "https://app.example"];
const THUMBPRINT = "A".repeat(43);

/** A value other than "none" for every limit, the largest allowed or a full list. */
function sample(big: boolean): TokenLimitValues {
  const v: Record<string, unknown> = {};
  for (const name of LIMIT_NAMES) {
    const spec = TOKEN_LIMITS[name];
    if (spec.kind === "int") v[name] = big ? spec.max : 7;
    else if (spec.kind === "list") {
      const entry = ENTRIES.find((e) => spec.entry(e));
      if (entry === undefined) throw new Error(`add a valid ${name} entry to ENTRIES`);
      v[name] = big ? Array.from({ length: MAX_LIST }, () => entry) : [entry];
    } else if (spec.kind === "flag") v[name] = true;
    else v[name] = THUMBPRINT;
  }
  return v as TokenLimitValues;
}

describe("the limits table", () => {
  it("names each limit's proto field, column and claim once", () => {
    const columns = getTableColumns(tokens) as Record<string, { name: string }>;
    const claims = LIMIT_NAMES.map((n) => TOKEN_LIMITS[n].claim);
    expect(new Set(claims).size).toBe(claims.length);
    for (const name of LIMIT_NAMES) {
      const spec = TOKEN_LIMITS[name];
      const field = TokenLimitsSchema.fields.find((f) => f.localName === name);
      expect(field?.name, name).toBe(spec.snake);
      expect(columns[name]?.name, name).toBe(spec.snake);
      if (spec.kind === "int" && field?.fieldKind === "scalar") {
        expect(field.scalar === ScalarType.INT64, `${name} is wide in the proto`).toBe(spec.wide);
      }
    }
    // Nothing in the proto message is left out of the table.
    expect(TokenLimitsSchema.fields.map((f) => f.localName).sort()).toEqual([...LIMIT_NAMES].sort());
  });

  it.each([false, true])("carries every limit through proto, claims and row unchanged (largest values: %s)", async (big) => {
    const values = sample(big);
    checkLimits(values);
    const fromProto = limitsFromProto(limitsToProto(values));
    expect(fromProto).toEqual(values);
    // Claims as the SDK seals them and the relay reads them back.
    const secret = new Uint8Array(32).fill(7);
    const jwe = await sealToken({ prv: "openai", key: "sk-test-123", ...limitsToClaims(fromProto) }, { kid: "k1", secret: base64url.encode(secret) });
    const { payload } = await jwtDecrypt(jwe, secret);
    const fromClaims = limitsFromClaims(payload);
    expect(fromClaims).toEqual(values);
    const row: TokenRow = {
      id: "tok_x",
      kind: 1,
      secretHash: null,
      provider: "openai",
      subject: "",
      upstreamKeyEnc: null,
      upstreamKeyHint: "",
      pool: null,
      used: 0,
      tokensUsed: 0,
      microUsdUsed: 0,
      plan: null,
      expiresAt: new Date(0),
      createdAt: new Date(0),
      revokedAt: null,
      lastUsedAt: null,
      ...fromClaims,
    };
    expect(limitsOf(row)).toEqual(values);
    expect(limitsFromProto(limitsToProto(row))).toEqual(values);
    const meta = metaLimitsOf(row);
    for (const name of LIMIT_NAMES) {
      const spec = TOKEN_LIMITS[name];
      if (spec.kind === "list" && spec.set) expect([...(meta[name] as ReadonlySet<string>)]).toEqual([...new Set(values[name] as string[])]);
      else expect(meta[name]).toEqual(values[name]);
    }
  });

  it("the SDK refuses at mint time what the relay would refuse, for every limit", async () => {
    const key = { kid: "k1", secret: base64url.encode(new Uint8Array(32)) };
    await expect(sealToken({ prv: "openai", key: "sk-test-123", mtk: 0 }, key)).rejects.toThrow(
      "sealed token: mtk must be a positive integer of at most 10000000",
    );
    await expect(sealToken({ prv: "openai", key: "sk-test-123", rpm: 1_000_001 }, key)).rejects.toThrow(/rpm must be a positive integer/);
    await expect(sealToken({ prv: "openai", key: "sk-test-123", org: ["https://app.example/path"] }, key)).rejects.toThrow("sealed token: org: invalid entry");
  });

  it("reads no limit from empty proto, no claims and no row", () => {
    expect(limitsFromProto(undefined)).toEqual(noLimits());
    expect(limitsFromClaims({})).toEqual(noLimits());
    expect(limitsToClaims(noLimits())).toEqual({});
    expect(limitsToProto(noLimits())).toMatchObject({ bindJkt: "", toolsAllowed: false });
  });

  it.each(LIMIT_NAMES)("refuses a bad %s by the same rule for issued and sealed tokens", (name: LimitName) => {
    const spec = TOKEN_LIMITS[name];
    const bad: unknown[] =
      spec.kind === "int"
        ? [0, spec.max + (spec.max === Number.MAX_SAFE_INTEGER ? 2 : 1), 1.5, "5", null]
        : spec.kind === "list"
          ? [Array.from({ length: MAX_LIST + 1 }, () => ENTRIES[0]), [""], "x", null]
          : spec.kind === "flag"
            ? ["true", 1, null]
            : [{ jkt: "short" }, THUMBPRINT, { jkt: null }, null];
    for (const value of bad) {
      // The claim form: a malformed claim fails the token with the limit's own claim message.
      const claimError = (() => {
        try {
          limitsFromClaims({ [spec.claim]: value });
        } catch (e) {
          return e;
        }
      })();
      expect(claimError, `${spec.claim}: ${JSON.stringify(value)}`).toBeInstanceOf(LimitError);
      expect((claimError as LimitError).limit).toBe(name);
    }
    if (spec.kind === "int") {
      expect(() => checkLimits({ ...noLimits(), [name]: 0 })).toThrow(intRule(name));
    }
  });
});
