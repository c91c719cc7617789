import { describe, expect, it } from "vitest";
import {
  bodyJson,
  callKindOf,
  createRulesOf,
  isObjectList,
  isUntracked,
  itemReferenceIn,
  type OwnedObjectRules,
  referencedObjects,
  usedObjectsOf,
} from "./owned-objects.js";
import { onPaths } from "../policy/shape-policy.js";
import { OPENAI_OBJECTS, OPENAI_POLICY } from "./shapes/openai.js";

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const NONE = Buffer.alloc(0);
/** The rule a call creates an object under, if any (the first). */
const createRuleOf = (rules: OwnedObjectRules, method: string, path: string, body: Buffer) =>
  createRulesOf(callKindOf(rules, method, path), () => bodyJson(rules, body))[0];
/** The first object a path names. */
const usedObjectOf = (rules: OwnedObjectRules, path: string) => usedObjectsOf(rules, path)[0];
/** The objects a body names. */
const named = (body: Buffer) => referencedObjects(OPENAI_OBJECTS, bodyJson(OPENAI_OBJECTS, body));

describe("OpenAI's owned objects", () => {
  it("knows the calls that create one", () => {
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/v1/responses", NONE)?.eventIdAt).toEqual(["response", "id"]);
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/openai/v1/files", NONE)?.idAt).toEqual(["id"]);
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/v1/uploads/upload_1/complete", NONE)?.idAt).toEqual(["file", "id"]);
    expect(createRuleOf(OPENAI_OBJECTS, "GET", "/v1/responses", NONE)).toBeUndefined();
    // Chat completions are stored only when asked.
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/v1/chat/completions", json({ model: "m" }))).toBeUndefined();
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/v1/chat/completions", json({ model: "m", store: true }))).toBeDefined();
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/v1/chat/completions", Buffer.from('{"st\\u006fre":true}'))).toBeDefined();
  });

  it("knows the calls on one, and the collection actions that are not", () => {
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/responses/resp_1")).toBe("resp_1");
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/responses/resp_1/input_items")).toBe("resp_1");
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/RESPONSES/resp_1/")).toBe("resp_1");
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/files/file-1/content")).toBe("file-1");
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/uploads/upload_1/parts")).toBe("upload_1");
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/chat/completions/chatcmpl-1/messages")).toBe("chatcmpl-1");
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/responses/compact")).toBeUndefined();
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/responses/input_tokens")).toBeUndefined();
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/responses")).toBeUndefined();
    expect(usedObjectOf(OPENAI_OBJECTS, "/v1/chat/completions")).toBeUndefined();
    expect(isObjectList(OPENAI_OBJECTS, "GET", "/v1/files")).toBe(true);
    expect(isObjectList(OPENAI_OBJECTS, "GET", "/v1/chat/completions")).toBe(true);
    expect(isObjectList(OPENAI_OBJECTS, "POST", "/v1/files")).toBe(false);
  });

  it("reads the objects a body names: top-level response and conversation, files at any depth, escaped keys too", () => {
    const body = {
      model: "m",
      previous_response_id: "resp_1",
      conversation: { id: "conv_1" },
      input: [
        {
          role: "user",
          content: [
            { type: "input_file", file_id: "file-1" },
            { type: "input_image", file_id: "file-2" },
          ],
        },
      ],
    };
    expect(named(json(body)).sort()).toEqual(["conv_1", "file-1", "file-2", "resp_1"]);
    expect(named(Buffer.from('{"input":[{"file\\u005fid":"file-3"}]}'))).toEqual(["file-3"]);
    expect(named(json({ model: "m", previous_response_id: null, messages: [] }))).toEqual([]);
    expect(named(Buffer.from('not json "file_id"'))).toEqual([]);
  });
  it("tracks vector stores and batches: creation, calls below one (both ids of a store's file), lists", () => {
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/v1/vector_stores", NONE)?.idAt).toEqual(["id"]);
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/v1/batches", NONE)?.idAt).toEqual(["id"]);
    // A finished batch names the files it made: they become its owner's.
    const read = createRulesOf(callKindOf(OPENAI_OBJECTS, "GET", "/v1/batches/batch_1"), () => undefined).map((r) => r.idAt);
    expect(read).toEqual([["output_file_id"], ["error_file_id"]]);
    // Attaching a file to a store creates no file; listing a store's files is not the file list.
    expect(createRuleOf(OPENAI_OBJECTS, "POST", "/v1/vector_stores/vs_1/files", NONE)).toBeUndefined();
    expect(isObjectList(OPENAI_OBJECTS, "GET", "/v1/vector_stores/vs_1/files")).toBe(false);
    expect(isObjectList(OPENAI_OBJECTS, "GET", "/v1/vector_stores/vs_1/file_batches/vsfb_1/files")).toBe(false);
    expect(isObjectList(OPENAI_OBJECTS, "GET", "/v1/vector_stores")).toBe(true);
    expect(isObjectList(OPENAI_OBJECTS, "GET", "/v1/batches")).toBe(true);
    expect(isObjectList(OPENAI_OBJECTS, "GET", "/v1/files")).toBe(true);

    expect(usedObjectsOf(OPENAI_OBJECTS, "/v1/vector_stores/vs_1/search")).toEqual(["vs_1"]);
    expect(usedObjectsOf(OPENAI_OBJECTS, "/v1/vector_stores/vs_1/file_batches/vsfb_1/cancel")).toEqual(["vs_1"]);
    expect(usedObjectsOf(OPENAI_OBJECTS, "/v1/vector_stores/vs_1/files/file-1/content")).toEqual(["file-1", "vs_1"]);
    expect(usedObjectsOf(OPENAI_OBJECTS, "/v1/batches/batch_1/cancel")).toEqual(["batch_1"]);
  });

  it("refuses by default the state no rule tracks, and what the tracked families do not name", () => {
    const untracked: [string, string][] = [
      ["GET", "/v1/assistants"],
      ["POST", "/v1/assistants/asst_1"],
      ["POST", "/v1/threads/runs"],
      ["GET", "/v1/threads/thread_1/messages"],
      ["POST", "/v1/containers"],
      ["GET", "/v1/containers/cntr_1/files/cfile_1/content"],
      ["POST", "/v1/fine_tuning/jobs"],
      ["GET", "/v1/fine-tunes"],
      ["POST", "/v1/evals/eval_1/runs"],
      ["POST", "/v1/videos"],
      ["POST", "/v1/chatkit/sessions"],
      ["GET", "/v1/organization/projects"],
      ["DELETE", "/v1/models/ft:gpt-4o-mini:org::1"],
      ["GET", "/v1/responses"],
      ["PUT", "/v1/files"],
      ["DELETE", "/v1/vector_stores"],
      ["POST", "/openai/assistants"],
    ];
    for (const [method, path] of untracked) expect(isUntracked(OPENAI_OBJECTS, method, path), `${method} ${path}`).toBe(true);
    // Realtime's HTTP calls mint keys or open WebRTC: refused whatever allowUnknownObjects says
    // (OPENAI_POLICY.refusedPaths, src/relay/token-policy.ts checkAccess); the WebSocket is relayed.
    for (const path of ["/v1/realtime/client_secrets", "/v1/realtime/sessions", "/v1/realtime/calls", "/openai/realtimeapi/sessions"])
      expect(onPaths(OPENAI_POLICY.refusedPaths, path), path).toBe(true);
    expect(onPaths(OPENAI_POLICY.refusedPaths, "/v1/realtime")).toBe(false);
    const tracked: [string, string][] = [
      ["POST", "/v1/chat/completions"],
      ["POST", "/v1/responses"],
      ["POST", "/v1/responses/compact"],
      ["GET", "/v1/responses/resp_1/input_items"],
      ["POST", "/v1/files"],
      ["GET", "/v1/files"],
      ["POST", "/v1/vector_stores/vs_1/search"],
      ["POST", "/v1/batches"],
      ["GET", "/v1/models"],
      ["GET", "/v1/models/gpt-4o"],
      ["POST", "/v1/embeddings"],
      ["POST", "/v1/audio/transcriptions"],
      ["GET", "/v1/realtime"],
      ["POST", "/openai/deployments/d/chat/completions"],
    ];
    for (const [method, path] of tracked) expect(isUntracked(OPENAI_OBJECTS, method, path), `${method} ${path}`).toBe(false);
  });

  it("reads every field that names a stored object: arrays, at any depth, outside metadata", () => {
    const body = {
      model: "m",
      input_file_id: "file-in",
      training_file: "file-train",
      validation_file: "file-val",
      file_ids: ["file-a", "file-b"],
      tools: [
        { type: "file_search", vector_store_ids: ["vs_1", "vs_2"] },
        { type: "code_interpreter", container: { type: "auto", file_ids: ["file-c"] } },
        { type: "code_interpreter", container: "cntr_1" },
      ],
      tool_resources: { file_search: { vector_stores: [{ file_ids: ["file-d"] }] } },
      metadata: { file_id: "not-a-file", container: "blue" },
    };
    expect(named(json(body)).sort()).toEqual(["cntr_1", "file-a", "file-b", "file-c", "file-d", "file-in", "file-train", "file-val", "vs_1", "vs_2"].sort());
    expect(named(Buffer.from('{"tools":[{"vector_st\\u006fre_ids":["vs_9"]}]}'))).toEqual(["vs_9"]);
  });

  it("parses a body only when a field a rule reads may be in it", () => {
    const chat = json({ model: "m", messages: [{ role: "user", content: "a file_id, a store" }], store: false });
    expect(bodyJson(OPENAI_OBJECTS, chat)).toBeUndefined();
    expect(bodyJson(OPENAI_OBJECTS, json({ model: "m", store: true }))).toEqual({ model: "m", store: true });
    expect(bodyJson(OPENAI_OBJECTS, Buffer.from('{"model":"m","store" :\n true}'))).toEqual({ model: "m", store: true });
    expect(bodyJson(OPENAI_OBJECTS, json({ x: { file_ids: [] } }))).toEqual({ x: { file_ids: [] } });
    expect(bodyJson(OPENAI_OBJECTS, Buffer.from('{"m\\u006fdel":"m"}'))).toEqual({ model: "m" });
  });

  it("knows the calls whose body takes input items", () => {
    const takes = (method: string, path: string) => callKindOf(OPENAI_OBJECTS, method, path).takesItems;
    for (const path of [
      "/v1/responses",
      "/openai/v1/responses/",
      "/v1/responses/compact",
      "/v1/responses/input_tokens",
      "/v1/conversations",
      "/v1/conversations/conv_1/items",
    ]) {
      expect(takes("POST", path), path).toBe(true);
    }
    for (const [method, path] of [
      ["GET", "/v1/responses/resp_1"],
      ["POST", "/v1/responses/resp_1/cancel"],
      ["GET", "/v1/conversations/conv_1/items"],
      ["GET", "/v1/conversations/conv_1/items/msg_1"],
      ["POST", "/v1/chat/completions"],
      ["POST", "/v1/files"],
    ] as const) {
      expect(takes(method, path), `${method} ${path}`).toBe(false);
    }
  });

  it("finds an input item named by id alone: typed, bare, escaped, behind a duplicate key", () => {
    const rule = OPENAI_OBJECTS.itemRefs!;
    const refers = (body: Buffer | object) => {
      const bytes = Buffer.isBuffer(body) ? body : json(body);
      return itemReferenceIn(rule, bodyJson(OPENAI_OBJECTS, bytes, false, true), bytes);
    };
    expect(refers({ input: [{ type: "item_reference", id: "msg_1" }] })).toBe(true);
    expect(refers({ input: [{ role: "user", content: "hi" }, { id: "msg_1" }] })).toBe(true);
    expect(refers({ input: [{ id: "msg_1", type: null }] })).toBe(true);
    expect(refers({ items: [{ id: "msg_1" }] })).toBe(true);
    expect(refers(Buffer.from('{"input":[{"typ\\u0065":"item_reference","id":"msg_1"}]}'))).toBe(true);
    expect(refers(Buffer.from('{"input":[{"type":"item_reference","type":"message","id":"msg_1"}]}'))).toBe(true);
    expect(refers(Buffer.from('{"input":[{"type" : "item_reference", "id":"msg_1"}]}'))).toBe(true);
    // Items with their own content, and text that merely spells a reference.
    const output = [
      { type: "message", id: "msg_1", role: "assistant", status: "completed", content: [{ type: "output_text", text: "x", annotations: [] }] },
      { type: "function_call", id: "fc_1", call_id: "c", name: "f", arguments: "{}" },
      { type: "reasoning", id: "rs_1", summary: [], encrypted_content: "e" },
    ];
    expect(refers({ input: output })).toBe(false);
    expect(refers({ input: [{ id: "msg_1", role: "user", content: "hi" }] })).toBe(false);
    expect(refers({ input: [{ role: "user", content: '{"type":"item_reference","id":"msg_1"}' }] })).toBe(false);
    expect(refers({ input: "item_reference" })).toBe(false);
  });

  it("parses a Responses body for items only when an id may be in it", () => {
    const body = json({ model: "m", input: [{ role: "user", content: "hi" }] });
    expect(bodyJson(OPENAI_OBJECTS, body, false, true)).toBeUndefined();
    expect(bodyJson(OPENAI_OBJECTS, json({ input: [{ id: "msg_1" }] }), false, true)).toEqual({ input: [{ id: "msg_1" }] });
    expect(bodyJson(OPENAI_OBJECTS, json({ input: [{ id: "msg_1" }] }), false, false)).toBeUndefined();
  });
});
