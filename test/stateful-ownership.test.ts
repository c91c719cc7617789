/**
 * Ownership beyond responses and files (issue 25 item 3, review): vector stores and batches
 * are their creator's (retrieve, search, files, file batches, cancel; the output file of a
 * finished batch too), their lists are refused, and OpenAI state no rule tracks (assistants,
 * threads, fine-tuning, containers, Realtime client secrets) is refused by default. A body
 * naming another subject's file, vector store or container (`file_ids`, `vector_store_ids`,
 * `input_file_id`, `training_file`, at any depth) gets 404. Whatever is refused reaches no
 * provider and is not counted. Through the official `openai` client; the mock answers the
 * vector store and batch routes as OpenAI does (`behave`).
 */
import OpenAI, { NotFoundError, PermissionDeniedError, toFile } from "openai";
import { beforeEach, describe, expect, it } from "vitest";
import type { MockProvider, RecordedRequest } from "./support/mock-provider.js";
import { callsUsed } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";

async function thrown(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => expect.fail("expected the call to fail"),
    (e: unknown) => e,
  );
}

/** Vector stores and batches as OpenAI answers them, kept by the test. */
/** Ids unique in the file, as the provider's are. */
let n = 0;
function openaiState(mock: MockProvider): { batchDone(id: string, outputFileId: string): void } {
  const batches = new Map<string, Record<string, unknown>>();
  mock.behave((rec: RecordedRequest) => {
    const p = rec.path;
    // Only the JSON bodies of these routes are read (a file upload is multipart).
    const body = (): Record<string, unknown> => (rec.body.length > 0 ? (JSON.parse(rec.body.toString("utf8")) as Record<string, unknown>) : {});
    const store = /^\/v1\/vector_stores(?:\/([^/]+))?(\/.*)?$/.exec(p);
    if (store) {
      if (rec.method === "POST" && store[1] === undefined) return { status: 200, body: { id: `vs_${++n}`, object: "vector_store", name: body().name } };
      if (store[2] === "/search") return { status: 200, body: { object: "vector_store.search_results.page", data: [], has_more: false, next_page: null } };
      if (store[2] === "/files" && rec.method === "GET") return { status: 200, body: { object: "list", data: [], has_more: false } };
      if (store[2] === "/file_batches") return { status: 200, body: { id: `vsfb_${++n}`, object: "vector_store.file_batch", status: "in_progress" } };
      return { status: 200, body: { id: store[1], object: "vector_store" } };
    }
    const batch = /^\/v1\/batches(?:\/([^/]+))?(\/cancel)?$/.exec(p);
    if (batch) {
      if (rec.method === "POST" && batch[1] === undefined) {
        const b = { id: `batch_${++n}`, object: "batch", input_file_id: body().input_file_id, status: "validating", output_file_id: null, error_file_id: null };
        batches.set(b.id, b);
        return { status: 200, body: b };
      }
      return { status: 200, body: batches.get(batch[1]!) };
    }
    return undefined;
  });
  return { batchDone: (id, outputFileId) => Object.assign(batches.get(id)!, { status: "completed", output_file_id: outputFileId }) };
}

const { relay, mock } = useRelay({ config: { leaseMax: 1 } });
beforeEach(() => mock.reset());

const client = (secret: string) => new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
let round = 0;
const users = async () => {
  round++;
  // Tools allowed: file_search and code_interpreter name stores and files.
  const a = await relay.issue({ subject: `alice-${round}`, limits: { toolsAllowed: true } });
  const b = await relay.issue({ subject: `bob-${round}`, limits: { toolsAllowed: true } });
  return { a, b, alice: client(a.secret), bob: client(b.secret) };
};
/** Requests that reached the mock, other than those before `from`. */
const reached = (from = 0) => mock.requests.slice(from).map((r) => `${r.method} ${r.path}`);

