/**
 * Key pools (DESIGN 8): server-held upstream keys for one provider, picked per call by the
 * pool's strategy. Keys are stored only encrypted (bound to their id) with a SHA-256 for
 * de-duplication and a masked form for display.
 */
import { bigint, boolean, index, integer, pgTable, smallint, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";

export const keyPools = pgTable("key_pools", {
  name: text("name").primaryKey(),
  provider: text("provider").notNull(),
  /** PoolStrategy: 1 round robin, 2 weighted, 3 least recently used. */
  strategy: smallint("strategy").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

export const upstreamKeys = pgTable(
  "upstream_keys",
  {
    id: text("id").primaryKey(),
    pool: text("pool")
      .notNull()
      .references(() => keyPools.name, { onDelete: "cascade" }),
    keyEnc: text("key_enc").notNull(),
    /** SHA-256 (hex) of the key: duplicates are refused per pool without decrypting anything. */
    keyHash: text("key_hash").notNull(),
    masked: text("masked").notNull(),
    weight: integer("weight").notNull().default(1),
    enabled: boolean("enabled").notNull().default(true),
    disabledReason: text("disabled_reason").notNull().default(""),
    /**
     * Answers that proved the key bad (401, a provider's "invalid key" body) since its last
     * success: the key is disabled only once these reach a threshold, never from one call.
     */
    authStrikes: integer("auth_strikes").notNull().default(0),
    cooldownUntil: timestamp("cooldown_until", { withTimezone: true, mode: "date" }),
    lastUsedAt: timestamp("last_used_at", { withTimezone: true, mode: "date" }),
    calls: bigint("calls", { mode: "number" }).notNull().default(0),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex("upstream_keys_pool_hash_idx").on(t.pool, t.keyHash), index("upstream_keys_pool_idx").on(t.pool)],
);

export type KeyPoolRow = typeof keyPools.$inferSelect;
export type UpstreamKeyRow = typeof upstreamKeys.$inferSelect;
