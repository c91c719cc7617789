/** What a plan's name may be: it is a URL segment, a CLI argument and a usage label. */
export const PLAN_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** Checks the plan a token names and that it has a subject to count against; the reason, or undefined when fine. */
export function planProblem(plan: string | undefined, subject: string): string | undefined {
  if (plan === undefined) return undefined;
  if (!PLAN_NAME.test(plan)) return "plan must be 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit";
  if (subject === "") return "a token with a plan needs a subject (the user its quotas count)";
  return undefined;
}
