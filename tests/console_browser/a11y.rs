//! Accessibility checks in the browser, on the page as rendered with its stylesheet:
//! form controls have accessible names, images have alt text, headings go in order, text
//! contrast is at least 4.5:1 (computed from the computed styles), and the keyboard reaches the
//! navigation, the filters and the buttons with a visible focus.

use serde::Deserialize;

use super::browser::Browser;

/// What `a11y.js` found on one page: one line per problem.
#[derive(Debug, Deserialize)]
pub struct Report {
    /// Form controls without an accessible name.
    pub labels: Vec<String>,
    /// Images without alt text.
    pub images: Vec<String>,
    /// Headings out of order (or not exactly one h1).
    pub headings: Vec<String>,
    /// Text below 4.5:1 against its background.
    pub contrast: Vec<String>,
    /// How many text elements the contrast check measured (a check that measured nothing
    /// proves nothing).
    pub texts_checked: usize,
}

impl Report {
    /// Every problem, for an assertion message.
    pub fn problems(&self) -> Vec<String> {
        let tag =
            |kind: &str, v: &[String]| v.iter().map(|p| format!("{kind}: {p}")).collect::<Vec<_>>();
        [
            tag("unlabelled control", &self.labels),
            tag("image without alt", &self.images),
            tag("heading order", &self.headings),
            tag("contrast below 4.5:1", &self.contrast),
        ]
        .concat()
    }
}

/// Runs the checks on the page the browser shows.
pub async fn check(b: &Browser) -> Report {
    b.eval(include_str!("a11y.js"), vec![]).await
}

/// The element that has the keyboard focus: its id (or, without one, tag and name), whether it
/// sits inside `within` selectors, and whether its focus is visible (an outline or a box
/// shadow, as `:focus-visible` draws it).
#[derive(Debug, Deserialize)]
pub struct Focused {
    pub id: String,
    pub tag: String,
    /// The selectors of `within` that contain it.
    pub inside: Vec<String>,
    pub visible_focus: bool,
}

const FOCUSED: &str = r#"
const el = document.activeElement;
if (!el || el === document.body) return null;
const st = getComputedStyle(el);
const outline = st.outlineStyle !== "none" && parseFloat(st.outlineWidth) > 0;
const shadow = st.boxShadow && st.boxShadow !== "none";
return {
  id: el.id || "",
  tag: el.tagName.toLowerCase() + (el.name ? "[name=" + el.name + "]" : ""),
  inside: arguments[0].filter((s) => el.closest(s)),
  visible_focus: outline || shadow,
};
"#;

/// Presses Tab from the top of the page up to `presses` times, answering each element focused.
pub async fn tab_through(b: &Browser, within: &[&str], presses: usize) -> Vec<Focused> {
    b.eval::<serde_json::Value>("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); return null;", vec![]).await;
    let within = serde_json::json!(within);
    let mut seen = Vec::new();
    for _ in 0..presses {
        b.tab().await;
        if let Some(f) = b
            .eval::<Option<Focused>>(FOCUSED, vec![within.clone()])
            .await
        {
            seen.push(f);
        }
    }
    seen
}