describe("vector stores and batches", () => {
  it("a vector store is its creator's: retrieve, search, files, file batches, delete; another subject gets 404, the list 403", async () => {
    openaiState(mock);
    const { b, alice, bob } = await users();
    const file = await alice.files.create({ file: await toFile(Buffer.from("notes"), "notes.txt"), purpose: "assistants" });
    const vs = await alice.vectorStores.create({ name: "mine", file_ids: [file.id] });
    const before = mock.requests.length;

    expect(await thrown(bob.vectorStores.retrieve(vs.id))).toBeInstanceOf(NotFoundError);
    expect(await thrown(bob.vectorStores.search(vs.id, { query: "secret" }))).toBeInstanceOf(NotFoundError);
    expect(await thrown(bob.vectorStores.update(vs.id, { name: "x" }))).toBeInstanceOf(NotFoundError);
    expect(await thrown(bob.vectorStores.files.list(vs.id))).toBeInstanceOf(NotFoundError);
    expect(await thrown(bob.vectorStores.fileBatches.create(vs.id, { file_ids: [] }))).toBeInstanceOf(NotFoundError);
    expect(await thrown(bob.vectorStores.delete(vs.id))).toBeInstanceOf(NotFoundError);
    expect(await thrown(bob.vectorStores.list())).toBeInstanceOf(PermissionDeniedError);
    expect(reached(before)).toEqual([]);
    expect(await callsUsed(relay, b.id)).toBe(0);

    expect(await alice.vectorStores.retrieve(vs.id)).toMatchObject({ id: vs.id });
    await alice.vectorStores.search(vs.id, { query: "notes" });
    await alice.vectorStores.files.list(vs.id);
    await alice.vectorStores.fileBatches.create(vs.id, { file_ids: [file.id] });
    expect(reached(before)).toEqual([
      `GET /v1/vector_stores/${vs.id}`,
      `POST /v1/vector_stores/${vs.id}/search`,
      `GET /v1/vector_stores/${vs.id}/files`,
      `POST /v1/vector_stores/${vs.id}/file_batches`,
    ]);
  });

  it("a batch is its creator's, and so is the output file it names once finished", async () => {
    const state = openaiState(mock);
    const { b, alice, bob } = await users();
    const input = await alice.files.create({ file: await toFile(Buffer.from("{}\n"), "in.jsonl"), purpose: "batch" });
    const batch = await alice.batches.create({ input_file_id: input.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    // The provider made the output file: the relay learns it from the finished batch its owner reads.
    const output = await alice.files.create({ file: await toFile(Buffer.from("out\n"), "out.jsonl"), purpose: "batch" });
    const made = `file-made-by-batch-${round}`;
    state.batchDone(batch.id, made);
    const before = mock.requests.length;

    expect(await thrown(bob.batches.retrieve(batch.id))).toBeInstanceOf(NotFoundError);
    expect(await thrown(bob.batches.cancel(batch.id))).toBeInstanceOf(NotFoundError);
    expect(await thrown(bob.batches.list())).toBeInstanceOf(PermissionDeniedError);
    expect(reached(before)).toEqual([]);
    expect(await callsUsed(relay, b.id)).toBe(0);

    expect(await alice.batches.retrieve(batch.id)).toMatchObject({ id: batch.id, output_file_id: made });
    // Alice's now (the mock has no such file: its own 404 comes back, not the relay's).
    expect(((await thrown(alice.files.retrieve(made))) as NotFoundError).error).toMatchObject({ message: `No such File object: ${made}` });
    expect(((await thrown(bob.files.retrieve(made))) as NotFoundError).error).toMatchObject({ message: "no such object" });
    expect(await alice.files.retrieve(output.id)).toMatchObject({ id: output.id });
  });
});

describe("body references", () => {
  it("file_ids, vector_store_ids, input_file_id and training_file naming another subject's objects get 404, uncounted", async () => {
    openaiState(mock);
    const { b, alice, bob } = await users();
    const file = await alice.files.create({ file: await toFile(Buffer.from("x"), "a.jsonl"), purpose: "batch" });
    const vs = await alice.vectorStores.create({ name: "alice's" });
    mock.reset();
    openaiState(mock);

    const refused: (() => Promise<unknown>)[] = [
      () => bob.vectorStores.create({ name: "mine now", file_ids: [file.id] }),
      () => bob.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" }),
      () => bob.responses.create({ model: "gpt-mock", input: "search", tools: [{ type: "file_search", vector_store_ids: [vs.id] }] }),
      () => bob.responses.create({ model: "gpt-mock", input: "run", tools: [{ type: "code_interpreter", container: { type: "auto", file_ids: [file.id] } }] }),
      // Containers are not tracked: one named by id is refused.
      () => bob.responses.create({ model: "gpt-mock", input: "run", tools: [{ type: "code_interpreter", container: "cntr_someone" }] }),
      () => bob.chat.completions.create({ model: "gpt-mock", messages: [{ role: "user", content: [{ type: "file", file: { file_id: file.id } }] }] }),
    ];
    for (const call of refused) expect(await thrown(call()), call.toString()).toBeInstanceOf(NotFoundError);
    // Fine-tuning is refused before its body is read.
    expect(await thrown(bob.fineTuning.jobs.create({ model: "gpt-mock", training_file: file.id }))).toBeInstanceOf(PermissionDeniedError);
    expect(mock.requests).toHaveLength(0);
    expect(await callsUsed(relay, b.id)).toBe(0);

    // Their owner may.
    await alice.responses.create({ model: "gpt-mock", input: "search", tools: [{ type: "file_search", vector_store_ids: [vs.id] }] });
    await alice.vectorStores.create({ name: "more", file_ids: [file.id] });
    expect(reached()).toEqual(["POST /v1/responses", "POST /v1/vector_stores"]);
  });
});

describe("deny by default", () => {
  it("assistants, threads, fine-tuning, containers and Realtime client secrets are refused with 403, uncounted", async () => {
    const { a, alice } = await users();
    const refused: (() => Promise<unknown>)[] = [
      () => alice.beta.assistants.list(),
      () => alice.beta.assistants.create({ model: "gpt-mock" }),
      () => alice.beta.threads.create({}),
      () => alice.beta.threads.runs.list("thread_1"),
      () => alice.fineTuning.jobs.list(),
      () => alice.containers.create({ name: "c" }),
      () => alice.containers.files.content.retrieve("cfile_1", { container_id: "cntr_1" }),
      () => alice.realtime.clientSecrets.create({}),
      () => alice.models.delete("ft:gpt-4o-mini:org::1"),
    ];
    for (const call of refused) {
      const err = await thrown(call());
      expect(err, call.toString()).toBeInstanceOf(PermissionDeniedError);
      expect((err as PermissionDeniedError).error).toMatchObject({ type: "permission_error", code: "permission_denied" });
    }
    expect(mock.requests).toHaveLength(0);
    expect(await callsUsed(relay, a.id)).toBe(0);
    // What keeps no state still goes through.
    expect((await alice.models.list()).data.length).toBeGreaterThan(0);
  });
});

describe("allowUnknownObjects", () => {
  const open = useRelay({ config: { allowUnknownObjects: true } });

  it("forwards the untracked families and unknown references, never another subject's", async () => {
    const alice = new OpenAI({
      apiKey: (await open.relay.issue({ subject: "alice", limits: { toolsAllowed: true } })).secret,
      baseURL: `${open.relay.url}/api/openai/v1`,
      maxRetries: 0,
    });
    const bob = new OpenAI({
      apiKey: (await open.relay.issue({ subject: "bob", limits: { toolsAllowed: true } })).secret,
      baseURL: `${open.relay.url}/api/openai/v1`,
      maxRetries: 0,
    });
    // The mock knows no assistants: its 404 comes back, so the call reached it.
    expect(((await thrown(bob.beta.assistants.list())) as NotFoundError).error).toMatchObject({ message: "not found" });
    await bob.responses.create({ model: "gpt-mock", input: "hi", tools: [{ type: "file_search", vector_store_ids: ["vs_made_elsewhere"] }] });
    expect(open.mock.requests.map((r) => r.path)).toEqual(["/v1/assistants", "/v1/responses"]);

    const file = await alice.files.create({ file: await toFile(Buffer.from("x"), "a.txt"), purpose: "user_data" });
    const withFile = bob.responses.create({
      model: "gpt-mock",
      input: "hi",
      tools: [{ type: "code_interpreter", container: { type: "auto", file_ids: [file.id] } }],
    });
    expect(((await thrown(withFile)) as NotFoundError).error).toMatchObject({ message: "no such object" });
  });
});
