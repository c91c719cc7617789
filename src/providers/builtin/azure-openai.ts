/**
 * Azure OpenAI: the base URL is the operator's resource (`https://<resource>.openai.azure.com/openai`,
 * set with RELAYAPI_PROVIDER_AZURE_OPENAI_BASE_URL), clients call `/deployments/<name>/...`;
 * the key goes in `api-key` and `api-version` is added when the client did not send one.
 *
 * Azure runs the deployment the path names and ignores the body's `model`, so pins name
 * deployments and are checked against the path; the v1 API (`/v1/...`) names the deployment
 * in the body's `model` instead (issue 18, finding 1).
 */
import { RelayError } from "../../errors.js";
import { openaiShape } from "../shapes/openai.js";
import type { ProviderSpec } from "../types.js";

/** `/deployments/<name>` anywhere in the (normal) path, in any case. */
const DEPLOYMENT = /(?:^|\/)deployments\/([^/]+)(?=\/|$)/i;

function deploymentInPath(path: string): string | undefined {
  const m = DEPLOYMENT.exec(path);
  if (!m?.[1]) return undefined;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    throw new RelayError("bad_request", "invalid path");
  }
}

export const azureOpenai: ProviderSpec = {
  id: "azure-openai",
  baseUrl: "https://YOUR-RESOURCE.openai.azure.com/openai",
  credential: { kind: "header", name: "api-key" },
  defaultHeaders: {},
  defaultQuery: { "api-version": "2024-10-21" },
  shape: openaiShape,
  models: { inPath: deploymentInPath, inBody: true },
  // Realtime (issue 25): `/realtime?deployment=…` and the v1 API's `/v1/realtime?model=…`.
  websocket: { paths: [/^\/realtime$/, /^\/v1\/realtime$/], framing: "openai-realtime" },
  builtin: true,
};
