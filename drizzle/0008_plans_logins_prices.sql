CREATE TABLE "plans" (
	"name" text PRIMARY KEY NOT NULL,
	"calls_per_day" bigint,
	"calls_per_month" bigint,
	"tokens_per_day" bigint,
	"tokens_per_month" bigint,
	"micro_usd_per_day" bigint,
	"micro_usd_per_month" bigint,
	"rpm" integer,
	"models" text[] DEFAULT '{}'::text[] NOT NULL,
	"max_session_seconds" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "prices" (
	"provider" text NOT NULL,
	"model" text NOT NULL,
	"input" bigint NOT NULL,
	"cached_input" bigint,
	"cache_write" bigint,
	"output" bigint NOT NULL,
	"audio_input" bigint,
	"audio_output" bigint,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "prices_pkey" PRIMARY KEY("provider","model")
);
--> statement-breakpoint
CREATE TABLE "quota_counters" (
	"subject" text NOT NULL,
	"window" text NOT NULL,
	"calls" bigint DEFAULT 0 NOT NULL,
	"llm_tokens" bigint DEFAULT 0 NOT NULL,
	"micro_usd" bigint DEFAULT 0 NOT NULL,
	"ends_at" timestamp with time zone NOT NULL,
	CONSTRAINT "quota_counters_pkey" PRIMARY KEY("subject","window")
);
--> statement-breakpoint
CREATE TABLE "logins" (
	"name" text PRIMARY KEY NOT NULL,
	"issuer" text NOT NULL,
	"audience" text NOT NULL,
	"jwks_url" text NOT NULL,
	"subject_claim" text DEFAULT 'sub' NOT NULL,
	"plan" text NOT NULL,
	"provider" text NOT NULL,
	"upstream_key_enc" text,
	"upstream_key_hint" text DEFAULT '' NOT NULL,
	"pool" text,
	"limits" text DEFAULT '{}' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"disabled_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "owned_objects" (
	"object" text PRIMARY KEY NOT NULL,
	"subject" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "tokens" ADD COLUMN "max_session_seconds" integer;--> statement-breakpoint
ALTER TABLE "tokens" ADD COLUMN "budget_micro_usd" bigint;--> statement-breakpoint
ALTER TABLE "tokens" ADD COLUMN "micro_usd_used" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "tokens" ADD COLUMN "plan" text;--> statement-breakpoint
ALTER TABLE "usage_calls" ADD COLUMN "plan" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_calls" ADD COLUMN "cached_tokens" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_calls" ADD COLUMN "reasoning_tokens" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_calls" ADD COLUMN "cost_micro_usd" bigint;--> statement-breakpoint
ALTER TABLE "usage_rollups" ADD COLUMN "plan" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_rollups" ADD COLUMN "cost_micro_usd" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_rollups" ADD COLUMN "unpriced_calls" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX "quota_counters_ends_idx" ON "quota_counters" USING btree ("ends_at");--> statement-breakpoint
CREATE INDEX "owned_objects_expires_idx" ON "owned_objects" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "tokens_plan_idx" ON "tokens" USING btree ("plan") WHERE "tokens"."plan" is not null;--> statement-breakpoint
ALTER TABLE "usage_rollups" DROP CONSTRAINT "usage_rollups_pkey";
--> statement-breakpoint
ALTER TABLE "usage_rollups" ADD CONSTRAINT "usage_rollups_pkey" PRIMARY KEY("start","period","token","subject","provider","model","plan","outcome");--> statement-breakpoint
-- Written by hand (issue 24): the view gains the plan, cached and reasoning tokens and the cost.
DROP VIEW "usage_events";--> statement-breakpoint
CREATE VIEW "usage_events" AS
	SELECT c."id", c."at", t."value" AS "token_id", s."value" AS "subject", p."value" AS "provider", m."value" AS "model",
		k."value" AS "key_id", c."status", c."outcome", c."prompt_tokens"::bigint AS "prompt_tokens",
		c."completion_tokens"::bigint AS "completion_tokens", c."total_tokens"::bigint AS "total_tokens", c."bytes",
		c."latency_ms", c."attempts", c."flags", coalesce(pl."value", '') AS "plan",
		c."cached_tokens"::bigint AS "cached_tokens", c."reasoning_tokens"::bigint AS "reasoning_tokens", c."cost_micro_usd"
	FROM "usage_calls" c
	JOIN "usage_labels" t ON t."id" = c."token" JOIN "usage_labels" s ON s."id" = c."subject"
	JOIN "usage_labels" p ON p."id" = c."provider" JOIN "usage_labels" m ON m."id" = c."model"
	JOIN "usage_labels" k ON k."id" = c."key" LEFT JOIN "usage_labels" pl ON pl."id" = c."plan";
