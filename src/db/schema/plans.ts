/**
 * Plans and the per-subject quota counters they are enforced with (issue 24), and the prices
 * that turn metered usage into micro-dollars.
 */
import { bigint, index, integer, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";
import { sql } from "drizzle-orm";

/** A named set of per-subject limits over calendar windows; null: no limit of that kind. */
export const plans = pgTable("plans", {
  name: text("name").primaryKey(),
  callsPerDay: bigint("calls_per_day", { mode: "number" }),
  callsPerMonth: bigint("calls_per_month", { mode: "number" }),
  tokensPerDay: bigint("tokens_per_day", { mode: "number" }),
  tokensPerMonth: bigint("tokens_per_month", { mode: "number" }),
  microUsdPerDay: bigint("micro_usd_per_day", { mode: "number" }),
  microUsdPerMonth: bigint("micro_usd_per_month", { mode: "number" }),
  rpm: integer("rpm"),
  models: text("models").array().notNull().default(sql`'{}'::text[]`),
  maxSessionSeconds: integer("max_session_seconds"),
  createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

/**
 * One row per subject and calendar window (`window` is `2026-12-06` for a day, `2026-12` for a
 * month, in the quota time zone): the calls taken (leased blocks included), and the LLM tokens
 * and micro-dollars charged (reservations of calls in flight included). Every change is one
 * conditional statement per row inside one transaction, so a block is taken only when it fits
 * under every window it draws on (src/plans/quota-counter.ts).
 */
export const quotaCounters = pgTable(
  "quota_counters",
  {
    subject: text("subject").notNull(),
    window: text("window").notNull(),
    calls: bigint("calls", { mode: "number" }).notNull().default(0),
    llmTokens: bigint("llm_tokens", { mode: "number" }).notNull().default(0),
    microUsd: bigint("micro_usd", { mode: "number" }).notNull().default(0),
    /** When the window ends: rows past it are pruned. */
    endsAt: timestamp("ends_at", { withTimezone: true, mode: "date" }).notNull(),
  },
  (t) => [primaryKey({ name: "quota_counters_pkey", columns: [t.subject, t.window] }), index("quota_counters_ends_idx").on(t.endsAt)],
);

/**
 * Prices an admin set (src/pricing): each overrides the shipped price of the same provider and
 * model. Micro-dollars per million tokens; null falls back as the proto Price says.
 */
export const prices = pgTable(
  "prices",
  {
    provider: text("provider").notNull(),
    model: text("model").notNull(),
    input: bigint("input", { mode: "number" }).notNull(),
    cachedInput: bigint("cached_input", { mode: "number" }),
    cacheWrite: bigint("cache_write", { mode: "number" }),
    output: bigint("output", { mode: "number" }).notNull(),
    audioInput: bigint("audio_input", { mode: "number" }),
    audioOutput: bigint("audio_output", { mode: "number" }),
    updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: "prices_pkey", columns: [t.provider, t.model] })],
);

export type PlanRow = typeof plans.$inferSelect;
export type NewPlanRow = typeof plans.$inferInsert;
export type QuotaCounterRow = typeof quotaCounters.$inferSelect;
export type PriceRow = typeof prices.$inferSelect;
