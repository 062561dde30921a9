// aiops console: progressive enhancement only. Every page works without this script.
"use strict";

// Times are rendered in UTC by the server (<time datetime="...">); show them in the
// browser's own time zone, keeping UTC in the tooltip.
function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    if (el.dataset.local) continue;
    const d = new Date(el.getAttribute("datetime"));
    if (isNaN(d)) continue;
    el.title = el.textContent;
    el.textContent = d.toLocaleString(document.documentElement.lang || undefined);
    el.dataset.local = "1";
  }
}

// The alert center: every 30 s while the tab is visible (and at once when it becomes visible
// again after a refresh was missed), fetch this same page (same filters, same cursor) and swap
// in its rows. A failed fetch, or an answer that is not the alert list (the session ended and
// the server sent the login page), stops refreshing: a reload shows what happened.
function alertRefresh() {
  const rows = document.getElementById("alert-rows");
  if (!rows || !window.fetch || !window.DOMParser) return;
  const PERIOD = 30000;
  let last = Date.now();
  let stopped = false;
  let busy = false;
  const note = document.getElementById("alert-refresh-note");
  if (note) note.hidden = false;

  async function refresh() {
    if (stopped || busy || document.visibilityState !== "visible") return;
    busy = true;
    try {
      const resp = await fetch(window.location.href, {
        credentials: "same-origin",
        headers: { "Accept": "text/html" },
      });
      const doc = resp.ok ? new DOMParser().parseFromString(await resp.text(), "text/html") : null;
      const fresh = doc && doc.getElementById("alert-rows");
      if (!fresh) {
        stopped = true;
        if (note) note.hidden = true;
        return;
      }
      const current = document.getElementById("alert-rows");
      current.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.importNode(n, true)));
      localTimes(current);
      last = Date.now();
    } catch (e) {
      stopped = true;
      if (note) note.hidden = true;
    } finally {
      busy = false;
    }
  }

  setInterval(() => {
    if (Date.now() - last >= PERIOD) refresh();
  }, 1000);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && Date.now() - last >= PERIOD) refresh();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  alertRefresh();
});
