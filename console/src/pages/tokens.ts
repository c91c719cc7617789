/**
 * Tokens: list (provider / subject / status filters, paging), issue (the secret shown once,
 * with a ready-to-paste openai snippet), revoke. The list shows public ids and masked key hints
 * only: the relay never returns a token secret or an upstream key after issuing.
 */
import { TokenStatus, type Token } from "../../../gen/relayapi/v1/common_pb.js";
import type { Provider } from "../../../gen/relayapi/v1/admin_service_pb.js";
import { errorMessage, isCanceled } from "../api.js";
import { h, userText } from "../dom.js";
import { fmtDate, fmtNumber, fmtRelative, t, type Key } from "../i18n.js";
import type { Page } from "../page.js";
import { defaultModel } from "../relay-call.js";
import { openaiSnippet } from "../snippet.js";
import { issueForm } from "../tokens-issue.js";
import {
  badge,
  button,
  confirmDialog,
  copyButton,
  CursorPager,
  empty,
  errorBox,
  field,
  loading,
  notify,
  secretOnce,
  section,
  select,
  submit,
  table,
  type Column,
} from "../ui.js";

const PAGE_SIZE = 20;
/** Ids up to this long show whole (`tok_` ids are 26); an issuer's `issuer:jti` may reach 193. */
const ID_SHOWN = 40;

const STATUS: Record<TokenStatus, [Key, "ok" | "warn" | "bad" | "muted"]> = {
  [TokenStatus.UNSPECIFIED]: ["status.unknown", "muted"],
  [TokenStatus.ACTIVE]: ["status.active", "ok"],
  [TokenStatus.REVOKED]: ["status.revoked", "bad"],
  [TokenStatus.EXPIRED]: ["status.expired", "muted"],
  [TokenStatus.EXHAUSTED]: ["status.exhausted", "warn"],
};

function statusBadge(s: TokenStatus): HTMLElement {
  const [key, tone] = STATUS[s];
  return badge(t(key), tone);
}

