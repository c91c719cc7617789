/**
 * Poison usage (issue 18, findings 3 and 7), through the real relay on PGlite and PostgreSQL: a
 * provider that reports absurd usage (`total_tokens: 1e300`, negative numbers, strings) and
 * a row the database refuses must never stop the usage of every other token from being written.
 * Out-of-range usage is clamped and flagged, never trusted for budgets; a refused row goes to
 * `usage_dead_letters` and the rest of its batch is written; `/metrics` counts both.
 */
import { eq, inArray, sql } from "drizzle-orm";
import { beforeAll, describe, expect, it } from "vitest";
import { tokens as tokensTable, usageDeadLetters, usageEvents } from "../src/db/schema/index.js";
import { availableDrivers, useRelay } from "./support/use-relay.js";

const drivers = await availableDrivers();
const BIGINT_MAX = "9223372036854775807";
/** Flag bits of src/usage/usage-flags.ts, spelled out so the test fails if they move. */
const USAGE_OUT_OF_RANGE = 1;
const MODEL_CHANGED = 2;

/** An OpenAI chat completion whose usage object is `usage`, verbatim. */
function completion(usage: unknown): unknown {
  return {
    id: "chatcmpl-poison",
    object: "chat.completion",
    created: 1,
    model: "gpt-mock",
    choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop" }],
    usage,
  };
}

/** One chat call; `poison` is the JSON text of the usage the mock will report for it. */
async function chat(url: string, secret: string, o: { poison?: string; model?: string } = {}): Promise<number> {
  const headers: Record<string, string> = { authorization: `Bearer ${secret}`, "content-type": "application/json" };
  if (o.poison !== undefined) headers["x-poison"] = o.poison;
  const body = JSON.stringify({ model: o.model ?? "gpt-mock", messages: [{ role: "user", content: "hi" }] });
  const res = await fetch(`${url}/api/openai/v1/chat/completions`, { method: "POST", headers, body });
  await res.arrayBuffer();
  return res.status;
}

async function metric(url: string, name: string, labels = ""): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

