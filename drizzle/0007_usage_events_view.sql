DROP TABLE "usage_events" CASCADE;--> statement-breakpoint
-- Written by hand (issue 23): the old table's columns, read from the compact one.
CREATE VIEW "usage_events" AS
	SELECT c."id", c."at", t."value" AS "token_id", s."value" AS "subject", p."value" AS "provider", m."value" AS "model",
		k."value" AS "key_id", c."status", c."outcome", c."prompt_tokens"::bigint AS "prompt_tokens",
		c."completion_tokens"::bigint AS "completion_tokens", c."total_tokens"::bigint AS "total_tokens", c."bytes",
		c."latency_ms", c."attempts", c."flags"
	FROM "usage_calls" c
	JOIN "usage_labels" t ON t."id" = c."token" JOIN "usage_labels" s ON s."id" = c."subject"
	JOIN "usage_labels" p ON p."id" = c."provider" JOIN "usage_labels" m ON m."id" = c."model"
	JOIN "usage_labels" k ON k."id" = c."key";
