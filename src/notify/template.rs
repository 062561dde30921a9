//! Message templates (minijinja): a default subject and body for every event in English and
//! Traditional Chinese (Taiwan), and per-event overrides from `notify.templates`.
//!
//! Templates render plain text from the [`Event`] fields (`app`, `namespace`, `target`,
//! `problem`, `action`, `result`, `duration`, `reason`, `steps`, `hint`, `message`, `links`,
//! `labels`, …); each channel escapes the text for its own format, so templates never escape.
//! A template that fails at render time falls back to the default, then to a fixed text:
//! a message is never lost to a template mistake.

use std::collections::BTreeMap;

use minijinja::Environment;

use super::config::{Language, TemplateOverride};
use super::{Event, EventKind};

const LINKS: &str = "{% for l in links %}\n{{ l.name }}: {{ l.url }}{% endfor %}";

fn defaults(lang: Language, kind: EventKind) -> (&'static str, String) {
    use EventKind as E;
    let en = lang == Language::En;
    let (subject, body): (&str, &str) = match (kind, en) {
        (E::RepairStarted, true) => (
            "[aiops] Repair started: {{ app }} ({{ namespace }})",
            "Problem: {{ problem }}\nTarget: {{ target }}\nAction: {{ action }}",
        ),
        (E::RepairStarted, false) => (
            "[aiops] 開始自動修復：{{ app }}（{{ namespace }}）",
            "問題：{{ problem }}\n目標：{{ target }}\n動作：{{ action }}",
        ),
        (E::AutoRepairSuccess, true) => (
            "[aiops] Repaired: {{ app }} ({{ namespace }})",
            "Problem: {{ problem }}\nTarget: {{ target }}\nAction: {{ action }}\nResult: {{ result }}{% if duration %}\nDuration: {{ duration }}{% endif %}",
        ),
        (E::AutoRepairSuccess, false) => (
            "[aiops] 自動修復成功：{{ app }}（{{ namespace }}）",
            "問題：{{ problem }}\n目標：{{ target }}\n動作：{{ action }}\n結果：{{ result }}{% if duration %}\n耗時：{{ duration }}{% endif %}",
        ),
        (E::AutoRepairFailed, true) => (
            "[aiops] Repair failed, trying the next step: {{ app }} ({{ namespace }})",
            "Problem: {{ problem }}\nTarget: {{ target }}\nAction: {{ action }}\nResult: {{ result }}{% if duration %}\nDuration: {{ duration }}{% endif %}{% if reason %}\nNext: {{ reason }}{% endif %}",
        ),
        (E::AutoRepairFailed, false) => (
            "[aiops] 自動修復失敗，嘗試下一步：{{ app }}（{{ namespace }}）",
            "問題：{{ problem }}\n目標：{{ target }}\n動作：{{ action }}\n結果：{{ result }}{% if duration %}\n耗時：{{ duration }}{% endif %}{% if reason %}\n下一步：{{ reason }}{% endif %}",
        ),
        (E::Escalation, true) => (
            "[aiops] Manual intervention required: {{ app }} ({{ namespace }})",
            "Problem: {{ problem }}\nTarget: {{ target }}\nWhy: {{ reason }}\nTried:{% for s in steps %}\n  {{ loop.index }}. {{ s.playbook }} (job {{ s.job }}): {{ s.result }}{% else %} nothing{% endfor %}{% if hint %}\nKnowledge base: {{ hint }}{% endif %}{% if duration %}\nDuration: {{ duration }}{% endif %}",
        ),
        (E::Escalation, false) => (
            "[aiops] 需要人工介入：{{ app }}（{{ namespace }}）",
            "問題：{{ problem }}\n目標：{{ target }}\n原因：{{ reason }}\n已嘗試：{% for s in steps %}\n  {{ loop.index }}. {{ s.playbook }}（job {{ s.job }}）：{{ s.result }}{% else %}無{% endfor %}{% if hint %}\n知識庫：{{ hint }}{% endif %}{% if duration %}\n耗時：{{ duration }}{% endif %}",
        ),
        (E::StormBrake, true) => (
            "[aiops] Storm brake engaged: automatic repairs paused",
            "{{ reason }}\nLast alert: {{ problem }} on {{ target }}\nRepairs resume when fewer targets alert; until then every alert goes to humans.",
        ),
        (E::StormBrake, false) => (
            "[aiops] 告警風暴煞車啟動：自動修復已暫停",
            "{{ reason }}\n最後的告警：{{ problem }}（{{ target }}）\n告警的目標減少後自動修復會恢復；在那之前所有告警都交由人工處理。",
        ),
        (E::AlertFired, true) => (
            "[aiops] Alert firing: {{ problem }}",
            "App: {{ app }}\nNamespace: {{ namespace }}{% if severity %}\nSeverity: {{ severity }}{% endif %}",
        ),
        (E::AlertFired, false) => (
            "[aiops] 告警觸發：{{ problem }}",
            "應用：{{ app }}\n命名空間：{{ namespace }}{% if severity %}\n嚴重程度：{{ severity }}{% endif %}",
        ),
        (E::DeploySuccess, true) => (
            "[aiops] Deployed: {{ app }} ({{ namespace }})",
            "{{ message }}",
        ),
        (E::DeploySuccess, false) => (
            "[aiops] 部署成功：{{ app }}（{{ namespace }}）",
            "{{ message }}",
        ),
        (E::PlaybookMessage, true) => (
            "[aiops] {{ app }} ({{ namespace }}): from playbook {{ action }}",
            "{{ message }}\nTarget: {{ target }}",
        ),
        (E::PlaybookMessage, false) => (
            "[aiops] {{ app }}（{{ namespace }}）：來自 playbook {{ action }}",
            "{{ message }}\n目標：{{ target }}",
        ),
        (E::Test, true) => ("[aiops] Test message", "{{ message }}"),
        (E::Test, false) => ("[aiops] 測試訊息", "{{ message }}"),
    };
    (subject, format!("{body}{LINKS}"))
}

