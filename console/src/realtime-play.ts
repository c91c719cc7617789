/**
 * The playground's Realtime mode (issue 25, item 4): a short text session over OpenAI's
 * Realtime WebSocket through the relay, opened with the SDK's `openRealtimeSocket` as an app
 * would (the relay token travels as the `openai-insecure-api-key.<token>` subprotocol, never in
 * the URL). It sends one user message (`conversation.item.create`, then `response.create`),
 * shows the server events and the text deltas as they arrive, and closes after `response.done`.
 */
import { openRealtimeSocket, type RealtimeProvider } from "../../src/sdk/realtime-socket.js";
import { h, userText } from "./dom.js";
import { fmtNumber, t } from "./i18n.js";
import { button, errorBox, field } from "./ui.js";

/** Providers whose Realtime API speaks OpenAI's events. */
const REALTIME: readonly string[] = ["openai", "azure-openai"] satisfies RealtimeProvider[];

export interface RealtimePanelOptions {
  /** The relay token typed into the playground (kept nowhere else). */
  token: () => string;
  /** The provider picked in the playground. */
  provider: () => string;
  /** Leaving the page closes the session. */
  signal: AbortSignal;
}

export function realtimePanel(opts: RealtimePanelOptions): HTMLElement {
  const model = h("input", { name: "realtime-model", type: "text", autocomplete: "off", spellcheck: "false", value: "gpt-realtime" });
  const message = h("textarea", { name: "realtime-message", rows: 2 });
  const problem = h("div", { "aria-live": "assertive" });
  const status = h("p", { "aria-live": "polite", "data-testid": "realtime-status" });
  const text = h("div", { class: "answer", "data-testid": "realtime-text" });
  const events = h("ol", { class: "raw", "data-testid": "realtime-events" });
  let socket: WebSocket | undefined;

  const start = button(t("play.rt.start"), () => open(), "primary");
  const stop = button(t("play.rt.close"), () => socket?.close(1000), "secondary");
  stop.disabled = true;
  opts.signal.addEventListener("abort", () => socket?.close(1000));

  function open(): void {
    problem.replaceChildren();
    const provider = opts.provider();
    const token = opts.token().trim();
    if (token === "") return void problem.append(errorBox(t("play.needToken")));
    if (!REALTIME.includes(provider)) return void problem.append(errorBox(t("play.rt.onlyOpenai")));
    if (message.value.trim() === "") return void problem.append(errorBox(t("play.needPrompt")));
    text.replaceChildren();
    events.replaceChildren();
    status.textContent = t("play.rt.connecting");
    let ws: WebSocket;
    try {
      ws = openRealtimeSocket({ relayUrl: location.origin, token, provider: provider as RealtimeProvider, model: model.value.trim() || undefined });
    } catch (e) {
      status.textContent = "";
      return void problem.append(errorBox(e instanceof Error ? e.message : String(e)));
    }
    socket = ws;
    start.disabled = true;
    stop.disabled = false;
    const said = message.value;
    let used: string | undefined;
    ws.onopen = () => {
      status.textContent = t("play.rt.open");
      ws.send(JSON.stringify({ type: "conversation.item.create", item: { type: "message", role: "user", content: [{ type: "input_text", text: said }] } }));
      // Text only: no audio comes back for a page that plays none.
      ws.send(JSON.stringify({ type: "response.create", response: { output_modalities: ["text"] } }));
    };
    ws.onmessage = (e: MessageEvent) => {
      if (typeof e.data !== "string") return;
      let event: { type?: unknown; delta?: unknown; error?: { message?: unknown }; response?: { usage?: Record<string, unknown> } };
      try {
        event = JSON.parse(e.data) as typeof event;
      } catch {
        return;
      }
      const type = typeof event.type === "string" ? event.type : "?";
      events.append(h("li", null, userText(type)));
      // `response.text.delta` is the beta API's name for the same event.
      if ((type === "response.output_text.delta" || type === "response.text.delta") && typeof event.delta === "string") text.append(event.delta);
      if (type === "error") problem.append(errorBox(String(event.error?.message ?? type)));
      if (type === "response.done") {
        const u = event.response?.usage;
        if (u) used = t("play.rt.usage", { input: fmtNumber(Number(u.input_tokens ?? 0)), output: fmtNumber(Number(u.output_tokens ?? 0)) });
        ws.close(1000);
      }
    };
    ws.onclose = (e: CloseEvent) => {
      // The close code says why (README, "Voice and files"): 1000 done, 4408 time, 4429 budget, 1008 policy.
      const closed = t("play.rt.closed", { code: e.code });
      status.textContent = used === undefined ? closed : `${used} · ${closed}`;
      if (socket === ws) socket = undefined;
      start.disabled = false;
      stop.disabled = true;
    };
  }

  return h(
    "section",
    { class: "card", "aria-labelledby": "realtime-h" },
    h("h2", { id: "realtime-h" }, t("play.rt.title")),
    h("p", { class: "hint" }, t("play.rt.intro")),
    h(
      "div",
      { class: "form-grid" },
      h("div", { class: "field" }, field(t("play.rt.model"), model)),
      h("div", { class: "field full" }, field(t("play.rt.message"), message)),
      h("div", { class: "field full" }, problem, h("div", { class: "actions" }, start, stop)),
    ),
    status,
    text,
    h("details", null, h("summary", null, t("play.rt.events")), events),
  );
}
