CREATE TABLE "tokens" (
	"id" text PRIMARY KEY NOT NULL,
	"kind" smallint NOT NULL,
	"secret_hash" text,
	"provider" text NOT NULL,
	"subject" text DEFAULT '' NOT NULL,
	"upstream_key_enc" text,
	"upstream_key_hint" text DEFAULT '' NOT NULL,
	"pool" text,
	"max_calls" bigint,
	"used" bigint DEFAULT 0 NOT NULL,
	"tokens_used" bigint DEFAULT 0 NOT NULL,
	"models" text[] DEFAULT '{}'::text[] NOT NULL,
	"paths" text[] DEFAULT '{}'::text[] NOT NULL,
	"origins" text[] DEFAULT '{}'::text[] NOT NULL,
	"rpm" integer,
	"max_output_tokens" integer,
	"max_n" integer,
	"tools_allowed" boolean DEFAULT false NOT NULL,
	"max_body_bytes" bigint,
	"budget_tokens" bigint,
	"bind_jkt" text,
	"expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone,
	"last_used_at" timestamp with time zone,
	CONSTRAINT "tokens_secret_hash_unique" UNIQUE("secret_hash")
);
--> statement-breakpoint
CREATE TABLE "providers" (
	"id" text PRIMARY KEY NOT NULL,
	"base_url" text NOT NULL,
	"auth_style" smallint NOT NULL,
	"auth_name" text DEFAULT '' NOT NULL,
	"default_headers" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"shape" smallint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "tokens_created_idx" ON "tokens" USING btree ("created_at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "tokens_provider_subject_idx" ON "tokens" USING btree ("provider","subject");