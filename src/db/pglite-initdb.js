// Run as a child process by src/db/client.ts: creates a new PGlite data directory and exits,
// so the memory initdb touches is given back with the process instead of staying in the relay.
// The umask keeps what this process creates private to the relay's user (client.ts also
// chmods the tree after: PGlite sets some files' modes itself).
import { PGlite } from "@electric-sql/pglite";

process.umask(0o077);
const [dir, params] = process.argv.slice(2);
await (await PGlite.create(dir, { startParams: JSON.parse(params) })).close();
