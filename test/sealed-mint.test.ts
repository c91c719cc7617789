/**
 * Sealed tokens minted four ways all relay: by the SDK, by a minimal script that uses only
 * `jose` (test/fixtures/jose-only-seal.mjs, a child process), by `relayapi token seal` (offline),
 * and by examples/python/mint_token.py (jwcrypto; `dir` and ECDH-ES). Each time the mock
 * provider sees the token's inline upstream key and never the token. IntrospectToken answers
 * for a sealed token before and after its first use.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { sealToken, sealTokenForRelay } from "../src/sdk/index.js";
import { expectNoSecret } from "./support/http.js";
import { callsUsed, chat, cli, createIssuer, ROOT, runFile, seconds, type TestIssuer } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";

const { relay, mock } = useRelay({ config: { acceptByokTokens: true } });
let issuer: TestIssuer;
let relayJwk: string;
beforeAll(async () => {
  issuer = await createIssuer(relay, "mint-app");
  relayJwk = (await relay.tokens.getSealingKey({})).jwk;
});

/** Relays one call with the token; the upstream sees `upstreamKey` and never the token. */
async function relaysWith(token: string, upstreamKey: string): Promise<void> {
  mock.reset();
  const r = await chat(relay, token);
  expect(r.status, r.body).toBe(200);
  expect(JSON.parse(r.body)).toMatchObject({ object: "chat.completion" });
  expect(mock.requests).toHaveLength(1);
  expect(mock.requests[0]!.headers.authorization).toBe(`Bearer ${upstreamKey}`);
  expectNoSecret(mock.requests[0], token);
}

it("a token sealed by the SDK relays, and is counted under <issuer>:<jti>", async () => {
  const key = "sk-sdk-sealed-upstream-0001";
  const token = await sealToken({ jti: "sdk-1", prv: "openai", key, max: 3, sub: "user-1" }, issuer.issuerKey);
  await relaysWith(token, key);
  expect(await callsUsed(relay, "mint-app:sdk-1")).toBe(1);
  const row = (await relay.tokens.getToken({ id: "mint-app:sdk-1" })).token!;
  expect(row).toMatchObject({ kind: 2, provider: "openai", subject: "user-1", callsLeft: 2n, upstreamKeyHint: "sk-...0001" });
});

it("a token sealed by a script that uses only jose relays", async () => {
  const key = "sk-jose-only-upstream-0002";
  const claims = { jti: "jose-1", exp: seconds(600), prv: "openai", key, max: 2 };
  const run = await runFile(process.execPath, [join(ROOT, "test", "fixtures", "jose-only-seal.mjs"), issuer.issuerKey, JSON.stringify(claims)]);
  expect(run.code, run.stderr).toBe(0);
  const token = run.stdout.trim();
  await relaysWith(token, key);
  expect(await callsUsed(relay, "mint-app:jose-1")).toBe(1);
}, 60_000);

it("a token from `relayapi token seal` (offline) relays", async () => {
  const key = "sk-cli-sealed-upstream-0003";
  const run = await cli([
    "token",
    "seal",
    "--issuer-key",
    issuer.issuerKey,
    "--provider",
    "openai",
    "--upstream-key",
    key,
    "--max-calls",
    "5",
    "--expires-in",
    "10m",
    "--subject",
    "cli-user",
    "--models",
    "gpt-mock",
    "--jti",
    "cli-1",
    "--json",
  ]);
  expect(run.code, run.stderr).toBe(0);
  const out = JSON.parse(run.stdout) as { token: string; jti: string; kid: string; alg: string };
  expect(out).toMatchObject({ jti: "cli-1", kid: issuer.kid, alg: "dir" });
  await relaysWith(out.token, key);
  const row = (await relay.tokens.getToken({ id: "mint-app:cli-1" })).token!;
  expect(row).toMatchObject({ subject: "cli-user", callsUsed: 1n, callsLeft: 4n });
  expect(row.limits?.models).toEqual(["gpt-mock"]);
  // The model pin is enforced: another model is refused (403) and not counted.
  expect((await chat(relay, out.token, "gpt-other")).status).toBe(403);
  expect(await callsUsed(relay, "mint-app:cli-1")).toBe(1);
}, 90_000);

