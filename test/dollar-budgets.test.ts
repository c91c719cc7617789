/**
 * Dollar limits (issue 24): a token's `budget_micro_usd` and a plan's dollar windows, metered
 * from the provider's reported usage and the model's price; refused once spent; a model without
 * a price is refused under a dollar limit (unless the operator allows unpriced models).
 */
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { useRelay } from "./support/use-relay.js";

const PROMPT = 100_000;

describe("dollar budgets", () => {
  const { relay, mock } = useRelay();

  const client = (secret: string) =>
    new OpenAI({ apiKey: secret, baseURL: `${relay.url}/api/openai/v1`, maxRetries: 0, defaultHeaders: { "x-mock-prompt-tokens": String(PROMPT) } });

  it("a --budget-usd token is refused once its dollars are spent; each call costs what its usage is priced at", async () => {
    // $1 per million input tokens, $2 per million output: 100,000 prompt tokens cost $0.10.
    await relay.admin.setPrice({ price: { provider: "openai", model: "gpt-budget", input: 1_000_000n, output: 2_000_000n } });
    const { secret, id } = await relay.issue({ limits: { budgetMicroUsd: 250_000n } });
    const openai = client(secret);
    const costs: number[] = [];
    for (let i = 0; i < 10; i++) {
      try {
        const c = await openai.chat.completions.create({ model: "gpt-budget", messages: [{ role: "user", content: "hi" }], max_tokens: 16 });
        costs.push(c.usage!.prompt_tokens * 1 + c.usage!.completion_tokens * 2);
      } catch (e) {
        expect((e as { status?: number }).status).toBe(429);
        expect((e as { code?: string }).code).toBe("budget_exhausted");
        break;
      }
    }
    // Admitted while below $0.25: three calls of ~$0.10, the third crossing it.
    expect(costs).toHaveLength(3);
    const token = (await relay.tokens.getToken({ id })).token!;
    expect(Number(token.microUsdUsed)).toBe(costs.reduce((a, b) => a + b, 0));
    await relay.app.usage.flush();
    const rows = relay.calls.filter((c) => c.tokenId === id);
    expect(rows.map((r) => r.costMicroUsd)).toEqual(costs);
  });

  it("a model without a price is refused under a dollar limit, before anything is counted", async () => {
    const { secret, id } = await relay.issue({ limits: { budgetMicroUsd: 1_000_000n } });
    const before = mock.requests.length;
    await expect(client(secret).chat.completions.create({ model: "no-price-anywhere", messages: [{ role: "user", content: "hi" }] })).rejects.toMatchObject({
      status: 403,
    });
    expect(mock.requests.length).toBe(before);
    expect((await relay.tokens.getToken({ id })).token!.callsUsed).toBe(0n);
  });

  it("a plan's dollars per day bound each subject across tokens", async () => {
    await relay.admin.setPrice({ price: { provider: "openai", model: "gpt-budget", input: 1_000_000n, output: 2_000_000n } });
    await relay.admin.createPlan({ plan: { name: "dollar-day", microUsdPerDay: 150_000n } });
    await relay.app.plans.reload();
    const a = await relay.issue({ subject: "hank", plan: "dollar-day" });
    const b = await relay.issue({ subject: "hank", plan: "dollar-day" });
    const ask = (secret: string) =>
      client(secret).chat.completions.create({ model: "gpt-budget", messages: [{ role: "user", content: "hi" }], max_tokens: 16 });
    await ask(a.secret);
    await ask(b.secret);
    await expect(ask(a.secret)).rejects.toMatchObject({ status: 429, code: "quota_exhausted" });
    await expect(ask(b.secret)).rejects.toMatchObject({ status: 429 });
    const other = await relay.issue({ subject: "ivy", plan: "dollar-day" });
    await expect(ask(other.secret)).resolves.toBeDefined();
  });
});
