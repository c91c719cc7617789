/**
 * The relay as an outside tool sees it: `buf curl` discovers the services through gRPC server
 * reflection (no schema flag) and calls them over Connect, gRPC (h2c) and gRPC-Web.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { AdminService } from "../gen/relayapi/v1/admin_service_pb.js";
import { RelayService } from "../gen/relayapi/v1/relay_service_pb.js";
import { TokenService } from "../gen/relayapi/v1/token_service_pb.js";
import { NOT_UTF8 } from "../src/services/text-chunks.js";
import { startMockProvider, type MockProvider } from "./support/mock-provider.js";
import { startRelay, type TestRelay } from "./support/relay.js";

const BUF = join(import.meta.dirname, "..", "node_modules", ".bin", "buf");

let mock: MockProvider;
let relay: TestRelay;
beforeAll(async () => {
  mock = await startMockProvider();
  relay = await startRelay({ mock });
});
afterAll(async () => {
  await relay?.close();
  await mock?.close();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function buf(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(BUF, ["curl", ...args], { timeout: 20_000, env: { ...process.env, NO_COLOR: "1" } }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") return reject(new Error(`buf curl failed to run: ${err.message}\n${stderr}`));
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
  });
}

const WIRES: [string, string[]][] = [
  ["connect http/1.1", []],
  ["grpc h2c", ["--protocol", "grpc", "--http2-prior-knowledge"]],
  ["grpc-web http/1.1", ["--protocol", "grpcweb"]],
];

it.each(WIRES)("--list-methods lists every method of the three services via reflection (%s)", async (_name, flags) => {
  const { code, stdout, stderr } = await buf(...flags, "--list-methods", relay.url);
  expect(stderr).toBe("");
  expect(code).toBe(0);
  const listed = new Set(stdout.trim().split("\n"));
  for (const svc of [TokenService, AdminService, RelayService]) {
    for (const m of svc.methods) expect(listed, `${svc.typeName}/${m.name}`).toContain(`${svc.typeName}/${m.name}`);
  }
  expect(listed).toContain("grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
});

it.each(WIRES)("--list-methods through v1alpha reflection, as tools that know only it ask (Evans, older grpcurl) (%s)", async (_name, flags) => {
  const { code, stdout, stderr } = await buf(...flags, "--reflect-protocol", "grpc-v1alpha", "--list-methods", relay.url);
  expect(stderr).toBe("");
  expect(code).toBe(0);
  const listed = new Set(stdout.trim().split("\n"));
  for (const m of TokenService.methods) expect(listed).toContain(`${TokenService.typeName}/${m.name}`);
  expect(listed).toContain("grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
});

it.each(WIRES)("IntrospectToken answers the token holder with JSON (%s)", async (_name, flags) => {
  const { id, secret } = await relay.issue({ limits: { maxCalls: 7n } });
  const { code, stdout, stderr } = await buf(...flags, "-H", `authorization: Bearer ${secret}`, `${relay.url}/relayapi.v1.TokenService/IntrospectToken`);
  expect(stderr).toBe("");
  expect(code).toBe(0);
  const body = JSON.parse(stdout) as { token: { id: string; callsLeft: string; status: string; upstreamKeyHint: string } };
  expect(body.token).toMatchObject({ id, callsLeft: "7", status: "TOKEN_STATUS_ACTIVE", upstreamKeyHint: "sk-...cdef" });
  expect(stdout).not.toContain(secret);
});

it.each(WIRES)("a bad token exits non-zero with unauthenticated (%s)", async (_name, flags) => {
  const { code, stdout, stderr } = await buf(...flags, "-H", "authorization: Bearer rai_bad", `${relay.url}/relayapi.v1.TokenService/IntrospectToken`);
  expect(code).toBe(16 * 8); // buf curl exits with the Connect code times 8
  expect(stdout).toBe("");
  expect(stderr).toContain('"code": "unauthenticated"');
  expect(stderr).toContain("invalid, expired or revoked token");
});

it("admin rpcs need the admin key", async () => {
  const denied = await buf(`${relay.url}/relayapi.v1.AdminService/ListProviders`);
  expect(denied.code).toBe(16 * 8);
  expect(denied.stderr).toContain("unauthenticated");
  const ok = await buf("-H", `authorization: Bearer ${relay.adminKey}`, `${relay.url}/relayapi.v1.AdminService/ListProviders`);
  expect(ok.code).toBe(0);
  const ids = (JSON.parse(ok.stdout) as { providers: { id: string; builtin?: boolean }[] }).providers.filter((p) => p.builtin).map((p) => p.id);
  expect(ids).toEqual(expect.arrayContaining(["openai", "anthropic", "gemini"]));
});

it("streams Relay as JSON messages: head, chunks, end (gRPC h2c)", async () => {
  const { secret } = await relay.issue({ limits: { maxCalls: 2n } });
  const body = Buffer.from(JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi" }], stream: true })).toString("base64");
  const request = JSON.stringify({
    provider: "openai",
    path: "/v1/chat/completions",
    headers: [{ name: "content-type", value: "application/json" }],
    body,
  });
  const { code, stdout, stderr } = await buf(
    "--protocol",
    "grpc",
    "--http2-prior-knowledge",
    "-H",
    `authorization: Bearer ${secret}`,
    "-d",
    request,
    `${relay.url}/relayapi.v1.RelayService/Relay`,
  );
  expect(stderr).toBe("");
  expect(code).toBe(0);
  // buf curl prints one pretty JSON object per message, separated by newlines.
  const messages = stdout
    .trim()
    .split(/\n(?=\{)/)
    .map((m) => JSON.parse(m) as { head?: { status: number }; chunk?: { data: string }; end?: { outcome: string; callsLeft?: string } });
  expect(messages[0]?.head?.status).toBe(200);
  expect(messages.at(-1)?.end).toMatchObject({ outcome: "OUTCOME_COMPLETE", callsLeft: "1" });
  const chunks = messages.slice(1, -1);
  expect(chunks.length).toBeGreaterThanOrEqual(1);
  expect(chunks.every((m) => m.chunk !== undefined)).toBe(true);
  const text = chunks.map((m) => Buffer.from(m.chunk!.data, "base64").toString("utf8")).join("");
  expect(text).toContain("tok4");
  expect(text).toContain("[DONE]");
});

// --- issue 26: readable by a person: body_text in, text_chunks out --------------------------

const CHAT_TEXT = JSON.stringify({ model: "gpt-mock", messages: [{ role: "user", content: "hi €" }], stream: true });
/** The README's request: the chat as `body_text`, the answer as `text_chunks`. */
const textRequest = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    provider: "openai",
    path: "/v1/chat/completions",
    headers: [{ name: "content-type", value: "application/json" }],
    body_text: CHAT_TEXT,
    text_chunks: true,
    ...extra,
  });

