/**
 * Stored responses and files belong to the subject that created them (issue 25, item 3), with
 * the official `openai` client through the relay: subject A creates (streamed and not), reads,
 * cancels, lists input items, deletes; subject B's token gets 404 for A's objects and the mock
 * sees no request for them, nor is B's refused call counted; a body naming A's response
 * (`previous_response_id`) or file (`file_id`) is refused too. Streamed responses are metered.
 * On PGlite and PostgreSQL.
 */
import { eq } from "drizzle-orm";
import OpenAI, { NotFoundError, PermissionDeniedError, toFile } from "openai";
import { beforeEach, describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import { ownedObjects } from "../src/db/schema/index.js";
import { callsUsed } from "./support/sealed.js";
import type { Driver } from "./support/relay.js";
import { MOCK_PROMPT_TOKENS } from "./support/mock-provider.js";
import { availableDrivers, useRelay } from "./support/use-relay.js";

/** Rejects with the error an SDK call throws (fails the test if it does not throw). */
async function thrown(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => expect.fail("expected the call to fail"),
    (e: unknown) => e,
  );
}

describe.each<Driver>(await availableDrivers())("object ownership on %s", (driver) => {
  // One call per statement (no leased blocks), so calls_used is exact at once.
  const { relay, mock } = useRelay({ driver, config: { leaseMax: 1 } });
  beforeEach(() => mock.reset());

  const client = (secret: string) => new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
  const users = async () => {
    const a = await relay.issue({ subject: `alice-${driver}` });
    const b = await relay.issue({ subject: `bob-${driver}` });
    return { a, b, alice: client(a.secret), bob: client(b.secret) };
  };
  /** The requests that reached the mock for this object id. */
  const seen = (id: string) => mock.requests.filter((r) => r.path.includes(id));
  const callsOf = (tokenId: string) => relay.calls.filter((c) => c.tokenId === tokenId);

  it("a response created without streaming is its creator's: read, input items, cancel, delete; another subject gets 404", async () => {
    const { b, alice, bob } = await users();
    const created = await alice.responses.create({ model: "gpt-mock", input: "hi" });
    expect(created.id).toMatch(/^resp_mock_/);

    const denied = await thrown(bob.responses.retrieve(created.id));
    expect(denied).toBeInstanceOf(NotFoundError);
    expect((denied as NotFoundError).error).toMatchObject({ message: "no such object", type: "invalid_request_error", code: "not_found" });
    expect(await thrown(bob.responses.cancel(created.id))).toBeInstanceOf(NotFoundError);
    expect(await thrown(bob.responses.delete(created.id))).toBeInstanceOf(NotFoundError);
    expect(await thrown(bob.responses.inputItems.list(created.id))).toBeInstanceOf(NotFoundError);
    // Nothing reached the provider for bob, and none of his refused calls were counted.
    expect(seen(created.id)).toHaveLength(0);
    expect(await callsUsed(relay, b.id)).toBe(0);
    expect(callsOf(b.id)).toHaveLength(0);

    expect(await alice.responses.retrieve(created.id)).toMatchObject({ id: created.id, status: "completed" });
    expect((await alice.responses.inputItems.list(created.id)).data).toEqual([]);
    expect(await alice.responses.cancel(created.id)).toMatchObject({ id: created.id, status: "cancelled" });
    await alice.responses.delete(created.id);
    expect(seen(created.id).map((r) => `${r.method} ${r.path}`)).toEqual([
      `GET /v1/responses/${created.id}`,
      `GET /v1/responses/${created.id}/input_items`,
      `POST /v1/responses/${created.id}/cancel`,
      `DELETE /v1/responses/${created.id}`,
    ]);
  });

  it("a streamed response is recorded from response.created and metered from response.completed", async () => {
    const { a, alice, bob } = await users();
    let id: string | undefined;
    let text = "";
    for await (const ev of await alice.responses.create({ model: "gpt-mock", input: "hi", stream: true })) {
      if (ev.type === "response.created") id = ev.response.id;
      if (ev.type === "response.output_text.delta") text += ev.delta;
    }
    expect(text).toBe("tok0 tok1 tok2 tok3 tok4 ");
    expect(id).toBeDefined();
    // Recorded before the answer ended: the next call finds it.
    expect(await alice.responses.retrieve(id!)).toMatchObject({ id });
    expect(await thrown(bob.responses.retrieve(id!))).toBeInstanceOf(NotFoundError);
    expect(seen(id!)).toHaveLength(1);

    // The streamed call's usage record (what the usage writer stores) has its tokens.
    expect(callsOf(a.id)[0]).toMatchObject({
      outcome: Outcome.COMPLETE,
      usage: { promptTokens: MOCK_PROMPT_TOKENS, completionTokens: 5, totalTokens: MOCK_PROMPT_TOKENS + 5 },
    });
  });

  it("a file is its uploader's: retrieve and content; another subject gets 404, the file list 403", async () => {
    const { b, alice, bob } = await users();
    const bytes = Buffer.from("line one\nline two\n");
    const file = await alice.files.create({ file: await toFile(bytes, "notes.jsonl"), purpose: "user_data" });
    expect(file).toMatchObject({ filename: "notes.jsonl", bytes: bytes.length });

    expect(await thrown(bob.files.retrieve(file.id))).toBeInstanceOf(NotFoundError);
    expect(await thrown(bob.files.content(file.id))).toBeInstanceOf(NotFoundError);
    expect(await thrown(bob.files.delete(file.id))).toBeInstanceOf(NotFoundError);
    // The list shows every user's files: the relay cannot filter it.
    expect(await thrown(bob.files.list())).toBeInstanceOf(PermissionDeniedError);
    expect(seen(file.id)).toHaveLength(0);
    expect(mock.requests.filter((r) => r.method === "GET")).toHaveLength(0);
    expect(await callsUsed(relay, b.id)).toBe(0);

    expect(await alice.files.retrieve(file.id)).toMatchObject({ id: file.id, filename: "notes.jsonl" });
    expect(Buffer.from(await (await alice.files.content(file.id)).arrayBuffer())).toEqual(bytes);
    expect(await alice.files.delete(file.id)).toMatchObject({ id: file.id, deleted: true });
  });

  it("a body naming another subject's response or file is refused before it is counted", async () => {
    const { b, alice, bob } = await users();
    const first = await alice.responses.create({ model: "gpt-mock", input: "hi" });
    const file = await alice.files.create({ file: await toFile(Buffer.from("x"), "a.pdf"), purpose: "user_data" });
    mock.reset();

    expect(await thrown(bob.responses.create({ model: "gpt-mock", input: "go on", previous_response_id: first.id }))).toBeInstanceOf(NotFoundError);
    const withFile: OpenAI.Responses.ResponseInput = [{ role: "user", content: [{ type: "input_file", file_id: file.id }] }];
    expect(await thrown(bob.responses.create({ model: "gpt-mock", input: withFile }))).toBeInstanceOf(NotFoundError);
    expect(mock.requests).toHaveLength(0);
    expect(await callsUsed(relay, b.id)).toBe(0);

    // Its creator may.
    await alice.responses.create({ model: "gpt-mock", input: "go on", previous_response_id: first.id });
    await alice.responses.create({ model: "gpt-mock", input: withFile });
    expect(mock.requests).toHaveLength(2);
  });

  it("an object the relay never recorded is 404, and tokens without a subject share theirs", async () => {
    const { alice } = await users();
    expect(await thrown(alice.responses.retrieve("resp_made_elsewhere"))).toBeInstanceOf(NotFoundError);
    expect(mock.requests).toHaveLength(0);

    const one = client((await relay.issue()).secret);
    const other = client((await relay.issue()).secret);
    const created = await one.responses.create({ model: "gpt-mock", input: "hi" });
    expect(await other.responses.retrieve(created.id)).toMatchObject({ id: created.id });
  });

  it("records expire after ownedObjectTtlDays and expired ones are pruned", async () => {
    const { alice } = await users();
    const created = await alice.responses.create({ model: "gpt-mock", input: "hi" });
    const { db } = relay.app.database;
    const key = `openai:${created.id}`;
    const [row] = await db.select().from(ownedObjects).where(eq(ownedObjects.object, key));
    expect(row!.subject).toBe(`alice-${driver}`);
    const days = (row!.expiresAt.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThanOrEqual(30);

    await db
      .update(ownedObjects)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(ownedObjects.object, key));
    expect(await thrown(alice.responses.retrieve(created.id))).toBeInstanceOf(NotFoundError);
    expect(await relay.app.ownership.prune()).toBeGreaterThanOrEqual(1);
    expect(await db.select().from(ownedObjects).where(eq(ownedObjects.object, key))).toEqual([]);
  });
});

describe("allowUnknownObjects", () => {
  const { relay, mock } = useRelay({ config: { allowUnknownObjects: true } });

  it("forwards objects the relay never recorded and lists, never another subject's", async () => {
    const alice = new OpenAI({ apiKey: (await relay.issue({ subject: "alice" })).secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
    const bob = new OpenAI({ apiKey: (await relay.issue({ subject: "bob" })).secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
    // Unknown here: forwarded, and the provider's own 404 comes back.
    const unknown = await thrown(bob.responses.retrieve("resp_made_elsewhere"));
    expect((unknown as NotFoundError).error).toMatchObject({ message: "Response with id 'resp_made_elsewhere' not found." });
    expect(mock.requests.map((r) => r.path)).toEqual(["/v1/responses/resp_made_elsewhere"]);
    expect((await bob.files.list()).data).toBeInstanceOf(Array);

    const created = await alice.responses.create({ model: "gpt-mock", input: "hi" });
    expect(((await thrown(bob.responses.retrieve(created.id))) as NotFoundError).error).toMatchObject({ message: "no such object" });
  });
});
