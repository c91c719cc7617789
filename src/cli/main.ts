/**
 * The `relayapi` command. `serve` and `migrate` run locally; the other commands are Connect
 * clients of a running relay (`--server`, `--admin-key`). Misuse prints one line and exits 2;
 * a failed call prints the server's message and exits 1. A `serve` that fails to start with
 * stderr not a terminal writes a JSON `fatal` line before its `relayapi: ...` line.
 */
import { readFileSync } from "node:fs";
import { ConfigError } from "../config.js";
import { UsageError } from "./args.js";
import { didYouMean } from "./did-you-mean.js";
import { COMMANDS, DEFAULT_SUBCOMMAND, helpText, subcommands } from "./help.js";

/** `--help` and `--version` anywhere before `--`, answered before any command module runs. */
function wantsHelp(argv: string[]): boolean {
  const end = argv.indexOf("--");
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === "--help" || a === "-h");
}

function version(): string {
  // ../../package.json from src/cli/main.ts and from the bundle in dist/server alike.
  return (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
}

/** Refuses an unknown command or subcommand, with the closest known one. */
function checkCommand(command: string, sub: string | undefined, helping = false): void {
  if (!(command in COMMANDS)) {
    const guess = didYouMean(command, Object.keys(COMMANDS));
    throw new UsageError(`unknown command "${command}"${guess ? `; did you mean "${guess}"?` : ""}`);
  }
  const subs = subcommands(command);
  if (subs === undefined || (sub !== undefined && subs.includes(sub))) return;
  if (helping && sub === undefined) return;
  if (sub === undefined || sub.startsWith("-")) throw new UsageError(`usage: relayapi ${command} ${subs.join("|")}`);
  const guess = didYouMean(sub, subs);
  throw new UsageError(
    `unknown command "${command} ${sub}"; usage: relayapi ${command} ${subs.join("|")}${guess ? `; did you mean "${command} ${guess}"?` : ""}`,
  );
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === "--version" || command === "-V" || command === "version") {
    console.log(version());
    return;
  }
  if (command === undefined || command === "help" || wantsHelp(argv)) {
    const [c, s] = command === "help" ? rest : argv;
    const positional = (a: string | undefined) => (a === undefined || a.startsWith("-") ? undefined : a);
    const named = positional(c);
    if (named !== undefined) checkCommand(named, subcommands(named) ? positional(s) : undefined, true);
    console.log(helpText(named, subcommands(named ?? "") ? positional(s) : undefined));
    return;
  }
  // A group's default subcommand when only flags follow (`relayapi usage --by plan`).
  const fallback = DEFAULT_SUBCOMMAND[command];
  if (fallback !== undefined && (rest[0] === undefined || rest[0].startsWith("-"))) rest.unshift(fallback);
  checkCommand(command, rest[0]);
  switch (command) {
    // Every command's module is loaded on demand. `serve` and `migrate` pull in the whole relay,
    // which the client commands do not need (a client command starts in about half the time);
    // the client commands pull in Connect's client and the generated services, which the
    // primary of `serve --workers` does not need (it only forks and supervises).
    case "serve":
      return (await import("./local-commands.js")).serveCommand(rest);
    case "migrate":
      return (await import("./local-commands.js")).migrateCommand(rest);
    case "provider":
      return (await import("./provider-commands.js")).providerCommand(rest);
    case "token":
      return (await import("./token-commands.js")).tokenCommand(rest);
    case "issuer":
      return (await import("./issuer-commands.js")).issuerCommand(rest);
    case "pubkey":
      return (await import("./issuer-commands.js")).pubkeyCommand(rest);
    case "rai":
      return (await import("./rai-import.js")).raiCommand(rest);
    case "pool":
      return (await import("./pool-commands.js")).poolCommand(rest);
    case "keys":
      return (await import("./pool-commands.js")).keysCommand(rest);
    case "plan":
      return (await import("./plan-commands.js")).planCommand(rest);
    case "login":
      return (await import("./login-commands.js")).loginCommand(rest);
    case "price":
      return (await import("./price-commands.js")).priceCommand(rest);
    case "usage":
      return (await import("./usage-commands.js")).usageCommand(rest);
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).catch(async (e: unknown) => {
  // `serve` writing to a pipe or a file (a container, systemd, a log shipper): the failure is
  // also a JSON line like every other line it wrote, so a collector parsing them keeps it;
  // the human line follows for whoever reads the stream. On a terminal, the human line only.
  if (process.argv[2] === "serve" && !process.stderr.isTTY) {
    // Loaded here: client commands start without pino.
    const { fatalLine } = await import("../log.js");
    process.stderr.write(fatalLine("relay failed to start", e));
  }
  if (e instanceof UsageError || e instanceof ConfigError) {
    console.error(`relayapi: ${e.message}${e instanceof UsageError ? helpPointer(e.message) : ""}`);
    process.exit(2);
  }
  // Loaded here: a failed call has loaded it already; `serve` and `help` do not need it.
  const { ConnectError } = await import("@connectrpc/connect");
  const { explain } = await import("./client.js");
  if (e instanceof ConnectError) {
    console.error(`relayapi: ${explain(e)} (${e.code === undefined ? "error" : codeName(e.code)})`);
    process.exit(1);
  }
  console.error(`relayapi: ${(e as Error).message ?? String(e)}`);
  process.exit(1);
});

function codeName(code: number): string {
  return (
    [
      "ok",
      "canceled",
      "unknown",
      "invalid_argument",
      "deadline_exceeded",
      "not_found",
      "already_exists",
      "permission_denied",
      "resource_exhausted",
      "failed_precondition",
      "aborted",
      "out_of_range",
      "unimplemented",
      "internal",
      "unavailable",
      "data_loss",
      "unauthenticated",
    ][code] ?? String(code)
  );
}

/** ` (see relayapi token issue --help)`: the help of the command the user was typing. */
function helpPointer(message: string): string {
  if (message.includes("--help")) return "";
  const [command, sub] = process.argv.slice(2);
  if (command === undefined || !(command in COMMANDS)) return " (see relayapi --help)";
  const subs = subcommands(command);
  return ` (see relayapi ${command}${subs && sub !== undefined && subs.includes(sub) ? ` ${sub}` : ""} --help)`;
}
