/**
 * Token safety probes, second round (what a leaked, limited token can do beyond its rules),
 * through the real relay and the official clients:
 *
 * 1. OpenAI's Responses and Conversations take input items named by id alone
 *    (`{"type":"item_reference","id":"msg_…"}`, or `{"id":"msg_…"}` with no type): the provider
 *    adds the stored item, whoever stored it. The relay records no item ids, so such items are
 *    refused (403) unless the relay runs with allowUnknownObjects; items that carry their own
 *    content (output items passed back with their ids) are forwarded. The conversation items
 *    paths are their conversation's.
 * 2. Gemini's `:predict` and `:predictLongRunning` (Imagen, Veo) make `parameters.sampleCount`
 *    images or videos per instance: the token's `max_n` caps their product (the default count,
 *    4, when the body names none), a budget reserves each of them, and a pin holds the path's model.
 * 3. Ollama's `keep_alive` keeps a model in the host's memory (or unloads one under others) for
 *    as long as it says: refused for every token, as model management is.
 */
import OpenAI, { NotFoundError, PermissionDeniedError } from "openai";
import { beforeEach, describe, expect, it } from "vitest";
import { callsUsed } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";

async function thrown(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => expect.fail("expected the call to fail"),
    (e: unknown) => e,
  );
}

/** OpenAI's Conversations routes as the provider answers them; the rest falls to the mock's own. */
let n = 0;
function conversations(mock: ReturnType<typeof useRelay>["mock"]): void {
  mock.behave((rec) => {
    const m = /^\/v1\/conversations(?:\/([^/]+))?(\/items)?(?:\/([^/]+))?$/.exec(rec.path);
    if (!m) return undefined;
    if (rec.method === "POST" && m[1] === undefined) return { status: 200, body: { id: `conv_${++n}`, object: "conversation", created_at: 0, metadata: {} } };
    if (m[3] !== undefined) return { status: 200, body: { id: m[3], type: "message", role: "user", status: "completed", content: [] } };
    if (m[2] !== undefined) return { status: 200, body: { object: "list", data: [], first_id: null, last_id: null, has_more: false } };
    return { status: 200, body: { id: m[1], object: "conversation", created_at: 0, metadata: {} } };
  });
}

