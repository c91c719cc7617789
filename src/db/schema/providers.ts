/** The `providers` table: custom providers added by admins (built-ins live in code). */
import { jsonb, pgTable, smallint, text, timestamp } from "drizzle-orm/pg-core";

export const providers = pgTable("providers", {
  id: text("id").primaryKey(),
  baseUrl: text("base_url").notNull(),
  /** AuthStyle: 1 bearer, 2 header, 3 query. */
  authStyle: smallint("auth_style").notNull(),
  authName: text("auth_name").notNull().default(""),
  defaultHeaders: jsonb("default_headers").$type<Record<string, string>>().notNull().default({}),
  /** ApiShape: 1 openai, 2 anthropic, 3 gemini. */
  shape: smallint("shape").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

export type ProviderRow = typeof providers.$inferSelect;