/// The compiled templates of every event.
pub struct Templates {
    env: Environment<'static>,
}

fn name(kind: EventKind, part: &str, default: bool) -> String {
    format!(
        "{}.{part}{}",
        kind.as_str(),
        if default { ".default" } else { "" }
    )
}

impl Templates {
    /// Compiles the defaults of `lang` and the overrides; a syntax error names the event.
    pub fn new(
        lang: Language,
        overrides: &BTreeMap<EventKind, TemplateOverride>,
    ) -> Result<Templates, String> {
        let mut env = Environment::new();
        for kind in EventKind::ALL {
            let (subject, body) = defaults(lang, kind);
            env.add_template_owned(name(kind, "subject", true), subject.to_string())
                .map_err(|e| format!("default {} subject: {e}", kind.as_str()))?;
            env.add_template_owned(name(kind, "body", true), body)
                .map_err(|e| format!("default {} body: {e}", kind.as_str()))?;
            let o = overrides.get(&kind);
            for (part, text) in [
                ("subject", o.and_then(|o| o.subject.clone())),
                ("body", o.and_then(|o| o.body.clone())),
            ] {
                if let Some(text) = text {
                    env.add_template_owned(name(kind, part, false), text)
                        .map_err(|e| format!("{}.{part}: {e}", kind.as_str()))?;
                }
            }
        }
        Ok(Templates { env })
    }

    fn render_part(&self, event: &Event, part: &str) -> String {
        let ctx = minijinja::Value::from(minijinja::value::Serde(event));
        let try_render = |default: bool| -> Option<Result<String, minijinja::Error>> {
            let t = self
                .env
                .get_template(&name(event.kind, part, default))
                .ok()?;
            Some(t.render(&ctx))
        };
        match try_render(false) {
            Some(Ok(s)) => return s,
            Some(Err(e)) => {
                tracing::error!(event = event.kind.as_str(), part, error = %e, "notify template failed; using the default")
            }
            None => {}
        }
        match try_render(true) {
            Some(Ok(s)) => s,
            _ => match part {
                "subject" => format!("[aiops] {} {}", event.kind.as_str(), event.target),
                _ => serde_json::to_string_pretty(event).unwrap_or_default(),
            },
        }
    }

    /// The subject (one line) and body of an event.
    pub fn render(&self, event: &Event) -> (String, String) {
        let subject = self
            .render_part(event, "subject")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let body = cap(self.render_part(event, "body").trim(), MAX_BODY_CHARS);
        (cap(&subject, MAX_SUBJECT_CHARS), body)
    }
}

/// The longest body a message carries: a playbook may `notify()` a whole log, and every
/// channel splits or rejects long texts (Slack's blocks, Telegram's parts, each one a message).
pub const MAX_BODY_CHARS: usize = 16_000;
/// The longest subject.
pub const MAX_SUBJECT_CHARS: usize = 300;

