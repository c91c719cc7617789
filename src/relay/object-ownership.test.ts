/**
 * The per-call cost of ownership (issue 25 review): a call naming no stored object is answered
 * at once (no promise, so the engine takes no extra turn) and its body is not parsed; the check
 * and the tap of a chat call share one read of its body. The database is never reached here.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Db } from "../db/client.js";
import { openaiShape } from "../providers/shapes/openai.js";
import type { ProviderSpec } from "../providers/types.js";
import type { TokenMeta } from "../tokens/token-meta.js";
import { ObjectOwnership } from "./object-ownership.js";

const noDb = new Proxy({} as Db, {
  get: () => {
    throw new Error("the database was reached");
  },
});
const ownership = new ObjectOwnership(noDb, { ttlDays: 30, allowUnknown: false, pruneIntervalMs: 0, vacuum: false });
const provider = { id: "openai", shape: openaiShape } as ProviderSpec;
const token = { subject: "alice" } as TokenMeta;
const post = (path: string, body: unknown) => ({ method: "POST", path, body: Buffer.from(JSON.stringify(body)), upload: undefined });
const messages = [{ role: "user", content: "summarise the file_id field of the store, please" }];

afterEach(() => vi.restoreAllMocks());

describe("a call that names no stored object", () => {
  it("is checked without a promise, a parse or the database, chat and Responses alike", () => {
    const parse = vi.spyOn(JSON, "parse");
    for (const call of [
      post("/v1/chat/completions", { model: "m", messages, store: false, stream: true }),
      post("/v1/responses", { model: "m", input: messages, store: true }),
      post("/v1/embeddings", { model: "m", input: "text" }),
    ]) {
      expect(ownership.check(token, provider, call)).toBeUndefined();
      ownership.tap(token.subject, provider, call);
    }
    expect(parse).not.toHaveBeenCalled();
  });

  it("parses a chat body sent with store: true once, for the check and the tap", () => {
    const parse = vi.spyOn(JSON, "parse");
    const call = post("/v1/chat/completions", { model: "m", messages, store: true });
    expect(ownership.check(token, provider, call)).toBeUndefined();
    expect(ownership.tap(token.subject, provider, call)).toBeDefined();
    expect(parse).toHaveBeenCalledTimes(1);
  });

  it("returns the lookup when one is named", async () => {
    const call = post("/v1/responses", { model: "m", input: "go on", previous_response_id: "resp_1" });
    await expect(ownership.check(token, provider, call)).rejects.toThrow("the database was reached");
  });
});
