/**
 * Connect clients of a running relay, for the CLI commands that act on a server, and the
 * helpful text for the failures a newcomer meets first: no admin key, a refused key, no relay.
 * The relay says only `admin key required` to a network client whatever went wrong (it reveals
 * nothing to a prober); the CLI knows whether it sent a key, so it can say which case this is.
 */
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { UsageError } from "./args.js";

export interface ServerFlags {
  server: string;
  adminKey: string | undefined;
}

/** The last call's server and whether it carried the admin key, for explain(). */
let last: { server: string; adminKeySent: boolean } | undefined;

export function serverClient<S extends DescService>(service: S, flags: ServerFlags, bearer?: string): Client<S> {
  if (!/^https?:\/\//.test(flags.server)) throw new UsageError("--server must be an http(s) URL");
  const key = bearer ?? flags.adminKey;
  last = { server: flags.server, adminKeySent: bearer === undefined && key !== undefined };
  const auth: Interceptor = (next) => (req) => {
    if (key) req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };
  return createClient(service, createConnectTransport({ baseUrl: flags.server, httpVersion: "1.1", interceptors: [auth] }));
}

const KEY_SOURCES = "--admin-key or $RELAYAPI_ADMIN_KEY (a local relay writes its key to data/admin.key)";

/** The message to print for a failed call: the server's, or a more helpful one the CLI can tell. */
export function explain(e: ConnectError): string {
  if (e.code === Code.Unauthenticated && e.rawMessage === "admin key required" && last) {
    // The server's words end the line, as for every other refusal.
    const why = last.adminKeySent ? `the relay at ${last.server} refused the admin key sent; check ${KEY_SOURCES}` : `no admin key sent; give ${KEY_SOURCES}`;
    return `${why}: ${e.rawMessage}`;
  }
  if (e.code === Code.Unavailable && last && /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ECONNRESET|fetch failed/.test(`${e.rawMessage} ${causeText(e.cause)}`)) {
    return `cannot reach a relay at ${last.server} (connection refused); is it running? Point --server or $RELAYAPI_SERVER at it`;
  }
  return e.rawMessage;
}

function causeText(cause: unknown): string {
  if (!(cause instanceof Error)) return "";
  const code = (cause as NodeJS.ErrnoException).code ?? "";
  return `${cause.message} ${code} ${causeText(cause.cause)}`;
}
