//! The rule catalog: `/ui/rules` (every loaded rule with its mode, matchers, guards, chain,
//! GitOps policy and the knowledge base's evidence over the viewer's apps) and
//! `/ui/rules/{name}` (one rule, its playbooks' source highlighted, its latest repairs).
//!
//! Rules are what the daemon runs now: [`crate::pipeline::Pipeline::definitions`], which
//! `/-/reload` swaps as a whole, so the page always matches the running set. Rules are not per
//! app (every signed-in user sees them all); every number about repairs is over the viewer's
//! apps only, as `/api/kb/*` counts them for a token.

mod highlight;
mod view;

pub(super) use view::rfc3339;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use super::session::console;
use super::{UiError, Viewer, page};
use crate::http::AppState;
use crate::kb;
use crate::store;

/// Templates of this page group.
pub(super) const TEMPLATES: &[(&str, &str)] = &[
    ("rules.html", include_str!("templates/rules.html")),
    ("rule.html", include_str!("templates/rule.html")),
    ("rule_mode.html", include_str!("templates/rule_mode.html")),
    (
        "rule_evidence.html",
        include_str!("templates/rule_evidence.html"),
    ),
];

/// Words of this page group: (key, English, 繁體中文).
pub(super) const WORDS: &[(&str, &str, &str)] = &[
    ("catalog.title", "Rules and playbooks", "規則與處置腳本"),
    (
        "catalog.lede",
        "Every rule the daemon runs now, with what the knowledge base learned from its repairs in your apps.",
        "daemon 目前執行中的所有規則，以及知識庫從您應用的修復中學到的成效。",
    ),
    (
        "catalog.window_before",
        "Evidence over the last",
        "成效統計期間：最近",
    ),
    ("catalog.window_after", "days.", "天。"),
    (
        "catalog.no_rules",
        "No rules are loaded.",
        "目前沒有載入任何規則。",
    ),
    ("catalog.col.rule", "Rule", "規則"),
    ("catalog.col.mode", "Mode", "模式"),
    ("catalog.col.matchers", "Matchers", "比對條件"),
    ("catalog.col.playbook", "Playbook", "處置腳本"),
    ("catalog.col.guards", "Guards", "防護限制"),
    ("catalog.col.gitops", "GitOps", "GitOps"),
    ("catalog.col.evidence", "Evidence", "成效證據"),
    (
        "catalog.mode.auto",
        "auto: repairs at once",
        "自動：立即修復",
    ),
    (
        "catalog.mode.approve",
        "approve: waits for a person",
        "核准：等待人員核准",
    ),
    (
        "catalog.mode.shadow",
        "shadow: only records what it would do",
        "影子：只記錄將會執行的動作",
    ),
    (
        "catalog.mode.default",
        "the settings' default",
        "設定檔預設值",
    ),
    ("catalog.approvers", "Who approves", "核准者"),
    (
        "catalog.approvers.none",
        "nobody is on the allow-list",
        "允許清單上沒有任何人",
    ),
    ("catalog.approval_expires", "waits at most", "最長等待"),
    ("catalog.chain", "Escalation chain", "升級鏈"),
    (
        "catalog.chain.none",
        "None: a failed repair stops there.",
        "無：修復失敗即停止。",
    ),
    ("catalog.chain.playbook", "then run", "接著執行"),
    ("catalog.chain.notify", "then notify", "接著通知"),
    (
        "catalog.chain.choose",
        "then the best of",
        "接著執行成效最佳者：",
    ),
    (
        "catalog.gitops.default",
        "per kind of change (gitops.defaults)",
        "依變更種類（gitops.defaults）",
    ),
    ("catalog.guard.wait", "wait before acting", "動作前等待"),
    (
        "catalog.guard.cooldown",
        "cooldown per target",
        "每個目標的冷卻時間",
    ),
    ("catalog.guard.budget", "attempt budget", "嘗試次數上限"),
    (
        "catalog.guard.timeout",
        "playbook time limit",
        "腳本執行時限",
    ),
    ("catalog.guard.dry_run", "dry run", "模擬執行"),
    (
        "catalog.guard.continue",
        "later rules are evaluated too",
        "後續規則也會比對",
    ),
    ("catalog.verify", "Verification", "驗證"),
    ("catalog.verify.none", "None.", "無。"),
    ("catalog.verify.rollout", "rollout within", "部署完成時限"),
    ("catalog.verify.health_url", "health check", "健康檢查"),
    (
        "catalog.verify.resolved_within",
        "alert resolved within",
        "告警解除時限",
    ),
    ("catalog.ev.runs", "Repairs", "修復次數"),
    ("catalog.ev.success", "Success rate", "成功率"),
    (
        "catalog.ev.ttr_mean",
        "Time to recover (mean)",
        "復原時間（平均）",
    ),
    (
        "catalog.ev.ttr_p90",
        "Time to recover (p90)",
        "復原時間（p90）",
    ),
    (
        "catalog.ev.no_runs",
        "No finished repairs yet.",
        "尚無已完成的修復。",
    ),
    ("catalog.ev.shadow", "Shadow runs", "影子模式紀錄"),
    ("catalog.ev.would_act", "would have acted", "次本會動作"),
    (
        "catalog.ev.self_resolved",
        "resolved by themselves",
        "次自行解除",
    ),
    (
        "catalog.ev.self_resolve_median",
        "median time to resolve alone",
        "自行解除的中位時間",
    ),
    ("catalog.rule.title", "Rule", "規則"),
    ("catalog.back", "All rules", "所有規則"),
    ("catalog.defined_at", "Defined at", "定義位置"),
    ("catalog.target", "Target", "目標"),
    (
        "catalog.groups",
        "By alert and playbook",
        "依告警與處置腳本",
    ),
    ("catalog.g.alertname", "Alert", "告警"),
    ("catalog.recent", "Latest repairs", "最近的修復"),
    (
        "catalog.recent.none",
        "No repairs of this rule in your apps.",
        "您的應用中沒有此規則的修復紀錄。",
    ),
    ("catalog.r.repair", "Repair", "修復"),
    ("catalog.r.state", "State", "狀態"),
    ("catalog.r.when", "Started", "開始時間"),
    ("catalog.source", "Playbook source", "處置腳本原始碼"),
    (
        "catalog.state.awaiting_approval",
        "awaiting approval",
        "等待核准",
    ),
    ("catalog.state.queued", "queued", "排隊中"),
    ("catalog.state.waiting", "waiting", "等待中"),
    ("catalog.state.running", "running", "執行中"),
    ("catalog.state.verifying", "verifying", "驗證中"),
    ("catalog.state.succeeded", "succeeded", "成功"),
    ("catalog.state.failed", "failed", "失敗"),
    ("catalog.state.escalated", "escalated", "已升級"),
    ("catalog.state.cancelled", "cancelled", "已取消"),
    ("catalog.state.interrupted", "interrupted", "已中斷"),
    ("catalog.state.reverted", "reverted", "已還原"),
];

