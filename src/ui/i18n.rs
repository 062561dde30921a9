//! The console's two languages, English and Traditional Chinese (Taiwan).
//!
//! Templates never hold words: they call `t("key")`, which looks the key up in the language of
//! the page being rendered (the `lang` variable [`super::page`] sets). Each page group lists its
//! words in its own `WORDS` table, `(key, English, 繁體中文)`; a key no table has is an error at
//! render time, so a test that renders a page finds a missing word. Keys are namespaced by the
//! page group (`alerts.title`), common words are `common.*`.

use std::collections::HashMap;
use std::sync::LazyLock;

use minijinja::{Environment, Error, ErrorKind, State};

use crate::notify::config::Language;

/// A console language.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// Traditional Chinese (Taiwan).
    ZhTw,
}

impl Lang {
    /// Both languages, in the order the switcher shows them.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhTw];

    /// The BCP 47 tag: the `lang` attribute, the cookie's value and the switcher's path.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhTw => "zh-TW",
        }
    }

    /// The language's own name, for the switcher.
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhTw => "繁體中文",
        }
    }

    /// A tag as the cookie, the switcher or `Accept-Language` spell it (case-insensitive;
    /// `zh`, `zh-Hant` and `zh-TW` are Traditional Chinese).
    pub fn parse(tag: &str) -> Option<Lang> {
        let tag = tag.trim().to_ascii_lowercase().replace('_', "-");
        match tag.as_str() {
            "en" => Some(Lang::En),
            t if t.starts_with("en-") => Some(Lang::En),
            "zh" | "zh-tw" | "zh-hant" | "zh-hant-tw" | "zh-hk" | "zh-mo" => Some(Lang::ZhTw),
            _ => None,
        }
    }

    /// The word for `key` in this language.
    pub fn word(self, key: &str) -> Option<&'static str> {
        WORDS.get(key).map(|(en, zh)| match self {
            Lang::En => *en,
            Lang::ZhTw => *zh,
        })
    }
}

impl From<Language> for Lang {
    fn from(l: Language) -> Lang {
        match l {
            Language::En => Lang::En,
            Language::ZhTw => Lang::ZhTw,
        }
    }
}

impl From<Lang> for Language {
    fn from(l: Lang) -> Language {
        match l {
            Lang::En => Language::En,
            Lang::ZhTw => Language::ZhTw,
        }
    }
}

/// Words every page uses: the layout, the navigation, errors.
pub(super) const COMMON: &[(&str, &str, &str)] = &[
    ("common.app_name", "aiops console", "aiops 主控台"),
    ("common.nav", "Main navigation", "主選單"),
    ("common.nav.alerts", "Alerts", "告警"),
    ("common.nav.repairs", "Repairs", "修復"),
    ("common.nav.rules", "Rules", "規則"),
    ("common.nav.inbox", "Inbox", "待辦"),
    ("common.nav.apps", "Apps", "應用"),
    ("common.language", "Language", "語言"),
    ("common.signed_in_as", "Signed in as", "目前登入"),
    ("common.sign_out", "Sign out", "登出"),
    ("common.skip", "Skip to content", "跳至主要內容"),
    ("common.filter", "Filter", "篩選"),
    ("common.clear", "Clear", "清除"),
    ("common.next_page", "Older", "較舊"),
    ("common.none", "Nothing to show.", "沒有資料。"),
    ("common.any", "Any", "全部"),
    ("common.role.admin", "admin", "管理員"),
    ("common.role.editor", "editor", "編輯者"),
    ("common.role.viewer", "viewer", "檢視者"),
    ("common.error.not_found", "Not found", "找不到"),
    (
        "common.error.not_found.detail",
        "There is nothing here, or it belongs to an app you cannot see.",
        "這裡沒有內容，或它屬於您無權檢視的應用。",
    ),
    ("common.error.forbidden", "Not allowed", "不允許"),
    ("common.error.bad_request", "Bad request", "請求有誤"),
    ("common.error.csrf", "The form expired", "表單已過期"),
    (
        "common.error.csrf.detail",
        "The form was not sent from this console's page, or your session changed. Reload the page and try again.",
        "表單不是由本主控台頁面送出，或您的登入狀態已變更。請重新載入頁面後再試一次。",
    ),
    ("common.error.internal", "Something went wrong", "發生錯誤"),
    (
        "common.error.internal.detail",
        "The store could not be read. The daemon's log says why.",
        "無法讀取資料庫，請查看 daemon 的日誌。",
    ),
    (
        "common.error.throttled",
        "Too many attempts",
        "嘗試次數過多",
    ),
    ("common.back", "Back", "返回"),
    ("common.time.utc", "UTC", "UTC"),
];

