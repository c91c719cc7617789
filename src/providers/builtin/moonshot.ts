/** Moonshot AI (Kimi): OpenAI-compatible, `Authorization: Bearer`. */
import { openaiCompatible } from "./openai-compatible.js";

export const moonshot = openaiCompatible("moonshot", "https://api.moonshot.cn");
