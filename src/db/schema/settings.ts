/**
 * Facts about the database itself, one row each: for example the master key's check value
 * (a MAC of a fixed string under the master key, never the key), which lets an instance started
 * with another master key refuse in plain words instead of failing on the first decryption.
 */
import { pgTable, text, timestamp } from "drizzle-orm/pg-core";

export const settings = pgTable("settings", {
  name: text("name").primaryKey(),
  value: text("value").notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

export type SettingRow = typeof settings.$inferSelect;