/// Every table: the common words and each page group's.
const TABLES: &[&[(&str, &str, &str)]] = &[
    COMMON,
    super::login::WORDS,
    super::alerts::WORDS,
    super::repairs::WORDS,
    super::catalog::WORDS,
    super::inbox::WORDS,
    super::apps::WORDS,
];

static WORDS: LazyLock<HashMap<&'static str, (&'static str, &'static str)>> = LazyLock::new(|| {
    TABLES
        .iter()
        .flat_map(|t| t.iter())
        .map(|(k, en, zh)| (*k, (*en, *zh)))
        .collect()
});

/// The page's language, from the `lang` variable every page has.
fn page_lang(state: &State) -> Lang {
    state
        .lookup("lang")
        .and_then(|v| v.as_str().and_then(Lang::parse))
        .unwrap_or_default()
}

/// Adds `t(key)` and `t(key, fallback)` to the templates.
///
/// A key built from stored data (`t("alerts.reason." ~ d.reason, d.reason)`) takes the stored
/// code as its fallback: a code this binary has no word for (written by a newer release before a
/// rollback, say) is shown as the code rather than failing the page. A fixed key has no fallback,
/// so a missing word is an error the tests find.
pub(super) fn install(env: &mut Environment<'static>) {
    env.add_function(
        "t",
        |state: &State, key: &str, fallback: Option<minijinja::Value>| -> Result<String, Error> {
            if let Some(w) = page_lang(state).word(key) {
                return Ok(w.to_string());
            }
            match fallback {
                Some(v) => Ok(v.to_string()),
                None => Err(Error::new(
                    ErrorKind::UndefinedError,
                    format!("no console word {key:?} (add it to a WORDS table)"),
                )),
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_word_is_defined_twice_or_left_untranslated() {
        let mut seen = std::collections::HashSet::new();
        for (key, en, zh) in TABLES.iter().flat_map(|t| t.iter()) {
            assert!(seen.insert(*key), "{key} is defined twice");
            assert!(!en.trim().is_empty(), "{key} has no English");
            assert!(!zh.trim().is_empty(), "{key} has no Chinese");
        }
    }

    #[test]
    fn a_word_for_a_stored_code_this_binary_does_not_know_falls_back_to_the_code() {
        let mut env = Environment::new();
        install(&mut env);
        let render = |src: &str| {
            env.render_str(
                src,
                minijinja::context! { lang => "zh-TW", code => "from_the_future" },
            )
        };
        assert_eq!(
            render("{{ t('alerts.reason.' ~ code, code) }}").unwrap(),
            "from_the_future"
        );
        assert_eq!(render("{{ t('common.nav.alerts') }}").unwrap(), "告警");
        assert!(render("{{ t('common.no_such_word') }}").is_err());
    }

    #[test]
    fn language_tags_are_read_as_browsers_and_the_switcher_write_them() {
        assert_eq!(Lang::parse("zh-TW"), Some(Lang::ZhTw));
        assert_eq!(Lang::parse("zh_tw"), Some(Lang::ZhTw));
        assert_eq!(Lang::parse("zh-Hant"), Some(Lang::ZhTw));
        assert_eq!(Lang::parse("en-GB"), Some(Lang::En));
        assert_eq!(Lang::parse("fr"), None);
        for l in Lang::ALL {
            assert_eq!(Lang::parse(l.code()), Some(l));
        }
    }
}
