/**
 * What `relayapi [command [subcommand]] --help` prints, and the `did you mean` of a typo. One
 * table for every command, answered in main.ts before a command module loads, so `--help` is as
 * fast as the CLI can start and never needs a server, a key or valid flags. Token flags come
 * from token-flags.ts (the table `token issue` and `token seal` share).
 */
import { LOGIN_FLAG_HELP } from "./login-flags.js";
import { PLAN_FLAG_HELP } from "./plan-flags.js";
import { TOKEN_FLAG_HELP } from "./token-flags.js";

export interface FlagHelp {
  flag: string;
  /** The value's placeholder; absent for a boolean flag. */
  arg?: string;
  help: string;
}

export interface CommandHelp {
  summary: string;
  usage: string;
  flags: FlagHelp[];
  example: string;
}

const SERVER: FlagHelp[] = [
  { flag: "server", arg: "URL", help: "the relay (default: $RELAYAPI_SERVER or http://127.0.0.1:8080)" },
  { flag: "admin-key", arg: "KEY", help: "admin key (default: $RELAYAPI_ADMIN_KEY; a local relay writes it to data/admin.key)" },
];
const JSON_FLAG: FlagHelp = { flag: "json", help: "print JSON" };
const ADMIN = [...SERVER, JSON_FLAG];
const STORAGE: FlagHelp[] = [
  { flag: "config", arg: "FILE", help: "a JSON config file" },
  { flag: "data-dir", arg: "DIR", help: "where the embedded database and admin.key live (default: ./data)" },
  { flag: "database-url", arg: "URL", help: "a PostgreSQL URL instead of the embedded database (default: $DATABASE_URL)" },
];
const sub = (summary: string, usage: string, flags: FlagHelp[], example: string): CommandHelp => ({ summary, usage, flags, example });

