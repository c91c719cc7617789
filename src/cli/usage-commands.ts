/**
 * `relayapi usage report|prune|storage` (issue 23): AdminService GetUsage (answered from the
 * roll-ups for whole hours and days, raw rows only for the recent edges), PruneUsage and
 * GetStorage. `relayapi usage --by plan --since 7d` (no subcommand) is the report (issue 24),
 * with the cost of each row: `cost_micro_usd` (an exact integer) and `cost_usd` (the same in
 * dollars, 6 decimals) in JSON and CSV, dollars in the table; `unpriced_calls` counts the calls
 * whose model had no price (their cost is unknown and not in the sum).
 */
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AdminService, UsageGroup } from "../../gen/relayapi/v1/admin_service_pb.js";
import { cliDefaults } from "../config.js";
import { durationFlag, parse, UsageError } from "./args.js";
import { serverClient } from "./client.js";

const FLAGS = {
  server: { type: "string" },
  "admin-key": { type: "string" },
  json: { type: "boolean" },
  csv: { type: "boolean" },
  since: { type: "string" },
  by: { type: "string" },
  bucket: { type: "string" },
  "older-than": { type: "string" },
  "dry-run": { type: "boolean" },
} as const;

const GROUPS: Record<string, UsageGroup> = {
  token: UsageGroup.TOKEN,
  subject: UsageGroup.SUBJECT,
  provider: UsageGroup.PROVIDER,
  model: UsageGroup.MODEL,
  plan: UsageGroup.PLAN,
};

const CSV_HEAD = [
  "bucket_start",
  "key",
  "calls",
  "prompt_tokens",
  "completion_tokens",
  "total_tokens",
  "errors",
  "cost_micro_usd",
  "cost_usd",
  "unpriced_calls",
] as const;
const CSV_FIELDS = [
  "bucketStart",
  "key",
  "calls",
  "promptTokens",
  "completionTokens",
  "totalTokens",
  "errors",
  "costMicroUsd",
  "costUsd",
  "unpricedCalls",
] as const;

export async function usageCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, FLAGS);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const defaults = cliDefaults();
  const client = serverClient(AdminService, { server: values.server ?? defaults.server, adminKey: values["admin-key"] ?? defaults.adminKey });
  switch (sub) {
    case "report": {
      const sinceMs = durationFlag("since", values.since) ?? 86_400_000;
      const bucketMs = durationFlag("bucket", values.bucket) ?? 0;
      const groupBy = values.by === undefined ? UsageGroup.UNSPECIFIED : GROUPS[values.by];
      if (groupBy === undefined) throw new UsageError("--by must be token, subject, plan, provider or model");
      if (values.json && values.csv) throw new UsageError("--json and --csv: pick one");
      const end = new Date();
      const res = await client.getUsage({
        start: timestampFromDate(new Date(end.getTime() - sinceMs)),
        end: timestampFromDate(end),
        groupBy,
        bucketSeconds: Math.round(bucketMs / 1000),
      });
      const rows = res.rows.map((r) => ({
        bucketStart: r.bucketStart ? timestampDate(r.bucketStart).toISOString() : "",
        key: r.key,
        calls: Number(r.calls),
        promptTokens: Number(r.usage?.promptTokens ?? 0),
        completionTokens: Number(r.usage?.completionTokens ?? 0),
        totalTokens: Number(r.usage?.totalTokens ?? 0),
        errors: Number(r.errors),
        costMicroUsd: Number(r.costMicroUsd),
        costUsd: usd6(r.costMicroUsd),
        unpricedCalls: Number(r.unpricedCalls),
      }));
      if (values.json) {
        console.log(JSON.stringify(rows));
        return;
      }
      if (values.csv) {
        console.log(CSV_HEAD.join(","));
        for (const r of rows) console.log(CSV_FIELDS.map((f) => csvCell(String(r[f]))).join(","));
        return;
      }
      console.log(
        `${"bucket".padEnd(24)} ${"key".padEnd(28)} ${"calls".padStart(10)} ${"prompt".padStart(12)} ${"completion".padStart(12)} ${"errors".padStart(8)} ${"cost $".padStart(14)} ${"unpriced".padStart(8)}`,
      );
      for (const r of rows) {
        console.log(
          `${r.bucketStart.padEnd(24)} ${(r.key || "-").padEnd(28)} ${String(r.calls).padStart(10)} ${String(r.promptTokens).padStart(12)} ${String(r.completionTokens).padStart(12)} ${String(r.errors).padStart(8)} ${r.costUsd.padStart(14)} ${String(r.unpricedCalls).padStart(8)}`,
        );
      }
      return;
    }
    case "prune": {
      const olderThanMs = durationFlag("older-than", values["older-than"]);
      if (olderThanMs === 0) throw new UsageError("--older-than must be more than 0");
      const dryRun = values["dry-run"] ?? false;
      const res = await client.pruneUsage({ olderThanSeconds: BigInt(Math.round((olderThanMs ?? 0) / 1000)), dryRun });
      const out = {
        ran: res.ran,
        dryRun,
        rawCutoff: res.rawCutoff ? timestampDate(res.rawCutoff).toISOString() : null,
        rawRows: Number(res.rawRows),
        rollupRows: Number(res.rollupRows),
        auditRows: Number(res.auditRows),
      };
      if (values.json) console.log(JSON.stringify(out));
      else if (!out.ran) console.log("another instance is pruning now; nothing done");
      else {
        const verb = dryRun ? "would delete" : "deleted";
        console.log(
          `${verb} ${out.rawRows} raw usage rows${out.rawCutoff ? ` (before ${out.rawCutoff})` : " (kept forever)"}, ${out.rollupRows} roll-ups, ${out.auditRows} audit events`,
        );
      }
      return;
    }
    case "storage": {
      const res = await client.getStorage({});
      const tables = res.tables.map((t) => ({ table: t.table, bytes: Number(t.bytes), rows: Number(t.rows) }));
      if (values.json) {
        console.log(JSON.stringify({ databaseBytes: Number(res.databaseBytes), tables, diskUsed: res.diskUsed, retentionDays: res.retentionDays }));
        return;
      }
      const [raw, rollups, audit] = res.retentionDays.map((d) => (d === 0 ? "forever" : `${d} days`));
      console.log(`database ${mb(Number(res.databaseBytes))}${res.diskUsed > 0 ? `, disk ${(res.diskUsed * 100).toFixed(1)}% used` : ""}`);
      for (const t of tables) console.log(`  ${t.table.padEnd(20)} ${mb(t.bytes).padStart(10)} ~${t.rows} rows`);
      console.log(`retention: raw rows ${raw}, roll-ups ${rollups}, audit ${audit}`);
      return;
    }
    default:
      throw new UsageError("usage: relayapi usage report|prune|storage");
  }
}

function mb(bytes: number): string {
  return `${(bytes / 1_048_576).toFixed(1)} MB`;
}

/** 28050 -> "0.028050": exact, on the digits. */
function usd6(micro: bigint): string {
  const sign = micro < 0n ? "-" : "";
  const abs = micro < 0n ? -micro : micro;
  return `${sign}${abs / 1_000_000n}.${(abs % 1_000_000n).toString().padStart(6, "0")}`;
}

/**
 * One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break. A key starting
 * with = + - @ (a subject is the issuer's text) gets a leading `'`, so a spreadsheet opening
 * the file shows it instead of running it as a formula.
 */
function csvCell(v: string): string {
  const safe = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}