describe("OpenAI input items named by id", () => {
  const { relay, mock } = useRelay({ config: { leaseMax: 1 } });
  beforeEach(() => {
    mock.reset();
    conversations(mock);
  });
  const client = (secret: string) => new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
  let round = 0;
  const users = async () => {
    round++;
    const a = await relay.issue({ subject: `alice-${round}` });
    const b = await relay.issue({ subject: `bob-${round}` });
    return { a, b, alice: client(a.secret), bob: client(b.secret) };
  };

  it("an item_reference (typed or bare) is refused on every call that takes items, uncounted", async () => {
    const { b, alice, bob } = await users();
    // An item of alice's stored response: the id bob would learn (a log, a shared screen).
    const created = await alice.responses.create({ model: "gpt-mock", input: "my secret" });
    const itemId = (created.output[0] as { id: string }).id;
    mock.reset();
    conversations(mock);
    const conv = await bob.conversations.create({});
    const typed = [{ type: "item_reference" as const, id: itemId }];
    const bare = [{ id: itemId }] as OpenAI.Responses.ResponseInputItem[];
    const calls: [string, () => Promise<unknown>][] = [
      ["responses typed", () => bob.responses.create({ model: "gpt-mock", input: typed })],
      ["responses bare", () => bob.responses.create({ model: "gpt-mock", input: bare })],
      ["responses with text", () => bob.responses.create({ model: "gpt-mock", input: [{ role: "user", content: "repeat it" }, ...typed] })],
      ["input_tokens", () => bob.responses.inputTokens.count({ model: "gpt-mock", input: typed })],
      ["compact", () => bob.responses.compact({ model: "gpt-mock", input: typed })],
      ["conversation create", () => bob.conversations.create({ items: typed })],
      ["conversation items", () => bob.conversations.items.create(conv.id, { items: bare })],
    ];
    const before = mock.requests.length;
    const used = await callsUsed(relay, b.id);
    for (const [name, call] of calls) {
      const err = await thrown(call());
      expect(err, name).toBeInstanceOf(PermissionDeniedError);
      expect((err as PermissionDeniedError).error, name).toMatchObject({ type: "permission_error", code: "permission_denied" });
    }
    expect(mock.requests.slice(before).map((r) => r.path)).toEqual([]);
    expect(await callsUsed(relay, b.id)).toBe(used);
  });

  it("its creator's own item by reference is refused too (no record ties an item to a response); previous_response_id carries it", async () => {
    const { alice } = await users();
    const created = await alice.responses.create({ model: "gpt-mock", input: "hi" });
    const itemId = (created.output[0] as { id: string }).id;
    expect(await thrown(alice.responses.create({ model: "gpt-mock", input: [{ type: "item_reference", id: itemId }] }))).toBeInstanceOf(PermissionDeniedError);
    await alice.responses.create({ model: "gpt-mock", input: "go on", previous_response_id: created.id });
  });

  it("items that carry their own content are forwarded with their ids (output items passed back)", async () => {
    const { alice } = await users();
    const created = await alice.responses.create({ model: "gpt-mock", input: "hi" });
    mock.reset();
    const input = [
      { role: "user" as const, content: "hi" },
      ...(created.output as OpenAI.Responses.ResponseInputItem[]),
      { type: "function_call" as const, id: "fc_1", call_id: "call_1", name: "f", arguments: "{}" },
      { type: "function_call_output" as const, call_id: "call_1", output: "42" },
      // A value that merely says item_reference is no item.
      { role: "user" as const, content: [{ type: "input_text" as const, text: '{"type":"item_reference","id":"msg_1"}' }] },
    ];
    await alice.responses.create({ model: "gpt-mock", input });
    expect(mock.requests.map((r) => r.path)).toEqual(["/v1/responses"]);
  });

  it("a conversation's items are its creator's: another subject gets 404 for them, uncounted", async () => {
    const { b, alice, bob } = await users();
    const conv = await alice.conversations.create({});
    mock.reset();
    conversations(mock);
    for (const call of [
      () => bob.conversations.items.list(conv.id),
      () => bob.conversations.items.retrieve("msg_1", { conversation_id: conv.id }),
      () => bob.conversations.items.delete("msg_1", { conversation_id: conv.id }),
      () => bob.conversations.items.create(conv.id, { items: [{ role: "user", content: "hi" }] }),
    ]) {
      expect(await thrown(call())).toBeInstanceOf(NotFoundError);
    }
    expect(mock.requests).toHaveLength(0);
    expect(await callsUsed(relay, b.id)).toBe(0);
    expect(await alice.conversations.items.retrieve("msg_1", { conversation_id: conv.id })).toMatchObject({ id: "msg_1" });
    expect(mock.requests.map((r) => `${r.method} ${r.path}`)).toEqual([`GET /v1/conversations/${conv.id}/items/msg_1`]);
  });
});

describe("allowUnknownObjects forwards item references", () => {
  const open = useRelay({ config: { allowUnknownObjects: true } });

  it("a relay for one subject's deployment", async () => {
    const { secret } = await open.relay.issue({ subject: "solo" });
    const c = new OpenAI({ apiKey: secret, baseURL: `${open.relay.url}/api/openai/v1`, maxRetries: 0 });
    await c.responses.create({ model: "gpt-mock", input: [{ type: "item_reference", id: "msg_1" }] });
    expect(open.mock.requests.map((r) => r.path)).toContain("/v1/responses");
  });
});

