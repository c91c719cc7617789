/**
 * The usage spill (issue 19, finding 2) against a fake database: what close() cannot write by its
 * deadline is spilled (0600, one row per line), replay writes it and deletes the file, skips
 * lines a crash left half written (logging where, never what), leaves a fresh claim of another
 * instance alone, takes over a stale one, and spills again what a failing database refused.
 * The real thing, SIGTERM with PostgreSQL stalled: test/drain.test.ts.
 */
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PgDialect } from "drizzle-orm/pg-core";
import type { SQL } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import { Outcome } from "../../gen/relayapi/v1/common_pb.js";
import type { Db } from "../db/client.js";
import type { UsageInsert } from "../db/queries/usage.js";
import { createLogger } from "../log.js";
import { replaySpilledUsage, spillUsage } from "./usage-spill.js";
import { UsageWriter } from "./usage-writer.js";
import { fakeLabels } from "../../test/support/fake-usage-labels.js";

const dialect = new PgDialect();
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), "relayapi-spill-"));
  dirs.push(d);
  return d;
};

/** A Db that keeps the token ids of inserted rows; `stall` never answers, `failures` throw first. */
function fakeDb(opts: { stall?: boolean; failures?: number } = {}) {
  const written: string[] = [];
  let failures = opts.failures ?? 0;
  const labels = fakeLabels();
  const db = {
    async execute(query: SQL) {
      const { sql: text, params } = dialect.sqlToQuery(query);
      const answer = labels.answer(text, params);
      if (answer !== undefined) return answer;
      if (opts.stall) return new Promise(() => {});
      if (failures-- > 0) throw new Error("connection lost");
      const rows = (JSON.parse(String(params[0])) as Record<string, number | string>[]).map(labels.row);
      written.push(...rows.map((r) => r.token_id));
      return [];
    },
  };
  return { db: db as unknown as Db, written };
}

const row = (i: number): UsageInsert => ({
  at: 1_700_000_000_000 + i,
  tokenId: `tok_${i}`,
  subject: "user-1",
  provider: "openai",
  model: "gpt-mock",
  keyId: "",
  status: 200,
  outcome: Outcome.COMPLETE,
  promptTokens: 10,
  completionTokens: i,
  totalTokens: 10 + i,
  bytes: 100,
  latencyMs: 5,
  flags: 0,
});

function logCapture() {
  const lines: string[] = [];
  return { log: createLogger("debug", (l) => lines.push(l)), lines };
}

describe("usage spill", () => {
  it("close() spills what it could not write by its deadline, the batch in flight included", async () => {
    const dir = tempDir();
    const { db } = fakeDb({ stall: true });
    const writer = new UsageWriter(db, { batchSize: 2, intervalMs: 10 });
    for (let i = 0; i < 5; i++)
      writer.record({
        tokenId: `tok_${i}`,
        subject: "",
        provider: "openai",
        model: "m",
        keyId: undefined,
        status: 200,
        outcome: Outcome.COMPLETE,
        usage: undefined,
        bytes: 1,
        latencyMs: 1,
      });
    await new Promise((r) => setTimeout(r, 30)); // the first batch is now stuck
    const started = Date.now();
    await writer.close({ deadline: started + 200, spillDir: dir });
    expect(Date.now() - started).toBeLessThan(400);
    expect(writer.spilled).toBe(5);
    expect(writer.dropped).toBe(0);
    const [file] = readdirSync(dir);
    expect(file).toMatch(/^usage-spill-\d+-\d+-\d+\.jsonl$/);
    expect(statSync(join(dir, file!)).mode & 0o777).toBe(0o600);
    const lines = readFileSync(join(dir, file!), "utf8").trimEnd().split("\n");
    expect(lines.map((l) => (JSON.parse(l) as UsageInsert).tokenId).sort()).toEqual(["tok_0", "tok_1", "tok_2", "tok_3", "tok_4"]);
  });

  it("replay writes every row, deletes the file, and skips half-written lines (logged by position only)", async () => {
    const dir = tempDir();
    const file = spillUsage(dir, [row(1), row(2), row(3)]);
    appendFileSync(file, '{"tokenId":"sk-not-logged","at":12\nnot json at all\n{"tokenId":"tok_x","at":-1}\n{"tokenId":"tok_cut","subj');
    const { db, written } = fakeDb();
    const { log, lines } = logCapture();
    expect(await replaySpilledUsage(dir, db, log)).toEqual({ files: 1, rows: 3, skipped: 4 });
    expect(written).toEqual(["tok_1", "tok_2", "tok_3"]);
    expect(readdirSync(dir)).toEqual([]);
    const logged = lines.join("\n");
    expect(logged).toContain('"msg":"usage spill line skipped"');
    expect(logged).not.toContain("sk-not-logged");
    expect(logged).not.toContain("tok_cut");
  });

  it("leaves a fresh claim of another instance alone and takes over a stale one", async () => {
    const dir = tempDir();
    const fresh = spillUsage(dir, [row(1)]);
    renameSync(fresh, `${fresh}.replaying-${Date.now()}`);
    const stale = spillUsage(dir, [row(2)]);
    renameSync(stale, `${stale}.replaying-${Date.now() - 120_000}`);
    const { db, written } = fakeDb();
    expect(await replaySpilledUsage(dir, db, logCapture().log)).toMatchObject({ files: 1, rows: 1 });
    expect(written).toEqual(["tok_2"]);
    expect(readdirSync(dir)).toHaveLength(1);
  });

  it("spills again what the database did not take, so nothing is lost or written twice", async () => {
    const dir = tempDir();
    spillUsage(
      dir,
      Array.from({ length: 3 }, (_, i) => row(i)),
    );
    const down = fakeDb({ failures: 1 });
    expect(await replaySpilledUsage(dir, down.db, logCapture().log)).toMatchObject({ rows: 0 });
    expect(down.written).toEqual([]);
    expect(readdirSync(dir)).toHaveLength(1);
    const up = fakeDb();
    expect(await replaySpilledUsage(dir, up.db, logCapture().log)).toMatchObject({ rows: 3 });
    expect(up.written).toEqual(["tok_0", "tok_1", "tok_2"]);
    expect(readdirSync(dir)).toEqual([]);
  });
});
