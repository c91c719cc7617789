/**
 * Sign-in with the admin key. The key is checked with one harmless call (ListProviders) before
 * it is kept, in sessionStorage only; it never goes into a URL.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { createAdminApi, errorMessage } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { saveAdminKey } from "../session.js";
import { errorBox, field, submit } from "../ui.js";

export function signInView(root: HTMLElement, message: string | undefined, onSignedIn: () => void): void {
  const key = h("input", { name: "admin-key", type: "password", autocomplete: "current-password", spellcheck: "false", required: true });
  const problem = h("div", { "aria-live": "assertive" }, message ? errorBox(message) : null);
  const button = submit(t("signin.submit"));
  const form = h(
    "form",
    { class: "signin card", novalidate: true, "aria-labelledby": "signin-h" },
    h("h1", { id: "signin-h" }, t("signin.title")),
    h("p", null, t("signin.intro")),
    field(t("signin.key"), key, t("signin.keyHint")),
    problem,
    h("div", { class: "actions" }, button),
    h("p", { class: "hint" }, t("signin.playground"), " ", h("a", { href: "/console/playground", "data-route": "" }, t("nav.playground"))),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = key.value.trim();
    problem.replaceChildren();
    if (value === "") return void problem.append(errorBox(t("signin.needKey")));
    button.disabled = true;
    createAdminApi(value, () => {})
      .admin.listProviders({})
      .then(() => {
        saveAdminKey(value);
        key.value = "";
        onSignedIn();
      })
      .catch((e: unknown) => {
        problem.append(errorBox(e instanceof ConnectError && e.code === Code.Unauthenticated ? t("signin.rejected") : errorMessage(e)));
        key.focus();
        key.select();
      })
      .finally(() => (button.disabled = false));
  });
  root.append(form);
  key.focus();
}
