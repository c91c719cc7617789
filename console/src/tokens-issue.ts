/**
 * The Issue token form: provider, credential (an upstream key, sent once and stored encrypted,
 * or a key pool), subject, plan, expiry and every limit of the relay's limits table
 * (src/tokens/token-limits.ts), one field each in the table's order; the dollar budget is typed
 * in dollars and sent as exact micro-dollars. The upstream key field is cleared as soon as the
 * relay took it.
 */
import type { IssueTokenResponse } from "../../gen/relayapi/v1/token_service_pb.js";
import type { Provider } from "../../gen/relayapi/v1/admin_service_pb.js";
import { usdToMicro } from "../../src/plans/micro-usd.js";
import { LIMIT_NAMES, limitsToProto, noLimits, TOKEN_LIMITS, type LimitName, type TokenLimitValues } from "../../src/tokens/token-limits.js";
import { errorMessage } from "./api.js";
import { h, listOf, uid } from "./dom.js";
import { t, type Key } from "./i18n.js";
import type { PageContext } from "./page.js";
import { checkbox, errorBox, field, select, submit } from "./ui.js";

const UNIT_SECONDS: Record<string, number> = { m: 60, h: 3600, d: 86400 };

function num(name: string, min = 1): HTMLInputElement {
  return h("input", { name, type: "number", min, step: 1, inputmode: "numeric" });
}

/** An optional positive integer from a number input; NaN marks a bad value. */
function optionalInt(input: HTMLInputElement): number | null {
  const v = input.value.trim();
  if (v === "") return null;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 1 ? n : NaN;
}

/**
 * Each limit's label, and its hint or placeholder: a new limit in the table needs its words here.
 * `usd`: a micro-dollar limit, typed in dollars.
 */
const LIMIT_TEXT: Record<LimitName, { label: Key; hint?: Key; placeholder?: string; usd?: true }> = {
  maxCalls: { label: "issue.maxCalls", hint: "issue.emptyUnlimited" },
  models: { label: "issue.models", hint: "issue.listHint", placeholder: "gpt-4o-mini, gpt-4o" },
  paths: { label: "issue.paths", hint: "issue.listHint", placeholder: "/v1/chat" },
  origins: { label: "issue.origins", hint: "issue.listHint", placeholder: "https://app.example" },
  maxBodyBytes: { label: "issue.maxBody", hint: "issue.emptyUnlimited" },
  rpm: { label: "issue.rpm", hint: "issue.emptyUnlimited" },
  maxOutputTokens: { label: "issue.maxOutput", hint: "issue.emptyUnlimited" },
  maxN: { label: "issue.maxN", hint: "issue.emptyUnlimited" },
  budgetTokens: { label: "issue.budget", hint: "issue.emptyUnlimited" },
  maxSessionSeconds: { label: "issue.maxSession", hint: "issue.emptyUnlimited" },
  budgetMicroUsd: { label: "issue.budgetUsd", hint: "issue.usdHint", placeholder: "2.50", usd: true },
  bindJkt: { label: "issue.bindJkt", hint: "issue.bindJktHint" },
  toolsAllowed: { label: "issue.tools" },
};

/** One input per limit, named after its proto field (`max_output_tokens` -> `max-output-tokens`). */
function limitInputs(): Record<LimitName, HTMLInputElement> {
  const out = {} as Record<LimitName, HTMLInputElement>;
  for (const name of LIMIT_NAMES) {
    const spec = TOKEN_LIMITS[name];
    const inputName = spec.snake.replaceAll("_", "-");
    const { placeholder, usd } = LIMIT_TEXT[name];
    out[name] = usd
      ? h("input", { name: "budget-usd", type: "text", inputmode: "decimal", autocomplete: "off", ...(placeholder ? { placeholder } : {}) })
      : spec.kind === "int"
        ? num(inputName)
        : spec.kind === "flag"
          ? h("input", { name: inputName })
          : h("input", {
              name: inputName,
              type: "text",
              autocomplete: "off",
              ...(spec.kind === "jkt" ? { spellcheck: "false" } : {}),
              ...(placeholder ? { placeholder } : {}),
            });
  }
  return out;
}

/** The form's limits, or undefined when a number is not a positive integer. */
function readLimits(inputs: Record<LimitName, HTMLInputElement>): TokenLimitValues | undefined {
  const v: Record<string, unknown> = noLimits();
  for (const name of LIMIT_NAMES) {
    const spec = TOKEN_LIMITS[name];
    const input = inputs[name];
    if (LIMIT_TEXT[name].usd) {
      const raw = input.value.trim();
      const micro = raw === "" ? null : (usdToMicro(raw) ?? Number.NaN);
      if (micro !== null && !(micro >= 1)) return undefined;
      v[name] = micro;
    } else if (spec.kind === "int") {
      const n = optionalInt(input);
      if (Number.isNaN(n)) return undefined;
      v[name] = n;
    } else if (spec.kind === "list") v[name] = listOf(input.value);
    else if (spec.kind === "flag") v[name] = input.checked;
    else v[name] = input.value.trim() || null;
  }
  return v as TokenLimitValues;
}

