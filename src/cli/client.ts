/** Connect clients of a running relay, for the CLI commands that act on a server. */
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { UsageError } from "./args.js";

export interface ServerFlags {
  server: string;
  adminKey: string | undefined;
}

export function serverClient<S extends DescService>(service: S, flags: ServerFlags, bearer?: string): Client<S> {
  if (!/^https?:\/\//.test(flags.server)) throw new UsageError("--server must be an http(s) URL");
  const key = bearer ?? flags.adminKey;
  const auth: Interceptor = (next) => (req) => {
    if (key) req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };
  return createClient(service, createConnectTransport({ baseUrl: flags.server, httpVersion: "1.1", interceptors: [auth] }));
}
