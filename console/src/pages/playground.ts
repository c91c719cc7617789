/**
 * The playground: the reference browser client of the relay. A token holder (no admin key)
 * pastes a relay token, picks a provider and model and streams a chat answer through
 * RelayService.Relay with connect-web over plain HTTP/1.1 fetch: a `head`, body `chunk`s (the
 * provider's own SSE, parsed here as it arrives), then one `end` with outcome, usage and
 * calls left. The token lives in the input only: never stored, never in a URL.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { RelayService } from "../../../gen/relayapi/v1/relay_service_pb.js";
import { TokenService } from "../../../gen/relayapi/v1/token_service_pb.js";
import { isCanceled, errorMessage } from "../api.js";
import { h, uid, userText } from "../dom.js";
import { fmtDate, fmtNumber, fmtRelative, t } from "../i18n.js";
import type { PublicPage } from "../page.js";
import { chatRequest, parseHeaderLines, PRESETS, shapeOf } from "../relay-call.js";
import { errorOf, SseParser, textOf } from "../sse.js";
import { button, errorBox, field, select, submit } from "../ui.js";
import { realtimePanel } from "../realtime-play.js";
import { outcomeBadge } from "./usage.js";

const transport = createConnectTransport({ baseUrl: location.origin, useBinaryFormat: false });
const relay = createClient(RelayService, transport);
const tokens = createClient(TokenService, transport);

/** A relay token's error, said for a token holder rather than an admin. */
function tokenError(e: unknown): string {
  if (e instanceof ConnectError) {
    if (e.code === Code.Unauthenticated) return t("play.badToken");
    if (e.code === Code.ResourceExhausted) return t("play.exhausted") + (e.rawMessage ? ` (${e.rawMessage})` : "");
  }
  return errorMessage(e);
}

