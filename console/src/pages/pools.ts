/**
 * Key pools: create, delete, and per pool its keys: batch import (one per line; the relay
 * de-duplicates and answers added / skipped / failed), enable / disable, delete. Keys go in
 * through a textarea that is emptied as soon as the relay took them; they only ever come back
 * masked.
 */
import { PoolStrategy, type Pool, type UpstreamKey } from "../../../gen/relayapi/v1/admin_service_pb.js";
import { errorMessage, isCanceled } from "../api.js";
import { h, isolated, listOf, userText } from "../dom.js";
import { fmtDate, fmtNumber, t, type Key } from "../i18n.js";
import type { Page, PageContext } from "../page.js";
import { badge, button, confirmDialog, empty, errorBox, field, loading, notify, options, section, select, submit, table } from "../ui.js";

const STRATEGY: Record<PoolStrategy, Key> = {
  [PoolStrategy.UNSPECIFIED]: "strategy.roundRobin",
  [PoolStrategy.ROUND_ROBIN]: "strategy.roundRobin",
  [PoolStrategy.WEIGHTED]: "strategy.weighted",
  [PoolStrategy.LEAST_RECENTLY_USED]: "strategy.lru",
};

export const poolsPage: Page = async (ctx, root) => {
  const { api, signal } = ctx;
  const listBody = h("div", { "aria-live": "polite" }, loading());
  const keysPanel = h("div");
  let selected: string | undefined;

  const remove = async (p: Pool): Promise<void> => {
    if (!(await confirmDialog(t("pools.deleteConfirm", { name: p.name, n: p.keyCount }), t("common.delete")))) return;
    try {
      await api.admin.deletePool({ name: p.name }, { signal });
      notify(t("pools.deleted", { name: p.name }));
      if (selected === p.name) {
        selected = undefined;
        keysPanel.replaceChildren();
      }
      void load();
    } catch (e) {
      if (!isCanceled(e)) notify(errorMessage(e), "error");
    }
  };

  const open = (name: string): void => {
    selected = name;
    keysPanel.replaceChildren(keysSection(ctx, name, () => void load()));
    keysPanel.querySelector("h2")?.scrollIntoView({ block: "nearest" });
  };

  async function load(): Promise<void> {
    try {
      const { pools } = await api.admin.listPools({}, { signal });
      listBody.replaceChildren(
        pools.length === 0
          ? empty(t("pools.none"))
          : table(
              t("nav.pools"),
              [
                { label: t("common.name"), cell: (p) => h("code", null, p.name) },
                { label: t("common.provider"), cell: (p) => p.provider },
                { label: t("pools.strategy"), cell: (p) => t(STRATEGY[p.strategy] ?? "strategy.roundRobin") },
                { label: t("pools.keys"), cell: (p) => t("pools.keyCount", { enabled: p.enabledKeyCount, total: p.keyCount }) },
                {
                  label: t("common.actions"),
                  cell: (p) =>
                    h(
                      "div",
                      { class: "row-actions" },
                      button(t("pools.manage"), () => open(p.name), "primary", { "aria-label": t("pools.manageName", { name: p.name }) }),
                      button(t("common.delete"), () => void remove(p), "danger", { "aria-label": t("pools.deleteName", { name: p.name }) }),
                    ),
                },
              ],
              pools,
              (p) => ({ "data-pool": p.name }),
            ),
      );
    } catch (e) {
      if (!isCanceled(e)) listBody.replaceChildren(errorBox(errorMessage(e)));
    }
  }

  let providerIds: string[] = [];
  try {
    providerIds = (await api.admin.listProviders({}, { signal })).providers.map((p) => p.id);
  } catch (e) {
    if (!isCanceled(e)) root.append(errorBox(errorMessage(e)));
    return;
  }
  const name = h("input", { name: "name", type: "text", required: true, autocomplete: "off", spellcheck: "false" });
  const provider = select(
    "provider",
    providerIds.map((id): [string, string] => [id, id]),
    providerIds.includes("openai") ? "openai" : providerIds[0],
  );
  const strategy = select(
    "strategy",
    options([
      [String(PoolStrategy.ROUND_ROBIN), "strategy.roundRobin"],
      [String(PoolStrategy.WEIGHTED), "strategy.weighted"],
      [String(PoolStrategy.LEAST_RECENTLY_USED), "strategy.lru"],
    ]),
    String(PoolStrategy.ROUND_ROBIN),
  );
  const problem = h("div", { "aria-live": "assertive" });
  const form = h(
    "form",
    { class: "form-grid", novalidate: true, "aria-label": t("pools.create") },
    field(t("common.name"), name),
    field(t("common.provider"), provider),
    field(t("pools.strategy"), strategy),
    h("div", { class: "field full" }, problem, submit(t("pools.create"))),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    problem.replaceChildren();
    if (name.value.trim() === "") {
      problem.append(errorBox(t("pools.needName")));
      return;
    }
    api.admin
      .createPool({ name: name.value.trim(), provider: provider.value, strategy: Number(strategy.value) as PoolStrategy }, { signal })
      .then((res) => {
        notify(t("pools.created", { name: res.pool?.name ?? "" }));
        form.reset();
        void load();
        if (res.pool) open(res.pool.name);
      })
      .catch((e: unknown) => {
        if (!isCanceled(e)) problem.append(errorBox(errorMessage(e)));
      });
  });

  root.append(h("h1", null, t("nav.pools")), section(t("pools.list"), listBody), keysPanel, section(t("pools.create"), form));
  await load();
};

