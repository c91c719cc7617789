/**
 * The relay as an outside tool sees it: `buf curl` discovers the services through gRPC server
 * reflection (no schema flag) and calls them over Connect, gRPC (h2c) and gRPC-Web.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { AdminService } from "../gen/relayapi/v1/admin_service_pb.js";
import { RelayService } from "../gen/relayapi/v1/relay_service_pb.js";
import { TokenService } from "../gen/relayapi/v1/token_service_pb.js";
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

it.each(WIRES)("IntrospectToken answers the token holder with JSON (%s)", async (_name, flags) => {
  const { id, secret } = await relay.issue({ limits: { maxCalls: 7n } });
  const { code, stdout, stderr } = await buf(
    ...flags,
    "-H",
    `authorization: Bearer ${secret}`,
    `${relay.url}/relayapi.v1.TokenService/IntrospectToken`,
  );
  expect(stderr).toBe("");
  expect(code).toBe(0);
  const body = JSON.parse(stdout) as { token: { id: string; callsLeft: string; status: string; upstreamKeyHint: string } };
  expect(body.token).toMatchObject({ id, callsLeft: "7", status: "TOKEN_STATUS_ACTIVE", upstreamKeyHint: "sk-...cdef" });
  expect(stdout).not.toContain(secret);
});

it.each(WIRES)("a bad token exits non-zero with unauthenticated (%s)", async (_name, flags) => {
  const { code, stdout, stderr } = await buf(
    ...flags,
    "-H",
    "authorization: Bearer rai_bad",
    `${relay.url}/relayapi.v1.TokenService/IntrospectToken`,
  );
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
