/**
 * `relayapi token ...` limits, ids and errors as a user meets them: a child process of
 * `node bin/relayapi.js` against a relay booted in-process. Every limit flag reaches the
 * issued token (read back with GetToken) and the sealed claims; `issue` keeps stdout to the
 * secret; `revoke` takes the secret; `list` is a table; key and connection failures say what
 * to do.
 */
import { createServer, type AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { useRelay } from "./support/use-relay.js";
import { runCli, type CliRun } from "./support/run-cli.js";

const KEY = "sk-cli-tokens-upstream-0123456789";
const JKT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

const { relay } = useRelay();

const run = (args: string[]): Promise<CliRun> => runCli(args);
const remote = (...args: string[]) => run([...args, "--server", relay.url, "--admin-key", relay.adminKey]);

/** Every limit flag with a value unlike any default, and what each comes back as. */
const LIMIT_ARGS = [
  "--max-calls",
  "7",
  "--rpm",
  "11",
  "--max-output-tokens",
  "123",
  "--max-n",
  "3",
  "--budget",
  "5000",
  "--max-body-bytes",
  "4096",
  "--models",
  "m1,m2",
  "--paths",
  "/v1/chat",
  "--origins",
  "https://app.example",
  "--tools",
  "--bind-jkt",
  JKT,
];

describe("relayapi token", { timeout: 90_000 }, () => {
  it("every limit flag reaches the issued token (GetToken) and the sealed claims", async () => {
    const issued = await remote("token", "issue", "--provider", "openai", "--upstream-key", KEY, "--subject", "limits", ...LIMIT_ARGS, "--json");
    expect(issued.code, issued.stderr).toBe(0);
    const { id } = JSON.parse(issued.stdout) as { id: string };
    const got = JSON.parse((await remote("token", "get", id, "--json")).stdout) as Record<string, unknown>;
    expect(got).toMatchObject({
      maxCalls: 7,
      callsLeft: 7,
      rpm: 11,
      maxOutputTokens: 123,
      maxN: 3,
      budget: 5000,
      maxBodyBytes: 4096,
      models: ["m1", "m2"],
      paths: ["/v1/chat"],
      origins: ["https://app.example"],
      tools: true,
      bindJkt: JKT,
    });

    const issuer = JSON.parse((await remote("issuer", "create", "cli-limits", "--json")).stdout) as { issuerKey: string };
    const sealed = await run(["token", "seal", "--issuer-key", issuer.issuerKey, "--provider", "openai", "--upstream-key", KEY, ...LIMIT_ARGS, "--json"]);
    expect(sealed.code, sealed.stderr).toBe(0);
    const { claims } = JSON.parse(sealed.stdout) as { claims: Record<string, unknown> };
    expect(claims).toMatchObject({
      prv: "openai",
      max: 7,
      rpm: 11,
      mtk: 123,
      mxn: 3,
      bud: 5000,
      mbb: 4096,
      mdl: ["m1", "m2"],
      pth: ["/v1/chat"],
      org: ["https://app.example"],
      tls: true,
      cnf: { jkt: JKT },
    });
    expect(sealed.stdout).not.toContain(KEY);

    // A sealed token is revoked by its secret too (the relay names it `<issuer>:<jti>`).
    const plain = await run(["token", "seal", "--issuer-key", issuer.issuerKey, "--provider", "openai", "--upstream-key", KEY, "--jti", "by-secret"]);
    const revoked = await remote("token", "revoke", plain.stdout.trim());
    expect(revoked, revoked.stderr).toMatchObject({ code: 0, stdout: "token cli-limits:by-secret revoked\n" });
  });

  it("issue: the secret alone on stdout, the id on stderr; revoke takes the secret", async () => {
    const issued = await remote("token", "issue", "--provider", "openai", "--upstream-key", KEY, "--subject", "by-secret");
    expect(issued.code).toBe(0);
    expect(issued.stdout).toMatch(/^rai_[0-9A-Za-z]{38}\n$/);
    const secret = issued.stdout.trim();
    const id = /issued (tok_[0-9A-Za-z]+)/.exec(issued.stderr)?.[1];
    expect(id, issued.stderr).toBeDefined();
    expect(issued.stderr).not.toContain(secret);

    expect(await remote("token", "revoke", secret)).toMatchObject({ code: 0, stdout: `token ${id} revoked\n` });
    const got = JSON.parse((await remote("token", "get", id!, "--json")).stdout) as { status: string };
    expect(got.status).toBe("revoked");
  });

  it("list: a header row and aligned columns, whatever the subject and id lengths", async () => {
    for (const subject of ["t", "a-much-longer-subject-name"])
      expect((await remote("token", "issue", "--provider", "openai", "--upstream-key", KEY, "--subject", subject)).code).toBe(0);
    const { stdout, code } = await remote("token", "list");
    expect(code).toBe(0);
    const [header, ...rows] = stdout.trimEnd().split("\n");
    expect(header).toMatch(/^ID\s+STATUS\s+PROVIDER\s+SUBJECT\s+CALLS\s+EXPIRES$/);
    expect(rows.length).toBeGreaterThanOrEqual(2);
    expect(stdout).toMatch(/\sa-much-longer-subject-name\s/);
    // The sealed token revoked in the first test has a longer id than tok_... (tests run in order).
    expect(stdout).toMatch(/^cli-limits:by-secret\s+revoked\s+-\s/m);
    // Each column starts where its header does, on every row.
    const starts = [...header!.matchAll(/\S+/g)].map((m) => m.index);
    for (const row of rows) {
      const cells = [...row.matchAll(/\S+/g)].map((m) => m.index);
      expect(cells.slice(0, starts.length), row).toEqual(starts);
    }
  });

  it("admin key not sent and admin key refused are told apart, with where the key comes from", async () => {
    const [none, wrong] = await Promise.all([
      run(["token", "list", "--server", relay.url]),
      run(["token", "list", "--server", relay.url, "--admin-key", "rak_wrong"]),
    ]);
    expect(none).toMatchObject({ code: 1, stdout: "" });
    expect(none.stderr).toBe(
      "relayapi: no admin key sent; give --admin-key or $RELAYAPI_ADMIN_KEY (a local relay writes its key to data/admin.key): admin key required (unauthenticated)\n",
    );
    expect(wrong).toMatchObject({ code: 1, stdout: "" });
    expect(wrong.stderr.trimEnd()).toMatch(
      /^relayapi: the relay at http:\/\/127\.0\.0\.1:\d+ refused the admin key sent; check --admin-key .*: admin key required \(unauthenticated\)$/,
    );
    expect(wrong.stderr).not.toContain("rak_wrong");
  });

  it("a refused connection names --server and RELAYAPI_SERVER", async () => {
    const port = await closedPort();
    const r = await run(["token", "list", "--server", `http://127.0.0.1:${port}`, "--admin-key", "rak_x"]);
    expect(r).toMatchObject({ code: 1, stdout: "" });
    expect(r.stderr).toBe(
      `relayapi: cannot reach a relay at http://127.0.0.1:${port} (connection refused); is it running? Point --server or $RELAYAPI_SERVER at it (unavailable)\n`,
    );
  });
});

/** A port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}
