/** `/healthz` (the process answers) and `/readyz` (the database answers). */
import type { AnyResponse } from "./render-error.js";
import { sendJson } from "./render-error.js";

export function healthz(res: AnyResponse): void {
  sendJson(res, 200, { status: "ok" });
}

export async function readyz(res: AnyResponse, ping: () => Promise<void>): Promise<void> {
  try {
    await ping();
    sendJson(res, 200, { status: "ready" });
  } catch {
    sendJson(res, 503, { status: "not ready", reason: "database unreachable" });
  }
}
