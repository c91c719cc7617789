/** The `tokens` table: one row per token, issued or sealed; the single source of call counts. */
import { sql } from "drizzle-orm";
import { bigint, boolean, index, integer, pgTable, smallint, text, timestamp } from "drizzle-orm/pg-core";

export const tokens = pgTable(
  "tokens",
  {
    /** Public id (`tok_...` for issued tokens). */
    id: text("id").primaryKey(),
    /** 1 = issued, 2 = sealed (TokenKind). */
    kind: smallint("kind").notNull(),
    /** SHA-256 (hex) of an issued token's secret; null for sealed tokens. */
    secretHash: text("secret_hash").unique(),
    provider: text("provider").notNull(),
    subject: text("subject").notNull().default(""),
    /** Inline upstream key, AES-256-GCM under the master key (src/keys/crypto.ts). */
    upstreamKeyEnc: text("upstream_key_enc"),
    upstreamKeyHint: text("upstream_key_hint").notNull().default(""),
    pool: text("pool"),
    /** null = no cap. */
    maxCalls: bigint("max_calls", { mode: "number" }),
    used: bigint("used", { mode: "number" }).notNull().default(0),
    tokensUsed: bigint("tokens_used", { mode: "number" }).notNull().default(0),
    models: text("models").array().notNull().default(sql`'{}'::text[]`),
    paths: text("paths").array().notNull().default(sql`'{}'::text[]`),
    origins: text("origins").array().notNull().default(sql`'{}'::text[]`),
    rpm: integer("rpm"),
    maxOutputTokens: integer("max_output_tokens"),
    maxN: integer("max_n"),
    toolsAllowed: boolean("tools_allowed").notNull().default(false),
    maxBodyBytes: bigint("max_body_bytes", { mode: "number" }),
    budgetTokens: bigint("budget_tokens", { mode: "number" }),
    /** Longest Realtime session in seconds (issue 25); null: the plan's or the relay's. */
    maxSessionSeconds: integer("max_session_seconds"),
    /** Budget in micro-dollars (issue 24); null: none. */
    budgetMicroUsd: bigint("budget_micro_usd", { mode: "number" }),
    /** Cost metered so far plus the reservations of calls in flight, in micro-dollars. */
    microUsdUsed: bigint("micro_usd_used", { mode: "number" }).notNull().default(0),
    /** The plan whose per-subject quotas the token's calls count against (src/plans); null: none. */
    plan: text("plan"),
    bindJkt: text("bind_jkt"),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
    /** Millisecond precision, so page cursors (milliseconds) compare exactly. */
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date", precision: 3 }).notNull().defaultNow(),
    revokedAt: timestamp("revoked_at", { withTimezone: true, mode: "date" }),
    lastUsedAt: timestamp("last_used_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [
    index("tokens_created_idx").on(t.createdAt.desc(), t.id.desc()),
    index("tokens_provider_subject_idx").on(t.provider, t.subject),
    // DeletePlan counts the tokens naming a plan.
    index("tokens_plan_idx").on(t.plan).where(sql`${t.plan} is not null`),
    // Every instance asks for recent revocations twice a second: without this (small, partial)
    // index that was a scan of the whole table, ~200 ms of PGlite CPU per poll at 1M tokens.
    index("tokens_revoked_idx").on(t.revokedAt).where(sql`${t.revokedAt} is not null`),
  ],
);

export type TokenRow = typeof tokens.$inferSelect;
export type NewTokenRow = typeof tokens.$inferInsert;
