/**
 * Helpers for the login suites (test/login*.test.ts, issue 24.4): a plan a login can name, a
 * login added over AdminService with the test upstream key, and a login user's token row id.
 */
import { eq } from "drizzle-orm";
import { tokens } from "../../src/db/schema/index.js";
import { loginUserId } from "../../src/logins/login-meta.js";
import { UPSTREAM_KEY, type TestRelay } from "./relay.js";
import { waitFor } from "./wait.js";

/** The `aud` the suites' logins expect unless they say otherwise. */
export const AUDIENCE = "my-app";

let unique = 0;
/** A user id no other test uses. */
export const newUser = (what: string): string => `${what}-${++unique}-${Date.now()}`;

/** Creates a plan (no limits unless given) and waits for the plan store to hold it. */
export async function createPlan(relay: TestRelay, name: string, limits: { callsPerDay?: bigint } = {}): Promise<void> {
  await relay.admin.createPlan({ plan: { name, ...limits } });
  // Plans reach the check path by the plan store's reload (within a second).
  await waitFor(() => relay.app.plans.get(name), 3000, `plan ${name} loaded`);
}

export interface TestLogin {
  issuer: string;
  /** Omitted: AddLogin discovers it from the issuer. */
  jwksUrl?: string;
  audience?: string;
  /** Default: `sub`. */
  subjectClaim?: string;
  plan?: string;
  /** The login's model pin (default gpt-mock; [] for none). */
  models?: string[];
}

/** Adds a login calling openai with the test upstream key, on plan `free` unless told. */
export async function addLogin(relay: TestRelay, name: string, o: TestLogin) {
  return relay.admin.addLogin({
    login: {
      name,
      issuer: o.issuer,
      audience: o.audience ?? AUDIENCE,
      jwksUrl: o.jwksUrl ?? "",
      subjectClaim: o.subjectClaim ?? "",
      plan: o.plan ?? "free",
      provider: "openai",
      limits: { models: o.models ?? ["gpt-mock"] },
    },
    upstreamKey: UPSTREAM_KEY,
  });
}

/** The token row id of the user `claim` of login `name` trusting `issuer` (and AUDIENCE unless told). */
export function userId(name: string, issuer: string, claim: string, audience = AUDIENCE): string {
  return loginUserId({ name, issuer, audience }, claim);
}

/** A token row by id (undefined: none yet). */
export async function rowOf(relay: TestRelay, id: string) {
  const [row] = await relay.app.database.db.select().from(tokens).where(eq(tokens.id, id));
  return row;
}
