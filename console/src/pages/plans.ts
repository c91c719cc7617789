/**
 * Plans (issue 24): the named sets of per-user quotas over calendar days and months that tokens
 * and logins point at. Lists each plan's limits and how many live tokens name it; creates,
 * edits (every limit is replaced by what the form holds) and deletes, asking once more before
 * a forced delete when tokens or logins still name the plan. Dollars are typed as dollars and
 * sent as exact micro-dollars (src/plans/micro-usd.ts).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Plan } from "../../../gen/relayapi/v1/admin_service_pb.js";
import { microToUsd, usdToMicro } from "../../../src/plans/micro-usd.js";
import {
  PLAN_LIMIT_NAMES,
  PLAN_LIMITS,
  planLimitsFromProto,
  planLimitsToProto,
  type PlanLimitName,
  type PlanLimitValues,
} from "../../../src/plans/plan-limits.js";
import { errorMessage, isCanceled } from "../api.js";
import { h, listOf, userText } from "../dom.js";
import { fmtNumber, t, type Key } from "../i18n.js";
import type { Page } from "../page.js";
import { button, confirmDialog, empty, errorBox, field, loading, notify, section, submit, table } from "../ui.js";

/** Each limit's label: a new limit in the table needs its words here. */
const LABEL: Record<PlanLimitName, Key> = {
  callsPerDay: "plans.callsPerDay",
  callsPerMonth: "plans.callsPerMonth",
  tokensPerDay: "plans.tokensPerDay",
  tokensPerMonth: "plans.tokensPerMonth",
  microUsdPerDay: "plans.usdPerDay",
  microUsdPerMonth: "plans.usdPerMonth",
  rpm: "plans.rpm",
  maxSessionSeconds: "plans.maxSession",
};

const isUsd = (name: PlanLimitName): boolean => PLAN_LIMITS[name].unit === "usd";

/** A limit as the list shows it: `$0.25`, `1,000`, or a dash for none. */
function shown(name: PlanLimitName, value: number | null): string {
  if (value === null) return "—";
  return isUsd(name) ? `$${microToUsd(value)}` : fmtNumber(value);
}

/** `20 / day · 300 / month` for a pair of limits; a dash when neither is set. */
function perWindow(v: PlanLimitValues, day: PlanLimitName, month: PlanLimitName): string {
  const parts = [
    v[day] === null ? "" : t("plans.perDay", { n: shown(day, v[day]) }),
    v[month] === null ? "" : t("plans.perMonth", { n: shown(month, v[month]) }),
  ].filter(Boolean);
  return parts.join(" · ") || "—";
}

