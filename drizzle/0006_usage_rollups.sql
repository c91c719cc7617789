CREATE TABLE "usage_calls" (
	"id" bigserial NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"bytes" bigint DEFAULT 0 NOT NULL,
	"token" integer NOT NULL,
	"subject" integer NOT NULL,
	"provider" integer NOT NULL,
	"model" integer NOT NULL,
	"key" integer NOT NULL,
	"prompt_tokens" integer DEFAULT 0 NOT NULL,
	"completion_tokens" integer DEFAULT 0 NOT NULL,
	"total_tokens" integer DEFAULT 0 NOT NULL,
	"latency_ms" integer DEFAULT 0 NOT NULL,
	"status" smallint NOT NULL,
	"outcome" smallint NOT NULL,
	"flags" smallint DEFAULT 0 NOT NULL,
	"attempts" text DEFAULT '' NOT NULL
);
--> statement-breakpoint
CREATE TABLE "usage_labels" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "usage_labels_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"value" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "usage_rollups" (
	"start" timestamp with time zone NOT NULL,
	"period" integer NOT NULL,
	"token" integer NOT NULL,
	"subject" integer NOT NULL,
	"provider" integer NOT NULL,
	"model" integer NOT NULL,
	"outcome" smallint NOT NULL,
	"calls" bigint DEFAULT 0 NOT NULL,
	"prompt_tokens" bigint DEFAULT 0 NOT NULL,
	"completion_tokens" bigint DEFAULT 0 NOT NULL,
	"total_tokens" bigint DEFAULT 0 NOT NULL,
	"bytes" bigint DEFAULT 0 NOT NULL,
	"http_errors" bigint DEFAULT 0 NOT NULL,
	"latency_ms" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "usage_rollups_pkey" PRIMARY KEY("start","period","token","subject","provider","model","outcome")
) WITH (fillfactor = 70);
--> statement-breakpoint
CREATE INDEX "usage_calls_at_brin" ON "usage_calls" USING brin ("at");--> statement-breakpoint
CREATE UNIQUE INDEX "usage_labels_value_idx" ON "usage_labels" USING btree ("value");--> statement-breakpoint
-- Issue 23 (written by hand): the calls recorded so far, moved to the compact table, and their
-- hourly and daily roll-ups; drizzle/0007 then replaces the old table with a view of the new one.
INSERT INTO "usage_labels" ("value")
	SELECT v FROM (
		SELECT '' AS v UNION SELECT "token_id" FROM "usage_events" UNION SELECT "subject" FROM "usage_events"
		UNION SELECT "provider" FROM "usage_events" UNION SELECT "model" FROM "usage_events" UNION SELECT "key_id" FROM "usage_events"
	) x ORDER BY v
	ON CONFLICT ("value") DO NOTHING;--> statement-breakpoint
INSERT INTO "usage_calls" ("id", "at", "bytes", "token", "subject", "provider", "model", "key", "prompt_tokens",
		"completion_tokens", "total_tokens", "latency_ms", "status", "outcome", "flags", "attempts")
	SELECT e."id", e."at", e."bytes", t."id", s."id", p."id", m."id", k."id", least(e."prompt_tokens", 2147483647)::integer,
		least(e."completion_tokens", 2147483647)::integer, least(e."total_tokens", 2147483647)::integer, e."latency_ms",
		e."status", e."outcome", e."flags", e."attempts"
	FROM "usage_events" e
	JOIN "usage_labels" t ON t."value" = e."token_id" JOIN "usage_labels" s ON s."value" = e."subject"
	JOIN "usage_labels" p ON p."value" = e."provider" JOIN "usage_labels" m ON m."value" = e."model"
	JOIN "usage_labels" k ON k."value" = e."key_id"
	ORDER BY e."id";--> statement-breakpoint
SELECT setval(pg_get_serial_sequence('"usage_calls"', 'id'), coalesce(max("id"), 0) + 1, false) FROM "usage_calls";--> statement-breakpoint
INSERT INTO "usage_rollups" ("start", "period", "token", "subject", "provider", "model", "outcome", "calls", "prompt_tokens",
		"completion_tokens", "total_tokens", "bytes", "http_errors", "latency_ms")
	SELECT to_timestamp(floor(extract(epoch FROM c."at") / w."period") * w."period"), w."period", c."token", c."subject",
		c."provider", c."model", c."outcome", count(*), sum(c."prompt_tokens"), sum(c."completion_tokens"), sum(c."total_tokens"),
		sum(c."bytes"), count(*) FILTER (WHERE c."status" >= 400), sum(c."latency_ms")
	FROM "usage_calls" c CROSS JOIN (VALUES (3600), (86400)) AS w("period")
	GROUP BY 1, 2, 3, 4, 5, 6, 7;
