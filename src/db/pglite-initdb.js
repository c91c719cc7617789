// Run as a child process by src/db/client.ts: creates a new PGlite data directory and exits,
// so the memory initdb touches is given back with the process instead of staying in the relay.
import { PGlite } from "@electric-sql/pglite";

const [dir, params] = process.argv.slice(2);
await (await PGlite.create(dir, { startParams: JSON.parse(params) })).close();
