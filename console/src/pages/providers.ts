/** Providers: the built-in catalogue (read-only) and custom providers (add, replace, delete). */
import { ApiShape, AuthStyle, type Provider } from "../../../gen/relayapi/v1/admin_service_pb.js";
import { errorMessage, isCanceled } from "../api.js";
import { h } from "../dom.js";
import { t, type Key } from "../i18n.js";
import type { Page } from "../page.js";
import { badge, button, confirmDialog, empty, errorBox, field, loading, notify, options, section, select, submit, table } from "../ui.js";

const SHAPE_LABEL: Record<ApiShape, Key> = {
  [ApiShape.UNSPECIFIED]: "shape.openai",
  [ApiShape.OPENAI]: "shape.openai",
  [ApiShape.ANTHROPIC]: "shape.anthropic",
  [ApiShape.GEMINI]: "shape.gemini",
};

function authText(p: Provider): string {
  switch (p.authStyle) {
    case AuthStyle.HEADER:
      return `${t("auth.header")}: ${p.authName}`;
    case AuthStyle.QUERY:
      return `${t("auth.query")}: ${p.authName}`;
    default:
      return t("auth.bearer");
  }
}

export const providersPage: Page = async (ctx, root) => {
  const { api, signal } = ctx;
  const listBody = h("div", { "aria-live": "polite" }, loading());

  const remove = async (p: Provider): Promise<void> => {
    if (!(await confirmDialog(t("providers.deleteConfirm", { id: p.id }), t("common.delete")))) return;
    try {
      await api.admin.deleteProvider({ id: p.id }, { signal });
      notify(t("providers.deleted", { id: p.id }));
      void load();
    } catch (e) {
      if (!isCanceled(e)) notify(errorMessage(e), "error");
    }
  };

  async function load(): Promise<void> {
    try {
      const { providers } = await api.admin.listProviders({}, { signal });
      listBody.replaceChildren(
        providers.length === 0
          ? empty(t("providers.none"))
          : table(
              t("nav.providers"),
              [
                { label: t("common.id"), cell: (p) => h("code", null, p.id) },
                { label: t("providers.kind"), cell: (p) => (p.builtin ? badge(t("providers.builtin")) : badge(t("providers.custom"), "ok")) },
                { label: t("providers.baseUrl"), cell: (p) => h("span", { class: "break" }, p.baseUrl) },
                { label: t("providers.auth"), cell: authText },
                { label: t("providers.shape"), cell: (p) => t(SHAPE_LABEL[p.shape] ?? "shape.openai") },
                {
                  label: t("common.actions"),
                  cell: (p) =>
                    p.builtin ? "—" : button(t("common.delete"), () => void remove(p), "danger", { "aria-label": t("providers.deleteId", { id: p.id }) }),
                },
              ],
              providers,
              (p) => ({ "data-provider-id": p.id }),
            ),
      );
    } catch (e) {
      if (!isCanceled(e)) listBody.replaceChildren(errorBox(errorMessage(e)));
    }
  }

  const id = h("input", { name: "id", type: "text", required: true, pattern: "[a-z0-9][a-z0-9-]{0,62}", autocomplete: "off", spellcheck: "false" });
  const baseUrl = h("input", { name: "base-url", type: "url", required: true, placeholder: "https://llm.internal.example", autocomplete: "off" });
  const authStyle = select(
    "auth-style",
    options([
      [String(AuthStyle.BEARER), "auth.bearer"],
      [String(AuthStyle.HEADER), "auth.header"],
      [String(AuthStyle.QUERY), "auth.query"],
    ]),
    String(AuthStyle.BEARER),
  );
  const authName = h("input", { name: "auth-name", type: "text", placeholder: "x-api-key", autocomplete: "off" });
  const shape = select(
    "shape",
    options([
      [String(ApiShape.OPENAI), "shape.openai"],
      [String(ApiShape.ANTHROPIC), "shape.anthropic"],
      [String(ApiShape.GEMINI), "shape.gemini"],
    ]),
    String(ApiShape.OPENAI),
  );
  const headers = h("textarea", { name: "default-headers", rows: 3, placeholder: "anthropic-version: 2023-06-01", spellcheck: "false" });
  const problem = h("div", { "aria-live": "assertive" });
  const form = h(
    "form",
    { class: "form-grid", novalidate: true, "aria-label": t("providers.add") },
    field(t("common.id"), id, t("providers.idHint")),
    field(t("providers.baseUrl"), baseUrl),
    field(t("providers.auth"), authStyle),
    field(t("providers.authName"), authName, t("providers.authNameHint")),
    field(t("providers.shape"), shape),
    field(t("providers.headers"), headers, t("providers.headersHint")),
    h("div", { class: "field full" }, problem, submit(t("providers.save"))),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    problem.replaceChildren();
    if (!id.checkValidity() || !baseUrl.checkValidity()) {
      problem.append(errorBox(t("providers.invalid")));
      return;
    }
    const defaultHeaders: Record<string, string> = {};
    for (const line of headers.value.split("\n")) {
      const colon = line.indexOf(":");
      if (colon > 0) defaultHeaders[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    api.admin
      .upsertProvider(
        {
          provider: {
            id: id.value.trim(),
            baseUrl: baseUrl.value.trim(),
            authStyle: Number(authStyle.value) as AuthStyle,
            authName: authName.value.trim(),
            shape: Number(shape.value) as ApiShape,
            defaultHeaders,
          },
        },
        { signal },
      )
      .then((res) => {
        notify(t("providers.saved", { id: res.provider?.id ?? "" }));
        form.reset();
        void load();
      })
      .catch((e: unknown) => {
        if (!isCanceled(e)) problem.append(errorBox(errorMessage(e)));
      });
  });

  root.append(
    h("h1", null, t("nav.providers")),
    section(t("providers.list"), listBody),
    section(t("providers.add"), h("p", { class: "hint" }, t("providers.addIntro")), form),
  );
  await load();
};
