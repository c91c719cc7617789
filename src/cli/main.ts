/**
 * The `relayapi` command. `serve` and `migrate` run locally; the other commands are Connect
 * clients of a running relay (`--server`, `--admin-key`). Misuse prints one line and exits 2;
 * a failed call prints the server's message and exits 1.
 */
import { ConnectError } from "@connectrpc/connect";
import { ConfigError } from "../config.js";
import { UsageError } from "./args.js";
import { migrateCommand, serveCommand } from "./local-commands.js";
import { providerCommand } from "./provider-commands.js";
import { tokenCommand } from "./token-commands.js";

const HELP = `relayapi — a relay for LLM APIs with short-lived, limited tokens

Usage:
  relayapi serve [--host 127.0.0.1] [--port 8080] [--data-dir ./data] [--database-url URL]
  relayapi migrate [--data-dir DIR | --database-url URL]
  relayapi provider add <id> --base-url URL [--auth bearer|header:NAME|query:NAME] [--header K=V ...] [--shape openai|anthropic|gemini]
  relayapi provider list | rm <id>
  relayapi token issue --provider <id> --upstream-key <key> [--max-calls N] [--expires-in 1h] [--subject S]
                       [--models a,b] [--paths /v1/chat] [--origins https://app.example] [--json]
  relayapi token inspect <token> | list [--provider P] [--subject S] | get <id> | revoke <id>

Commands that act on a server take --server URL (default $RELAYAPI_SERVER or http://127.0.0.1:8080)
and --admin-key KEY (default $RELAYAPI_ADMIN_KEY).`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serveCommand(rest);
    case "migrate":
      return migrateCommand(rest);
    case "provider":
      return providerCommand(rest);
    case "token":
      return tokenCommand(rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(HELP);
      return;
    default:
      throw new UsageError(`unknown command "${command}" (see relayapi help)`);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof UsageError || e instanceof ConfigError) {
    console.error(`relayapi: ${e.message}`);
    process.exit(2);
  }
  if (e instanceof ConnectError) {
    console.error(`relayapi: ${e.rawMessage} (${e.code === undefined ? "error" : codeName(e.code)})`);
    process.exit(1);
  }
  console.error(`relayapi: ${(e as Error).message ?? String(e)}`);
  process.exit(1);
});

function codeName(code: number): string {
  return ["ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"][code] ?? String(code);
}
