/**
 * The id of one request, the same on both entry points (the HTTP layer and RelayService): the
 * client's own `x-request-id` when it is sane, else a new UUID. It is echoed in the answer's
 * headers, written on the request's log lines and carried in the engine's CallRecord.
 */
import { randomUUID } from "node:crypto";

/** Ids a client may choose: short, and safe in a header and a log line. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export function requestIdOf(incoming: string | string[] | null | undefined): string {
  return typeof incoming === "string" && SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
}
