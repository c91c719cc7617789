CREATE TABLE "key_pools" (
	"name" text PRIMARY KEY NOT NULL,
	"provider" text NOT NULL,
	"strategy" smallint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "upstream_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"pool" text NOT NULL,
	"key_enc" text NOT NULL,
	"key_hash" text NOT NULL,
	"masked" text NOT NULL,
	"weight" integer DEFAULT 1 NOT NULL,
	"enabled" boolean DEFAULT true NOT NULL,
	"disabled_reason" text DEFAULT '' NOT NULL,
	"cooldown_until" timestamp with time zone,
	"last_used_at" timestamp with time zone,
	"calls" bigint DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "audit_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"target" text DEFAULT '' NOT NULL,
	"detail" text DEFAULT '' NOT NULL
);
--> statement-breakpoint
CREATE TABLE "usage_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"token_id" text NOT NULL,
	"subject" text DEFAULT '' NOT NULL,
	"provider" text NOT NULL,
	"model" text DEFAULT '' NOT NULL,
	"key_id" text DEFAULT '' NOT NULL,
	"status" smallint NOT NULL,
	"outcome" smallint NOT NULL,
	"prompt_tokens" bigint DEFAULT 0 NOT NULL,
	"completion_tokens" bigint DEFAULT 0 NOT NULL,
	"total_tokens" bigint DEFAULT 0 NOT NULL,
	"bytes" bigint DEFAULT 0 NOT NULL,
	"latency_ms" integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
ALTER TABLE "upstream_keys" ADD CONSTRAINT "upstream_keys_pool_key_pools_name_fk" FOREIGN KEY ("pool") REFERENCES "public"."key_pools"("name") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "upstream_keys_pool_hash_idx" ON "upstream_keys" USING btree ("pool","key_hash");--> statement-breakpoint
CREATE INDEX "upstream_keys_pool_idx" ON "upstream_keys" USING btree ("pool");--> statement-breakpoint
CREATE INDEX "audit_events_at_idx" ON "audit_events" USING btree ("at");--> statement-breakpoint
CREATE INDEX "usage_events_at_idx" ON "usage_events" USING btree ("at");--> statement-breakpoint
CREATE INDEX "usage_events_token_idx" ON "usage_events" USING btree ("token_id","at");