/** Flag parsing for the CLI on node:util parseArgs; misuse is a one-line UsageError. */
import { parseArgs, type ParseArgsConfig } from "node:util";

export class UsageError extends Error {
  override name = "UsageError";
}

type Options = NonNullable<ParseArgsConfig["options"]>;

export function parse<O extends Options>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.split("\n")[0] ?? "bad arguments");
  }
}

export function intFlag(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${name} must be a non-negative integer`);
  return n;
}

export function listFlag(raw: string | undefined): string[] {
  return raw ? raw.split(",").map((s) => s.trim()).filter(Boolean) : [];
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90s`, `10m`, `1h`, `7d` -> milliseconds. */
export function durationFlag(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const m = /^(\d+)([smhd])$/.exec(raw);
  if (!m) throw new UsageError(`--${name} must look like 90s, 10m, 1h or 7d`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}
