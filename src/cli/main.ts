/**
 * The `relayapi` command. `serve` and `migrate` run locally; the other commands are Connect
 * clients of a running relay (`--server`, `--admin-key`). Misuse prints one line and exits 2;
 * a failed call prints the server's message and exits 1. A `serve` that fails to start with
 * stderr not a terminal writes a JSON `fatal` line before its `relayapi: ...` line.
 */
import { ConnectError } from "@connectrpc/connect";
import { ConfigError } from "../config.js";
import { UsageError } from "./args.js";
import { issuerCommand, pubkeyCommand } from "./issuer-commands.js";
import { keysCommand, poolCommand } from "./pool-commands.js";
import { providerCommand } from "./provider-commands.js";
import { raiCommand } from "./rai-import.js";
import { tokenCommand } from "./token-commands.js";

const HELP = `relayapi — a relay for LLM APIs with short-lived, limited tokens

Usage:
  relayapi serve [--config FILE] [--host 127.0.0.1] [--port 8080] [--data-dir ./data] [--database-url URL]
                 [--log-level info] [--redis-url URL] [--trust-proxy IP,CIDR] [--ip-rpm N] [--print-config]
                 [--no-auto-migrate]   (start only; refuses when migrations are missing: run relayapi migrate)
  relayapi migrate [--config FILE] [--data-dir DIR | --database-url URL]
  relayapi provider add <id> --base-url URL [--auth bearer|header:NAME|query:NAME] [--header K=V ...] [--shape openai|anthropic|gemini]
  relayapi provider list | rm <id>
  relayapi token issue --provider <id> (--upstream-key <key> | --pool <name>) [--max-calls N] [--expires-in 1h] [--subject S]
                       [--models a,b] [--paths /v1/chat] [--origins https://app.example] [--bind-jkt JKT] [--json]
  relayapi token inspect <token> | list [--provider P] [--subject S] | get <id> | revoke <id>
  relayapi token seal (--issuer-key <kid>:<secret> | --relay-key <jwk-json-or-file>) --provider <id>
                      (--upstream-key K | --pool P) [--max-calls N] [--expires-in 10m] [--subject S] [--models a,b]
                      [--paths ...] [--origins ...] [--max-body-bytes N] [--tools] [--jti J] [--json]   (offline)
  relayapi issuer create <name> | rotate <name> | disable <name> [--kid K] | list   [--json]
  relayapi pubkey                            the relay's public key (JWK) for ECDH-ES sealed tokens
  relayapi rai import <file.rai> [--name N]  an original RelayAPI .rai config -> an issuer
  relayapi pool create <name> --provider <id> [--strategy round-robin|weighted|lru] | list | rm <name>
  relayapi keys add --pool <name> <key>... | --from-file F [--weight N]
  relayapi keys list --pool <name> | enable <id> | disable <id> | rm <id>

Commands that act on a server take --server URL (default $RELAYAPI_SERVER or http://127.0.0.1:8080)
and --admin-key KEY (default $RELAYAPI_ADMIN_KEY); token seal takes --issuer-key from $RELAYAPI_ISSUER_KEY.`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    // Loaded on demand: they pull in the whole relay, which the client commands do not need
    // (a client command starts in about half the time).
    case "serve":
      return (await import("./local-commands.js")).serveCommand(rest);
    case "migrate":
      return (await import("./local-commands.js")).migrateCommand(rest);
    case "provider":
      return providerCommand(rest);
    case "token":
      return tokenCommand(rest);
    case "issuer":
      return issuerCommand(rest);
    case "pubkey":
      return pubkeyCommand(rest);
    case "rai":
      return raiCommand(rest);
    case "pool":
      return poolCommand(rest);
    case "keys":
      return keysCommand(rest);
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
