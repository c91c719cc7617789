/**
 * Uploads driven as real clients drive them (issue 25; src/relay/upload-*.ts): the `openai`
 * SDK's `files.create` and the multi-part `uploads` API, Gemini's resumable protocol with
 * `fetch` in chunks, and clients that misbehave mid-body. Each request is one counted call,
 * recorded once; a client that leaves mid-body costs the relay nothing it keeps.
 */
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import OpenAI, { toFile } from "openai";
import { beforeEach, describe, expect, it } from "vitest";
import { Outcome } from "../gen/relayapi/v1/common_pb.js";
import type { Behaviour, RecordedRequest } from "./support/mock-provider.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { callsUsed } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";
import { sleep, waitFor } from "./support/wait.js";

const MB = 1024 * 1024;
const LIMIT = 4 * MB;
const { relay, mock } = useRelay({ config: { maxUploadBytes: LIMIT, leaseMax: 1 } });
beforeEach(() => {
  mock.reset();
  mock.behave(answer);
});

let uploadSeq = 0;
function answer(rec: RecordedRequest): Behaviour | undefined {
  const p = rec.path;
  if (p.endsWith("/v1/uploads")) return { status: 200, body: { id: `upload_${++uploadSeq}`, object: "upload", status: "pending", bytes: 0 } };
  if (/\/v1\/uploads\/[^/]+\/parts$/.test(p)) return { status: 200, body: { id: `part_${rec.body.length}`, object: "upload.part" } };
  if (/\/v1\/uploads\/[^/]+\/complete$/.test(p))
    return { status: 200, body: { id: "upload_x", object: "upload", status: "completed", file: { id: "file-done" } } };
  return undefined;
}

const openai = (secret: string) => new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0 });
const recordsOf = (id: string) => relay.calls.filter((c) => c.tokenId === id);

