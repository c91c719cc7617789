/**
 * `relayapi price set|list|delete` and `relayapi usage --by ... --json|--csv` (issue 24) as a
 * user runs them: a child process of `node bin/relayapi.js` against a relay booted in-process.
 * Dollars convert exactly to micro-dollars (more than 6 decimals refused), and the report's
 * cost columns match the calls' usage records.
 */
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { useRelay } from "./support/use-relay.js";
import { runCli, type CliRun } from "./support/run-cli.js";

const { relay } = useRelay({ mock: { chunks: 5 } });

const run = (args: string[]): Promise<CliRun> => runCli([...args, "--server", relay.url, "--admin-key", relay.adminKey], { timeout: 60_000 });

describe("relayapi price and usage", { timeout: 120_000 }, () => {
  it("price set converts dollars exactly, list shows it as the admin's, delete restores the shipped price", async () => {
    const set = await run(["price", "set", "openai", "gpt-4o-mini", "--input", "0.123456", "--output", "1.005", "--cached-input", ".5", "--json"]);
    expect(set.stderr).toBe("");
    expect(JSON.parse(set.stdout)).toMatchObject({
      provider: "openai",
      model: "gpt-4o-mini",
      input: 123_456,
      output: 1_005_000,
      cachedInput: 500_000,
      source: "admin",
    });
    const list = await run(["price", "list", "--provider", "openai", "--json"]);
    const prices = JSON.parse(list.stdout) as { model: string; source: string; input: number; asOf: string }[];
    expect(prices.find((p) => p.model === "gpt-4o-mini")).toMatchObject({ source: "admin", input: 123_456 });
    expect(prices.find((p) => p.model === "gpt-4.1")).toMatchObject({ source: "builtin", input: 2_000_000, asOf: "2025-11-24" });
    const table = await run(["price", "list", "--provider", "openai"]);
    expect(table.stdout).toMatch(/^openai\s+gpt-4o-mini\s+0\.123456\s+0\.50\s+-\s+1\.005\s+-\s+-\s+admin/m);
    expect((await run(["price", "delete", "openai", "gpt-4o-mini"])).code).toBe(0);
    expect(relay.app.prices.priceOf("openai", "gpt-4o-mini")?.input).toBe(150_000);

    const tooFine = await run(["price", "set", "openai", "m", "--input", "0.0000001", "--output", "1"]);
    expect(tooFine.code).toBe(2);
    expect(tooFine.stderr).toMatch(/--input must be dollars per million tokens, at most 6 decimals/);
    const missing = await run(["price", "set", "openai", "m", "--input", "1"]);
    expect(missing.code).toBe(2);
    const unknown = await run(["price", "delete", "openai", "never-set"]);
    expect(unknown).toMatchObject({ code: 1, stdout: "" });
    expect(unknown.stderr).toMatch(/not_found/);
  });

  it("usage --by model --json and --csv carry the cost, exact and in dollars", async () => {
    const { secret } = await relay.issue({ subject: "=SUM(1,2)" });
    const client = new OpenAI({
      apiKey: secret,
      baseURL: `${relay.url}/api/openai/v1`,
      maxRetries: 0,
      defaultHeaders: { "x-mock-prompt-tokens": "12000", "x-mock-cached-tokens": "4000", "x-mock-reasoning-tokens": "300" },
    });
    for (let i = 0; i < 2; i++) await client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] });
    await relay.app.usage.flush();
    // 2 x (8000 x 2.5 + 4000 x 1.25 + 305 x 10)
    const json = await run(["usage", "--by", "model", "--since", "1h", "--json"]);
    expect(json.stderr).toBe("");
    const rows = JSON.parse(json.stdout) as Record<string, unknown>[];
    expect(rows.find((r) => r.key === "gpt-4o")).toMatchObject({ calls: 2, costMicroUsd: 56_100, costUsd: "0.056100", unpricedCalls: 0 });
    const csv = await run(["usage", "--by", "subject", "--since", "1h", "--csv"]);
    const lines = csv.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("bucket_start,key,calls,prompt_tokens,completion_tokens,total_tokens,errors,cost_micro_usd,cost_usd,unpriced_calls");
    // A subject that looks like a formula is defused (a leading ') and, holding a comma, quoted.
    expect(lines.find((l) => l.includes("SUM"))).toMatch(/^[^,]+,"'=SUM\(1,2\)",2,24000,610,24610,0,56100,0\.056100,0$/);
    const plan = await run(["usage", "--by", "plan", "--since", "1h"]);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toMatch(/cost \$/);
  });
});