interface Printed {
  head?: { status: number };
  chunk?: { data?: string; text?: string };
  end?: { outcome: string; callsLeft?: string; error?: string };
}
/** buf curl prints one pretty JSON object per message, separated by newlines. */
const printed = (stdout: string): Printed[] =>
  stdout
    .trim()
    .split(/\n(?=\{)/)
    .map((m) => JSON.parse(m) as Printed);

it.each(WIRES)("streams Relay with body_text and text_chunks: the mock's words in plain text, no base64 (%s)", async (_name, flags) => {
  const { secret } = await relay.issue({ limits: { maxCalls: 2n } });
  const { code, stdout, stderr } = await buf(
    ...flags,
    "-H",
    `authorization: Bearer ${secret}`,
    "-d",
    textRequest(),
    `${relay.url}/relayapi.v1.RelayService/Relay`,
  );
  expect(stderr).toBe("");
  expect(code).toBe(0);
  // Readable as printed: the SSE frames are JSON strings, the words are there as they are.
  expect(stdout).toContain('"text": "data: {');
  expect(stdout).toContain("tok0 ");
  expect(stdout).toContain("data: [DONE]");
  const messages = printed(stdout);
  expect(messages[0]?.head?.status).toBe(200);
  expect(messages.at(-1)?.end).toMatchObject({ outcome: "OUTCOME_COMPLETE", callsLeft: "1" });
  const chunks = messages.slice(1, -1);
  expect(chunks.every((m) => m.chunk?.text !== undefined && m.chunk.data === undefined)).toBe(true);
  expect(mock.requests.at(-1)?.body.toString("utf8")).toContain('"content":"hi €"');
});

/** The README's `buf curl ... | jq` example, as written there (with this relay's URL and buf). */
function readmePipeline(): string {
  const readme = readFileSync(join(import.meta.dirname, "..", "README.md"), "utf8");
  const block = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes("text_chunks"));
  if (block === undefined) throw new Error("README has no buf curl example with text_chunks");
  return block
    .split("\n")
    .filter((l) => !l.startsWith("#"))
    .join("\n")
    .replace("npx buf curl", '"$BUF" curl')
    .replaceAll("http://127.0.0.1:8080", "$URL");
}

