/**
 * Usage records (one per counted call, written in batches off the hot path) and the audit log
 * of admin actions. Neither ever holds a token secret or an upstream key: ids only.
 */
import { bigint, bigserial, index, integer, pgTable, pgView, primaryKey, smallint, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";

/**
 * The strings usage rows would otherwise repeat on every call (token ids, subjects, providers,
 * models, key ids): each stored once, rows and roll-ups hold its 4-byte id (issue 23). Never
 * pruned: one row per distinct string, as small as the tokens table that names them.
 */
export const usageLabels = pgTable(
  "usage_labels",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    value: text("value").notNull(),
  },
  (t) => [uniqueIndex("usage_labels_value_idx").on(t.value)],
);

/**
 * One row per counted call, compact (issue 23): label ids instead of text, 4-byte token counts
 * (the meters clamp them to 10,000,000), columns ordered so no byte is lost to alignment.
 * ~90 bytes a call on PGlite against ~175 before (bench/usage-cost.ts). A BRIN index on `at`
 * only: every index is paid for on every call. Read with names through the `usage_events` view.
 * Pruned in small ranges of pages (src/usage/usage-pruner.ts).
 */
export const usageCalls = pgTable(
  "usage_calls",
  {
    id: bigserial("id", { mode: "number" }).notNull(),
    at: timestamp("at", { withTimezone: true, mode: "date" }).notNull(),
    bytes: bigint("bytes", { mode: "number" }).notNull().default(0),
    token: integer("token").notNull(),
    subject: integer("subject").notNull(),
    provider: integer("provider").notNull(),
    model: integer("model").notNull(),
    /** Label of the pool key's id; the label of "" when no pool key served the call. */
    key: integer("key").notNull(),
    promptTokens: integer("prompt_tokens").notNull().default(0),
    completionTokens: integer("completion_tokens").notNull().default(0),
    totalTokens: integer("total_tokens").notNull().default(0),
    latencyMs: integer("latency_ms").notNull().default(0),
    /** Label of the token's plan; 0 when it has none (labels start at 1). Issue 24. */
    plan: integer("plan").notNull().default(0),
    /** Prompt tokens read from the provider's cache, and completion tokens spent reasoning. */
    cachedTokens: integer("cached_tokens").notNull().default(0),
    reasoningTokens: integer("reasoning_tokens").notNull().default(0),
    /** What the call cost in micro-dollars (src/pricing); null when its model has no price. */
    costMicroUsd: bigint("cost_micro_usd", { mode: "number" }),
    status: smallint("status").notNull(),
    outcome: smallint("outcome").notNull(),
    flags: smallint("flags").notNull().default(0),
    attempts: text("attempts").notNull().default(""),
  },
  (t) => [index("usage_calls_at_brin").using("brin", t.at)],
);

/**
 * Every usage row with its names, as the relay wrote them before issue 23 (same columns, same
 * types): a view joining `usage_calls` to `usage_labels`, for readers and tests that want one
 * call's record. Created in drizzle/0007 (drizzle-kit leaves `.existing()` views alone).
 */
export const usageEvents = pgView("usage_events", {
  id: bigint("id", { mode: "number" }).notNull(),
  at: timestamp("at", { withTimezone: true, mode: "date" }).notNull(),
  tokenId: text("token_id").notNull(),
  subject: text("subject").notNull(),
  provider: text("provider").notNull(),
  model: text("model").notNull(),
  keyId: text("key_id").notNull(),
  status: smallint("status").notNull(),
  /** Outcome enum of common.proto. */
  outcome: smallint("outcome").notNull(),
  promptTokens: bigint("prompt_tokens", { mode: "number" }).notNull(),
  completionTokens: bigint("completion_tokens", { mode: "number" }).notNull(),
  totalTokens: bigint("total_tokens", { mode: "number" }).notNull(),
  bytes: bigint("bytes", { mode: "number" }).notNull(),
  latencyMs: integer("latency_ms").notNull(),
  /**
   * Every provider attempt of the call when there was more than one (failover), in order:
   * `key_id:status` joined by commas (`key_a:429,key_b:200`); `connect` for an attempt that
   * never reached the provider. Empty for the usual single attempt.
   */
  attempts: text("attempts").notNull(),
  /** UsageFlag bits (src/usage/usage-flags.ts): e.g. usage numbers the provider sent out of range. */
  flags: smallint("flags").notNull(),
  /** The token's plan; "" when none (issue 24). */
  plan: text("plan").notNull(),
  cachedTokens: bigint("cached_tokens", { mode: "number" }).notNull(),
  reasoningTokens: bigint("reasoning_tokens", { mode: "number" }).notNull(),
  /** Micro-dollars; null when the call's model has no price. */
  costMicroUsd: bigint("cost_micro_usd", { mode: "number" }),
}).existing();

/**
 * Usage summed per hour (`period` 3600) and per day (86400) by token, subject, provider, model
 * and outcome (issue 23), kept up to date by the same statement that writes the raw rows (an
 * upsert adding the batch's sums), so reports over months read a few rows per hour, never the
 * calls. `plan` is 0 for calls of tokens without a plan; `cost_micro_usd` sums the priced calls
 * and `unpriced_calls` counts the others (issue 24).
 */
export const usageRollups = pgTable(
  "usage_rollups",
  {
    start: timestamp("start", { withTimezone: true, mode: "date" }).notNull(),
    period: integer("period").notNull(),
    token: integer("token").notNull(),
    subject: integer("subject").notNull(),
    provider: integer("provider").notNull(),
    model: integer("model").notNull(),
    plan: integer("plan").notNull().default(0),
    outcome: smallint("outcome").notNull(),
    calls: bigint("calls", { mode: "number" }).notNull().default(0),
    promptTokens: bigint("prompt_tokens", { mode: "number" }).notNull().default(0),
    completionTokens: bigint("completion_tokens", { mode: "number" }).notNull().default(0),
    totalTokens: bigint("total_tokens", { mode: "number" }).notNull().default(0),
    bytes: bigint("bytes", { mode: "number" }).notNull().default(0),
    /** Calls answered with an HTTP status of 400 or more (the outcome may still be COMPLETE). */
    httpErrors: bigint("http_errors", { mode: "number" }).notNull().default(0),
    /** Sum of the calls' latencies: divided by `calls` for the mean. */
    latencyMs: bigint("latency_ms", { mode: "number" }).notNull().default(0),
    costMicroUsd: bigint("cost_micro_usd", { mode: "number" }).notNull().default(0),
    unpricedCalls: bigint("unpriced_calls", { mode: "number" }).notNull().default(0),
  },
  (t) => [primaryKey({ name: "usage_rollups_pkey", columns: [t.start, t.period, t.token, t.subject, t.provider, t.model, t.plan, t.outcome] })],
);

/**
 * Usage records the database refused (a data error in one row of a batch): kept as JSON text
 * so one poison row never blocks the queue and nothing is silently lost.
 */
export const usageDeadLetters = pgTable("usage_dead_letters", {
  id: bigserial("id", { mode: "number" }).primaryKey(),
  at: timestamp("at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  record: text("record").notNull(),
  error: text("error").notNull().default(""),
});

export const auditEvents = pgTable(
  "audit_events",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    at: timestamp("at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    actor: text("actor").notNull(),
    action: text("action").notNull(),
    target: text("target").notNull().default(""),
    detail: text("detail").notNull().default(""),
  },
  (t) => [index("audit_events_at_idx").on(t.at)],
);

export type UsageEventRow = typeof usageEvents.$inferSelect;
export type AuditEventRow = typeof auditEvents.$inferSelect;
