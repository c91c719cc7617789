/**
 * Filler rows for the tokens table (`--token-rows`), inserted through the relay's own database
 * handle (so it works on PGlite too), in batches. Only the columns without defaults are set, so
 * new columns with defaults do not break it; the rows are valid-looking, unexpired issued tokens
 * that no client knows the secret of.
 */
import { sql } from "drizzle-orm";
import type { Db } from "../src/db/client.js";

const BATCH = 50_000;

export async function seedTokens(db: Db, rows: number): Promise<void> {
  const tag = Date.now().toString(36);
  for (let from = 1; from <= rows; from += BATCH) {
    const to = Math.min(rows, from + BATCH - 1);
    await db.execute(
      sql.raw(
        `insert into tokens (id, kind, secret_hash, provider, expires_at)
         select 'tok_seed_${tag}_' || g, 1, md5('${tag}' || g) || md5(g || '${tag}'), 'openai', now() + interval '1 day'
         from generate_series(${from}, ${to}) as g`,
      ),
    );
  }
}