it("`relayapi token seal --relay-key` makes an ECDH-ES token that relays", async () => {
  const key = "sk-cli-byok-upstream-0004";
  const run = await cli(["token", "seal", "--relay-key", relayJwk, "--provider", "openai", "--upstream-key", key, "--max-calls", "1", "--json"]);
  expect(run.code, run.stderr).toBe(0);
  const out = JSON.parse(run.stdout) as { token: string; id: string; alg: string };
  expect(out.alg).toBe("ECDH-ES");
  await relaysWith(out.token, key);
  expect(await callsUsed(relay, out.id)).toBe(1);
}, 90_000);

it("a token sealed by the SDK to the relay's public key (ECDH-ES) relays", async () => {
  const key = "sk-sdk-byok-upstream-0005";
  const token = await sealTokenForRelay({ prv: "openai", key, max: 1 }, relayJwk);
  await relaysWith(token, key);
});

it("IntrospectToken shows a sealed token before and after its first use", async () => {
  const token = await sealToken({ jti: "intro-1", prv: "openai", key: "sk-introspect-upstream-0006", max: 4, sub: "u-intro" }, issuer.issuerKey);
  const asHolder = { headers: { authorization: `Bearer ${token}` } };
  const before = (await relay.tokens.introspectToken({}, asHolder)).token!;
  expect(before).toMatchObject({ id: "mint-app:intro-1", kind: 2, subject: "u-intro", callsUsed: 0n, callsLeft: 4n, upstreamKeyHint: "sk-...0006" });
  expect((await chat(relay, token)).status).toBe(200);
  const after = (await relay.tokens.introspectToken({}, asHolder)).token!;
  expect(after).toMatchObject({ id: "mint-app:intro-1", callsUsed: 1n, callsLeft: 3n });
  expect(JSON.stringify(after, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))).not.toContain("sk-introspect");
});

/** A Python 3 that has jwcrypto (Debian's python3-jwcrypto is for /usr/bin/python3). */
function pythonWithJwcrypto(): string | undefined {
  for (const py of [process.env.PYTHON, "python3", "/usr/bin/python3"]) {
    if (!py) continue;
    try {
      execFileSync(py, ["-c", "import jwcrypto"], { stdio: "ignore" });
      return py;
    } catch {
      // not this one
    }
  }
  return undefined;
}

const python = pythonWithJwcrypto();
if (!python) console.warn("[skip] examples/python/mint_token.py: no python3 with jwcrypto (apt-get install python3-jwcrypto; .ci/run installs it)");

describe.skipIf(!python)("examples/python/mint_token.py (jwcrypto)", () => {
  const script = join(ROOT, "examples", "python", "mint_token.py");

  it("mints a dir token that relays", async () => {
    const key = "sk-python-dir-upstream-0007";
    const run = await runFile(python!, [
      script,
      "dir",
      "--issuer-key",
      issuer.issuerKey,
      "--provider",
      "openai",
      "--upstream-key",
      key,
      "--max-calls",
      "2",
      "--expires-in",
      "600",
      "--subject",
      "py-user",
      "--jti",
      "py-1",
    ]);
    expect(run.code, run.stderr).toBe(0);
    await relaysWith(run.stdout.trim(), key);
    expect((await relay.tokens.getToken({ id: "mint-app:py-1" })).token).toMatchObject({ subject: "py-user", callsUsed: 1n, callsLeft: 1n });
  });

  it("mints an ECDH-ES token that relays", async () => {
    const key = "sk-python-byok-upstream-0008";
    const run = await runFile(python!, [script, "ecdh-es", "--relay-key", relayJwk, "--provider", "openai", "--upstream-key", key, "--max-calls", "1"]);
    expect(run.code, run.stderr).toBe(0);
    await relaysWith(run.stdout.trim(), key);
  });

  it("checks every committed test vector with jwcrypto", async () => {
    const vectors = ["dir-basic", "dir-all-claims", "ecdh-es"].map((n) => join(ROOT, "test", "vectors", `${n}.json`));
    const run = await runFile(python!, [script, "check-vector", ...vectors]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trim().split("\n")).toHaveLength(3);
  });
});
