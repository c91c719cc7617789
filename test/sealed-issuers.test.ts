/**
 * Issuers and their keys: rotation (the old kid works until it is disabled, then 401; the new
 * kid works), `relayapi issuer create|list|rotate|disable`, `relayapi pubkey`, and
 * `relayapi rai import`, which turns an original RelayAPI `.rai` file into an issuer whose key
 * is the file's `aes_key`.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sealToken } from "../src/sdk/index.js";
import { chat, cli, createIssuer, expectFixed401, type Run } from "./support/sealed.js";
import { useRelay } from "./support/use-relay.js";

const { relay } = useRelay();
let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "relayapi-rai-"));
});
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
});

const KEY = "sk-issuer-suite-upstream-key";
let n = 0;
const token = (issuerKey: string | { kid: string; secret: string | Uint8Array }) => sealToken({ jti: `t-${++n}`, prv: "openai", key: KEY, max: 10 }, issuerKey);
const remote = (...args: string[]) => cli([...args, "--server", relay.url, "--admin-key", relay.adminKey]);

function expectOneLineError(r: Run, code: number, text: RegExp): void {
  expect({ code: r.code, stdout: r.stdout }).toEqual({ code, stdout: "" });
  expect(r.stderr.trimEnd().split("\n"), r.stderr).toHaveLength(1);
  expect(r.stderr.trimEnd()).toMatch(text);
}

it("rotation: the old kid works until disabled, then 401 (cached or not); the new kid works", async () => {
  const first = await createIssuer(relay, "rot-app");
  const old = await token(first.issuerKey);
  expect((await chat(relay, old)).status).toBe(200);

  const rotated = await relay.admin.rotateIssuer({ name: "rot-app" });
  const next = `${rotated.kid}:${rotated.secret}`;
  expect(rotated.kid).not.toBe(first.kid);
  const fresh = await token(next);
  expect((await chat(relay, fresh)).status).toBe(200);
  expect((await chat(relay, old)).status).toBe(200);
  expect((await chat(relay, await token(first.issuerKey))).status).toBe(200);

  const disabled = await relay.admin.disableIssuer({ name: "rot-app", kid: first.kid });
  expect(disabled.issuer?.keys.map((k) => [k.kid, k.disabledAt !== undefined])).toEqual([
    [rotated.kid, false],
    [first.kid, true],
  ]);
  expectFixed401(await chat(relay, old));
  expectFixed401(await chat(relay, await token(first.issuerKey)));
  expect((await chat(relay, fresh)).status).toBe(200);

  // Disabling the issuer stops every key; a disabled issuer cannot be rotated.
  await relay.admin.disableIssuer({ name: "rot-app" });
  expectFixed401(await chat(relay, fresh));
  const err = await relay.admin.rotateIssuer({ name: "rot-app" }).catch((e: unknown) => e);
  expect((err as ConnectError).code).toBe(Code.NotFound);
});

it("refuses issuer names reserved for ECDH-ES scopes", async () => {
  const err = await relay.admin.createIssuer({ name: "byok-0123456789abcdef" }).catch((e: unknown) => e);
  expect((err as ConnectError).code).toBe(Code.InvalidArgument);
});

describe("relayapi issuer", () => {
  it("create prints kid and secret once; the key seals tokens (from $RELAYAPI_ISSUER_KEY too)", async () => {
    const created = await remote("issuer", "create", "cli-app", "--json");
    expect(created.code, created.stderr).toBe(0);
    const out = JSON.parse(created.stdout) as { issuer: string; kid: string; secret: string; issuerKey: string };
    expect(out).toMatchObject({ issuer: "cli-app", issuerKey: `${out.kid}:${out.secret}` });
    expect(Buffer.from(out.secret, "base64url")).toHaveLength(32);
    expect(created.stderr).toMatch(/not shown again/);
    expect(created.stderr).not.toContain(out.secret);

    const sealed = await cli(["token", "seal", "--provider", "openai", "--upstream-key", KEY], { RELAYAPI_ISSUER_KEY: out.issuerKey });
    expect(sealed.code, sealed.stderr).toBe(0);
    expect((await chat(relay, sealed.stdout.trim())).status).toBe(200);

    const plain = await remote("issuer", "create", "cli-app-2");
    expect(plain.stdout).toMatch(/^issuer {2}cli-app-2\nkid {5}kid_\w+\nsecret {2}[\w-]{43}\n$/);
  }, 120_000);

  it("rotate, list and disable", async () => {
    const rotated = await remote("issuer", "rotate", "cli-app", "--json");
    expect(rotated.code, rotated.stderr).toBe(0);
    const { kid } = JSON.parse(rotated.stdout) as { kid: string };

    const list = await remote("issuer", "list", "--json");
    const issuers = JSON.parse(list.stdout) as { name: string; disabled: boolean; keys: { kid: string; disabledAt: string | null }[] }[];
    const mine = issuers.find((i) => i.name === "cli-app")!;
    expect(mine.disabled).toBe(false);
    expect(mine.keys).toHaveLength(2);
    expect(mine.keys[0]).toMatchObject({ kid, disabledAt: null });
    const oldKid = mine.keys[1]!.kid;

    expect((await remote("issuer", "disable", "cli-app", "--kid", oldKid)).stdout).toBe(`key ${oldKid} of issuer cli-app disabled\n`);
    const plain = await remote("issuer", "list");
    expect(plain.stdout).toMatch(new RegExp(`^cli-app\\s+enabled\\s+${kid} \\(active\\), ${oldKid} \\(disabled\\)$`, "m"));
    expect((await remote("issuer", "disable", "cli-app")).stdout).toBe("issuer cli-app disabled\n");
    expect((await relay.admin.listIssuers({})).issuers.find((i) => i.name === "cli-app")?.disabled).toBe(true);
  }, 120_000);

  it("misuse exits 2 with one line; a refused call exits 1 with the server's message", async () => {
    const cases: [() => Promise<Run>, number, RegExp][] = [
      [() => remote("issuer", "create"), 2, /usage: relayapi issuer create <name>/],
      [() => remote("issuer", "frobnicate"), 2, /usage: relayapi issuer create\|list\|rotate\|disable/],
      [() => remote("issuer", "rotate", "cli-app", "--kid", "x"), 2, /--kid goes with issuer disable/],
      [() => remote("issuer", "create", "Bad Name"), 1, /issuer name must be .* \(invalid_argument\)$/],
      [() => remote("issuer", "rotate", "nobody"), 1, /\(not_found\)$/],
      [() => cli(["issuer", "list", "--server", relay.url, "--admin-key", "rak_wrong"]), 1, /admin key required \(unauthenticated\)$/],
    ];
    // One at a time: on a loaded machine, parallel CLI processes would each take the time of all.
    for (const [run, code, text] of cases) expectOneLineError(await run(), code, text);
  }, 180_000);
});

it("relayapi pubkey prints the relay's public JWK, and says when ECDH-ES tokens are off", async () => {
  const r = await cli(["pubkey", "--server", relay.url]);
  expect(r.code, r.stderr).toBe(0);
  const jwk = JSON.parse(r.stdout) as Record<string, unknown>;
  expect(jwk).toMatchObject({ kty: "OKP", crv: "X25519", alg: "ECDH-ES", use: "enc" });
  expect(jwk.d).toBeUndefined();
  expect(r.stdout.trim()).toBe(JSON.stringify(jwk));
  expect(r.stderr).toMatch(/does not accept ECDH-ES tokens/);
}, 120_000);

describe("relayapi rai import", () => {
  const rai = (file: string, crypto: Record<string, unknown>) => {
    const path = join(dir, file);
    writeFileSync(path, JSON.stringify({ version: "1.0.0", server: { host: "http://localhost", port: 8080, base_path: "/relayapi/" }, crypto }));
    return path;
  };

  it("makes an issuer whose key is the .rai aes_key, and warns to rotate it", async () => {
    const aesKey = randomBytes(32);
    const path = rai("Backend-Prod.rai", { method: "aes", aes_key: aesKey.toString("hex"), aes_iv_seed: "fedcba9876543210" });
    const r = await remote("rai", "import", path, "--json");
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { issuer: string; kid: string; secret: string };
    expect(out.issuer).toBe("backend-prod");
    expect(Buffer.from(out.secret, "base64url").equals(aesKey)).toBe(true);
    expect(r.stderr).toMatch(/warning: .*aes_key.*relayapi issuer rotate backend-prod/);
    // A backend that holds only the .rai can seal with its key bytes and the printed kid.
    expect(await chat(relay, await token({ kid: out.kid, secret: aesKey }))).toMatchObject({ status: 200 });

    const named = await remote("rai", "import", path, "--name", "legacy");
    expect(named.code, named.stderr).toBe(0);
    expect(named.stdout).toMatch(/^issuer {2}legacy\n/);
    expectOneLineError(await remote("rai", "import", path), 1, /\(already_exists\)$/);
  }, 120_000);

  it("refuses what it cannot import", async () => {
    const cases: [string[], number, RegExp][] = [
      [["rai", "import", rai("ecc.rai", { method: "ecc" })], 2, /only "method": "aes"/],
      [["rai", "import", rai("short.rai", { method: "aes", aes_key: "00ff" })], 2, /64 hex characters/],
      [["rai", "import", join(dir, "missing.rai")], 2, /no such file/],
      [["rai", "import"], 2, /usage: relayapi rai import/],
      [["rai", "export", "x"], 2, /usage: relayapi rai import/],
      [["rai", "import", rai("published.rai", { method: "aes", aes_key: "0123456789abcdef".repeat(4) })], 1, /published default key/],
    ];
    writeFileSync(join(dir, "bad.rai"), "{not json");
    cases.push([["rai", "import", join(dir, "bad.rai")], 2, /not JSON/]);
    for (const [args, code, text] of cases) expectOneLineError(await remote(...args), code, text);
  }, 180_000);
});
