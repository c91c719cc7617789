/** The Connect code an RPC (or a whole stream) fails with, for suites that expect a refusal. */
import { ConnectError, type Code } from "@connectrpc/connect";

/** Runs `run` and returns the code it failed with; throws when it succeeds. */
export async function codeOf(run: () => Promise<unknown>): Promise<Code> {
  try {
    await run();
  } catch (e) {
    return ConnectError.from(e).code;
  }
  throw new Error("expected the call to fail");
}
