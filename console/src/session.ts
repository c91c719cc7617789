/**
 * What the console keeps in the browser: the admin key in sessionStorage only (gone when the
 * tab closes, never in a URL, never in localStorage) and the language choice in localStorage.
 * Relay tokens typed into the playground are kept nowhere.
 */
const ADMIN_KEY = "relayapi.console.adminKey";
const LANG = "relayapi.console.lang";

export type Lang = "en" | "zh";

export function adminKey(): string | undefined {
  try {
    return sessionStorage.getItem(ADMIN_KEY) ?? undefined;
  } catch {
    return undefined;
  }
}

export function saveAdminKey(key: string): void {
  sessionStorage.setItem(ADMIN_KEY, key);
}

export function forgetAdminKey(): void {
  try {
    sessionStorage.removeItem(ADMIN_KEY);
  } catch {
    // storage disabled: nothing was kept
  }
}

export function savedLang(): Lang {
  let v: string | null = null;
  try {
    v = localStorage.getItem(LANG);
  } catch {
    v = null;
  }
  if (v === "en" || v === "zh") return v;
  return navigator.language.toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function saveLang(lang: Lang): void {
  try {
    localStorage.setItem(LANG, lang);
  } catch {
    // storage disabled: the choice lasts until reload
  }
}
