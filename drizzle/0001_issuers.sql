CREATE TABLE "issuer_keys" (
	"kid" text PRIMARY KEY NOT NULL,
	"issuer" text NOT NULL,
	"secret_enc" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"disabled_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "issuers" (
	"name" text PRIMARY KEY NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"disabled_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "relay_keys" (
	"kid" text PRIMARY KEY NOT NULL,
	"private_enc" text NOT NULL,
	"public_jwk" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "issuer_keys" ADD CONSTRAINT "issuer_keys_issuer_issuers_name_fk" FOREIGN KEY ("issuer") REFERENCES "public"."issuers"("name") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "issuer_keys_issuer_idx" ON "issuer_keys" USING btree ("issuer");