export const tokensPage: Page = async (ctx, root) => {
  const { api, signal } = ctx;
  const filters = { provider: "", subject: "", status: TokenStatus.UNSPECIFIED };
  const paging = new CursorPager(() => void load());

  const oneTime = h("div");
  const listBody = h("div", { "aria-live": "polite" }, loading());
  root.append(h("h1", null, t("nav.tokens")), oneTime);

  let providers: Provider[] = [];
  try {
    providers = (await api.admin.listProviders({}, { signal })).providers;
  } catch (e) {
    if (!isCanceled(e)) root.append(errorBox(errorMessage(e)));
    return;
  }

  const snippetFor = (tok: Token, secret?: string): string => openaiSnippet(tok.provider, tok.limits?.models[0] ?? defaultModel(tok.provider), secret);

  const onIssued = (res: { secret: string; token?: Token }): void => {
    const tok = res.token;
    if (!tok) return;
    oneTime.replaceChildren(
      secretOnce({
        title: t("tokens.issued", { id: tok.id }),
        secret: res.secret,
        note: t("tokens.shownOnce"),
        extra: h(
          "div",
          { class: "actions" },
          copyButton(t("tokens.copySnippet"), () => snippetFor(tok, res.secret)),
        ),
        onDone: () => oneTime.replaceChildren(),
      }),
    );
    oneTime.scrollIntoView({ block: "nearest" });
    paging.reset();
    void load();
  };

  const revoke = async (tok: Token): Promise<void> => {
    if (!(await confirmDialog(t("tokens.revokeConfirm", { id: tok.id }), t("tokens.revoke")))) return;
    try {
      await api.tokens.revokeToken({ id: tok.id, reason: "revoked in the console" }, { signal });
      notify(t("tokens.revoked", { id: tok.id }));
      void load();
    } catch (e) {
      if (!isCanceled(e)) notify(errorMessage(e), "error");
    }
  };

  const columns: Column<Token>[] = [
    // The id's jti part, the subject and an inline key's tail come from whoever issued the
    // token (a backend with an issuer key): isolated, and the subject clipped (issue 18, finding 7).
    { label: t("common.id"), cell: (r) => h("code", null, userText(r.id, { clip: r.id.length > ID_SHOWN })) },
    { label: t("common.provider"), cell: (r) => userText(r.provider) },
    { label: t("common.subject"), cell: (r) => (r.subject ? userText(r.subject, { clip: true }) : "—"), class: "subject" },
    { label: t("common.status"), cell: (r) => statusBadge(r.status) },
    { label: t("tokens.calls"), cell: (r) => `${fmtNumber(r.callsUsed)} / ${r.limits?.maxCalls === undefined ? "∞" : fmtNumber(r.limits.maxCalls)}` },
    { label: t("tokens.left"), cell: (r) => (r.callsLeft === undefined ? t("tokens.unlimited") : fmtNumber(r.callsLeft)), class: "num" },
    { label: t("tokens.llmTokens"), cell: (r) => fmtNumber(r.tokensUsed), class: "num" },
    {
      label: t("tokens.expires"),
      cell: (r) => (r.expiresAt ? h("time", { datetime: fmtDate(r.expiresAt, true), title: fmtDate(r.expiresAt) }, fmtRelative(r.expiresAt)) : "—"),
    },
    {
      label: t("tokens.credential"),
      cell: (r) =>
        r.pool ? h("span", null, `${t("tokens.pool")}: `, userText(r.pool)) : h("code", null, r.upstreamKeyHint ? userText(r.upstreamKeyHint) : "—"),
    },
    {
      label: t("common.actions"),
      cell: (r) =>
        h(
          "div",
          { class: "row-actions" },
          copyButton(t("tokens.copySnippet"), () => snippetFor(r), { "aria-label": t("tokens.copySnippetFor", { id: r.id }) }),
          r.status === TokenStatus.REVOKED
            ? null
            : button(t("tokens.revoke"), () => void revoke(r), "danger", { "aria-label": t("tokens.revokeId", { id: r.id }) }),
        ),
    },
  ];

  async function load(): Promise<void> {
    listBody.replaceChildren(loading());
    try {
      const res = await api.tokens.listTokens(
        { pageSize: PAGE_SIZE, pageToken: paging.cursor, provider: filters.provider, subject: filters.subject, status: filters.status },
        { signal },
      );
      const filtered = filters.provider !== "" || filters.subject !== "" || filters.status !== TokenStatus.UNSPECIFIED;
      // No token at all yet: the first thing to do here is issue one (issue 21.10).
      if (res.tokens.length === 0 && !filtered && paging.cursor === "") issue.open = true;
      listBody.replaceChildren(
        res.tokens.length === 0
          ? empty(filtered ? t("tokens.noneMatch") : t("tokens.none"))
          : table(t("nav.tokens"), columns, res.tokens, (r) => ({ "data-token-id": r.id })),
        paging.view(res.nextPageToken),
      );
    } catch (e) {
      if (!isCanceled(e)) listBody.replaceChildren(errorBox(errorMessage(e)));
    }
  }

  const fProvider = select("provider", [["", t("common.any")], ...providers.map((p): [string, string] => [p.id, p.id])]);
  const fSubject = h("input", { name: "subject", type: "search", autocomplete: "off" });
  const fStatus = select("status", [
    [String(TokenStatus.UNSPECIFIED), t("common.any")],
    [String(TokenStatus.ACTIVE), t("status.active")],
    [String(TokenStatus.REVOKED), t("status.revoked")],
    [String(TokenStatus.EXPIRED), t("status.expired")],
    [String(TokenStatus.EXHAUSTED), t("status.exhausted")],
  ]);
  const filterForm = h(
    "form",
    { class: "filters", role: "search", "aria-label": t("tokens.filters") },
    field(t("common.provider"), fProvider),
    field(t("common.subject"), fSubject),
    field(t("common.status"), fStatus),
    submit(t("common.apply")),
  );
  filterForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    filters.provider = fProvider.value;
    filters.subject = fSubject.value.trim();
    filters.status = Number(fStatus.value) as TokenStatus;
    paging.reset();
    void load();
  });

  const issue = h("details", { class: "card issue" }, h("summary", null, h("h2", null, t("issue.title"))), issueForm(ctx, providers, onIssued));
  root.append(issue, section(t("tokens.list"), filterForm, listBody));
  await load();
};
