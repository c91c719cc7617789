/**
 * The RelayAPI console (issue 7): a single-page app served at /console, calling TokenService
 * and AdminService with connect-web. This file is the shell: header, navigation, language
 * switch, sign-in / sign-out, and a router over the History API. Every route below /console
 * serves the same index.html (src/http/console-route.ts).
 */
import { createAdminApi, type AdminApi } from "./api.js";
import { h } from "./dom.js";
import { setLang, t, type Key, currentLang } from "./i18n.js";
import type { Page, PublicPage } from "./page.js";
import { auditPage } from "./pages/audit.js";
import { issuersPage } from "./pages/issuers.js";
import { plansPage } from "./pages/plans.js";
import { playgroundPage } from "./pages/playground.js";
import { poolsPage } from "./pages/pools.js";
import { providersPage } from "./pages/providers.js";
import { signInView } from "./pages/signin.js";
import { tokensPage } from "./pages/tokens.js";
import { usagePage } from "./pages/usage.js";
import { adminKey, forgetAdminKey, saveLang, savedLang, type Lang } from "./session.js";
import { button, select } from "./ui.js";

const BASE = "/console";

/** A page, and whether it needs the admin key. */
type Route = { title: Key } & ({ admin: true; page: Page } | { admin: false; page: PublicPage });

const ROUTES: Record<string, Route> = {
  tokens: { page: tokensPage, title: "nav.tokens", admin: true },
  providers: { page: providersPage, title: "nav.providers", admin: true },
  pools: { page: poolsPage, title: "nav.pools", admin: true },
  plans: { page: plansPage, title: "nav.plans", admin: true },
  issuers: { page: issuersPage, title: "nav.issuers", admin: true },
  usage: { page: usagePage, title: "nav.usage", admin: true },
  audit: { page: auditPage, title: "nav.audit", admin: true },
  playground: { page: playgroundPage, title: "nav.playground", admin: false },
};
const NAV = ["tokens", "providers", "pools", "plans", "issuers", "usage", "audit", "playground"] as const;

const app = document.getElementById("app") ?? document.body;
let leaving: AbortController | undefined;
let signInMessage: string | undefined;
let api: { key: string; clients: AdminApi } | undefined;

function routeName(): string {
  const rest = location.pathname.slice(BASE.length).replace(/^\/+|\/+$/g, "");
  return rest.split("/")[0] ?? "";
}

function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render(true);
}

/** A call answered "unauthenticated": the key is wrong or was changed. Back to sign-in. */
function onUnauthenticated(): void {
  if (adminKey() === undefined) return;
  forgetAdminKey();
  api = undefined;
  signInMessage = t("signin.expired");
  render(true);
}

function clientsFor(key: string): AdminApi {
  if (api?.key !== key) api = { key, clients: createAdminApi(key, onUnauthenticated) };
  return api.clients;
}

function header(active: string, signedIn: boolean): HTMLElement {
  const links = (signedIn ? NAV : (["playground"] as const)).map((name) =>
    h("li", null, h("a", { href: `${BASE}/${name}`, "data-route": "", "aria-current": name === active ? "page" : null }, t(ROUTES[name]!.title))),
  );
  if (!signedIn)
    links.unshift(h("li", null, h("a", { href: BASE, "data-route": "", "aria-current": active !== "playground" ? "page" : null }, t("signin.title"))));
  const lang = select(
    "lang",
    [
      ["en", "English"],
      ["zh", "中文"],
    ],
    currentLang(),
  );
  lang.id = "lang-switch";
  lang.addEventListener("change", () => {
    const chosen = lang.value as Lang;
    saveLang(chosen);
    setLang(chosen);
    render(false);
    document.getElementById("lang-switch")?.focus();
  });
  const signOut = signedIn
    ? button(t("nav.signOut"), () => {
        forgetAdminKey();
        api = undefined;
        signInMessage = t("signin.signedOut");
        navigate(BASE);
      })
    : null;
  return h(
    "header",
    { class: "top" },
    h("a", { class: "skip", href: "#main" }, t("nav.skip")),
    h("a", { class: "brand", href: BASE, "data-route": "" }, "RelayAPI", h("span", null, t("nav.console"))),
    h("nav", { "aria-label": t("nav.main") }, h("ul", null, ...links)),
    h("div", { class: "tools" }, h("label", { for: "lang-switch", class: "visually-hidden" }, t("nav.language")), lang, signOut),
  );
}

function render(moveFocus: boolean): void {
  leaving?.abort();
  const controller = new AbortController();
  leaving = controller;
  document.documentElement.lang = currentLang() === "zh" ? "zh-CN" : "en";
  const key = adminKey();
  let name = routeName();
  if (name === "" && key !== undefined) {
    history.replaceState(null, "", `${BASE}/tokens`);
    name = "tokens";
  }
  const route = ROUTES[name];
  const main = h("main", { id: "main", tabindex: "-1" });
  const needsSignIn = route === undefined ? name === "" : route.admin && key === undefined;
  app.replaceChildren(
    header(needsSignIn ? "" : name, key !== undefined),
    h("div", { id: "status-line", class: "status-line", role: "status", hidden: true }),
    h("div", { id: "alert-line", class: "alert-line", role: "alert", hidden: true }),
    main,
  );
  if (needsSignIn) {
    document.title = `${t("signin.title")} · RelayAPI`;
    const message = signInMessage;
    signInView(main, message, () => {
      signInMessage = undefined;
      render(true);
    });
    return;
  }
  if (!route) {
    document.title = `${t("notFound.title")} · RelayAPI`;
    main.append(h("h1", null, t("notFound.title")), h("p", null, t("notFound.text"), " ", h("a", { href: BASE, "data-route": "" }, t("notFound.home"))));
    return;
  }
  signInMessage = undefined;
  document.title = `${t(route.title)} · RelayAPI`;
  const ctx = { signal: controller.signal, navigate };
  const result = route.admin ? (key === undefined ? undefined : route.page({ ...ctx, api: clientsFor(key) }, main)) : route.page(ctx, main);
  if (result instanceof Promise) result.catch((e: unknown) => console.error(e));
  if (moveFocus) main.focus({ preventScroll: false });
}

document.addEventListener("click", (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = (ev.target as Element | null)?.closest?.("a[data-route]");
  if (!(a instanceof HTMLAnchorElement) || a.origin !== location.origin) return;
  ev.preventDefault();
  if (a.pathname !== location.pathname) navigate(a.pathname);
  else render(true);
});
window.addEventListener("popstate", () => render(true));

setLang(savedLang());
render(false);
