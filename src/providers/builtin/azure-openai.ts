/**
 * Azure OpenAI: the base URL is the operator's resource (`https://<resource>.openai.azure.com/openai`,
 * set with RELAYAPI_PROVIDER_AZURE_OPENAI_BASE_URL), clients call `/deployments/<name>/...`;
 * the key goes in `api-key` and `api-version` is added when the client did not send one.
 */
import { openaiShape } from "../shapes/openai.js";
import type { ProviderSpec } from "../types.js";

export const azureOpenai: ProviderSpec = {
  id: "azure-openai",
  baseUrl: "https://YOUR-RESOURCE.openai.azure.com/openai",
  credential: { kind: "header", name: "api-key" },
  defaultHeaders: {},
  defaultQuery: { "api-version": "2024-10-21" },
  shape: openaiShape,
  builtin: true,
};