/// CSS of this page group, appended to /ui/static/console.css.
pub(super) const CSS: &str = include_str!("static/catalog.css");

/// The window of the evidence: 30 days, long enough for rare alerts to have a history.
const WINDOW_DAYS: i64 = 30;

/// How many of a rule's latest repairs its page lists.
const RECENT: i64 = 10;

/// Routes of this page group.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/rules", get(rules))
        .route("/ui/rules/{name}", get(rule))
}

/// The knowledge base's numbers of every rule over the viewer's apps, since the window start.
struct Kb {
    stats: Vec<kb::Stat>,
    shadow: kb::shadow::ShadowReport,
}

impl Kb {
    async fn read(st: &AppState, viewer: &Viewer) -> Result<Kb, UiError> {
        let s = st.pipeline.store();
        let now = store::now_ms();
        let since = now - WINDOW_DAYS * store::DAY_MS;
        let apps = viewer.claims.visible_apps();
        let fail = |e: kb::Error| UiError::internal(e).in_lang(viewer.lang);
        Ok(Kb {
            stats: kb::stats(s, since, apps).await.map_err(fail)?,
            shadow: kb::shadow::report(s, since, now, apps)
                .await
                .map_err(fail)?,
        })
    }

    fn shadows(&self) -> HashMap<&str, &kb::shadow::RuleEvidence> {
        self.shadow
            .rules
            .iter()
            .map(|e| (e.rule.as_str(), e))
            .collect()
    }
}

#[derive(Serialize)]
struct RulesView {
    window_days: i64,
    rules: Vec<view::RuleRow>,
}

