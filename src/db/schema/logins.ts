/**
 * Logins (issue 24, "no backend" mode): trusted OIDC identity providers whose ID tokens are
 * relay credentials, each with the plan, provider, upstream credential and limits its users'
 * calls carry (src/logins). Response and file ownership (issue 25): which subject created an
 * object the provider stores, so another subject's token cannot read it.
 */
import { index, pgTable, text, timestamp } from "drizzle-orm/pg-core";

export const logins = pgTable("logins", {
  name: text("name").primaryKey(),
  issuer: text("issuer").notNull(),
  audience: text("audience").notNull(),
  jwksUrl: text("jwks_url").notNull(),
  subjectClaim: text("subject_claim").notNull().default("sub"),
  plan: text("plan").notNull(),
  provider: text("provider").notNull(),
  /** Inline upstream key, AES-256-GCM under the master key, bound to `login:<name>`. */
  upstreamKeyEnc: text("upstream_key_enc"),
  upstreamKeyHint: text("upstream_key_hint").notNull().default(""),
  pool: text("pool"),
  /** The token template's limits as sealed-token limit claims (JSON, src/tokens/token-limits.ts). */
  limits: text("limits").notNull().default("{}"),
  createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  disabledAt: timestamp("disabled_at", { withTimezone: true, mode: "date" }),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

/** `object` is `<provider>:<id>` (a response or file id); rows expire and are pruned. */
export const ownedObjects = pgTable(
  "owned_objects",
  {
    object: text("object").primaryKey(),
    subject: text("subject").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
  },
  (t) => [index("owned_objects_expires_idx").on(t.expiresAt)],
);

export type LoginRow = typeof logins.$inferSelect;
export type NewLoginRow = typeof logins.$inferInsert;
export type OwnedObjectRow = typeof ownedObjects.$inferSelect;