/** A command is either one CommandHelp or a group of subcommands. */
export const COMMANDS: Record<string, CommandHelp | Record<string, CommandHelp>> = {
  serve: sub(
    "start the relay",
    "relayapi serve [flags]",
    [
      ...STORAGE,
      { flag: "host", arg: "HOST", help: "listen address (default: 127.0.0.1)" },
      { flag: "port", arg: "N", help: "listen port (default: 8080)" },
      { flag: "log-level", arg: "LEVEL", help: "debug, info, warn or error (default: info)" },
      { flag: "redis-url", arg: "URL", help: "share counters between relays through Redis (default: none)" },
      { flag: "trust-proxy", arg: "IP,CIDR", help: "proxies whose X-Forwarded-For is believed (default: none)" },
      { flag: "ip-rpm", arg: "N", help: "requests per minute per client IP (default: the config's)" },
      { flag: "print-config", help: "print the resolved config and exit" },
      { flag: "workers", arg: "N|auto", help: "worker processes on the one port (auto: one per core, within a container's CPU quota; default 1)" },
      { flag: "no-auto-migrate", help: "refuse to start when migrations are missing (run relayapi migrate)" },
    ],
    "relayapi serve --port 8080 --data-dir ./data",
  ),
  migrate: sub(
    "apply database migrations",
    "relayapi migrate [--config FILE] [--data-dir DIR | --database-url URL]",
    STORAGE,
    "relayapi migrate --data-dir ./data",
  ),
  provider: {
    add: sub(
      "add or replace a custom provider",
      "relayapi provider add <id> --base-url URL [flags]",
      [
        { flag: "base-url", arg: "URL", help: "the provider's API root (required)" },
        { flag: "auth", arg: "STYLE", help: "bearer, header:NAME or query:NAME (default: bearer)" },
        { flag: "header", arg: "K=V", help: "a header sent on every call (repeatable)" },
        { flag: "shape", arg: "SHAPE", help: "openai, anthropic or gemini (default: openai)" },
        ...ADMIN,
      ],
      "relayapi provider add my-llm --base-url https://llm.example/v1 --auth header:x-api-key",
    ),
    list: sub("list providers", "relayapi provider list [--json]", ADMIN, "relayapi provider list"),
    rm: sub("delete a custom provider", "relayapi provider rm <id>", ADMIN, "relayapi provider rm my-llm"),
  },
  token: {
    issue: sub(
      "issue a token (secret on stdout, id on stderr)",
      "relayapi token issue --provider ID (--upstream-key KEY | --pool NAME) [limits]",
      [...TOKEN_FLAG_HELP, ...SERVER],
      "TOKEN=$(relayapi token issue --provider openai --upstream-key sk-... --max-calls 20 --expires-in 10m)",
    ),
    seal: sub(
      "seal a token offline, no server",
      "relayapi token seal (--issuer-key KID:SECRET | --relay-key JWK) --provider ID (--upstream-key KEY | --pool NAME) [limits]",
      [
        ...TOKEN_FLAG_HELP,
        { flag: "issuer-key", arg: "KID:SECRET", help: "an issuer key (default: $RELAYAPI_ISSUER_KEY)" },
        { flag: "relay-key", arg: "JWK", help: "the relay's public key (relayapi pubkey), JSON or a file: an ECDH-ES token" },
        { flag: "jti", arg: "ID", help: "the token's id within its issuer (default: random)" },
      ],
      'relayapi token seal --issuer-key "$RELAYAPI_ISSUER_KEY" --provider openai --pool main --max-calls 5',
    ),
    inspect: sub("show a token given its secret (no admin key)", "relayapi token inspect <token>", [SERVER[0]!, JSON_FLAG], 'relayapi token inspect "$TOKEN"'),
    list: sub(
      "list tokens",
      "relayapi token list [--provider ID] [--subject S] [--json]",
      [{ flag: "provider", arg: "ID", help: "only this provider's tokens" }, { flag: "subject", arg: "S", help: "only this subject's tokens" }, ...ADMIN],
      "relayapi token list --subject alice",
    ),
    get: sub("show a token by id", "relayapi token get <id>", ADMIN, "relayapi token get tok_..."),
    revoke: sub("revoke a token by id or by its secret", "relayapi token revoke <id | rai_secret>", ADMIN, 'relayapi token revoke "$TOKEN"'),
  },
  issuer: {
    create: sub("create an issuer (its key is printed once)", "relayapi issuer create <name>", ADMIN, "relayapi issuer create my-backend"),
    list: sub("list issuers", "relayapi issuer list [--json]", ADMIN, "relayapi issuer list"),
    rotate: sub("add a new key to an issuer", "relayapi issuer rotate <name>", ADMIN, "relayapi issuer rotate my-backend"),
    disable: sub(
      "disable an issuer, or one of its keys",
      "relayapi issuer disable <name> [--kid KID]",
      [{ flag: "kid", arg: "KID", help: "disable only this key" }, ...ADMIN],
      "relayapi issuer disable my-backend --kid k1",
    ),
  },
  pubkey: sub("print the relay's public key (JWK) for ECDH-ES sealed tokens", "relayapi pubkey [--server URL]", [SERVER[0]!], "relayapi pubkey > relay.jwk"),
  rai: {
    import: sub(
      "import an original RelayAPI .rai config as an issuer",
      "relayapi rai import <file.rai> [--name N]",
      [{ flag: "name", arg: "N", help: "the issuer's name (default: from the file)" }, ...ADMIN],
      "relayapi rai import app.rai --name my-app",
    ),
  },
  pool: {
    create: sub(
      "create a key pool",
      "relayapi pool create <name> --provider ID [--strategy S]",
      [
        { flag: "provider", arg: "ID", help: "the pool's provider (required)" },
        { flag: "strategy", arg: "S", help: "round-robin, weighted or lru (default: round-robin)" },
        ...ADMIN,
      ],
      "relayapi pool create main --provider openai",
    ),
    list: sub(
      "list pools",
      "relayapi pool list [--provider ID]",
      [{ flag: "provider", arg: "ID", help: "only this provider's pools" }, ...ADMIN],
      "relayapi pool list",
    ),
    rm: sub("delete a pool", "relayapi pool rm <name>", ADMIN, "relayapi pool rm main"),
  },
  plan: {
    create: sub(
      "create a plan: per-subject quotas over calendar windows (tokens name it with --plan)",
      "relayapi plan create <name> [--calls-per-day N] [--usd-per-day X] [...]",
      [...PLAN_FLAG_HELP, ...ADMIN],
      "relayapi plan create free --calls-per-day 50 --usd-per-month 2.50 --models gpt-4o-mini",
    ),
    list: sub("list plans with their limits and how many live tokens name each", "relayapi plan list [--json]", ADMIN, "relayapi plan list"),
    update: sub(
      "change a plan's limits: only the flags given change; none clears one",
      "relayapi plan update <name> [--calls-per-day N|none] [--usd-per-day X|none] [...]",
      [...PLAN_FLAG_HELP, ...ADMIN],
      "relayapi plan update free --calls-per-day 100 --usd-per-month none",
    ),
    delete: sub(
      "delete a plan (refused while live tokens or logins name it, unless --force)",
      "relayapi plan delete <name> [--force]",
      [{ flag: "force", help: "delete even while tokens or logins name it: their calls are then refused" }, ...ADMIN],
      "relayapi plan delete free",
    ),
  },
  login: {
    add: sub(
      "trust an OIDC identity provider: the app's own ID tokens become relay credentials",
      "relayapi login add <name> --issuer URL --audience AUD [--jwks-url URL] --plan NAME --provider ID (--upstream-key KEY | --pool NAME) [limits]",
      [...LOGIN_FLAG_HELP, ...ADMIN],
      "relayapi login add firebase --issuer https://securetoken.google.com/my-app --audience my-app --plan free --provider openai --pool main --models gpt-4o-mini",
    ),
    list: sub("list logins", "relayapi login list [--json]", ADMIN, "relayapi login list"),
    enable: sub("enable a login", "relayapi login enable <name>", ADMIN, "relayapi login enable firebase"),
    disable: sub(
      "disable a login: its ID tokens refused, its users' sessions closed, within a second",
      "relayapi login disable <name>",
      ADMIN,
      "relayapi login disable firebase",
    ),
    remove: sub("remove a login", "relayapi login remove <name>", ADMIN, "relayapi login remove firebase"),
  },
  price: {
    set: sub(
      "set a model's price (dollars per million tokens), overriding the shipped one",
      "relayapi price set <provider> <model> --input X --output Y [--cached-input Z] [--cache-write W] [--audio-input A] [--audio-output B]",
      [
        { flag: "input", arg: "X", help: "input tokens, dollars per million, at most 6 decimals (required)" },
        { flag: "output", arg: "Y", help: "output tokens, reasoning included (required)" },
        { flag: "cached-input", arg: "Z", help: "prompt tokens read from the cache (default: the input price)" },
        { flag: "cache-write", arg: "W", help: "prompt tokens written to the cache, Anthropic (default: the input price)" },
        { flag: "audio-input", arg: "A", help: "audio input tokens (default: the input price)" },
        { flag: "audio-output", arg: "B", help: "audio output tokens (default: the output price)" },
        ...ADMIN,
      ],
      "relayapi price set openai 'gpt-4o-2024-*' --input 2.50 --cached-input 1.25 --output 10",
    ),
    list: sub(
      "list the prices in force: shipped (with their date) and the admin's",
      "relayapi price list [--provider ID] [--json]",
      [{ flag: "provider", arg: "ID", help: "only this provider's prices" }, ...ADMIN],
      "relayapi price list --provider anthropic",
    ),
    delete: sub(
      "delete an admin's price (the shipped one, if any, applies again)",
      "relayapi price delete <provider> <model>",
      ADMIN,
      "relayapi price delete openai gpt-4o",
    ),
  },
  usage: {
    report: sub(
      "sum usage and cost over a window (also: relayapi usage --by ...)",
      "relayapi usage [report] [--since 30d] [--by token|subject|plan|provider|model] [--bucket 1d] [--json|--csv]",
      [
        { flag: "since", arg: "DUR", help: "the window, back from now: 90m, 12h, 30d (default: 1d)" },
        { flag: "by", arg: "DIM", help: "group by token, subject, plan, provider or model (default: none)" },
        { flag: "bucket", arg: "DUR", help: "time bucket: 1h, 1d (default: one bucket for the window)" },
        { flag: "csv", help: "print CSV (cost_micro_usd exact, cost_usd with 6 decimals)" },
        ...ADMIN,
      ],
      "relayapi usage --by subject --since 7d --csv",
    ),
    prune: sub(
      "delete usage rows, roll-ups and audit events past their retention now",
      "relayapi usage prune [--older-than 30d] [--dry-run]",
      [
        { flag: "older-than", arg: "DUR", help: "raw rows older than this go (default: usageRetentionDays)" },
        { flag: "dry-run", help: "count what would be deleted, delete nothing" },
        ...ADMIN,
      ],
      "relayapi usage prune --older-than 30d --dry-run",
    ),
    storage: sub("show the database size and the usage tables' bytes and rows", "relayapi usage storage [--json]", ADMIN, "relayapi usage storage"),
  },
  keys: {
    add: sub(
      "add upstream keys to a pool",
      "relayapi keys add --pool NAME (<key>... | --from-file F) [--weight N]",
      [
        { flag: "pool", arg: "NAME", help: "the pool (required)" },
        { flag: "from-file", arg: "F", help: "one key per line" },
        { flag: "weight", arg: "N", help: "weight for the weighted strategy (default: 1)" },
        ...ADMIN,
      ],
      "relayapi keys add --pool main --from-file keys.txt",
    ),
    list: sub(
      "list a pool's keys (masked)",
      "relayapi keys list --pool NAME",
      [{ flag: "pool", arg: "NAME", help: "the pool (required)" }, ...ADMIN],
      "relayapi keys list --pool main",
    ),
    enable: sub("enable a key", "relayapi keys enable <id>", ADMIN, "relayapi keys enable key_..."),
    disable: sub("disable a key", "relayapi keys disable <id>", ADMIN, "relayapi keys disable key_..."),
    rm: sub("delete a key", "relayapi keys rm <id>", ADMIN, "relayapi keys rm key_..."),
  },
};