async fn rules(viewer: Viewer, State(st): State<AppState>) -> Result<Response, UiError> {
    let c = console(&st)?;
    let defs = st.pipeline.definitions();
    let kb = Kb::read(&st, &viewer).await?;
    let shadows = kb.shadows();
    let trust = st.pipeline.trust();
    let rules = defs
        .rules
        .rules()
        .iter()
        .map(|r| view::rule_row(r, trust, view::evidence(r, &kb.stats, &shadows)))
        .collect();
    page(
        c,
        &viewer,
        "rules.html",
        RulesView {
            window_days: WINDOW_DAYS,
            rules,
        },
    )
}

/// One playbook's source, highlighted.
#[derive(Serialize)]
struct Source {
    name: String,
    /// Where it was loaded from.
    path: String,
    /// Escaped HTML with highlighting spans (from [`highlight::highlight`]).
    html: String,
}

#[derive(Serialize)]
struct RuleView {
    window_days: i64,
    rule: view::RuleRow,
    sources: Vec<Source>,
    recent: Vec<view::Outcome>,
}

async fn rule(
    viewer: Viewer,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    let c = console(&st)?;
    let defs = st.pipeline.definitions();
    let r = defs.rules.get(&name).ok_or(UiError::NotFound)?;
    let kb = Kb::read(&st, &viewer).await?;
    let row = view::rule_row(
        r,
        st.pipeline.trust(),
        view::evidence(r, &kb.stats, &kb.shadows()),
    );
    let mut seen = std::collections::HashSet::new();
    let sources = r
        .playbooks()
        .filter(|p| seen.insert(*p))
        .filter_map(|p| defs.playbooks.get(p))
        .map(|p| Source {
            name: p.name.clone(),
            path: p.path.display().to_string(),
            html: highlight::highlight(&p.source),
        })
        .collect();
    let recent = st
        .pipeline
        .store()
        .recent_jobs_of_rule(&r.name, viewer.claims.visible_apps(), RECENT)
        .await
        .map_err(|e| UiError::internal(e).in_lang(viewer.lang))?
        .iter()
        .map(view::outcome)
        .collect();
    page(
        c,
        &viewer,
        "rule.html",
        RuleView {
            window_days: WINDOW_DAYS,
            rule: row,
            sources,
            recent,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Claims, Role};
    use crate::ui::{Console, Lang};

    fn viewer(lang: Lang) -> Viewer {
        Viewer {
            claims: Claims {
                sub: "console:alice".into(),
                role: Role::Viewer,
                apps: vec!["shop".into()],
                exp: 0,
                iat: 0,
                nbf: None,
            },
            name: "alice".into(),
            csrf: "c".into(),
            lang,
            path: "/ui/rules".into(),
            session: String::new(),
        }
    }

    fn console() -> std::sync::Arc<Console> {
        let mut settings = crate::config::Settings::default();
        settings.ui.enabled = true;
        Console::from_settings(&settings).unwrap()
    }

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// Every shipped rule, in both languages, as the list and as its own page.
    #[tokio::test]
    async fn every_shipped_rule_renders_in_both_languages() {
        let defs = crate::definitions::Definitions::load(
            &crate::embedded::Source::Embedded,
            &crate::embedded::Source::Embedded,
        )
        .unwrap();
        let trust = crate::rules::Trust::default();
        let c = console();
        let row = |r| view::rule_row(r, &trust, view::evidence(r, &[], &HashMap::new()));
        for lang in Lang::ALL {
            let rules = defs.rules.rules().iter().map(row).collect();
            let html = body(
                page(
                    &c,
                    &viewer(lang),
                    "rules.html",
                    RulesView {
                        window_days: 30,
                        rules,
                    },
                )
                .map_err(|e| format!("{e:?}"))
                .unwrap(),
            )
            .await;
            assert!(html.contains("id=\"page-rules\""), "{html}");
            for r in defs.rules.rules() {
                let v = RuleView {
                    window_days: 30,
                    rule: row(r),
                    sources: vec![Source {
                        name: r.playbook.clone(),
                        path: "p".into(),
                        html: highlight::highlight("let x = 1;"),
                    }],
                    recent: Vec::new(),
                };
                let html = body(
                    page(&c, &viewer(lang), "rule.html", v)
                        .map_err(|e| format!("{e:?}"))
                        .unwrap(),
                )
                .await;
                assert!(html.contains("id=\"playbook-source\""), "{html}");
            }
        }
    }
}
