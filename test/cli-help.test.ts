/**
 * `relayapi --help`, `--version` and misuse, as a user runs them: no relay, no key, no flags
 * needed. Every command and subcommand in the help table answers `--help` with exit 0, its
 * usage, its flags and an example; a typo gets the closest name and a pointer to `--help`.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { COMMANDS, subcommands } from "../src/cli/help.js";
import { runCli, type CliRun } from "./support/run-cli.js";

const ROOT = join(import.meta.dirname, "..");

const run = (args: string[]): Promise<CliRun> => runCli(args, { timeout: 30_000 });

/** Every `relayapi <command> [sub]` the table knows, the groups themselves included. */
const ALL: string[][] = [[], ...Object.keys(COMMANDS).flatMap((c) => [[c], ...(subcommands(c) ?? []).map((s) => [c, s])])];

describe("relayapi --help", { timeout: 120_000 }, () => {
  it("every command and subcommand answers --help and -h with exit 0, usage and an example", async () => {
    // Builds the bundle once first, so the runs below measure start-up, not a rebuild.
    await run(["--help"]);
    const results = [];
    for (const argv of ALL) results.push({ argv, r: await run([...argv, "--help"]) });
    for (const { argv, r } of results) {
      const what = `relayapi ${argv.join(" ")} --help`;
      expect({ what, code: r.code, stderr: r.stderr }).toEqual({ what, code: 0, stderr: "" });
      expect(r.stdout, what).toMatch(/^Usage:/m);
      expect(r.stdout, what).toMatch(/^Example:\n {2}\S/m);
      if (argv.length === 2 || (argv.length === 1 && !subcommands(argv[0]!))) expect(r.stdout, what).toMatch(/^Flags:\n {2}--/m);
    }
    const h = await run(["token", "revoke", "-h"]);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain("relayapi token revoke <id | rai_secret>");
    // Start-up, not a budget for a loaded CI machine: well under a second on an idle one.
    const fastest = Math.min(...results.map(({ r }) => r.ms));
    expect(fastest).toBeLessThan(1000);
  });

  it("token issue and token seal show every limit flag with its default", async () => {
    for (const sub of ["issue", "seal"]) {
      const { stdout } = await run(["token", sub, "--help"]);
      for (const flag of [
        "max-calls",
        "rpm",
        "max-output-tokens",
        "max-n",
        "budget",
        "max-body-bytes",
        "models",
        "paths",
        "origins",
        "tools",
        "bind-jkt",
        "expires-in",
      ]) {
        expect(stdout, `${sub} --${flag}`).toMatch(new RegExp(`^ {2}--${flag}\\b.*\\(default: [^)]+\\)`, "m"));
      }
    }
  });

  it("--help wins over missing or invalid flags; --version prints package.json's", async () => {
    expect((await run(["token", "issue", "--max-calls", "x", "--help"])).code).toBe(0);
    const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
    expect(await run(["--version"])).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: "" });
  });

  it("typos get `did you mean` and a pointer to --help, exit 2, one line", async () => {
    const cases: [string[], RegExp][] = [
      [["tokne", "list"], /^relayapi: unknown command "tokne"; did you mean "token"\? \(see relayapi --help\)$/],
      [
        ["token", "isue"],
        /^relayapi: unknown command "token isue"; usage: relayapi token issue\|seal\|inspect\|list\|get\|revoke; did you mean "token issue"\? \(see relayapi token --help\)$/,
      ],
      [["token", "issue", "--max-cals", "3"], /^relayapi: unknown flag --max-cals; did you mean --max-calls\? \(see relayapi token issue --help\)$/],
      [["token", "seal", "--budgte", "3"], /did you mean --budget\? \(see relayapi token seal --help\)$/],
      [["pool", "creat", "p"], /did you mean "pool create"\?/],
      [["zzzzzzzz"], /^relayapi: unknown command "zzzzzzzz" \(see relayapi --help\)$/],
      [
        ["token", "issue", "--provider", "openai", "--upstream-key", "k", "--max-calls", "0"],
        /^relayapi: --max-calls: max_calls must be at least 1 \(see relayapi token issue --help\)$/,
      ],
      [["token", "issue", "--provider", "openai", "--upstream-key", "k", "--rpm", "0"], /--rpm: rpm must be 1-1000000/],
      [["zzzzzzzz", "--help"], /^relayapi: unknown command "zzzzzzzz"/],
    ];
    for (const [argv, re] of cases) {
      const r = await run(argv);
      expect({ argv, code: r.code, stdout: r.stdout }).toEqual({ argv, code: 2, stdout: "" });
      expect(r.stderr.trimEnd().split("\n"), r.stderr).toHaveLength(1);
      expect(r.stderr.trimEnd()).toMatch(re);
    }
  });
});
