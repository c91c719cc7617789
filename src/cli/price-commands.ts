/**
 * `relayapi price set|list|delete` (issue 24): AdminService SetPrice, ListPrices, DeletePrice.
 * Prices are typed in dollars per million tokens, as the providers' price pages show them
 * (`--input 2.50`), and converted to micro-dollars on the decimal digits, never through a float
 * (src/plans/micro-usd.ts); more than 6 decimals is refused rather than rounded.
 */
import { AdminService, type Price } from "../../gen/relayapi/v1/admin_service_pb.js";
import { cliDefaults } from "../config.js";
import { microToUsd, usdToMicro } from "../plans/micro-usd.js";
import { parse, UsageError } from "./args.js";
import { serverClient } from "./client.js";

const FLAGS = {
  server: { type: "string" },
  "admin-key": { type: "string" },
  json: { type: "boolean" },
  provider: { type: "string" },
  input: { type: "string" },
  output: { type: "string" },
  "cached-input": { type: "string" },
  "cache-write": { type: "string" },
  "audio-input": { type: "string" },
  "audio-output": { type: "string" },
} as const;

/** `--input 2.50` -> 2500000 micro-dollars per million tokens; undefined when the flag is absent. */
function dollarsFlag(name: string, raw: string | undefined): bigint | undefined {
  if (raw === undefined) return undefined;
  const micro = usdToMicro(raw);
  if (micro === undefined) throw new UsageError(`--${name} must be dollars per million tokens, at most 6 decimals (e.g. 2.50)`);
  return BigInt(micro);
}

export async function priceCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parse(rest, FLAGS);
  const defaults = cliDefaults();
  const client = serverClient(AdminService, { server: values.server ?? defaults.server, adminKey: values["admin-key"] ?? defaults.adminKey });
  switch (sub) {
    case "set": {
      const [provider, model] = positionals;
      if (!provider || !model || positionals.length > 2) throw new UsageError("usage: relayapi price set <provider> <model> --input X --output Y");
      const input = dollarsFlag("input", values.input);
      const output = dollarsFlag("output", values.output);
      if (input === undefined || output === undefined) throw new UsageError("--input and --output are required (dollars per million tokens)");
      const res = await client.setPrice({
        price: {
          provider,
          model,
          input,
          output,
          cachedInput: dollarsFlag("cached-input", values["cached-input"]),
          cacheWrite: dollarsFlag("cache-write", values["cache-write"]),
          audioInput: dollarsFlag("audio-input", values["audio-input"]),
          audioOutput: dollarsFlag("audio-output", values["audio-output"]),
        },
      });
      const p = res.price!;
      console.log(values.json ? JSON.stringify(priceJson(p)) : `price of ${p.provider} ${p.model} set: ${describe(p)} per million tokens`);
      return;
    }
    case "list": {
      if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
      const res = await client.listPrices({ provider: values.provider ?? "" });
      if (values.json) {
        console.log(JSON.stringify(res.prices.map(priceJson)));
        return;
      }
      const head = ["provider", "model", "input", "cached", "cache write", "output", "audio in", "audio out", "source", "as of"];
      const rows = res.prices.map((p) => [
        p.provider,
        p.model,
        usd(p.input),
        usd(p.cachedInput),
        usd(p.cacheWrite),
        usd(p.output),
        usd(p.audioInput),
        usd(p.audioOutput),
        p.source,
        p.asOf,
      ]);
      console.log("dollars per million tokens (-: the input or output price applies)");
      printTable(head, rows);
      return;
    }
    case "delete": {
      const [provider, model] = positionals;
      if (!provider || !model || positionals.length > 2) throw new UsageError("usage: relayapi price delete <provider> <model>");
      await client.deletePrice({ provider, model });
      console.log(`admin price of ${provider} ${model} deleted`);
      return;
    }
    default:
      throw new UsageError("usage: relayapi price set|list|delete");
  }
}

/** JSON output: micro-dollars per million tokens as integers; null where the input or output price applies. */
function priceJson(p: Price): Record<string, unknown> {
  const n = (v: bigint | undefined): number | null => (v === undefined ? null : Number(v));
  return {
    provider: p.provider,
    model: p.model,
    input: Number(p.input),
    cachedInput: n(p.cachedInput),
    cacheWrite: n(p.cacheWrite),
    output: Number(p.output),
    audioInput: n(p.audioInput),
    audioOutput: n(p.audioOutput),
    source: p.source,
    asOf: p.asOf,
  };
}

function usd(micro: bigint | undefined): string {
  return micro === undefined ? "-" : microToUsd(micro);
}

function describe(p: Price): string {
  const parts = [`input $${usd(p.input)}`, `output $${usd(p.output)}`];
  if (p.cachedInput !== undefined) parts.push(`cached input $${usd(p.cachedInput)}`);
  if (p.cacheWrite !== undefined) parts.push(`cache write $${usd(p.cacheWrite)}`);
  if (p.audioInput !== undefined) parts.push(`audio input $${usd(p.audioInput)}`);
  if (p.audioOutput !== undefined) parts.push(`audio output $${usd(p.audioOutput)}`);
  return parts.join(", ");
}

function printTable(head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i >= 2 && i <= 7 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  console.log(line(head));
  for (const r of rows) console.log(line(r));
}