// The README's pipeline, run as written: `jq -j` prints the text chunks as the SSE lines they are.
it.skipIf(!existsSync("/usr/bin/jq"))("the README's buf curl | jq pipeline prints readable SSE lines", async () => {
  const { secret } = await relay.issue();
  const out = await new Promise<string>((resolve, reject) => {
    execFile("sh", ["-c", readmePipeline()], { timeout: 20_000, env: { ...process.env, BUF, TOKEN: secret, URL: relay.url } }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
  const lines = out.split("\n").filter((l) => l !== "");
  expect(lines.length).toBeGreaterThanOrEqual(2);
  expect(lines.every((l) => l.startsWith("data: "))).toBe(true);
  expect(lines[0]).toContain('"content":"tok0 "');
  expect(lines.at(-1)).toBe("data: [DONE]");
  expect(mock.requests.at(-1)?.body.toString("utf8")).toContain('"content": "Hello"');
});

it("text_chunks on an answer that is not UTF-8: the end, then exit code invalid_argument; never garbled text", async () => {
  const parts = ['data: {"ok":1}\n\n', Buffer.from([0x64, 0xff, 0x0a]), "data: after\n\n"];
  mock.behave(() => ({ stream: { contentType: "text/event-stream", parts, delayMs: 60 } }));
  try {
    const { secret } = await relay.issue();
    const { code, stdout, stderr } = await buf("-H", `authorization: Bearer ${secret}`, "-d", textRequest(), `${relay.url}/relayapi.v1.RelayService/Relay`);
    expect(code).toBe(3 * 8); // buf curl exits with the Connect code times 8
    expect(stderr).toContain('"code": "invalid_argument"');
    expect(stdout).not.toContain("\uFFFD");
    expect(stdout).not.toContain("after");
    const messages = printed(stdout);
    expect(messages.at(-1)?.end).toMatchObject({ outcome: "OUTCOME_TRUNCATED", error: NOT_UTF8 });
  } finally {
    mock.behave(undefined);
  }
});

it("body and body_text together exit with invalid_argument before the call is counted", async () => {
  const { secret } = await relay.issue({ limits: { maxCalls: 1n } });
  const before = mock.requests.length;
  const run = await buf(
    "-H",
    `authorization: Bearer ${secret}`,
    "-d",
    textRequest({ body: Buffer.from("{}").toString("base64") }),
    `${relay.url}/relayapi.v1.RelayService/Relay`,
  );
  expect(run.code).toBe(3 * 8);
  expect(run.stderr).toContain("set body or body_text, not both");
  expect(mock.requests.length).toBe(before);
});