const GROUPS: Record<string, string> = {
  provider: "manage upstream providers",
  token: "issue, seal, inspect, list and revoke tokens",
  issuer: "manage issuers (keys that seal tokens)",
  rai: "import original RelayAPI configs",
  pool: "manage key pools",
  keys: "manage a pool's upstream keys",
  plan: "manage plans: per-user quotas over calendar days and months",
  login: "trust an app's own login (OIDC ID tokens) as the credential",
  price: "model prices (dollars per million tokens) that usage costs are computed with",
  usage: "usage and cost reports, retention and storage",
};

/** The subcommand a group runs when none is named (`relayapi usage --by model`). */
export const DEFAULT_SUBCOMMAND: Readonly<Record<string, string>> = { usage: "report" };

const isLeaf = (c: CommandHelp | Record<string, CommandHelp>): c is CommandHelp => typeof (c as CommandHelp).usage === "string";

export function subcommands(command: string): string[] | undefined {
  const c = COMMANDS[command];
  return c === undefined || isLeaf(c) ? undefined : Object.keys(c);
}

function flagLines(flags: FlagHelp[]): string[] {
  const left = flags.map((f) => `  --${f.flag}${f.arg ? ` ${f.arg}` : ""}`);
  const width = Math.max(...left.map((l) => l.length)) + 2;
  return flags.map((f, i) => `${left[i]!.padEnd(width)}${f.help}`);
}

