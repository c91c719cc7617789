/**
 * Plans as operators manage them (issue 24, items 1 and 3, admin side): AdminService
 * CreatePlan / UpdatePlan / ListPlans / DeletePlan through a Connect client, IssueToken naming a
 * plan, and the `relayapi plan ...` and `token issue|seal --plan --budget-usd` commands run as the
 * real CLI (`node bin/relayapi.js`) against a relay booted in-process.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { logins } from "../src/db/schema/index.js";
import { codeOf } from "./support/connect-code.js";
import { UPSTREAM_KEY } from "./support/relay.js";
import { useRelay } from "./support/use-relay.js";
import { runCli, type CliRun } from "./support/run-cli.js";

const { relay } = useRelay({ mock: false });

const run = (args: string[]): Promise<CliRun> => runCli(args);
const remote = (...args: string[]) => run([...args, "--server", relay.url, "--admin-key", relay.adminKey]);

const issueWith = (plan: string, subject: string, extra: { expiresInSeconds?: number } = {}) =>
  relay.tokens.issueToken({
    provider: "openai",
    credential: { case: "upstreamKey", value: UPSTREAM_KEY },
    subject,
    plan,
    expiry: { case: "expiresIn", value: { seconds: BigInt(extra.expiresInSeconds ?? 3600) } },
  });

const planNamed = async (name: string) => (await relay.admin.listPlans({})).plans.find((p) => p.name === name);

describe("AdminService plan rpcs", () => {
  it("creates, lists, replaces and validates plans", async () => {
    const { plan } = await relay.admin.createPlan({
      plan: { name: "free", callsPerDay: 20n, callsPerMonth: 300n, microUsdPerDay: 250_000n, rpm: 10, models: ["gpt-4o-mini"], maxSessionSeconds: 600 },
    });
    expect(plan).toMatchObject({
      name: "free",
      callsPerDay: 20n,
      callsPerMonth: 300n,
      microUsdPerDay: 250_000n,
      rpm: 10,
      models: ["gpt-4o-mini"],
      tokenCount: 0n,
    });
    expect(plan?.tokensPerDay).toBeUndefined();
    expect(await codeOf(() => relay.admin.createPlan({ plan: { name: "free" } }))).toBe(Code.AlreadyExists);

    // Every limit is replaced: what the update leaves out is cleared; updated_at moves on.
    const before = (await planNamed("free"))!;
    await new Promise((r) => setTimeout(r, 20));
    const { plan: updated } = await relay.admin.updatePlan({ plan: { name: "free", callsPerDay: 50n, tokensPerMonth: 1_000_000n } });
    expect(updated).toMatchObject({ name: "free", callsPerDay: 50n, tokensPerMonth: 1_000_000n, models: [] });
    expect(updated?.callsPerMonth).toBeUndefined();
    expect(updated?.microUsdPerDay).toBeUndefined();
    expect(updated?.rpm).toBeUndefined();
    expect(updated?.maxSessionSeconds).toBeUndefined();
    const after = (await planNamed("free"))!;
    expect(after.callsPerDay).toBe(50n);
    expect(Number(after.updatedAt!.seconds) * 1e3 + after.updatedAt!.nanos / 1e6).toBeGreaterThan(
      Number(before.updatedAt!.seconds) * 1e3 + before.updatedAt!.nanos / 1e6,
    );
    expect(after.createdAt).toEqual(before.createdAt);
    expect(await codeOf(() => relay.admin.updatePlan({ plan: { name: "no-such-plan", callsPerDay: 1n } }))).toBe(Code.NotFound);

    for (const bad of [
      { name: "Free" },
      { name: "" },
      { name: "-x" },
      { name: "zero", callsPerDay: 0n },
      { name: "negative", microUsdPerMonth: -5n },
      { name: "huge", tokensPerDay: 2n ** 60n },
      { name: "rpm", rpm: 0 },
      { name: "session", maxSessionSeconds: 86_401 },
      { name: "models", models: [""] },
      { name: "many-models", models: Array.from({ length: 101 }, (_, i) => `m${i}`) },
    ]) {
      expect(
        await codeOf(() => relay.admin.createPlan({ plan: bad })),
        JSON.stringify(bad, (_, v: unknown) => (typeof v === "bigint" ? String(v) : v)),
      ).toBe(Code.InvalidArgument);
    }
    expect(await codeOf(() => relay.admin.createPlan({}))).toBe(Code.InvalidArgument);
    expect((await relay.admin.listPlans({})).plans.map((p) => p.name)).toEqual(["free"]);
  });

  it("IssueToken names a plan: unknown plan or no subject is 400, Token.plan round-trips, token_count counts live tokens", async () => {
    await relay.admin.createPlan({ plan: { name: "pro", callsPerDay: 1000n } });
    // The HTTP status, as a Connect JSON client (curl, connect-web) sees it.
    const raw = async (body: object) =>
      fetch(`${relay.url}/relayapi.v1.TokenService/IssueToken`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${relay.adminKey}` },
        body: JSON.stringify({ provider: "openai", upstreamKey: UPSTREAM_KEY, ...body }),
      });
    const unknown = await raw({ subject: "alice", plan: "no-such-plan" });
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { message: string }).message).toBe("unknown plan");
    const noSubject = await raw({ plan: "pro" });
    expect(noSubject.status).toBe(400);
    expect(((await noSubject.json()) as { message: string }).message).toMatch(/needs a subject/);

    const { token } = await issueWith("pro", "alice");
    expect(token).toMatchObject({ plan: "pro", subject: "alice", microUsdUsed: 0n });
    expect((await relay.tokens.getToken({ id: token!.id })).token?.plan).toBe("pro");
    const { token: plain } = await issueWith("", "bob");
    expect(plain?.plan).toBe("");
    const second = await issueWith("pro", "carol");
    expect((await planNamed("pro"))?.tokenCount).toBe(2n);
    await relay.tokens.revokeToken({ id: second.token!.id });
    expect((await planNamed("pro"))?.tokenCount).toBe(1n);

    const { events } = await relay.admin.listAuditEvents({});
    expect(events.find((e) => e.action === "IssueToken" && e.target === token!.id)?.detail).toContain("plan=pro");
  });

  it("DeletePlan is refused while a live token or a login names the plan, and allowed with force", async () => {
    await relay.admin.createPlan({ plan: { name: "team", callsPerDay: 5n } });
    const { token } = await issueWith("team", "dora");
    const refused = await relay.admin.deletePlan({ name: "team" }).catch((e: unknown) => ConnectError.from(e));
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.FailedPrecondition);
    expect((refused as ConnectError).rawMessage).toMatch(/1 live token\(s\) and 0 login\(s\)/);
    // A revoked token no longer holds the plan.
    await relay.tokens.revokeToken({ id: token!.id });
    await relay.admin.deletePlan({ name: "team" });
    expect(await planNamed("team")).toBeUndefined();
    expect(await codeOf(() => relay.admin.deletePlan({ name: "team" }))).toBe(Code.NotFound);

    // A login naming the plan holds it too.
    await relay.admin.createPlan({ plan: { name: "app-users", callsPerDay: 5n } });
    await relay.app.database.db.insert(logins).values({
      name: "my-app",
      issuer: "https://issuer.example",
      audience: "my-app",
      jwksUrl: "https://issuer.example/jwks",
      plan: "app-users",
      provider: "openai",
    });
    expect(await codeOf(() => relay.admin.deletePlan({ name: "app-users" }))).toBe(Code.FailedPrecondition);

    // Force deletes it while a token still names it; the token keeps the name (its calls are refused).
    await relay.admin.createPlan({ plan: { name: "doomed" } });
    const { token: held } = await issueWith("doomed", "erin");
    expect(await codeOf(() => relay.admin.deletePlan({ name: "doomed" }))).toBe(Code.FailedPrecondition);
    await relay.admin.deletePlan({ name: "doomed", force: true });
    expect(await planNamed("doomed")).toBeUndefined();
    expect((await relay.tokens.getToken({ id: held!.id })).token?.plan).toBe("doomed");

    const { events } = await relay.admin.listAuditEvents({});
    const mine = events.filter((e) => ["team", "doomed"].includes(e.target)).map((e) => [e.action, e.target, e.detail]);
    expect(mine).toEqual(
      expect.arrayContaining([
        ["CreatePlan", "team", "calls_per_day=5"],
        ["DeletePlan", "team", ""],
        ["CreatePlan", "doomed", "no limits"],
        ["DeletePlan", "doomed", "forced tokens=1 logins=0"],
      ]),
    );
  });
});

describe("relayapi plan and token --plan", { timeout: 120_000 }, () => {
  it("plan create takes dollars exactly (--usd-per-day 0.25 is 250000 micro-dollars) and list shows it", async () => {
    const created = await remote(
      "plan",
      "create",
      "cli-basic",
      "--calls-per-day",
      "20",
      "--calls-per-month",
      "400",
      "--tokens-per-day",
      "50000",
      "--usd-per-day",
      "0.25",
      "--usd-per-month",
      "1.005",
      "--rpm",
      "30",
      "--models",
      "gpt-4o-mini,gpt-4o",
      "--max-session-seconds",
      "900",
    );
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain("plan cli-basic created");
    const plan = (await planNamed("cli-basic"))!;
    expect(plan).toMatchObject({
      callsPerDay: 20n,
      callsPerMonth: 400n,
      tokensPerDay: 50_000n,
      microUsdPerDay: 250_000n,
      // 1.005 * 1e6 is 1004999.9999999999 as a float: the CLI converts on the digits.
      microUsdPerMonth: 1_005_000n,
      rpm: 30,
      models: ["gpt-4o-mini", "gpt-4o"],
      maxSessionSeconds: 900,
    });
    expect(plan.tokensPerMonth).toBeUndefined();

    const listed = await remote("plan", "list", "--json");
    expect(listed.code, listed.stderr).toBe(0);
    const rows = JSON.parse(listed.stdout) as Record<string, unknown>[];
    expect(rows.find((r) => r.name === "cli-basic")).toMatchObject({
      callsPerDay: 20,
      microUsdPerDay: 250_000,
      usdPerDay: "0.25",
      usdPerMonth: "1.005",
      tokensPerMonth: null,
      models: ["gpt-4o-mini", "gpt-4o"],
      tokenCount: 0,
    });
    const table = await remote("plan", "list");
    expect(table.stdout).toMatch(/^NAME\s+CALLS\/DAY/m);
    expect(table.stdout).toMatch(/^cli-basic\s+20\s+400\s+50000\s+-\s+\$0\.25\s+\$1\.005\s+30\s+900\s+gpt-4o-mini,gpt-4o\s+0$/m);
  });

  it("plan update changes only the flags given; none clears a limit", async () => {
    expect((await remote("plan", "create", "cli-upd", "--calls-per-day", "10", "--usd-per-month", "3", "--models", "a,b")).code).toBe(0);
    const updated = await remote("plan", "update", "cli-upd", "--calls-per-day", "none", "--rpm", "5", "--models", "none");
    expect(updated.code, updated.stderr).toBe(0);
    const plan = (await planNamed("cli-upd"))!;
    expect(plan.callsPerDay).toBeUndefined();
    expect(plan).toMatchObject({ microUsdPerMonth: 3_000_000n, rpm: 5, models: [] });
    const missing = await remote("plan", "update", "no-such", "--rpm", "5");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no plan named no-such/);
  });

  it("misuse exits 2 with one line before any call", async () => {
    for (const [args, message] of [
      [["plan", "create", "x", "--usd-per-day", "0.0000001"], /--usd-per-day must be an amount in US dollars with at most 6 decimals/],
      [["plan", "create", "x", "--usd-per-day", "0"], /--usd-per-day must be at least 0\.000001/],
      [["plan", "create", "x", "--calls-per-day", "0"], /--calls-per-day: calls_per_day must be at least 1/],
      [["plan", "create", "x", "--max-session-seconds", "86401"], /max_session_seconds must be 1-86400/],
      [["plan", "create"], /usage: relayapi plan create <name>/],
      [["token", "issue", "--provider", "openai", "--upstream-key", "k", "--budget-usd", "1.2.3"], /--budget-usd must be an amount in US dollars/],
    ] as const) {
      const r = await remote(...args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
    const bad = await remote("plan", "create", "Bad Name");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/plan name must be 1-64.*\(invalid_argument\)/);
  });

  it("token issue --plan --budget-usd, token seal --plan, and plan delete refused then --force", async () => {
    expect((await remote("plan", "create", "cli-tok", "--calls-per-day", "3")).code).toBe(0);
    const issued = await remote(
      "token",
      "issue",
      "--provider",
      "openai",
      "--upstream-key",
      UPSTREAM_KEY,
      "--subject",
      "fay",
      "--plan",
      "cli-tok",
      "--budget-usd",
      "2.50",
      "--json",
    );
    expect(issued.code, issued.stderr).toBe(0);
    const { id } = JSON.parse(issued.stdout) as { id: string };
    const { token } = await relay.tokens.getToken({ id });
    expect(token).toMatchObject({ plan: "cli-tok", subject: "fay" });
    expect(token?.limits?.budgetMicroUsd).toBe(2_500_000n);
    const shown = JSON.parse((await remote("token", "get", id, "--json")).stdout) as Record<string, unknown>;
    expect(shown).toMatchObject({ plan: "cli-tok", budgetMicroUsd: 2_500_000, microUsdUsed: 0 });

    const noSubject = await remote("token", "issue", "--provider", "openai", "--upstream-key", UPSTREAM_KEY, "--plan", "cli-tok");
    expect(noSubject.code).toBe(1);
    expect(noSubject.stderr).toMatch(/needs a subject.*\(invalid_argument\)/);
    const unknownPlan = await remote("token", "issue", "--provider", "openai", "--upstream-key", UPSTREAM_KEY, "--subject", "fay", "--plan", "nope");
    expect(unknownPlan.code).toBe(1);
    expect(unknownPlan.stderr).toMatch(/unknown plan \(invalid_argument\)/);

    const issuer = JSON.parse((await remote("issuer", "create", "cli-plans", "--json")).stdout) as { issuerKey: string };
    const sealArgs = ["token", "seal", "--issuer-key", issuer.issuerKey, "--provider", "openai", "--upstream-key", UPSTREAM_KEY, "--plan", "cli-tok"];
    const sealed = await run([...sealArgs, "--subject", "fay", "--budget-usd", "0.25", "--json"]);
    expect(sealed.code, sealed.stderr).toBe(0);
    expect((JSON.parse(sealed.stdout) as { claims: Record<string, unknown> }).claims).toMatchObject({ pln: "cli-tok", sub: "fay", bus: 250_000 });
    const sealedNoSubject = await run(sealArgs);
    expect(sealedNoSubject.code).toBe(2);
    expect(sealedNoSubject.stderr).toMatch(/pln: a token with a plan needs a subject/);

    const listed = JSON.parse((await remote("plan", "list", "--json")).stdout) as { name: string; tokenCount: number }[];
    expect(listed.find((p) => p.name === "cli-tok")?.tokenCount).toBe(1);
    const refused = await remote("plan", "delete", "cli-tok");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/1 live token\(s\).*\(failed_precondition\)/);
    const forced = await remote("plan", "delete", "cli-tok", "--force");
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toContain("plan cli-tok deleted");
    expect(await planNamed("cli-tok")).toBeUndefined();
  });
});