describe("the openai SDK", () => {
  it("files.create streams the file through, byte for byte; one call, one record", async () => {
    const { secret, id } = await relay.issue();
    const data = randomBytes(MB + 17);
    const file = await openai(secret).files.create({ file: await toFile(data, "batch.jsonl"), purpose: "user_data" });
    expect(file.id).toMatch(/^file-/);
    expect(mock.requests).toHaveLength(1);
    const form = await new Response(new Uint8Array(mock.requests[0]!.body), {
      headers: { "content-type": String(mock.requests[0]!.headers["content-type"]) },
    }).formData();
    expect(Buffer.from(await (form.get("file") as Blob).arrayBuffer()).equals(data)).toBe(true);
    expect(mock.requests[0]!.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(await callsUsed(relay, id)).toBe(1);
    await waitFor(() => recordsOf(id).length === 1, 3000, "one record");
  });

  it("uploads: create, two parts, complete: four calls, each part arrives whole", async () => {
    const { secret, id } = await relay.issue();
    const client = openai(secret);
    const up = await client.uploads.create({ bytes: 2 * MB, filename: "big.jsonl", mime_type: "text/jsonl", purpose: "batch" });
    const parts = [];
    for (const chunk of [randomBytes(MB), randomBytes(MB)]) parts.push(await client.uploads.parts.create(up.id, { data: await toFile(chunk, "part") }));
    const done = await client.uploads.complete(up.id, { part_ids: parts.map((p) => p.id) });
    expect(done.status).toBe("completed");
    expect(mock.requests.map((r) => r.path)).toEqual([
      "/v1/uploads",
      `/v1/uploads/${up.id}/parts`,
      `/v1/uploads/${up.id}/parts`,
      `/v1/uploads/${up.id}/complete`,
    ]);
    expect(await callsUsed(relay, id)).toBe(4);
  });
});

describe("Gemini's resumable upload with fetch, in chunks", () => {
  it("start, upload, upload+finalize: each through the relay with the token; offsets and bytes arrive as sent", async () => {
    const { secret, id } = await relay.issue({ provider: "gemini" });
    mock.behave((rec): Behaviour => {
      if (rec.query.get("upload_id") === null) {
        return {
          status: 200,
          body: {},
          headers: { "x-goog-upload-url": `${mock.url}/upload/v1beta/files?upload_id=abc&upload_protocol=resumable`, "x-goog-upload-status": "active" },
        };
      }
      const cmd = String(rec.headers["x-goog-upload-command"]);
      return cmd.includes("finalize")
        ? { status: 200, body: { file: { name: "files/f1", uri: "x" } }, headers: { "x-goog-upload-status": "final" } }
        : { status: 200, body: {}, headers: { "x-goog-upload-status": "active" } };
    });
    const data = randomBytes(3 * MB);
    const start = await fetch(`${relay.url}/api/gemini/upload/v1beta/files`, {
      method: "POST",
      headers: {
        "x-goog-api-key": secret,
        "content-type": "application/json",
        "x-goog-upload-protocol": "resumable",
        "x-goog-upload-command": "start",
        "x-goog-upload-header-content-length": String(data.length),
        "x-goog-upload-header-content-type": "audio/wav",
      },
      body: JSON.stringify({ file: { display_name: "talk" } }),
    });
    expect(start.status).toBe(200);
    const url = start.headers.get("x-goog-upload-url")!;
    expect(url.startsWith(`${relay.url}/api/gemini/upload/v1beta/files?`)).toBe(true);
    const half = 2 * MB;
    const first = await fetch(url, {
      method: "POST",
      headers: { "x-goog-api-key": secret, "x-goog-upload-command": "upload", "x-goog-upload-offset": "0" },
      body: data.subarray(0, half),
    });
    expect(first.status).toBe(200);
    const last = await fetch(url, {
      method: "POST",
      headers: { "x-goog-api-key": secret, "x-goog-upload-command": "upload, finalize", "x-goog-upload-offset": String(half) },
      body: data.subarray(half),
    });
    expect(last.status).toBe(200);
    expect(await last.json()).toMatchObject({ file: { name: "files/f1" } });
    const [, a, b] = mock.requests;
    expect(Buffer.concat([a!.body, b!.body]).equals(data)).toBe(true);
    expect(b!.headers["x-goog-upload-offset"]).toBe(String(half));
    expect(await callsUsed(relay, id)).toBe(3);
  });
});

describe("a client that leaves mid-body", () => {
  it("is counted once, recorded once, and leaves nothing behind: the next upload on the same relay works", async () => {
    const { secret, id } = await relay.issue();
    const B = "bnd";
    const head = `--${B}\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n--${B}\r\ncontent-disposition: form-data; name="file"; filename="a.bin"\r\n\r\n`;
    const { port } = new URL(relay.url);
    for (let i = 0; i < 5; i++) {
      const s = connect({ host: "127.0.0.1", port: Number(port) });
      await new Promise((r) => s.once("connect", r));
      s.write(
        `POST /api/openai/v1/files HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${secret}\r\ncontent-type: multipart/form-data; boundary=${B}\r\ncontent-length: ${3 * MB}\r\n\r\n`,
      );
      s.write(head);
      s.write(randomBytes(512 * 1024));
      await sleep(100);
      s.destroy();
    }
    await waitFor(() => recordsOf(id).length === 5, 5000, "five records");
    await sleep(200);
    expect(recordsOf(id)).toHaveLength(5);
    expect(recordsOf(id).every((r) => r.outcome !== Outcome.COMPLETE)).toBe(true);
    expect(await callsUsed(relay, id)).toBe(5);
    const file = await openai(secret).files.create({ file: await toFile(randomBytes(1000), "ok.txt"), purpose: "user_data" });
    expect(file.id).toMatch(/^file-/);
  });
});

describe("a provider that answers before reading the body", () => {
  // Known, not fixed here (src/relay/upstream-client.ts, undici): a provider that answers a
  // streamed upload from its head and then resets the connection (no lingering close) is seen
  // as a lost connection, and the client gets 502 `upstream connection lost` instead of the
  // provider's 4xx. \`it.fails\` records today's behaviour; it turns red when that is fixed.
  it.fails("its answer reaches the client (not a 502), counted once", async () => {
    const { secret, id } = await relay.issue();
    const client = new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0, defaultHeaders: { "x-mock-answer-before-body": "400" } });
    const err = (await client.files.create({ file: await toFile(randomBytes(3 * MB), "big.bin"), purpose: "user_data" }).catch((e: unknown) => e)) as {
      status?: number;
      error?: { message?: string };
    };
    expect(err.status).toBe(400);
    expect(err.error?.message).toMatch(/before the body/);
    await waitFor(() => recordsOf(id).length === 1, 3000, "one record");
    expect(await callsUsed(relay, id)).toBe(1);
  });
});
