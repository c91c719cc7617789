/**
 * Issuers: create (the secret is shown once, with the `RELAYAPI_ISSUER_KEY=<kid>:<secret>`
 * line a backend needs), rotate (a new key, shown once), disable one key or the whole issuer.
 */
import type { Issuer } from "../../../gen/relayapi/v1/admin_service_pb.js";
import { errorMessage, isCanceled } from "../api.js";
import { h } from "../dom.js";
import { fmtDate, t } from "../i18n.js";
import type { Page } from "../page.js";
import { badge, button, confirmDialog, copyButton, empty, errorBox, field, loading, notify, secretOnce, section, submit, table } from "../ui.js";

export const issuersPage: Page = async (ctx, root) => {
  const { api, signal } = ctx;
  const oneTime = h("div");
  const listBody = h("div", { "aria-live": "polite" }, loading());

  const showSecret = (title: string, kid: string, secret: string): void => {
    const envLine = `RELAYAPI_ISSUER_KEY=${kid}:${secret}`;
    oneTime.replaceChildren(
      secretOnce({
        title,
        secret,
        note: t("issuers.shownOnce", { kid }),
        extra: h(
          "div",
          { class: "actions" },
          copyButton(t("issuers.copyEnv"), () => envLine),
        ),
        onDone: () => oneTime.replaceChildren(),
      }),
    );
    oneTime.scrollIntoView({ block: "nearest" });
  };

  const rotate = async (i: Issuer): Promise<void> => {
    try {
      const res = await api.admin.rotateIssuer({ name: i.name }, { signal });
      showSecret(t("issuers.rotated", { name: i.name, kid: res.kid }), res.kid, res.secret);
      void load();
    } catch (e) {
      if (!isCanceled(e)) notify(errorMessage(e), "error");
    }
  };

  const disable = async (i: Issuer, kid = ""): Promise<void> => {
    const msg = kid ? t("issuers.disableKeyConfirm", { name: i.name, kid }) : t("issuers.disableConfirm", { name: i.name });
    if (!(await confirmDialog(msg, t("issuers.disable")))) return;
    try {
      await api.admin.disableIssuer({ name: i.name, kid }, { signal });
      notify(t("issuers.disabled", { name: kid || i.name }));
      void load();
    } catch (e) {
      if (!isCanceled(e)) notify(errorMessage(e), "error");
    }
  };

  const keyList = (i: Issuer): HTMLElement =>
    h(
      "ul",
      { class: "plain" },
      ...i.keys.map((k) =>
        h(
          "li",
          null,
          h("code", null, k.kid),
          " ",
          k.disabledAt ? badge(t("issuers.keyDisabled"), "bad") : badge(t("status.active"), "ok"),
          " ",
          h("small", null, k.createdAt ? fmtDate(k.createdAt) : ""),
          !k.disabledAt && !i.disabled
            ? button(t("issuers.disableKey"), () => void disable(i, k.kid), "link", { "aria-label": t("issuers.disableKeyId", { kid: k.kid }) })
            : null,
        ),
      ),
    );

  async function load(): Promise<void> {
    try {
      const { issuers } = await api.admin.listIssuers({}, { signal });
      listBody.replaceChildren(
        issuers.length === 0
          ? empty(t("issuers.none"))
          : table(
              t("nav.issuers"),
              [
                { label: t("common.name"), cell: (i) => h("code", null, i.name) },
                { label: t("common.status"), cell: (i) => (i.disabled ? badge(t("issuers.disabledState"), "bad") : badge(t("status.active"), "ok")) },
                { label: t("issuers.keys"), cell: keyList },
                { label: t("common.created"), cell: (i) => (i.createdAt ? fmtDate(i.createdAt) : "—") },
                {
                  label: t("common.actions"),
                  cell: (i) =>
                    i.disabled
                      ? "—"
                      : h(
                          "div",
                          { class: "row-actions" },
                          button(t("issuers.rotate"), () => void rotate(i), "secondary", { "aria-label": t("issuers.rotateName", { name: i.name }) }),
                          button(t("issuers.disable"), () => void disable(i), "danger", { "aria-label": t("issuers.disableName", { name: i.name }) }),
                        ),
                },
              ],
              issuers,
              (i) => ({ "data-issuer": i.name }),
            ),
      );
    } catch (e) {
      if (!isCanceled(e)) listBody.replaceChildren(errorBox(errorMessage(e)));
    }
  }

  const name = h("input", { name: "name", type: "text", required: true, autocomplete: "off", spellcheck: "false", pattern: "[a-z0-9][a-z0-9._-]{0,63}" });
  const problem = h("div", { "aria-live": "assertive" });
  const form = h(
    "form",
    { class: "form-grid", novalidate: true, "aria-label": t("issuers.create") },
    field(t("common.name"), name, t("issuers.nameHint")),
    h("div", { class: "field full" }, problem, submit(t("issuers.create"))),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    problem.replaceChildren();
    if (!name.checkValidity()) {
      problem.append(errorBox(t("issuers.badName")));
      return;
    }
    api.admin
      .createIssuer({ name: name.value.trim() }, { signal })
      .then((res) => {
        form.reset();
        showSecret(t("issuers.created", { name: res.issuer?.name ?? "", kid: res.kid }), res.kid, res.secret);
        void load();
      })
      .catch((e: unknown) => {
        if (!isCanceled(e)) problem.append(errorBox(errorMessage(e)));
      });
  });

  root.append(
    h("h1", null, t("nav.issuers")),
    oneTime,
    section(t("issuers.list"), h("p", { class: "hint" }, t("issuers.intro")), listBody),
    section(t("issuers.create"), form),
  );
  await load();
};
