/**
 * The environment for a child process a test starts (the CLI, the relay bundle): the machine's,
 * without any RELAYAPI_* / DATABASE_URL / REDIS_URL it may have set, plus `extra`.
 */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("RELAYAPI_") && k !== "DATABASE_URL" && k !== "REDIS_URL"));
  return { ...env, ...extra };
}