describe("Gemini Imagen and Veo: samples are choices", () => {
  const { relay, mock } = useRelay({ allProviders: true });
  beforeEach(() => {
    mock.reset();
    mock.behave((rec) =>
      /:predict(?:LongRunning)?$/.test(rec.path)
        ? {
            status: 200,
            body: rec.path.endsWith("LongRunning") ? { name: "models/veo/operations/1" } : { predictions: [{ mimeType: "image/png", bytesBase64Encoded: "" }] },
          }
        : undefined,
    );
  });

  const IMAGEN = "imagen-4.0-generate-001";
  const VEO = "veo-3.0-generate-001";
  async function call(
    secret: string,
    model: string,
    body: unknown,
    method = "predict",
  ): Promise<{ status: number; error: Record<string, unknown> | undefined }> {
    const res = await fetch(`${relay.url}/api/gemini/v1beta/models/${model}:${method}`, {
      method: "POST",
      headers: { "x-goog-api-key": secret, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as { error?: Record<string, unknown> };
    return { status: res.status, error: json.error };
  }
  const prompt = { prompt: "a cat" };

  it("max_n caps sampleCount times instances, under either spelling, on both methods, in Google's error shape", async () => {
    const { secret } = await relay.issue({ provider: "gemini", limits: { maxN: 2 } });
    for (const method of ["predict", "predictLongRunning"]) {
      const model = method === "predict" ? IMAGEN : VEO;
      const before = mock.requests.length;
      for (const body of [
        { instances: [prompt], parameters: { sampleCount: 4 } },
        { instances: [prompt], parameters: { sample_count: 3 } },
        { instances: [prompt, prompt, prompt], parameters: { sampleCount: 1 } },
        { instances: [prompt, prompt], parameters: { sampleCount: 2 } },
        { instances: [prompt], parameters: { sampleCount: "8" } },
        // The provider's default is 4 when the body names none.
        { instances: [prompt] },
        { instances: [prompt], parameters: { aspectRatio: "16:9" } },
      ]) {
        const r = await call(secret, model, body, method);
        expect({ status: r.status, error: r.error }, `${method} ${JSON.stringify(body)}`).toMatchObject({
          status: 403,
          error: { code: 403, status: "PERMISSION_DENIED" },
        });
      }
      expect(mock.requests).toHaveLength(before);
      for (const body of [
        { instances: [prompt], parameters: { sampleCount: 2 } },
        { instances: [prompt, prompt], parameters: { sampleCount: 1 } },
      ]) {
        expect((await call(secret, model, body, method)).status, `${method} ${JSON.stringify(body)}`).toBe(200);
      }
    }
    expect(mock.requests.map((r) => r.path)).toEqual([
      `/v1beta/models/${IMAGEN}:predict`,
      `/v1beta/models/${IMAGEN}:predict`,
      `/v1beta/models/${VEO}:predictLongRunning`,
      `/v1beta/models/${VEO}:predictLongRunning`,
    ]);
  });

  it("a pin holds the model the path names", async () => {
    const pinned = await relay.issue({ provider: "gemini", limits: { models: ["gemini-2.0-flash"] } });
    expect(await call(pinned.secret, IMAGEN, { instances: [prompt], parameters: { sampleCount: 1 } })).toMatchObject({ status: 403 });
    expect(await call(pinned.secret, VEO, { instances: [prompt] }, "predictLongRunning")).toMatchObject({ status: 403 });
    expect(mock.requests).toHaveLength(0);
    const imagen = await relay.issue({ provider: "gemini", limits: { models: [IMAGEN] } });
    expect((await call(imagen.secret, IMAGEN, { instances: [prompt], parameters: { sampleCount: 1 } })).status).toBe(200);
  });

  it("candidateCount above max_n is refused on generateContent, in Google's error shape", async () => {
    const { secret } = await relay.issue({ provider: "gemini", limits: { maxN: 1 } });
    const r = await call(secret, "gemini-2.0-flash", { contents: [{ parts: [{ text: "hi" }] }], generationConfig: { candidateCount: 4 } }, "generateContent");
    expect(r).toMatchObject({ status: 403, error: { code: 403, status: "PERMISSION_DENIED", message: "n above this token's cap" } });
    expect(mock.requests).toHaveLength(0);
  });
});

describe("Ollama's keep_alive is the host's, not a token's", () => {
  const { relay, mock } = useRelay({ allProviders: true });
  beforeEach(() => {
    mock.reset();
    mock.behave((rec) =>
      rec.path.startsWith("/api/") ? { status: 200, body: { model: "llama3.2", done: true, eval_count: 3, prompt_eval_count: 2 } } : undefined,
    );
  });
  const call = (secret: string, path: string, body: unknown) =>
    fetch(`${relay.url}/api/ollama${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  it("a model kept loaded (or unloaded under others) by any token is refused with 403 on every native call", async () => {
    // No limits at all: the memory it would hold is every other token's too.
    const { secret } = await relay.issue({ provider: "ollama", limits: { toolsAllowed: true } });
    for (const path of ["/api/chat", "/api/generate", "/api/embed"]) {
      for (const keep of [{ keep_alive: -1 }, { keep_alive: "-1" }, { keep_alive: "24h" }, { keep_alive: 0 }]) {
        const res = await call(secret, path, { model: "llama3.2", prompt: "", input: "x", ...keep });
        const text = await res.text();
        expect(res.status, `${path} ${JSON.stringify(keep)} ${text}`).toBe(403);
        expect(JSON.parse(text), path).toMatchObject({ error: { type: "permission_error" } });
      }
      // Go's encoding/json matches keys in any case: a spelling in another case is refused too.
      expect((await call(secret, path, { model: "llama3.2", prompt: "", Keep_Alive: "-1" })).status, path).toBe(400);
    }
    expect(mock.requests).toHaveLength(0);
    for (const keep of [{}, { keep_alive: null }]) {
      expect((await call(secret, "/api/chat", { model: "llama3.2", messages: [{ role: "user", content: "hi" }], ...keep })).status).toBe(200);
    }
    expect(mock.requests).toHaveLength(2);
  });
});
