/**
 * The Issue token form: provider, credential (an upstream key, sent once and stored encrypted,
 * or a key pool), subject, expiry and every limit of TokenLimits. The upstream key field is
 * cleared as soon as the relay took it.
 */
import type { IssueTokenResponse } from "../../gen/relayapi/v1/token_service_pb.js";
import type { Provider } from "../../gen/relayapi/v1/admin_service_pb.js";
import { errorMessage } from "./api.js";
import { h, listOf, uid } from "./dom.js";
import { t } from "./i18n.js";
import type { PageContext } from "./page.js";
import { checkbox, errorBox, field, select, submit } from "./ui.js";

const UNIT_SECONDS: Record<string, number> = { m: 60, h: 3600, d: 86400 };

function num(name: string, min = 1): HTMLInputElement {
  return h("input", { name, type: "number", min, step: 1, inputmode: "numeric" });
}

/** An optional positive integer from a number input; NaN marks a bad value. */
function optionalInt(input: HTMLInputElement): number | undefined {
  const v = input.value.trim();
  if (v === "") return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 1 ? n : NaN;
}

export function issueForm(ctx: PageContext, providers: Provider[], onIssued: (res: IssueTokenResponse) => void): HTMLFormElement {
  const provider = select("provider", providers.map((p) => [p.id, p.id]), providers.some((p) => p.id === "openai") ? "openai" : (providers[0]?.id ?? ""));
  const byKey = h("input", { type: "radio", name: "credential", value: "key", id: uid(), checked: true });
  const byPool = h("input", { type: "radio", name: "credential", value: "pool", id: uid() });
  const upstreamKey = h("input", { name: "upstream-key", type: "password", autocomplete: "off", spellcheck: "false", placeholder: "sk-..." });
  const pool = select("pool", []);
  const subject = h("input", { name: "subject", type: "text", maxlength: 256, autocomplete: "off" });
  const expiresValue = h("input", { name: "expires-in", type: "number", min: 1, step: 1, value: 1, required: true });
  const expiresUnit = select("expires-unit", [["m", t("unit.minutes")], ["h", t("unit.hours")], ["d", t("unit.days")]], "h");
  const maxCalls = num("max-calls");
  const models = h("input", { name: "models", type: "text", placeholder: "gpt-4o-mini, gpt-4o", autocomplete: "off" });
  const paths = h("input", { name: "paths", type: "text", placeholder: "/v1/chat", autocomplete: "off" });
  const origins = h("input", { name: "origins", type: "text", placeholder: "https://app.example", autocomplete: "off" });
  const rpm = num("rpm");
  const maxOutput = num("max-output-tokens");
  const maxN = num("max-n");
  const maxBody = num("max-body-bytes");
  const budget = num("budget-tokens");
  const bindJkt = h("input", { name: "bind-jkt", type: "text", autocomplete: "off", spellcheck: "false" });
  const tools = h("input", { name: "tools-allowed" });
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
      pool.replaceChildren(...(res.pools.length === 0 ? [h("option", { value: "" }, t("issue.noPools"))] : res.pools.map((p) => h("option", { value: p.name }, `${p.name} (${p.enabledKeyCount}/${p.keyCount})`))));
    } catch {
      pool.replaceChildren(h("option", { value: "" }, t("issue.noPools")));
    }
  };
  byKey.addEventListener("change", showCredential);
  byPool.addEventListener("change", showCredential);
  provider.addEventListener("change", () => void loadPools());
  showCredential();
  void loadPools();

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
    h("div", { class: "field inline" }, field(t("issue.expiresIn"), expiresValue), field(t("issue.unit"), expiresUnit)),
    field(t("issue.maxCalls"), maxCalls, t("issue.emptyUnlimited")),
    field(t("issue.models"), models, t("issue.listHint")),
    field(t("issue.paths"), paths, t("issue.listHint")),
    field(t("issue.origins"), origins, t("issue.listHint")),
    field(t("issue.maxBody"), maxBody, t("issue.emptyUnlimited")),
    field(t("issue.rpm"), rpm, t("issue.emptyUnlimited")),
    field(t("issue.maxOutput"), maxOutput, t("issue.emptyUnlimited")),
    field(t("issue.maxN"), maxN, t("issue.emptyUnlimited")),
    field(t("issue.budget"), budget, t("issue.emptyUnlimited")),
    field(t("issue.bindJkt"), bindJkt, t("issue.bindJktHint")),
    checkbox(t("issue.tools"), tools),
    h("div", { class: "field full" }, problem, submit(t("issue.submit"))),
  );

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    problem.replaceChildren();
    const ints = { maxCalls: optionalInt(maxCalls), rpm: optionalInt(rpm), maxOutput: optionalInt(maxOutput), maxN: optionalInt(maxN), maxBody: optionalInt(maxBody), budget: optionalInt(budget) };
    const seconds = Number(expiresValue.value) * (UNIT_SECONDS[expiresUnit.value] ?? 3600);
    const bad = Object.values(ints).some((v) => Number.isNaN(v)) || !Number.isSafeInteger(seconds) || seconds < 1;
    const credentialMissing = byKey.checked ? upstreamKey.value.trim() === "" : pool.value === "";
    if (bad || credentialMissing || provider.value === "") {
      problem.append(errorBox(credentialMissing ? t(byKey.checked ? "issue.needKey" : "issue.needPool") : t("issue.badNumber")));
      return;
    }
    const button = form.querySelector<HTMLButtonElement>("button[type=submit]");
    if (button) button.disabled = true;
    const big = (n: number | undefined): bigint | undefined => (n === undefined ? undefined : BigInt(n));
    ctx.api.tokens
      .issueToken(
        {
          provider: provider.value,
          credential: byKey.checked ? { case: "upstreamKey", value: upstreamKey.value.trim() } : { case: "pool", value: pool.value },
          subject: subject.value.trim(),
          expiry: { case: "expiresIn", value: { seconds: BigInt(seconds) } },
          limits: {
            maxCalls: big(ints.maxCalls),
            models: listOf(models.value),
            paths: listOf(paths.value),
            origins: listOf(origins.value),
            maxBodyBytes: big(ints.maxBody),
            rpm: ints.rpm,
            maxOutputTokens: ints.maxOutput,
            maxN: ints.maxN,
            budgetTokens: big(ints.budget),
            toolsAllowed: tools.checked,
            bindJkt: bindJkt.value.trim(),
          },
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