function leafHelp(c: CommandHelp): string {
  return [
    `${c.summary}\n`,
    `Usage:\n  ${c.usage}\n`,
    "Flags:",
    ...flagLines([...c.flags, { flag: "help", help: "show this help" }]),
    "",
    `Example:\n  ${c.example}`,
  ].join("\n");
}

/** Help for `relayapi`, `relayapi <command>` or `relayapi <command> <sub>`; undefined when unknown. */
export function helpText(command: string | undefined, subcommand: string | undefined): string | undefined {
  if (command === undefined) return topHelp();
  const c = COMMANDS[command];
  if (c === undefined) return undefined;
  if (isLeaf(c)) return leafHelp(c);
  const s = subcommand === undefined ? undefined : c[subcommand];
  if (s) return leafHelp(s);
  if (subcommand !== undefined) return undefined;
  const rows = Object.entries(c).map(([name, h]) => [`  relayapi ${command} ${name}`, h.summary] as const);
  const width = Math.max(...rows.map((r) => r[0].length)) + 2;
  return [
    `Usage:\n${rows.map(([l, r]) => l.padEnd(width) + r).join("\n")}\n`,
    `Example:\n  ${Object.values(c)[0]!.example}\n`,
    `Run relayapi ${command} <subcommand> --help for its flags.`,
  ].join("\n");
}

function topHelp(): string {
  const rows = Object.entries(COMMANDS).map(
    ([name, c]) => [`  ${name}${isLeaf(c) ? "" : ` ${Object.keys(c).join("|")}`}`, isLeaf(c) ? c.summary : (GROUPS[name] ?? "")] as const,
  );
  const width = Math.max(...rows.map((r) => r[0].length)) + 2;
  return `relayapi — a relay for LLM APIs with short-lived, limited tokens

Usage: relayapi <command> [subcommand] [flags]

Commands:
${rows.map(([l, r]) => (l.padEnd(width) + r).trimEnd()).join("\n")}

Commands that act on a server take --server URL ($RELAYAPI_SERVER, default http://127.0.0.1:8080)
and --admin-key KEY ($RELAYAPI_ADMIN_KEY; a local relay writes it to data/admin.key).

Example:
  relayapi token issue --provider openai --upstream-key sk-... --max-calls 20 --expires-in 10m

Run relayapi <command> --help for a command's flags; relayapi --version for the version.`;
}