export function issueForm(ctx: PageContext, providers: Provider[], onIssued: (res: IssueTokenResponse) => void): HTMLFormElement {
  const provider = select(
    "provider",
    providers.map((p) => [p.id, p.id]),
    providers.some((p) => p.id === "openai") ? "openai" : (providers[0]?.id ?? ""),
  );
  const byKey = h("input", { type: "radio", name: "credential", value: "key", id: uid(), checked: true });
  const byPool = h("input", { type: "radio", name: "credential", value: "pool", id: uid() });
  const upstreamKey = h("input", { name: "upstream-key", type: "password", autocomplete: "off", spellcheck: "false", placeholder: "sk-..." });
  const pool = select("pool", []);
  const subject = h("input", { name: "subject", type: "text", maxlength: 256, autocomplete: "off" });
  const plan = select("plan", [["", t("issue.noPlan")]]);
  const expiresValue = h("input", { name: "expires-in", type: "number", min: 1, step: 1, value: 1, required: true });
  const expiresUnit = select(
    "expires-unit",
    [
      ["m", t("unit.minutes")],
      ["h", t("unit.hours")],
      ["d", t("unit.days")],
    ],
    "h",
  );
  const limits = limitInputs();
  const problem = h("div", { "aria-live": "assertive" });

  const keyField = field(t("issue.upstreamKey"), upstreamKey, t("issue.upstreamKeyHint"));
  const poolField = field(t("issue.pool"), pool, t("issue.poolHint"));
  const showCredential = (): void => {
    keyField.hidden = !byKey.checked;
    poolField.hidden = byKey.checked;
  };
  const loadPools = async (): Promise<void> => {
    try {
      const res = await ctx.api.admin.listPools({ provider: provider.value }, { signal: ctx.signal });
      pool.replaceChildren(
        ...(res.pools.length === 0
          ? [h("option", { value: "" }, t("issue.noPools"))]
          : res.pools.map((p) => h("option", { value: p.name }, `${p.name} (${p.enabledKeyCount}/${p.keyCount})`))),
      );
    } catch {
      pool.replaceChildren(h("option", { value: "" }, t("issue.noPools")));
    }
  };
  const loadPlans = async (): Promise<void> => {
    try {
      const res = await ctx.api.admin.listPlans({}, { signal: ctx.signal });
      plan.replaceChildren(h("option", { value: "" }, t("issue.noPlan")), ...res.plans.map((p) => h("option", { value: p.name }, p.name)));
    } catch {
      // No plan list (an older relay): the token is issued without one.
    }
  };
  byKey.addEventListener("change", showCredential);
  byPool.addEventListener("change", showCredential);
  provider.addEventListener("change", () => void loadPools());
  showCredential();
  void loadPools();
  void loadPlans();

  const form = h(
    "form",
    { class: "form-grid", "aria-label": t("issue.title"), novalidate: true },
    field(t("common.provider"), provider),
    h(
      "fieldset",
      { class: "field radios" },
      h("legend", null, t("issue.credential")),
      h("span", null, byKey, h("label", { for: byKey.id }, t("issue.byKey"))),
      h("span", null, byPool, h("label", { for: byPool.id }, t("issue.byPool"))),
    ),
    keyField,
    poolField,
    field(t("common.subject"), subject, t("issue.subjectHint")),
    field(t("issue.plan"), plan, t("issue.planHint")),
    h("div", { class: "field inline" }, field(t("issue.expiresIn"), expiresValue), field(t("issue.unit"), expiresUnit)),
    ...LIMIT_NAMES.map((name) => {
      const { label, hint } = LIMIT_TEXT[name];
      return TOKEN_LIMITS[name].kind === "flag" ? checkbox(t(label), limits[name]) : field(t(label), limits[name], hint && t(hint));
    }),
    h("div", { class: "field full" }, problem, submit(t("issue.submit"))),
  );

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    problem.replaceChildren();
    const values = readLimits(limits);
    const seconds = Number(expiresValue.value) * (UNIT_SECONDS[expiresUnit.value] ?? 3600);
    const bad = values === undefined || !Number.isSafeInteger(seconds) || seconds < 1;
    const credentialMissing = byKey.checked ? upstreamKey.value.trim() === "" : pool.value === "";
    const usdBad = LIMIT_NAMES.some((name) => LIMIT_TEXT[name].usd && limits[name].value.trim() !== "" && !((usdToMicro(limits[name].value) ?? 0) >= 1));
    if (bad || credentialMissing || provider.value === "") {
      problem.append(errorBox(credentialMissing ? t(byKey.checked ? "issue.needKey" : "issue.needPool") : t(usdBad ? "issue.badUsd" : "issue.badNumber")));
      return;
    }
    if (plan.value !== "" && subject.value.trim() === "") {
      problem.append(errorBox(t("issue.planNeedsSubject")));
      return;
    }
    const button = form.querySelector<HTMLButtonElement>("button[type=submit]");
    if (button) button.disabled = true;
    ctx.api.tokens
      .issueToken(
        {
          provider: provider.value,
          credential: byKey.checked ? { case: "upstreamKey", value: upstreamKey.value.trim() } : { case: "pool", value: pool.value },
          subject: subject.value.trim(),
          plan: plan.value,
          expiry: { case: "expiresIn", value: { seconds: BigInt(seconds) } },
          limits: limitsToProto(values),
        },
        { signal: ctx.signal },
      )
      .then((res) => {
        // The relay has the key now (encrypted); the page keeps no copy of it.
        upstreamKey.value = "";
        form.reset();
        showCredential();
        onIssued(res);
      })
      .catch((e: unknown) => problem.append(errorBox(errorMessage(e))))
      .finally(() => {
        if (button) button.disabled = false;
      });
  });
  return form;
}
