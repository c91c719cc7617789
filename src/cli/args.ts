/** Flag parsing for the CLI on node:util parseArgs; misuse is a one-line UsageError. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { didYouMean } from "./did-you-mean.js";

export class UsageError extends Error {
  override name = "UsageError";
}

type Options = NonNullable<ParseArgsConfig["options"]>;

export function parse<O extends Options>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    // Node's own text names the option but suggests `--` and positionals: ours names the
    // closest known flag instead (main.ts adds the pointer to the command's --help).
    const message = (e as Error).message;
    const unknown = /^Unknown option '(-{1,2}[^']*)'/.exec(message)?.[1];
    if (unknown !== undefined) {
      const guess = didYouMean(unknown.replace(/^-+/, ""), Object.keys(options));
      throw new UsageError(`unknown flag ${unknown}${guess ? `; did you mean --${guess}?` : ""}`);
    }
    throw new UsageError(message.split("\n")[0]?.replace(/\. To specify a positional.*$/, "") ?? "bad arguments");
  }
}

export function intFlag(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${name} must be a non-negative integer`);
  return n;
}

export function listFlag(raw: string | undefined): string[] {
  return raw
    ? raw
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90s`, `10m`, `1h`, `7d` -> milliseconds. */
export function durationFlag(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const m = /^(\d+)([smhd])$/.exec(raw);
  if (!m) throw new UsageError(`--${name} must look like 90s, 10m, 1h or 7d`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}
