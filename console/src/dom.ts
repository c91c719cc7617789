/**
 * A few DOM helpers instead of a framework. Text always goes in as text nodes and attributes
 * through setAttribute, never as HTML, so a subject or an audit detail cannot inject markup;
 * and such text is direction-isolated (`userText`), so it cannot reorder the text around it.
 */

export type Child = Node | string | number | bigint | null | undefined | false;
export type Children = Child | Child[];
type AttrValue = string | number | boolean | null | undefined | ((ev: Event) => void);
export type Attrs = Record<string, AttrValue>;

function append(el: Element, children: Children[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

function setAttrs(el: Element, attrs: Attrs | null | undefined): void {
  if (!attrs) return;
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") el.addEventListener(name.slice(2).toLowerCase(), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
}

/** `h("button", { type: "button", onClick }, "Save")`. Attributes named `on*` are listeners. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Children[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Children[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** First strong isolate ... pop directional isolate (Unicode UAX #9). */
const FSI = "\u2068";
const PDI = "\u2069";

/**
 * `text` wrapped in FSI ... PDI, for the places an element cannot go: a title, an aria-label, a
 * status message, an SVG <title>. Its direction marks then stay inside it.
 */
export function isolated(text: string): string {
  return `${FSI}${text}${PDI}`;
}

/**
 * Text the admin did not write: a subject (set by whoever issued the token), a model name (the
 * client's), a key's masked tail, an audit detail (issue 18, finding 7). It goes in a
 * `<bdi dir="auto">`, so a right-to-left override (U+202E) or an Arabic name reorders nothing
 * around it: the token id and the numbers beside it read as they are. With `clip` it is cut
 * with an ellipsis where its box ends, after one line (three in a table), the whole text in the
 * tooltip; the box (styles.css `.clip-box`) is as wide as the text up to a cap but never demands
 * width, so one 256-character subject cannot widen a table or a card.
 */
export function userText(text: string, opts: { clip?: boolean } = {}): HTMLElement {
  if (!opts.clip) return h("bdi", { dir: "auto" }, text);
  return h("span", { class: "clip-box" }, h("bdi", { dir: "auto", class: "clip", title: isolated(text) }, text));
}

let ids = 0;
/** A unique element id, for label/aria wiring. */
export function uid(prefix = "f"): string {
  return `${prefix}-${++ids}`;
}

/** Copies text to the clipboard; false when the browser refused. */
export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Fallback for browsers without the async clipboard (or without permission).
    const area = h("textarea", { readonly: true, "aria-hidden": "true", class: "offscreen" });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.value = "";
    area.remove();
    return ok;
  }
}

/** Splits a textarea's or a comma list's text into trimmed, non-empty entries. */
export function listOf(text: string, separator: RegExp = /[\n,]/): string[] {
  return text
    .split(separator)
    .map((s) => s.trim())
    .filter((s) => s !== "");
}