export const plansPage: Page = async (ctx, root) => {
  const { api, signal } = ctx;
  const listBody = h("div", { "aria-live": "polite" }, loading());
  /** The plan being edited; undefined while the form creates one. */
  let editing: string | undefined;

  const inputs = {} as Record<PlanLimitName, HTMLInputElement>;
  for (const name of PLAN_LIMIT_NAMES) {
    const inputName = PLAN_LIMITS[name].flag;
    inputs[name] = isUsd(name)
      ? h("input", { name: inputName, type: "text", inputmode: "decimal", autocomplete: "off", placeholder: "0.25" })
      : h("input", { name: inputName, type: "number", min: 1, max: PLAN_LIMITS[name].max, step: 1, inputmode: "numeric" });
  }
  const nameInput = h("input", { name: "name", type: "text", required: true, autocomplete: "off", spellcheck: "false", maxlength: 64 });
  const models = h("input", { name: "models", type: "text", autocomplete: "off", placeholder: "gpt-4o-mini, gpt-4o" });
  const problem = h("div", { "aria-live": "assertive" });
  const save = submit(t("plans.create"));
  const cancelEdit = button(t("common.cancel"), () => startCreating());
  const form = h(
    "form",
    { class: "form-grid", novalidate: true, "aria-label": t("plans.create") },
    field(t("common.name"), nameInput, t("plans.nameHint")),
    ...PLAN_LIMIT_NAMES.map((name) => field(t(LABEL[name]), inputs[name], t(isUsd(name) ? "plans.usdHint" : "plans.emptyUnlimited"))),
    field(t("plans.models"), models, t("plans.modelsHint")),
    h("div", { class: "field full" }, problem, h("div", { class: "row-actions" }, save, cancelEdit)),
  );
  const formSection = section(t("plans.create"), form);
  const formTitle = formSection.querySelector("h2")!;

  /** The form's limits, or undefined when a value is not valid. */
  const readForm = (): PlanLimitValues | undefined => {
    const v = { models: listOf(models.value) } as PlanLimitValues;
    for (const name of PLAN_LIMIT_NAMES) {
      const raw = inputs[name].value.trim();
      if (raw === "") {
        v[name] = null;
        continue;
      }
      const n = isUsd(name) ? usdToMicro(raw) : /^\d+$/.test(raw) ? Number(raw) : undefined;
      if (n === undefined || !Number.isSafeInteger(n) || n < 1 || n > PLAN_LIMITS[name].max) return undefined;
      v[name] = n;
    }
    return v;
  };

  function startCreating(): void {
    editing = undefined;
    form.reset();
    nameInput.disabled = false;
    cancelEdit.hidden = true;
    save.textContent = t("plans.create");
    formTitle.textContent = t("plans.create");
    form.setAttribute("aria-label", t("plans.create"));
    problem.replaceChildren();
  }

  const startEditing = (p: Plan): void => {
    editing = p.name;
    const v = planLimitsFromProto(p);
    nameInput.value = p.name;
    nameInput.disabled = true;
    for (const name of PLAN_LIMIT_NAMES) {
      const value = v[name];
      inputs[name].value = value === null ? "" : isUsd(name) ? microToUsd(value) : String(value);
    }
    models.value = v.models.join(", ");
    cancelEdit.hidden = false;
    save.textContent = t("plans.save");
    formTitle.textContent = t("plans.editTitle", { name: p.name });
    form.setAttribute("aria-label", t("plans.editTitle", { name: p.name }));
    problem.replaceChildren();
    formTitle.scrollIntoView({ block: "nearest" });
    inputs.callsPerDay.focus();
  };

  const remove = async (p: Plan): Promise<void> => {
    if (!(await confirmDialog(t("plans.deleteConfirm", { name: p.name }), t("common.delete")))) return;
    try {
      try {
        await api.admin.deletePlan({ name: p.name }, { signal });
      } catch (e) {
        // Still named by tokens or logins: say so, and delete only when asked once more.
        if (!(e instanceof ConnectError && e.code === Code.FailedPrecondition)) throw e;
        if (!(await confirmDialog(t("plans.forceConfirm", { name: p.name, reason: e.rawMessage }), t("plans.forceDelete")))) return;
        await api.admin.deletePlan({ name: p.name, force: true }, { signal });
      }
      notify(t("plans.deleted", { name: p.name }));
      if (editing === p.name) startCreating();
      void load();
    } catch (e) {
      if (!isCanceled(e)) notify(errorMessage(e), "error");
    }
  };

  async function load(): Promise<void> {
    try {
      const { plans } = await api.admin.listPlans({}, { signal });
      listBody.replaceChildren(
        plans.length === 0
          ? empty(t("plans.none"))
          : table(
              t("nav.plans"),
              [
                { label: t("common.name"), cell: (p) => h("code", null, p.name) },
                { label: t("plans.calls"), cell: (p) => perWindow(planLimitsFromProto(p), "callsPerDay", "callsPerMonth") },
                { label: t("plans.llmTokens"), cell: (p) => perWindow(planLimitsFromProto(p), "tokensPerDay", "tokensPerMonth") },
                { label: t("plans.dollars"), cell: (p) => perWindow(planLimitsFromProto(p), "microUsdPerDay", "microUsdPerMonth") },
                { label: t("plans.rpm"), cell: (p) => shown("rpm", planLimitsFromProto(p).rpm), class: "num" },
                // Model names are the operator's words, isolated like any text chosen by a person.
                { label: t("plans.models"), cell: (p) => (p.models.length === 0 ? t("plans.anyModel") : userText(p.models.join(", "), { clip: true })) },
                { label: t("plans.inUse"), cell: (p) => fmtNumber(p.tokenCount), class: "num" },
                {
                  label: t("common.actions"),
                  cell: (p) =>
                    h(
                      "div",
                      { class: "row-actions" },
                      button(t("plans.edit"), () => startEditing(p), "secondary", { "aria-label": t("plans.editTitle", { name: p.name }) }),
                      button(t("common.delete"), () => void remove(p), "danger", { "aria-label": t("plans.deleteName", { name: p.name }) }),
                    ),
                },
              ],
              plans,
              (p) => ({ "data-plan": p.name }),
            ),
      );
    } catch (e) {
      if (!isCanceled(e)) listBody.replaceChildren(errorBox(errorMessage(e)));
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    problem.replaceChildren();
    const name = editing ?? nameInput.value.trim();
    if (name === "") {
      problem.append(errorBox(t("plans.needName")));
      return;
    }
    const limits = readForm();
    if (limits === undefined) {
      problem.append(errorBox(t("plans.badNumber")));
      return;
    }
    const plan = { name, ...planLimitsToProto(limits) };
    const wasEditing = editing !== undefined;
    save.disabled = true;
    (wasEditing ? api.admin.updatePlan({ plan }, { signal }) : api.admin.createPlan({ plan }, { signal }))
      .then(() => {
        notify(t(wasEditing ? "plans.saved" : "plans.created", { name }));
        startCreating();
        void load();
      })
      .catch((e: unknown) => {
        if (!isCanceled(e)) problem.append(errorBox(errorMessage(e)));
      })
      .finally(() => {
        save.disabled = false;
      });
  });

  startCreating();
  root.append(h("h1", null, t("nav.plans")), section(t("plans.list"), h("p", { class: "hint" }, t("plans.intro")), listBody), formSection);
  await load();
};
