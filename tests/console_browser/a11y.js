// Accessibility checks run in the page by tests/console_browser/a11y.rs. Returns
// {labels: [...], images: [...], headings: [...], contrast: [...]}: one entry per problem.
const describe = (el) => {
  let s = el.tagName.toLowerCase();
  if (el.id) s += "#" + el.id;
  if (el.classList.length) s += "." + [...el.classList].join(".");
  return s;
};
const visible = (el) => {
  const st = getComputedStyle(el);
  return st.display !== "none" && st.visibility !== "hidden" && el.getClientRects().length > 0;
};
const text = (el) => (el.textContent || "").replace(/\s+/g, " ").trim();
const labelled = (el) => {
  if ((el.getAttribute("aria-label") || "").trim()) return true;
  const by = el.getAttribute("aria-labelledby");
  if (by && by.split(/\s+/).some((id) => document.getElementById(id) && text(document.getElementById(id)))) return true;
  return [...(el.labels || [])].some((l) => text(l));
};

// Every form control has an accessible name: inputs, selects and text areas a <label> (or an
// ARIA label), buttons their words.
const labels = [];
for (const el of document.querySelectorAll("input, select, textarea, button")) {
  if (el.type === "hidden") continue;
  const ok = el.tagName === "BUTTON" || ["submit", "button", "reset"].includes(el.type)
    ? (text(el) || el.value || el.getAttribute("aria-label") || "").trim() !== ""
    : labelled(el);
  if (!ok) labels.push(describe(el));
}

// Every image says what it shows (alt, empty for decoration).
const images = [...document.querySelectorAll("img:not([alt]), input[type=image]:not([alt])")].map(describe);

// Headings start at h1 and never skip a level going down.
const headings = [];
let last = 0;
for (const h of document.querySelectorAll("h1, h2, h3, h4, h5, h6")) {
  const level = Number(h.tagName[1]);
  if (level > last + 1) headings.push(`${describe(h)} "${text(h).slice(0, 40)}" after h${last}`);
  last = level;
}
if (document.querySelectorAll("h1").length !== 1) headings.push(`${document.querySelectorAll("h1").length} h1 elements`);

// Contrast of every visible text against what is behind it, from the computed styles: the
// text's colour over the backgrounds of the element and its ancestors, blended (alpha) over
// the white canvas. WCAG 2 relative luminance and ratio.
const rgba = (c) => {
  const m = c.match(/rgba?\(([^)]+)\)/);
  if (!m) return null;
  const p = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
};
const over = (top, below) => [0, 1, 2].map((i) => top[i] * top[3] + below[i] * (1 - top[3]));
const backdrop = (el) => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor);
    if (c && c[3] > 0) {
      layers.push(c);
      if (c[3] >= 1) break;
    }
  }
  let rgb = [255, 255, 255];
  for (const l of layers.reverse()) rgb = over(l, rgb);
  return rgb;
};
const luminance = (rgb) => {
  const [r, g, b] = rgb.map((v) => {
    const s = v / 255;
    return s <= 0.03928 ? s / 12.92 : Math.pow((s + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const contrast = [];
const checked = [];
for (const el of document.querySelectorAll("body *")) {
  const own = [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
  if (!own || !visible(el) || ["SCRIPT", "STYLE", "NOSCRIPT"].includes(el.tagName)) continue;
  const st = getComputedStyle(el);
  const bg = backdrop(el);
  const fg = over(rgba(st.color), bg);
  const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  checked.push(describe(el));
  if (ratio < 4.5) {
    contrast.push(`${describe(el)} "${text(el).slice(0, 30)}" ${ratio.toFixed(2)}:1 (rgb(${fg.map(Math.round)}) on rgb(${bg.map(Math.round)}))`);
  }
}
return { labels, images, headings, contrast, texts_checked: checked.length };
