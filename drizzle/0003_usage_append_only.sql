DROP INDEX "usage_events_at_idx";--> statement-breakpoint
DROP INDEX "usage_events_token_idx";--> statement-breakpoint
-- drizzle-kit cannot name a primary key it drops; PostgreSQL named it when 0002 created the table.
ALTER TABLE "usage_events" DROP CONSTRAINT "usage_events_pkey";--> statement-breakpoint
CREATE INDEX "usage_events_at_brin" ON "usage_events" USING brin ("at");
