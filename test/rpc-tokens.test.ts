/**
 * TokenService and AdminService semantics over Connect: secrets shown once and stored only as
 * SHA-256, paging and filters, revocation, introspection, input validation, providers.
 */
import { toJsonString } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createHash, randomBytes } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { AdminService, ApiShape, AuthStyle } from "../gen/relayapi/v1/admin_service_pb.js";
import { TokenKind, TokenStatus } from "../gen/relayapi/v1/common_pb.js";
import {
  GetTokenResponseSchema,
  IssueTokenResponseSchema,
  ListTokensResponseSchema,
  TokenService,
  type IssueTokenRequest,
} from "../gen/relayapi/v1/token_service_pb.js";
import { tokens as tokensTable } from "../src/db/schema/index.js";
import { createAdminService } from "../src/services/admin-service.js";
import { isWellFormedIssued } from "../src/tokens/issued-token.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { codeOf } from "./support/connect-code.js";
import { useRelay } from "./support/use-relay.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { IssueTokenRequestSchema } from "../gen/relayapi/v1/token_service_pb.js";

const { relay, mock } = useRelay();
/** TokenService without the admin key, for IntrospectToken. */
let anon: ReturnType<typeof createClient<typeof TokenService>>;
beforeAll(async () => {
  anon = createClient(TokenService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
});

const HINT = "sk-...cdef";
const bearer = (secret: string) => ({ headers: { authorization: `Bearer ${secret}` } });
const uniq = (p: string) => `${p}-${randomBytes(4).toString("hex")}`;

/** One chat completion through the HTTP layer. */
function httpChat(secret: string, provider = "openai"): Promise<Response> {
  return fetch(`${relay.url}/api/${provider}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }] }),
  });
}

describe("IssueToken", () => {
  it("returns a rai_ secret once; reads never show it or the upstream key; the database holds only its SHA-256", async () => {
    const res = await relay.tokens.issueToken({
      provider: "openai",
      credential: { case: "upstreamKey", value: UPSTREAM_KEY },
      subject: "alice",
      limits: { maxCalls: 5n, models: ["gpt-mock"] },
    });
    const { secret } = res;
    const id = res.token!.id;
    expect(secret).toMatch(/^rai_[0-9A-Za-z]{38}$/);
    expect(isWellFormedIssued(secret)).toBe(true);
    expect(id).toMatch(/^tok_[0-9A-Za-z]+$/);
    expect(res.token).toMatchObject({
      kind: TokenKind.ISSUED,
      provider: "openai",
      subject: "alice",
      status: TokenStatus.ACTIVE,
      callsLeft: 5n,
      upstreamKeyHint: HINT,
    });
    const issuedJson = toJsonString(IssueTokenResponseSchema, res);
    expect(issuedJson.split(secret)).toHaveLength(2); // the secret field, once
    expect(issuedJson).not.toContain(UPSTREAM_KEY);

    const got = await relay.tokens.getToken({ id });
    const listed = await relay.tokens.listTokens({ subject: "alice" });
    expect(got.token?.id).toBe(id);
    expect(listed.tokens.map((t) => t.id)).toEqual([id]);
    for (const text of [toJsonString(GetTokenResponseSchema, got), toJsonString(ListTokensResponseSchema, listed)]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(secret.slice(4));
      expect(text).not.toContain(UPSTREAM_KEY);
      expect(text).toContain(HINT);
    }

    const rows = await relay.app.database.db.select().from(tokensTable);
    const row = rows.find((r) => r.id === id)!;
    expect(row.secretHash).toBe(createHash("sha256").update(secret).digest("hex"));
    for (const r of rows) {
      for (const value of Object.values(r)) {
        const text = JSON.stringify(value) ?? "";
        expect(text).not.toContain(secret.slice(4));
        expect(text).not.toContain(UPSTREAM_KEY);
        expect(text).not.toContain(UPSTREAM_KEY.slice(3, -4)); // no unmasked middle part either
      }
    }
    expect(await codeOf(() => relay.tokens.getToken({ id: "tok_doesnotexist" }))).toBe(Code.NotFound);
  });

  it("rejects invalid input with InvalidArgument", async () => {
    const base: MessageInitShape<typeof IssueTokenRequestSchema> = { provider: "openai", credential: { case: "upstreamKey", value: UPSTREAM_KEY } };
    const bad: [string, Partial<IssueTokenRequest> | MessageInitShape<typeof IssueTokenRequestSchema>][] = [
      ["unknown provider", { provider: "no-such-provider" }],
      ["empty upstream key", { credential: { case: "upstreamKey", value: "" } }],
      ["no credential", { credential: { case: undefined } }],
      ["upstream key with spaces", { credential: { case: "upstreamKey", value: "sk- bad" } }],
      ["max_calls 0", { limits: { maxCalls: 0n } }],
      ["max_calls negative", { limits: { maxCalls: -3n } }],
      ["expiry in the past", { expiry: { case: "expiresAt", value: timestampFromDate(new Date(Date.now() - 60_000)) } }],
      ["expiry too far", { expiry: { case: "expiresIn", value: { seconds: BigInt(400 * 86_400) } } }],
      ["origin not a URL", { limits: { origins: ["not a url"] } }],
      ["origin with a path", { limits: { origins: ["https://app.example/path"] } }],
      ["bad path prefix", { limits: { paths: ["v1/../admin"] } }],
    ];
    for (const [name, patch] of bad) {
      const code = await codeOf(() => relay.tokens.issueToken({ ...base, ...patch } as MessageInitShape<typeof IssueTokenRequestSchema>));
      expect({ name, code: Code[code] }).toEqual({ name, code: Code[Code.InvalidArgument] });
    }
  });
});

describe("ListTokens", () => {
  it("pages newest first without duplicates", async () => {
    const subject = uniq("pager");
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await relay.issue({ subject })).id);
    const pages: string[][] = [];
    const created: number[] = [];
    let pageToken = "";
    do {
      const res = await relay.tokens.listTokens({ subject, pageSize: 3, pageToken });
      pages.push(res.tokens.map((t) => t.id));
      created.push(...res.tokens.map((t) => timestampDate(t.createdAt!).getTime()));
      pageToken = res.nextPageToken;
    } while (pageToken !== "" && pages.length < 10);
    expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
    const all = pages.flat();
    expect(new Set(all).size).toBe(7);
    expect([...all].sort()).toEqual([...ids].sort());
    // Newest first: created_at never increases down the list; the last issued is not after the first.
    expect(created).toEqual([...created].sort((a, b) => b - a));
    expect(all.indexOf(ids[6]!)).toBeLessThanOrEqual(all.indexOf(ids[0]!));
    expect(await codeOf(() => relay.tokens.listTokens({ pageToken: "%%%not-a-cursor" }))).toBe(Code.InvalidArgument);
  });

  it("filters by provider, subject and status", async () => {
    const subject = uniq("filters");
    const active = await relay.issue({ subject, limits: { maxCalls: 5n } });
    const revoked = await relay.issue({ subject });
    const exhausted = await relay.issue({ subject, limits: { maxCalls: 1n } });
    const gemini = await relay.issue({ subject, provider: "gemini" });
    await relay.tokens.revokeToken({ id: revoked.id, reason: "test" });
    expect((await httpChat(exhausted.secret)).status).toBe(200);

    const ids = async (f: { provider?: string; status?: TokenStatus }) => (await relay.tokens.listTokens({ subject, ...f })).tokens.map((t) => t.id).sort();
    expect(await ids({})).toEqual([active.id, revoked.id, exhausted.id, gemini.id].sort());
    expect(await ids({ provider: "gemini" })).toEqual([gemini.id]);
    expect(await ids({ provider: "openai" })).toEqual([active.id, revoked.id, exhausted.id].sort());
    expect(await ids({ status: TokenStatus.REVOKED })).toEqual([revoked.id]);
    expect(await ids({ status: TokenStatus.EXHAUSTED })).toEqual([exhausted.id]);
    expect(await ids({ status: TokenStatus.ACTIVE })).toEqual([active.id, gemini.id].sort());
    expect(await ids({ status: TokenStatus.EXPIRED })).toEqual([]);
    const [ex] = (await relay.tokens.listTokens({ subject, status: TokenStatus.EXHAUSTED })).tokens;
    expect(ex).toMatchObject({ status: TokenStatus.EXHAUSTED, callsUsed: 1n, callsLeft: 0n });
    // The holder of a used-up token can still see why it stopped working.
    expect((await anon.introspectToken({}, bearer(exhausted.secret))).token).toMatchObject({ status: TokenStatus.EXHAUSTED, callsLeft: 0n });
  });
});

describe("RevokeToken and IntrospectToken", () => {
  it("revocation stops the token at once on the HTTP layer", async () => {
    const { id, secret } = await relay.issue({ limits: { maxCalls: 10n } });
    expect((await httpChat(secret)).status).toBe(200); // metadata now cached
    const res = await relay.tokens.revokeToken({ id, reason: "leaked" });
    expect(res.token).toMatchObject({ id, status: TokenStatus.REVOKED });
    const firstRevokedAt = res.token!.revokedAt;
    const refused = await httpChat(secret);
    expect(refused.status).toBe(401);
    expect(await refused.text()).not.toContain(secret);
    expect(await codeOf(() => anon.introspectToken({}, bearer(secret)))).toBe(Code.Unauthenticated);
    // Revoking again keeps the first time; unknown ids are NotFound.
    expect((await relay.tokens.revokeToken({ id })).token?.revokedAt).toEqual(firstRevokedAt);
    expect(await codeOf(() => relay.tokens.revokeToken({ id: "tok_nope" }))).toBe(Code.NotFound);
  });

  it("introspection is authenticated by the relay token and shows calls left and expiry", async () => {
    const { id, secret } = await relay.issue({ limits: { maxCalls: 4n }, expiresInSeconds: 600 });
    expect((await httpChat(secret)).status).toBe(200);
    const res = await anon.introspectToken({}, bearer(secret));
    expect(res.token).toMatchObject({ id, callsUsed: 1n, callsLeft: 3n, status: TokenStatus.ACTIVE, upstreamKeyHint: HINT });
    const expires = timestampDate(res.token!.expiresAt!).getTime();
    expect(Math.abs(expires - (Date.now() + 600_000))).toBeLessThan(30_000);

    expect(await codeOf(() => anon.introspectToken({}))).toBe(Code.Unauthenticated);
    expect(await codeOf(() => anon.introspectToken({}, bearer(relay.adminKey)))).toBe(Code.Unauthenticated);
    expect(await codeOf(() => anon.introspectToken({}, bearer("rai_bad")))).toBe(Code.Unauthenticated);
    const flipped = secret.slice(0, -1) + (secret.endsWith("A") ? "B" : "A");
    expect(await codeOf(() => anon.introspectToken({}, bearer(flipped)))).toBe(Code.Unauthenticated);
  });
});

describe("AdminService providers", () => {
  it("lists built-ins, read-only", async () => {
    const { providers } = await relay.admin.listProviders({});
    const builtin = providers.filter((p) => p.builtin).map((p) => p.id);
    expect(builtin).toEqual(expect.arrayContaining(["openai", "anthropic", "gemini", "mistral", "groq"]));
    expect(providers.find((p) => p.id === "anthropic")).toMatchObject({ shape: ApiShape.ANTHROPIC, authStyle: AuthStyle.HEADER, authName: "x-api-key" });
    const upsertOpenai = () => relay.admin.upsertProvider({ provider: { id: "openai", baseUrl: mock.url } });
    expect(await codeOf(upsertOpenai)).toBe(Code.PermissionDenied);
    expect(await codeOf(() => relay.admin.deleteProvider({ id: "gemini" }))).toBe(Code.PermissionDenied);
  });

  it("upserts a custom provider that relays with its auth style, then deletes it", async () => {
    const id = uniq("my-llm");
    const up = await relay.admin.upsertProvider({
      provider: { id, baseUrl: `${mock.url}/`, authStyle: AuthStyle.HEADER, authName: "X-My-Key", shape: ApiShape.OPENAI, builtin: true },
    });
    expect(up.provider).toMatchObject({ id, baseUrl: mock.url, authStyle: AuthStyle.HEADER, builtin: false });
    const listed = (await relay.admin.listProviders({})).providers.find((p) => p.id === id);
    expect(listed).toMatchObject({ builtin: false, baseUrl: mock.url });

    const { secret } = await relay.issue({ provider: id, limits: { maxCalls: 2n } });
    const before = mock.requests.length;
    const res = await httpChat(secret, id);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]?.message.content).toContain("tok0");
    const seen = mock.requests[before]!;
    expect(seen.path).toBe("/v1/chat/completions");
    expect(seen.headers["x-my-key"]).toBe(UPSTREAM_KEY);
    expect(seen.headers.authorization).toBeUndefined();

    await relay.admin.deleteProvider({ id });
    expect((await relay.admin.listProviders({})).providers.some((p) => p.id === id)).toBe(false);
    expect(await codeOf(() => relay.admin.deleteProvider({ id }))).toBe(Code.NotFound);
    expect((await httpChat(secret, id)).status).toBe(404);
  });

  it("rejects bad provider input with InvalidArgument", async () => {
    for (const provider of [
      { id: "bad-url", baseUrl: "not a url" },
      { id: "bad-url", baseUrl: "ftp://example.com" },
      { id: "bad-url", baseUrl: "https://user:pw@example.com" },
      { id: "bad-url", baseUrl: "https://example.com/?q=1" },
      { id: "Bad_Id", baseUrl: "https://example.com" },
      { id: "bad-auth", baseUrl: "https://example.com", authStyle: AuthStyle.HEADER, authName: "" },
    ]) {
      expect({ provider, code: Code[await codeOf(() => relay.admin.upsertProvider({ provider }))] }).toEqual({ provider, code: "InvalidArgument" });
    }
    expect(await codeOf(() => relay.admin.upsertProvider({}))).toBe(Code.InvalidArgument);
  });

  it("answers rpcs that are not built yet with Unimplemented, after the admin key check", async () => {
    // Which rpcs exist changes as features land: ask the factory (it reads no deps when built).
    const implemented = new Set(Object.keys(createAdminService({} as never)));
    expect(implemented).toContain("upsertProvider");
    const missing = AdminService.methods.filter((m) => !implemented.has(m.localName));
    const call = (client: typeof relay.admin, name: string, streaming: boolean) => async () => {
      const fn = (client as unknown as Record<string, (req: object) => unknown>)[name]!.bind(client);
      if (!streaming) return fn({});
      for await (const _ of fn({}) as AsyncIterable<unknown>) break;
    };
    const bare = createClient(AdminService, createConnectTransport({ baseUrl: relay.url, httpVersion: "1.1" }));
    for (const m of missing) {
      const streaming = m.methodKind === "server_streaming";
      expect({ m: m.name, code: Code[await codeOf(call(relay.admin, m.localName, streaming))] }).toEqual({ m: m.name, code: "Unimplemented" });
      expect({ m: m.name, code: Code[await codeOf(call(bare, m.localName, streaming))] }).toEqual({ m: m.name, code: "Unauthenticated" });
    }
  });
});