/// `text` cut to at most `max` characters, saying so at the end.
fn cap(text: &str, max: usize) -> String {
    const MARK: &str = "… (truncated)";
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some(_) => {
            let keep = max.saturating_sub(MARK.chars().count());
            let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
            format!("{}{MARK}", &text[..end])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Link, Tried};

    #[test]
    fn a_huge_body_is_cut_to_the_cap_on_a_character_boundary_and_says_so() {
        let long = "日".repeat(MAX_BODY_CHARS * 3);
        let c = cap(&long, MAX_BODY_CHARS);
        assert_eq!(c.chars().count(), MAX_BODY_CHARS);
        assert!(c.ends_with("… (truncated)"));
        assert_eq!(cap("short", 10), "short");
        assert_eq!(cap("exactly10!", 10), "exactly10!");
    }

    fn escalation() -> Event {
        Event {
            kind: EventKind::Escalation,
            app: "web".into(),
            namespace: "prod".into(),
            target: "prod/Deployment/web".into(),
            problem: "KubePodCrashLooping: web is crash looping".into(),
            reason: "the escalation chain is exhausted".into(),
            steps: vec![
                Tried {
                    job: 1,
                    playbook: "restart".into(),
                    result: "failure: progress deadline exceeded".into(),
                },
                Tried {
                    job: 2,
                    playbook: "rollback".into(),
                    result: "failure: no previous revision".into(),
                },
            ],
            hint: "last time, scale_memory fixed this in 4 min".into(),
            links: vec![Link {
                name: "runbook".into(),
                url: "https://runbooks.example/web".into(),
            }],
            ..Event::default()
        }
    }

    #[test]
    fn the_english_escalation_lists_every_step_the_hint_and_the_links() {
        let t = Templates::new(Language::En, &BTreeMap::new()).unwrap();
        let (subject, body) = t.render(&escalation());
        assert_eq!(subject, "[aiops] Manual intervention required: web (prod)");
        assert!(
            body.contains("  1. restart (job 1): failure: progress deadline exceeded"),
            "{body}"
        );
        assert!(
            body.contains("  2. rollback (job 2): failure: no previous revision"),
            "{body}"
        );
        assert!(
            body.contains("Knowledge base: last time, scale_memory fixed this in 4 min"),
            "{body}"
        );
        assert!(
            body.ends_with("runbook: https://runbooks.example/web"),
            "{body}"
        );
    }

    #[test]
    fn the_traditional_chinese_escalation_says_manual_intervention_required() {
        let t = Templates::new(Language::ZhTw, &BTreeMap::new()).unwrap();
        let (subject, body) = t.render(&escalation());
        assert_eq!(subject, "[aiops] 需要人工介入：web（prod）");
        assert!(body.contains("已嘗試："), "{body}");
        assert!(body.contains("1. restart（job 1）"), "{body}");
    }

    #[test]
    fn every_event_has_defaults_in_both_languages() {
        for lang in [Language::En, Language::ZhTw] {
            let t = Templates::new(lang, &BTreeMap::new()).unwrap();
            for kind in EventKind::ALL {
                let (subject, _) = t.render(&Event {
                    kind,
                    app: "web".into(),
                    ..Event::default()
                });
                assert!(subject.starts_with("[aiops] "), "{kind:?}: {subject}");
            }
        }
    }

    #[test]
    fn an_override_replaces_one_part_of_one_event() {
        let mut o = BTreeMap::new();
        o.insert(
            EventKind::Escalation,
            TemplateOverride {
                subject: Some("HELP {{ app | upper }}".into()),
                body: None,
            },
        );
        let t = Templates::new(Language::En, &o).unwrap();
        let (subject, body) = t.render(&escalation());
        assert_eq!(subject, "HELP WEB");
        assert!(body.starts_with("Problem: "), "{body}");
    }

    #[test]
    fn a_syntax_error_in_an_override_names_the_event() {
        let mut o = BTreeMap::new();
        o.insert(
            EventKind::StormBrake,
            TemplateOverride {
                subject: None,
                body: Some("{% for %}".into()),
            },
        );
        let err = Templates::new(Language::En, &o).err().unwrap();
        assert!(err.starts_with("storm_brake.body:"), "{err}");
    }
}
