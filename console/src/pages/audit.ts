/**
 * Audit log: admin actions, newest first, paged (ListAuditEvents). Rows hold ids only, never
 * secrets. Actor, target and detail may quote an issuer's name or a provider's error text: each
 * is direction-isolated and wraps anywhere, so none can reorder or widen its row (issue 18).
 */
import type { AuditEvent } from "../../../gen/relayapi/v1/admin_service_pb.js";
import { errorMessage, isCanceled } from "../api.js";
import { h, userText } from "../dom.js";
import { fmtDate, t } from "../i18n.js";
import type { Page } from "../page.js";
import { button, CursorPager, empty, errorBox, loading, section, table } from "../ui.js";

const PAGE_SIZE = 25;

export const auditPage: Page = async (ctx, root) => {
  const { api, signal } = ctx;
  const body = h("div", { "aria-live": "polite" }, loading());
  const paging = new CursorPager(() => void load());

  async function load(): Promise<void> {
    try {
      const res = await api.admin.listAuditEvents({ pageSize: PAGE_SIZE, pageToken: paging.cursor }, { signal });
      body.replaceChildren(
        res.events.length === 0
          ? empty(t("audit.none"))
          : table(
              t("nav.audit"),
              [
                { label: t("audit.at"), cell: (e: AuditEvent) => (e.at ? h("time", { datetime: fmtDate(e.at, true) }, fmtDate(e.at)) : "—") },
                { label: t("audit.actor"), cell: (e) => userText(e.actor) },
                { label: t("audit.action"), cell: (e) => h("strong", null, e.action) },
                { label: t("audit.target"), cell: (e) => h("code", { class: "break" }, userText(e.target)) },
                { label: t("audit.detail"), cell: (e) => (e.detail ? h("span", { class: "break" }, userText(e.detail)) : "—") },
              ],
              res.events,
            ),
        paging.view(res.nextPageToken),
      );
    } catch (e) {
      if (!isCanceled(e)) body.replaceChildren(errorBox(errorMessage(e)));
    }
  }

  const refresh = button(t("common.refresh"), () => {
    paging.reset();
    void load();
  });
  root.append(h("h1", null, t("nav.audit")), section(t("audit.title"), h("div", { class: "actions" }, refresh), body));
  await load();
};
