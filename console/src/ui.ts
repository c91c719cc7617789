/**
 * Building blocks shared by the pages: labelled fields, buttons, tables that turn into cards
 * on a phone, empty states, a confirm dialog, the one-time secret display and the status line.
 */
import { copyText, h, uid, type Children } from "./dom.js";
import { t, type Key } from "./i18n.js";

/** A label, a control and an optional hint, wired together for screen readers. */
export function field(label: string, control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, hint?: string): HTMLElement {
  control.id ||= uid();
  const hintEl = hint ? h("small", { id: uid("hint"), class: "hint" }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hintEl);
}

/** A checkbox with its label after it. */
export function checkbox(label: string, input: HTMLInputElement): HTMLElement {
  input.type = "checkbox";
  input.id ||= uid();
  return h("div", { class: "field check" }, input, h("label", { for: input.id }, label));
}

export function select(name: string, options: [value: string, label: string][], value = ""): HTMLSelectElement {
  const el = h("select", { name }, ...options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
  if (options.some(([v]) => v === value)) el.value = value;
  return el;
}

export type ButtonKind = "primary" | "secondary" | "danger" | "link";

export function button(label: string, onClick: (ev: Event) => void, kind: ButtonKind = "secondary", attrs: Record<string, string> = {}): HTMLButtonElement {
  return h("button", { type: "button", class: `btn btn-${kind}`, onClick, ...attrs }, label);
}

export function submit(label: string): HTMLButtonElement {
  return h("button", { type: "submit", class: "btn btn-primary" }, label);
}

/** A titled card. */
export function section(title: string, ...children: Children[]): HTMLElement {
  const id = uid("h");
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

export function empty(text: string): HTMLElement {
  return h("p", { class: "empty" }, text);
}

export function loading(): HTMLElement {
  return h("p", { class: "loading", role: "status" }, t("common.loading"));
}

export function errorBox(text: string): HTMLElement {
  return h("p", { class: "error", role: "alert" }, text);
}

export function badge(text: string, tone: "ok" | "warn" | "bad" | "muted" = "muted"): HTMLElement {
  return h("span", { class: `badge badge-${tone}` }, text);
}

export interface Column<T> {
  label: string;
  cell: (row: T) => Children;
  class?: string;
}

/** A table; below 720px each row shows as a card with the column names beside the values. */
export function table<T>(caption: string, columns: Column<T>[], rows: T[], rowAttrs?: (row: T) => Record<string, string>): HTMLElement {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      null,
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", null, h("tr", null, ...columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)))),
      h(
        "tbody",
        null,
        ...rows.map((r) => h("tr", rowAttrs?.(r) ?? null, ...columns.map((c) => h("td", { "data-label": c.label, class: c.class }, c.cell(r))))),
      ),
    ),
  );
}

/** Previous / next page buttons over a page-token cursor. */
/**
 * Cursor paging for a list RPC: the page token to ask for, and the pager for the page that came
 * back. Remembers the tokens of the pages seen, so Previous needs no token of its own.
 */
export class CursorPager {
  #cursors = [""];
  #page = 0;

  /** `reload` fetches the current page again (after Previous or Next). */
  constructor(private readonly reload: () => void) {}

  /** The page token of the current page ("" for the first). */
  get cursor(): string {
    return this.#cursors[this.#page] ?? "";
  }

  /** Back to the first page (a refresh, new filters); the caller reloads. */
  reset(): void {
    this.#cursors = [""];
    this.#page = 0;
  }

  /** The pager for a page whose next-page token is `next` ("" on the last); "" when all fits on one page. */
  view(next: string): HTMLElement | "" {
    if (this.#page === 0 && next === "") return "";
    const prev = button(t("common.prev"), () => {
      this.#page--;
      this.reload();
    });
    const more = button(t("common.next"), () => {
      this.#cursors = this.#cursors.slice(0, this.#page + 1).concat(next);
      this.#page++;
      this.reload();
    });
    prev.disabled = this.#page === 0;
    more.disabled = next === "";
    return h("nav", { class: "pager", "aria-label": t("common.paging") }, prev, h("span", null, t("common.page", { n: this.#page + 1 })), more);
  }
}

/** A modal confirm; resolves true when confirmed. Escape or Cancel resolve false. */
export function confirmDialog(message: string, confirmLabel: string): Promise<boolean> {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "dialog" });
    const text = h("p", { id: uid("dlg") }, message);
    dialog.setAttribute("aria-labelledby", text.id);
    const done = (ok: boolean): void => {
      dialog.close();
      dialog.remove();
      resolve(ok);
    };
    const yes = button(confirmLabel, () => done(true), "danger");
    const no = button(t("common.cancel"), () => done(false));
    dialog.append(text, h("div", { class: "actions" }, no, yes));
    dialog.addEventListener("cancel", (ev) => {
      ev.preventDefault();
      done(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}

/** A copy button that says "Copied" for a moment. */
export function copyButton(label: string, text: () => string, attrs: Record<string, string> = {}): HTMLButtonElement {
  const btn = button(
    label,
    () => {
      void copyText(text()).then((ok) => {
        btn.textContent = ok ? t("common.copied") : t("common.copyFailed");
        setTimeout(() => (btn.textContent = label), 1500);
      });
    },
    "secondary",
    attrs,
  );
  return btn;
}

/**
 * The one place a secret is shown: once, right after it was made. "Done" removes it from the
 * page; nothing keeps a copy.
 */
export function secretOnce(opts: { title: string; secret: string; note: string; extra?: Children; onDone: () => void }): HTMLElement {
  const panel = h("div", { class: "secret-once", role: "region", "aria-label": opts.title, "data-testid": "secret-once" });
  const code = h("code", { class: "secret", "data-testid": "secret-value" }, opts.secret);
  let secret: string | undefined = opts.secret;
  const done = button(
    t("common.done"),
    () => {
      secret = undefined;
      code.textContent = "";
      panel.remove();
      opts.onDone();
    },
    "primary",
  );
  panel.append(
    h("h3", null, opts.title),
    h("p", { class: "warn" }, opts.note),
    h(
      "div",
      { class: "secret-row" },
      code,
      copyButton(t("common.copy"), () => secret ?? ""),
    ),
    h("div", null, opts.extra),
    h("div", { class: "actions" }, done),
  );
  queueMicrotask(() => done.focus());
  return panel;
}

/** Writes to the app's status line (polite) or alert line (errors). */
export function notify(text: string, kind: "ok" | "error" = "ok"): void {
  const el = document.getElementById(kind === "ok" ? "status-line" : "alert-line");
  if (!el) return;
  el.textContent = text;
  el.hidden = false;
  const shown = text;
  setTimeout(
    () => {
      if (el.textContent === shown) {
        el.textContent = "";
        el.hidden = true;
      }
    },
    kind === "ok" ? 4000 : 10000,
  );
}

/** Translated option lists for enum selects. */
export function options(pairs: [string, Key][]): [string, string][] {
  return pairs.map(([v, key]) => [v, t(key)]);
}