export const playgroundPage: PublicPage = (ctx, root) => {
  const token = h("input", { name: "relay-token", type: "password", autocomplete: "off", spellcheck: "false", required: true, placeholder: "rai_..." });
  const provider = select("provider", [...Object.keys(PRESETS).map((id): [string, string] => [id, id]), ["", t("play.otherProvider")]], "openai");
  const customProvider = h("input", { name: "custom-provider", type: "text", autocomplete: "off", spellcheck: "false", pattern: "[a-z0-9][a-z0-9-]{0,62}" });
  const customField = field(t("play.providerId"), customProvider, t("play.providerIdHint"));
  const listId = uid("models");
  const models = h("datalist", { id: listId });
  const model = h("input", { name: "model", type: "text", list: listId, autocomplete: "off", spellcheck: "false", required: true });
  const prompt = h("textarea", { name: "prompt", rows: 4, required: true });
  const extra = h("textarea", { name: "extra-headers", rows: 2, spellcheck: "false", placeholder: "x-example: 1" });
  const send = submit(t("play.send"));
  const stop = button(t("play.stop"), () => controller?.abort(), "secondary");
  stop.disabled = true;
  const problem = h("div", { "aria-live": "assertive" });
  const tokenInfo = h("div", { "aria-live": "polite" });

  const answer = h("div", { class: "answer", "data-testid": "answer", "aria-busy": "false" });
  const raw = h("pre", { class: "raw", hidden: true });
  const result = h("div", { "aria-live": "polite", "data-testid": "result" });

  const syncProvider = (): void => {
    const preset = PRESETS[provider.value];
    customField.hidden = provider.value !== "";
    models.replaceChildren(...(preset?.models ?? []).map((m) => h("option", { value: m })));
    model.value = preset?.models[0] ?? model.value;
  };
  provider.addEventListener("change", syncProvider);
  syncProvider();

  const check = button(t("play.check"), () => {
    tokenInfo.replaceChildren();
    if (token.value.trim() === "") return void tokenInfo.append(errorBox(t("play.needToken")));
    tokens
      .introspectToken({}, { headers: { authorization: `Bearer ${token.value.trim()}` }, signal: ctx.signal })
      .then(({ token: tok }) => {
        if (!tok) return;
        if (PRESETS[tok.provider]) provider.value = tok.provider;
        else {
          provider.value = "";
          customProvider.value = tok.provider;
        }
        syncProvider();
        if (tok.limits?.models[0]) model.value = tok.limits.models[0];
        tokenInfo.append(
          h(
            "p",
            { class: "result" },
            t("play.tokenInfo", {
              provider: tok.provider,
              left: tok.callsLeft === undefined ? t("tokens.unlimited") : fmtNumber(tok.callsLeft),
              expires: tok.expiresAt ? `${fmtRelative(tok.expiresAt)} (${fmtDate(tok.expiresAt)})` : "—",
            }),
          ),
        );
      })
      .catch((e: unknown) => {
        if (!isCanceled(e)) tokenInfo.append(errorBox(tokenError(e)));
      });
  });

  let controller: AbortController | undefined;
  ctx.signal.addEventListener("abort", () => controller?.abort());

  const form = h(
    "form",
    { class: "form-grid", novalidate: true, "aria-label": t("play.title") },
    h("div", { class: "field full" }, field(t("play.token"), token, t("play.tokenHint")), h("div", { class: "actions" }, check), tokenInfo),
    field(t("common.provider"), provider),
    customField,
    h("div", { class: "field" }, field(t("play.model"), model), models),
    h("div", { class: "field full" }, field(t("play.prompt"), prompt)),
    h("details", { class: "field full" }, h("summary", null, t("play.advanced")), field(t("play.headers"), extra, t("play.headersHint"))),
    h("div", { class: "field full" }, problem, h("div", { class: "actions" }, send, stop)),
  );

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    problem.replaceChildren();
    const id = provider.value === "" ? customProvider.value.trim() : provider.value;
    const missing =
      token.value.trim() === ""
        ? "play.needToken"
        : id === "" || !customProvider.checkValidity()
          ? "play.needProvider"
          : model.value.trim() === ""
            ? "play.needModel"
            : prompt.value.trim() === ""
              ? "play.needPrompt"
              : undefined;
    if (missing) return void problem.append(errorBox(t(missing)));
    void run(id, token.value.trim(), model.value.trim(), prompt.value);
  });

  async function run(providerId: string, secret: string, modelName: string, text: string): Promise<void> {
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    answer.replaceChildren();
    answer.setAttribute("aria-busy", "true");
    raw.hidden = true;
    raw.textContent = "";
    result.replaceChildren(h("p", { class: "loading" }, t("play.waiting")));
    const shape = shapeOf(providerId);
    const req = chatRequest(shape, modelName, text);
    const parser = new SseParser();
    const decoder = new TextDecoder();
    let sse = false;
    let status = 0;
    const inBand: string[] = [];
    const started = performance.now();
    try {
      const stream = relay.relay(
        {
          provider: providerId,
          method: "POST",
          path: req.path,
          query: req.query,
          headers: [{ name: "content-type", value: "application/json" }, ...parseHeaderLines(extra.value)],
          body: new TextEncoder().encode(JSON.stringify(req.body)),
        },
        { headers: { authorization: `Bearer ${secret}` }, signal: controller.signal },
      );
      for await (const msg of stream) {
        const part = msg.part;
        if (part.case === "head") {
          status = part.value.status;
          sse = part.value.headers.some((x) => x.name === "content-type" && x.value.includes("text/event-stream"));
          result.replaceChildren(h("p", { class: "loading" }, t("play.streaming", { status })));
        } else if (part.case === "chunk") {
          if (!sse) {
            raw.hidden = false;
            raw.textContent += decoder.decode(part.value.data, { stream: true });
            continue;
          }
          for (const ev of parser.push(part.value.data)) {
            const delta = textOf(shape, ev);
            if (delta) answer.append(delta);
            const err = errorOf(ev);
            if (err) inBand.push(err);
          }
        } else if (part.case === "end") {
          for (const ev of parser.end()) {
            const delta = textOf(shape, ev);
            if (delta) answer.append(delta);
          }
          const end = part.value;
          const u = end.usage;
          const rows: [string, Node | string][] = [
            [t("play.status"), `HTTP ${status}`],
            [t("play.outcome"), outcomeBadge(end.outcome)],
            [
              t("play.usage"),
              u ? t("play.usageValue", { prompt: fmtNumber(u.promptTokens), completion: fmtNumber(u.completionTokens), total: fmtNumber(u.totalTokens) }) : "—",
            ],
            [t("play.callsLeft"), end.callsLeft === undefined ? t("tokens.unlimited") : fmtNumber(end.callsLeft)],
            [t("play.time"), `${fmtNumber(Math.round(performance.now() - started))} ms`],
          ];
          const errors = [end.error, ...inBand].filter((s) => s !== "");
          // The provider's words: isolated like any text the console did not write (dom.ts).
          if (errors.length > 0) rows.push([t("play.error"), userText(errors.join(" · "))]);
          result.replaceChildren(h("dl", { class: "result-list", "data-testid": "end" }, ...rows.flatMap(([k, v]) => [h("dt", null, k), h("dd", null, v)])));
        }
      }
    } catch (e) {
      result.replaceChildren(controller.signal.aborted ? h("p", null, t("play.stopped")) : errorBox(tokenError(e)));
    } finally {
      answer.setAttribute("aria-busy", "false");
      send.disabled = false;
      stop.disabled = true;
      controller = undefined;
    }
  }

  root.append(
    h("h1", null, t("play.title")),
    h("p", { class: "hint" }, t("play.intro")),
    h("section", { class: "card", "aria-label": t("play.title") }, form),
    h("section", { class: "card", "aria-labelledby": "answer-h" }, h("h2", { id: "answer-h" }, t("play.answer")), answer, raw, result),
    // A Realtime session with the same token and provider (src/realtime-play.ts).
    realtimePanel({ token: () => token.value, provider: () => (provider.value === "" ? customProvider.value.trim() : provider.value), signal: ctx.signal }),
  );
};
