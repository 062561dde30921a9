// aiops console: progressive enhancement only. Every page works without this script.
"use strict";

// Times are rendered in UTC by the server (<time datetime="...">); show them in the
// browser's own time zone, keeping UTC in the tooltip.
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("time[datetime]")) {
    const d = new Date(el.getAttribute("datetime"));
    if (isNaN(d)) continue;
    el.title = el.textContent;
    el.textContent = d.toLocaleString(document.documentElement.lang || undefined);
  }
});