describe.each(drivers)("poison usage (relay on %s)", (driver) => {
  const { relay, mock } = useRelay({ mock: { chunks: 2 }, driver });

  beforeAll(() => {
    mock.behave((rec) => {
      const poison = rec.headers["x-poison"];
      return typeof poison === "string" ? { status: 200, body: completion(JSON.parse(poison)) } : undefined;
    });
  });

  const db = () => relay.app.database.db;
  /** Writes what is queued; a writer stuck on a failing batch rejects, which the figures show. */
  const settle = async () => {
    await relay.app.usage.flush().catch(() => {});
  };
  const rowsOf = (ids: string[]) => db().select().from(usageEvents).where(inArray(usageEvents.tokenId, ids)).orderBy(usageEvents.id);
  const tokensUsed = async (id: string) =>
    (
      await db()
        .select({ v: sql<string>`${tokensTable.tokensUsed}::text` })
        .from(tokensTable)
        .where(eq(tokensTable.id, id))
    )[0]?.v;

  it("writes every other token's usage after absurd provider usage; flags it, never overflows or trusts it", async () => {
    // A counter already near the top of bigint (years of metering, or earlier poison under a
    // looser clamp): the next metered call must saturate it, not fail the whole batch.
    const high = await relay.issue();
    await db().execute(sql`update tokens set tokens_used = ${BIGINT_MAX}::bigint - 5 where id = ${high.id}`);
    const budgeted = await relay.issue({ limits: { budgetTokens: 1000n } });
    const others = await Promise.all([1, 2, 3, 4].map(() => relay.issue()));

    const statuses = [
      await chat(relay.url, high.secret, { poison: '{"prompt_tokens":10,"completion_tokens":5,"total_tokens":1e300}' }),
      await chat(relay.url, budgeted.secret, { poison: '{"prompt_tokens":10,"completion_tokens":5,"total_tokens":1e300}' }),
      // Once 1e300 was charged, a budget of 1000 would refuse these with 429.
      await chat(relay.url, budgeted.secret, { poison: '{"prompt_tokens":-1,"completion_tokens":5,"total_tokens":-7}' }),
      await chat(relay.url, budgeted.secret, { poison: '{"prompt_tokens":"NaN","completion_tokens":2.5,"total_tokens":"1e300"}' }),
    ];
    await settle();
    for (const t of others) for (let i = 0; i < 2; i++) statuses.push(await chat(relay.url, t.secret));
    await settle();

    const written = await rowsOf(others.map((t) => t.id));
    const depth = relay.app.usage.queueDepth;
    console.log(
      `[poison-usage ${driver}] statuses ${statuses.join(",")}; rows written for other tokens after the poison calls: ${written.length}/8; queue depth ${depth}`,
    );
    expect(statuses).toEqual(Array(12).fill(200));
    expect(written).toHaveLength(8);
    expect(written.every((r) => r.flags === 0 && r.totalTokens > 0)).toBe(true);
    expect(depth).toBe(0);

    // The poison calls have rows, flagged, with clamped numbers.
    const poisoned = await rowsOf([high.id, budgeted.id]);
    expect(poisoned).toHaveLength(4);
    for (const r of poisoned) {
      expect(r.flags & USAGE_OUT_OF_RANGE).toBe(USAGE_OUT_OF_RANGE);
      for (const n of [r.promptTokens, r.completionTokens, r.totalTokens]) {
        expect(Number.isSafeInteger(n) && n >= 0 && n <= 10_000_000).toBe(true);
      }
    }
    expect(await tokensUsed(high.id)).toBe(BIGINT_MAX);
    // The budget was charged what the rows say (clamped), so the token still works.
    const budgetedRows = poisoned.filter((r) => r.tokenId === budgeted.id);
    expect(await tokensUsed(budgeted.id)).toBe(String(budgetedRows.reduce((a, r) => a + r.totalTokens, 0)));
    expect(await chat(relay.url, budgeted.secret)).toBe(200);

    expect(await metric(relay.url, "relayapi_usage_anomalies_total", '{kind="usage_out_of_range"}')).toBe(4);
  });

  it("clips model names to 128 safe characters and flags the change", async () => {
    const t = await relay.issue();
    const ugly = "gpt\u0001-mock\u0000<x>" + "y".repeat(300);
    expect(await chat(relay.url, t.secret, { model: ugly })).toBe(200);
    expect(await chat(relay.url, t.secret, { model: "gpt-4o-mini" })).toBe(200);
    await settle();
    const rows = await rowsOf([t.id]);
    expect(rows).toHaveLength(2);
    expect(rows[0]!.model.length).toBeLessThanOrEqual(128);
    expect(rows[0]!.model).toMatch(/^gpt-mock_x_y+$/);
    expect(rows[0]!.flags & MODEL_CHANGED).toBe(MODEL_CHANGED);
    expect(rows[1]).toMatchObject({ model: "gpt-4o-mini", flags: 0 });
    expect(await metric(relay.url, "relayapi_usage_anomalies_total", '{kind="model_name_changed"}')).toBe(1);
  });

  it("sends a row the database refuses to the dead letters and writes the rest of its batch", async () => {
    // Stands for any data error a row could still carry (SQLSTATE class 22/23): a CHECK the
    // rows of one model break.
    // Model names are stored once, in usage_labels (issue 23): the CHECK goes there.
    await db().execute(sql.raw(`alter table usage_labels add constraint poison_test check (value <> 'refused-model') not valid`));
    try {
      const victim = await relay.issue();
      const others = await Promise.all([1, 2, 3].map(() => relay.issue()));
      expect(await chat(relay.url, others[0]!.secret)).toBe(200);
      expect(await chat(relay.url, victim.secret, { model: "refused-model" })).toBe(200);
      for (const o of others) expect(await chat(relay.url, o.secret)).toBe(200);
      await settle();

      const written = await rowsOf(others.map((o) => o.id));
      console.log(`[poison-usage ${driver}] rows written beside a refused row: ${written.length}/4; queue depth ${relay.app.usage.queueDepth}`);
      expect(written).toHaveLength(4);
      expect(relay.app.usage.queueDepth).toBe(0);
      expect(await rowsOf([victim.id])).toHaveLength(0);
      const dead = await db().select().from(usageDeadLetters);
      expect(dead).toHaveLength(1);
      expect(JSON.parse(dead[0]!.record)).toMatchObject({ tokenId: victim.id, model: "refused-model" });
      expect(dead[0]!.error).toMatch(/23514/);
      expect(dead[0]!.record).not.toContain(victim.secret);
      expect(dead[0]!.error).not.toContain(victim.secret);
      expect(await metric(relay.url, "relayapi_usage_dead_letters_total")).toBe(1);
    } finally {
      await db().execute(sql.raw(`alter table usage_labels drop constraint poison_test`));
    }
  });
});
