/**
 * Issuers mint sealed tokens offline (DESIGN 3.2). Each has one or more symmetric keys, named
 * by `kid`; several stay active during a rotation. Secrets are stored only encrypted.
 * `relay_keys` holds the relay's own X25519 key pair for ECDH-ES sealed tokens, shared by
 * every instance through the database.
 */
import { index, jsonb, pgTable, text, timestamp } from "drizzle-orm/pg-core";

export const issuers = pgTable("issuers", {
  name: text("name").primaryKey(),
  createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  disabledAt: timestamp("disabled_at", { withTimezone: true, mode: "date" }),
});

export const issuerKeys = pgTable(
  "issuer_keys",
  {
    kid: text("kid").primaryKey(),
    issuer: text("issuer")
      .notNull()
      .references(() => issuers.name, { onDelete: "cascade" }),
    /** The 256-bit key, AES-256-GCM under the master key, bound to the kid. */
    secretEnc: text("secret_enc").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    disabledAt: timestamp("disabled_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [index("issuer_keys_issuer_idx").on(t.issuer)],
);

export const relayKeys = pgTable("relay_keys", {
  kid: text("kid").primaryKey(),
  /** Private JWK (JSON), AES-256-GCM under the master key, bound to the kid. */
  privateEnc: text("private_enc").notNull(),
  publicJwk: jsonb("public_jwk").$type<Record<string, unknown>>().notNull(),
  createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

export type IssuerRow = typeof issuers.$inferSelect;
export type IssuerKeyRow = typeof issuerKeys.$inferSelect;
export type RelayKeyRow = typeof relayKeys.$inferSelect;