/** One pool's keys: import form and the masked key list. */
function keysSection(ctx: PageContext, pool: string, onChange: () => void): HTMLElement {
  const { api, signal } = ctx;
  const body = h("div", { "aria-live": "polite" }, loading());
  const result = h("div", { "aria-live": "polite", "data-testid": "import-result" });

  const reload = async (): Promise<void> => {
    try {
      const { keys } = await api.admin.listKeys({ pool }, { signal });
      body.replaceChildren(keys.length === 0 ? empty(t("keys.none")) : keyTable(keys));
    } catch (e) {
      if (!isCanceled(e)) body.replaceChildren(errorBox(errorMessage(e)));
    }
  };
  const act = async (run: () => Promise<unknown>, done: string): Promise<void> => {
    try {
      await run();
      notify(done);
      void reload();
      onChange();
    } catch (e) {
      if (!isCanceled(e)) notify(errorMessage(e), "error");
    }
  };
  const keyTable = (keys: UpstreamKey[]): HTMLElement =>
    table(
      t("keys.title", { name: pool }),
      [
        // A key's tail is whatever was pasted, and a disabling reason quotes the provider's
        // error: isolated (issue 18, finding 7); the reason may be long, so it is clipped.
        { label: t("keys.key"), cell: (k) => h("code", null, userText(k.masked)) },
        {
          label: t("common.status"),
          cell: (k) =>
            k.enabled
              ? badge(t("keys.enabled"), "ok")
              : h(
                  "span",
                  null,
                  badge(t("keys.disabled"), "bad"),
                  k.disabledReason ? h("small", { class: "reason" }, " ", userText(k.disabledReason, { clip: true })) : null,
                ),
        },
        { label: t("keys.weight"), cell: (k) => k.weight, class: "num" },
        { label: t("keys.calls"), cell: (k) => fmtNumber(k.calls), class: "num" },
        { label: t("keys.lastUsed"), cell: (k) => (k.lastUsedAt ? fmtDate(k.lastUsedAt) : "—") },
        { label: t("keys.cooldown"), cell: (k) => (k.cooldownUntil ? fmtDate(k.cooldownUntil) : "—") },
        {
          label: t("common.actions"),
          cell: (k) =>
            h(
              "div",
              { class: "row-actions" },
              button(
                k.enabled ? t("keys.disable") : t("keys.enable"),
                () =>
                  void act(
                    () => api.admin.setKeyEnabled({ id: k.id, enabled: !k.enabled }, { signal }),
                    k.enabled ? t("keys.disabledOne", { key: isolated(k.masked) }) : t("keys.enabledOne", { key: isolated(k.masked) }),
                  ),
                "secondary",
                {
                  "aria-label": `${k.enabled ? t("keys.disable") : t("keys.enable")} ${isolated(k.masked)}`,
                },
              ),
              button(
                t("common.delete"),
                () =>
                  void confirmDialog(t("keys.deleteConfirm", { key: isolated(k.masked) }), t("common.delete")).then((ok) => {
                    if (ok) void act(() => api.admin.deleteKey({ id: k.id }, { signal }), t("keys.deleted", { key: isolated(k.masked) }));
                  }),
                "danger",
                { "aria-label": `${t("common.delete")} ${isolated(k.masked)}` },
              ),
            ),
        },
      ],
      keys,
      (k) => ({ "data-key-id": k.id }),
    );

  const keysInput = h("textarea", { name: "keys", rows: 5, autocomplete: "off", spellcheck: "false", placeholder: "sk-...\nsk-..." });
  const weight = h("input", { name: "weight", type: "number", min: 1, step: 1, value: 1 });
  const form = h(
    "form",
    { class: "form-grid", novalidate: true, "aria-label": t("keys.import") },
    field(t("keys.paste"), keysInput, t("keys.pasteHint")),
    field(t("keys.weight"), weight),
    h("div", { class: "field full" }, result, submit(t("keys.import"))),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const keys = listOf(keysInput.value, /\n/);
    if (keys.length === 0) {
      result.replaceChildren(errorBox(t("keys.needKeys")));
      return;
    }
    api.admin
      .addKeys({ pool, keys, weight: Math.max(1, Number(weight.value) || 1) }, { signal })
      .then((res) => {
        keysInput.value = "";
        result.replaceChildren(h("p", { class: "result", role: "status" }, t("keys.imported", { added: res.added, skipped: res.skipped, failed: res.failed })));
        void reload();
        onChange();
      })
      .catch((e: unknown) => {
        if (!isCanceled(e)) result.replaceChildren(errorBox(errorMessage(e)));
      });
  });

  void reload();
  return section(t("keys.title", { name: pool }), form, body);
}
