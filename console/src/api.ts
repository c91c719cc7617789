/**
 * The console's Connect clients: TokenService and AdminService over connect-web's fetch
 * transport (JSON on the wire, so the browser's network panel is readable), authenticated by
 * the admin key. Any call answered `unauthenticated` (a wrong or changed key) signs the
 * console out with a message, unary calls and server streams (WatchUsage) alike.
 *
 * `createRelayClients` from `relayapi/sdk` builds the same clients in one line; the console
 * spells the transport out because it adds the sign-out interceptor.
 */
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AdminService } from "../../gen/relayapi/v1/admin_service_pb.js";
import { TokenService } from "../../gen/relayapi/v1/token_service_pb.js";
import { t } from "./i18n.js";

export interface AdminApi {
  tokens: Client<typeof TokenService>;
  admin: Client<typeof AdminService>;
}

function isUnauthenticated(e: unknown): boolean {
  return e instanceof ConnectError && e.code === Code.Unauthenticated;
}

async function* watched<T>(stream: AsyncIterable<T>, onUnauthenticated: () => void): AsyncIterable<T> {
  try {
    yield* stream;
  } catch (e) {
    if (isUnauthenticated(e)) onUnauthenticated();
    throw e;
  }
}

export function createAdminApi(adminKey: string, onUnauthenticated: () => void): AdminApi {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${adminKey}`);
    return next(req);
  };
  const signOutOn401: Interceptor = (next) => async (req) => {
    try {
      const res = await next(req);
      return res.stream ? { ...res, message: watched(res.message, onUnauthenticated) } : res;
    } catch (e) {
      if (isUnauthenticated(e)) onUnauthenticated();
      throw e;
    }
  };
  const transport = createConnectTransport({ baseUrl: location.origin, interceptors: [signOutOn401, bearer] });
  return { tokens: createClient(TokenService, transport), admin: createClient(AdminService, transport) };
}

/** True when the error only says the call was cancelled (the page was left). */
export function isCanceled(e: unknown): boolean {
  return (e instanceof ConnectError && e.code === Code.Canceled) || (e instanceof DOMException && e.name === "AbortError");
}

/** One clear sentence for an error, in the current language; the relay's own message is secret-free. */
export function errorMessage(e: unknown): string {
  if (!(e instanceof ConnectError)) return t("error.unexpected");
  const said = e.rawMessage ? ` (${e.rawMessage})` : "";
  switch (e.code) {
    case Code.Unauthenticated:
      return t("error.unauthenticated");
    case Code.PermissionDenied:
      return t("error.permission") + said;
    case Code.NotFound:
      return t("error.notFound") + said;
    case Code.AlreadyExists:
      return t("error.exists") + said;
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.OutOfRange:
      return t("error.invalid") + said;
    case Code.ResourceExhausted:
      return t("error.exhausted") + said;
    case Code.Unavailable:
      return t("error.unavailable");
    case Code.DeadlineExceeded:
      return t("error.timeout");
    case Code.Unimplemented:
      return t("error.unimplemented");
    case Code.Canceled:
      return t("error.canceled");
    default:
      return t("error.server") + said;
  }
}
