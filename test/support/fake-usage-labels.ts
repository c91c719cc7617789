/**
 * For the usage writer's unit tests (src/usage/*.test.ts): the label statements of a batch write
 * answered in memory.
 */
/**
 * The label statements of a batch write (src/db/queries/usage-labels.ts), answered in memory:
 * not counted as statements and never failed, since these tests are about the batch statement.
 * `row` turns a batch's compact row (label ids) back into the names it stands for.
 */
export function fakeLabels() {
  const ids = new Map<string, number>();
  const names: string[] = [];
  return {
    answer(text: string, params: unknown[]): unknown[] | undefined {
      if (!text.includes("usage_labels") || text.includes("usage_calls")) return undefined;
      const values = JSON.parse(String(params[0])) as string[];
      if (text.startsWith("insert")) {
        for (const v of values) if (!ids.has(v)) ids.set(v, names.push(v) - 1);
        return [];
      }
      return values.map((value) => ({ id: ids.get(value), value }));
    },
    row(r: Record<string, number | string>) {
      const name = (id: number | string): string => names[Number(id)]!;
      return {
        token_id: name(r.t!),
        subject: name(r.s!),
        model: name(r.m!),
        latency_ms: Number(r.l),
        prompt_tokens: Number(r.pt),
        completion_tokens: Number(r.ct),
        total_tokens: Number(r.tt),
        flags: Number(r.f),
      };
    },
  };
}
