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

/// `no_action` in English: why, by the guard's reason code, and what the on-call can do.
const NO_ACTION_EN: &str = r#"{% set why = {
  "no_target": "the alert's labels do not name the rule's target (namespace, kind, name)",
  "invalid_target": "the labels name a target that is not a valid Kubernetes name",
  "namespace_denied": "the target's namespace is not allowed (guard.namespaces)",
  "storm_brake": "too many targets are alerting at once: the storm brake is on",
  "target_busy": "another repair is already active on the target",
  "cooldown": "this rule repaired the target too recently",
  "budget": "this rule has used its repair budget for the target",
  "maintenance": "a maintenance window holds it"} -%}
{% set todo = {
  "no_target": "add the missing labels (often namespace) to the alerting rule, or give the aiops rule a target it can resolve",
  "invalid_target": "fix the label values the rule's target is built from",
  "namespace_denied": "allow the namespace in guard.namespaces if aiops should repair there; otherwise handle it yourself",
  "storm_brake": "look at the cluster as a whole; repairs resume by themselves when fewer targets alert",
  "target_busy": "wait for that repair's message; if the problem outlives it, look at the target yourself",
  "cooldown": "the last repair did not hold: look at the target yourself",
  "budget": "repeated repairs are not fixing it: find the root cause",
  "maintenance": "nothing, if the work is planned; a summary follows when the window closes"} -%}
aiops saw {{ problem }}{% if alert_count > 1 %} and {{ alert_count - 1 }} other alert{% if alert_count > 2 %}s{% endif %}{% endif %} and did nothing because {{ why[reason] or reason }} ({{ reason }}).
What to do: {{ todo[reason] or "see each alert's decision in /api/alerts" }}
{% for a in alerts %}
- {{ a.problem }}{% if a.target %} on {{ a.target }}{% else %} {{ a.labels }}{% endif %} (rule {{ a.rule }}): {{ a.detail }}{% endfor %}{% if alert_count > alerts|length %}
… and {{ alert_count - alerts|length }} more{% endif %}"#;

/// `no_action` in Traditional Chinese.
const NO_ACTION_ZH: &str = r#"{% set why = {
  "no_target": "告警的標籤沒有指出規則的目標（namespace、kind、name）",
  "invalid_target": "標籤指出的目標不是合法的 Kubernetes 名稱",
  "namespace_denied": "目標的命名空間不在允許範圍內（guard.namespaces）",
  "storm_brake": "同時告警的目標太多：告警風暴煞車已啟動",
  "target_busy": "目標上已有另一個修復正在進行",
  "cooldown": "這條規則最近才修復過這個目標，仍在冷卻期",
  "budget": "這條規則對這個目標的修復次數已用完",
  "maintenance": "維護時段內暫停自動修復"} -%}
{% set todo = {
  "no_target": "在告警規則補上缺少的標籤（通常是 namespace），或讓 aiops 規則的目標可以解析",
  "invalid_target": "修正組成目標的標籤值",
  "namespace_denied": "若要 aiops 在此修復，請在 guard.namespaces 允許該命名空間；否則請人工處理",
  "storm_brake": "請整體檢查叢集；告警的目標減少後修復會自動恢復",
  "target_busy": "等待該修復的通知；若問題在修復後仍在，請人工檢查目標",
  "cooldown": "上次的修復沒有維持住：請人工檢查目標",
  "budget": "重複修復沒有解決問題：請找出根本原因",
  "maintenance": "若是計畫中的作業則無須處理；維護時段結束時會送出摘要"} -%}
aiops 收到 {{ problem }}{% if alert_count > 1 %} 等 {{ alert_count }} 個告警{% endif %}，但沒有採取動作，因為{{ why[reason] or reason }}（{{ reason }}）。
建議：{{ todo[reason] or "在 /api/alerts 查看每個告警的決定" }}
{% for a in alerts %}
- {{ a.problem }}{% if a.target %}（{{ a.target }}）{% else %} {{ a.labels }}{% endif %}，規則 {{ a.rule }}：{{ a.detail }}{% endfor %}{% if alert_count > alerts|length %}
…另有 {{ alert_count - alerts|length }} 個{% endif %}"#;

/// `approval_requested` in English: what would run, on what, why, until when, who may
/// approve, and how (this channel's signed links, else the API).
const APPROVAL_EN: &str = r#"aiops wants to run {{ action }} on {{ target }} and waits for approval.
Problem: {{ problem }}
Rule: {{ rule }}
{% if approval %}Expires: in {{ expires_in }} ({{ approval.expires_at }}); then it goes to humans.
{% endif %}Who may approve: {{ approvers | join(", ") if approvers else "nobody is allow-listed, so every click is refused" }}
{% if approval and approval.approve_url %}Approve: {{ approval.approve_url }}
Reject: {{ approval.reject_url }}{% else %}To decide: the buttons of a chat channel, or POST /api/repairs/{{ job_id }}/approve (or /reject) with an API token whose subject is an allowed approver.{% endif %}"#;

/// `approval_requested` in Traditional Chinese.
const APPROVAL_ZH: &str = r#"aiops 準備對 {{ target }} 執行 {{ action }}，正在等待核准。
問題：{{ problem }}
規則：{{ rule }}
{% if approval %}期限：{{ expires_in }} 內（{{ approval.expires_at }}）；逾時交由人工處理。
{% endif %}可核准者：{{ approvers | join("、") if approvers else "沒有任何人在核准名單上，所有點擊都會被拒絕" }}
{% if approval and approval.approve_url %}核准：{{ approval.approve_url }}
拒絕：{{ approval.reject_url }}{% else %}決定方式：聊天頻道的按鈕，或以主體為核准者的 API token 呼叫 POST /api/repairs/{{ job_id }}/approve（或 /reject）。{% endif %}"#;
/// `maintenance_summary` in English: the window, its time, what it held.
const MAINTENANCE_EN: &str = r#"Window: {{ maintenance.window }} ({{ maintenance.scope }})
From {{ maintenance.starts_at }} to {{ maintenance.ends_at }}{% if maintenance.timezone %} ({{ maintenance.timezone }}){% endif %}
Reason: {{ reason }}{% if maintenance.created_by %} (set by {{ maintenance.created_by }}){% endif %}
Held {{ alert_count }} alert{% if alert_count != 1 %}s{% endif %}, no repair attempted:{% for g in maintenance.groups %}
- {{ g.alertname }} on {{ g.target }}: {{ g.count }}{% endfor %}{% if maintenance.more_groups %}
… and {{ maintenance.more_groups }} more{% endif %}
Alerts still firing are acted on at their next re-send from Alertmanager."#;

/// `maintenance_summary` in Traditional Chinese.
const MAINTENANCE_ZH: &str = r#"維護時段：{{ maintenance.window }}（{{ maintenance.scope }}）
時間：{{ maintenance.starts_at }} 至 {{ maintenance.ends_at }}{% if maintenance.timezone %}（{{ maintenance.timezone }}）{% endif %}
原因：{{ reason }}{% if maintenance.created_by %}（由 {{ maintenance.created_by }} 設定）{% endif %}
期間暫緩 {{ alert_count }} 個告警，未進行任何修復：{% for g in maintenance.groups %}
- {{ g.alertname }}（{{ g.target }}）：{{ g.count }} 次{% endfor %}{% if maintenance.more_groups %}
…另有 {{ maintenance.more_groups }} 項{% endif %}
仍在觸發的告警會在 Alertmanager 下次重送時處理。"#;

/// `auto_repair_reverted` in English: what was undone, by whom, and the change Git needs.
const REVERTED_EN: &str = r#"Problem: {{ problem }}
Target: {{ target }}
Action: {{ action }} (job {{ job_id }})
Result: {{ result }}
{% if gitops %}Owner: {{ gitops.owner }}{% if gitops.reverted_by %} (set back by {{ gitops.reverted_by }}){% endif %}
Make this change in Git: {{ gitops.change }}
{% endif %}The repair is not retried: the controller would undo it again."#;

/// `auto_repair_reverted` in Traditional Chinese.
const REVERTED_ZH: &str = r#"問題：{{ problem }}
目標：{{ target }}
動作：{{ action }}（job {{ job_id }}）
結果：{{ result }}
{% if gitops %}擁有者：{{ gitops.owner }}{% if gitops.reverted_by %}（由 {{ gitops.reverted_by }} 改回）{% endif %}
請在 Git 中修改：{{ gitops.change }}
{% endif %}不會重試此修復：控制器會再次還原它。"#;

/// `gitops_hold` in English: loud, because the controller stays paused until someone acts.
const HOLD_EN: &str = r#"aiops paused {{ gitops.owner }} for {{ target }} ({{ gitops.hold }}) and applied {{ action }}.
Problem: {{ problem }}
Make this change in Git: {{ gitops.change }}
The hold ends at {{ gitops.hold_until }} or as soon as Git agrees with the live object; then the controller reconciles it again, and without the Git change it undoes the repair.{% if gitops.hold_id %}
End it early: POST /api/gitops/holds/{{ gitops.hold_id }}/release{% endif %}"#;

/// `gitops_hold` in Traditional Chinese.
const HOLD_ZH: &str = r#"aiops 已暫停 {{ gitops.owner }} 對 {{ target }} 的同步（{{ gitops.hold }}），並執行了 {{ action }}。
問題：{{ problem }}
請在 Git 中修改：{{ gitops.change }}
暫停將於 {{ gitops.hold_until }} 結束，或在 Git 與線上物件一致時提早結束；之後控制器恢復同步，若 Git 未修改，修復會被還原。{% if gitops.hold_id %}
提早結束：POST /api/gitops/holds/{{ gitops.hold_id }}/release{% endif %}"#;

/// `gitops_hold_released` in English.
const RELEASED_EN: &str = r#"The hold on {{ target }} ended ({% if gitops.released_by == 'expiry' %}it expired{% elif gitops.released_by == 'git' %}Git now agrees with the live object{% else %}released by {{ gitops.released_by }}{% endif %}): {{ gitops.owner }} reconciles it again.
{% if gitops.released_by != 'git' %}If Git still lacks it, the repair is undone now; the change: {{ gitops.change }}{% endif %}"#;

/// `gitops_hold_released` in Traditional Chinese.
const RELEASED_ZH: &str = r#"{{ target }} 的暫停已結束（{% if gitops.released_by == 'expiry' %}已到期{% elif gitops.released_by == 'git' %}Git 已與線上物件一致{% else %}由 {{ gitops.released_by }} 解除{% endif %}）：{{ gitops.owner }} 恢復同步。
{% if gitops.released_by != 'git' %}若 Git 仍未修改，修復將被還原；需要的修改：{{ gitops.change }}{% endif %}"#;

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
            "Problem: {{ problem }}\nTarget: {{ target }}\nWhy: {{ reason }}{% if gitops %}\nOwner: {{ gitops.owner }}\nMake this change in Git: {{ gitops.change }}{% endif %}\nTried:{% for s in steps %}\n  {{ loop.index }}. {{ s.playbook }} (job {{ s.job }}): {{ s.result }}{% else %} nothing{% endfor %}{% if hint %}\nKnowledge base: {{ hint }}{% endif %}{% if duration %}\nDuration: {{ duration }}{% endif %}",
        ),
        (E::Escalation, false) => (
            "[aiops] 需要人工介入：{{ app }}（{{ namespace }}）",
            "問題：{{ problem }}\n目標：{{ target }}\n原因：{{ reason }}{% if gitops %}\n擁有者：{{ gitops.owner }}\n請在 Git 中修改：{{ gitops.change }}{% endif %}\n已嘗試：{% for s in steps %}\n  {{ loop.index }}. {{ s.playbook }}（job {{ s.job }}）：{{ s.result }}{% else %}無{% endfor %}{% if hint %}\n知識庫：{{ hint }}{% endif %}{% if duration %}\n耗時：{{ duration }}{% endif %}",
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
        (E::DeployFailed, true) => (
            "[aiops] Deploy failed: {{ app }} ({{ namespace }})",
            "{{ message }}",
        ),
        (E::DeployFailed, false) => (
            "[aiops] 部署失敗：{{ app }}（{{ namespace }}）",
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
        (E::NoAction, true) => (
            "[aiops] No action ({{ reason }}): {{ problem }}{% if alert_count > 1 %} and {{ alert_count - 1 }} more{% endif %}",
            NO_ACTION_EN,
        ),
        (E::NoAction, false) => (
            "[aiops] 未採取動作（{{ reason }}）：{{ problem }}{% if alert_count > 1 %} 等 {{ alert_count }} 個告警{% endif %}",
            NO_ACTION_ZH,
        ),
        (E::AlertRecovered, true) => (
            "[aiops] Recovered: {{ app }} ({{ namespace }})",
            "Recovered: {{ alertname }} on {{ target }} resolved {{ minutes_after_repair }} minute{% if minutes_after_repair != 1 %}s{% endif %} after the repair ({{ action }} at {{ repair_at }}, {{ result }}).{% if duration %}\nTime to recover: {{ duration }}{% endif %}",
        ),
        (E::AlertRecovered, false) => (
            "[aiops] 已恢復：{{ app }}（{{ namespace }}）",
            "已恢復：{{ alertname }}（{{ target }}）在修復後 {{ minutes_after_repair }} 分鐘解除（{{ action }}，{{ repair_at }}，{{ result }}）。{% if duration %}\n恢復耗時：{{ duration }}{% endif %}",
        ),
        (E::ApprovalRequested, true) => (
            "[aiops] Approval needed: {{ action }} on {{ target }}",
            APPROVAL_EN,
        ),
        (E::ApprovalRequested, false) => (
            "[aiops] 需要核准：{{ action }}（{{ target }}）",
            APPROVAL_ZH,
        ),
        (E::ApprovalDecided, true) => (
            "[aiops] {% if result == 'approved' %}Approved{% else %}Rejected{% endif %}: {{ action }} on {{ target }}",
            "{% if result == 'approved' %}Approved{% else %}Rejected{% endif %} by {{ decided_by }}.\nAction: {{ action }} (job {{ job_id }})\nTarget: {{ target }}\nProblem: {{ problem }}{% if result == 'approved' %}\nThe repair runs now.{% else %}\nThe repair will not run.{% endif %}",
        ),
        (E::ApprovalDecided, false) => (
            "[aiops] {% if result == 'approved' %}已核准{% else %}已拒絕{% endif %}：{{ action }}（{{ target }}）",
            "{% if result == 'approved' %}核准{% else %}拒絕{% endif %}者：{{ decided_by }}。\n動作：{{ action }}（job {{ job_id }}）\n目標：{{ target }}\n問題：{{ problem }}{% if result == 'approved' %}\n修復即將執行。{% else %}\n修復不會執行。{% endif %}",
        ),
        (E::MaintenanceSummary, true) => (
            "[aiops] Maintenance window ended: {{ maintenance.window }}, {{ alert_count }} alert{% if alert_count != 1 %}s{% endif %} held",
            MAINTENANCE_EN,
        ),
        (E::MaintenanceSummary, false) => (
            "[aiops] 維護時段結束：{{ maintenance.window }}，暫緩 {{ alert_count }} 個告警",
            MAINTENANCE_ZH,
        ),
        (E::AutoRepairReverted, true) => (
            "[aiops] Repair reverted by GitOps: {{ app }} ({{ namespace }})",
            REVERTED_EN,
        ),
        (E::AutoRepairReverted, false) => (
            "[aiops] 修復被 GitOps 還原：{{ app }}（{{ namespace }}）",
            REVERTED_ZH,
        ),
        (E::GitopsHold, true) => (
            "[aiops] ⚠ GitOps paused for {{ target }} until {{ gitops.hold_until }}: change Git now",
            HOLD_EN,
        ),
        (E::GitopsHold, false) => (
            "[aiops] ⚠ 已暫停 {{ target }} 的 GitOps 同步至 {{ gitops.hold_until }}：請立即修改 Git",
            HOLD_ZH,
        ),
        (E::GitopsHoldReleased, true) => ("[aiops] GitOps resumed for {{ target }}", RELEASED_EN),
        (E::GitopsHoldReleased, false) => {
            ("[aiops] 已恢復 {{ target }} 的 GitOps 同步", RELEASED_ZH)
        }
    };
    (subject, format!("{body}{LINKS}"))
}

/// A default template that says so plainly when its event is about a shadow job: the subject
/// is its own for the job events (a dry run must never read "Repaired"), else prefixed, and the
/// body opens with what shadow mode means.
fn shadowed(lang: Language, kind: EventKind, (subject, body): (&str, String)) -> (String, String) {
    use EventKind as E;
    let en = lang == Language::En;
    let marked = match (kind, en) {
        (E::RepairStarted, true) => "[shadow] [aiops] Dry run started, nothing will change: {{ app }} ({{ namespace }})".to_string(),
        (E::RepairStarted, false) => "[影子模式] [aiops] 試運行開始，不會變更任何東西：{{ app }}（{{ namespace }}）".to_string(),
        (E::AutoRepairSuccess, true) => "[shadow] [aiops] Would have repaired (dry run, nothing changed): {{ app }} ({{ namespace }})".to_string(),
        (E::AutoRepairSuccess, false) => "[影子模式] [aiops] 將會修復（試運行，未變更任何東西）：{{ app }}（{{ namespace }}）".to_string(),
        (E::AutoRepairFailed, true) => "[shadow] [aiops] Dry run failed, the next step runs as a dry run too: {{ app }} ({{ namespace }})".to_string(),
        (E::AutoRepairFailed, false) => "[影子模式] [aiops] 試運行失敗，下一步同樣以試運行進行：{{ app }}（{{ namespace }}）".to_string(),
        (E::Escalation, true) => "[shadow] [aiops] Dry run: a real repair would have needed a person: {{ app }} ({{ namespace }})".to_string(),
        (E::Escalation, false) => "[影子模式] [aiops] 試運行：實際修復時將需要人工介入：{{ app }}（{{ namespace }}）".to_string(),
        (_, true) => format!("[shadow] {subject}"),
        (_, false) => format!("[影子模式] {subject}"),
    };
    let note = if en {
        "Shadow mode: a dry run, nothing was changed. The actions below are what aiops would have done.\n"
    } else {
        "影子模式：這是試運行，沒有變更任何東西。以下動作是 aiops 將會執行的內容。\n"
    };
    (
        format!("{{% if mode == \"shadow\" %}}{marked}{{% else %}}{subject}{{% endif %}}"),
        format!("{{% if mode == \"shadow\" %}}{note}{{% endif %}}{body}"),
    )
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
            let (subject, body) = shadowed(lang, kind, defaults(lang, kind));
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
    use crate::notify::{Link, Seen, Tried};

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

    fn refused(n: u64) -> Event {
        Event {
            kind: EventKind::NoAction,
            problem: "KubePodCrashLooping".into(),
            reason: "cooldown".into(),
            alert_count: n,
            alerts: (0..n.min(2))
                .map(|i| Seen {
                    problem: "KubePodCrashLooping".into(),
                    target: format!("prod/Deployment/web-{i}"),
                    rule: "restart".into(),
                    detail: "restarted 2m ago".into(),
                    ..Seen::default()
                })
                .collect(),
            ..Event::default()
        }
    }

    #[test]
    fn no_action_says_what_was_seen_why_nothing_was_done_and_what_to_do() {
        let t = Templates::new(Language::En, &BTreeMap::new()).unwrap();
        let (subject, body) = t.render(&refused(3));
        assert_eq!(
            subject,
            "[aiops] No action (cooldown): KubePodCrashLooping and 2 more"
        );
        assert!(
            body.starts_with("aiops saw KubePodCrashLooping and 2 other alerts and did nothing because this rule repaired the target too recently (cooldown).\nWhat to do: the last repair did not hold"),
            "{body}"
        );
        assert!(
            body.contains(
                "- KubePodCrashLooping on prod/Deployment/web-1 (rule restart): restarted 2m ago"
            ),
            "{body}"
        );
        assert!(body.ends_with("… and 1 more"), "{body}");
        let t = Templates::new(Language::ZhTw, &BTreeMap::new()).unwrap();
        let (subject, body) = t.render(&refused(1));
        assert_eq!(
            subject,
            "[aiops] 未採取動作（cooldown）：KubePodCrashLooping"
        );
        assert!(
            body.starts_with("aiops 收到 KubePodCrashLooping，但沒有採取動作，因為這條規則最近才修復過這個目標，仍在冷卻期（cooldown）。"),
            "{body}"
        );
    }

    #[test]
    fn alert_recovered_names_the_minutes_after_the_repair_and_the_playbook() {
        let event = Event {
            kind: EventKind::AlertRecovered,
            app: "Web shop".into(),
            namespace: "prod".into(),
            alertname: "KubePodCrashLooping".into(),
            target: "prod/Deployment/web".into(),
            action: "restart".into(),
            result: "succeeded".into(),
            repair_at: "2026-11-26T04:02:00Z".into(),
            minutes_after_repair: 7,
            duration: "9m".into(),
            ..Event::default()
        };
        let t = Templates::new(Language::En, &BTreeMap::new()).unwrap();
        let (subject, body) = t.render(&event);
        assert_eq!(subject, "[aiops] Recovered: Web shop (prod)");
        assert_eq!(
            body,
            "Recovered: KubePodCrashLooping on prod/Deployment/web resolved 7 minutes after the repair (restart at 2026-11-26T04:02:00Z, succeeded).\nTime to recover: 9m"
        );
        let t = Templates::new(Language::ZhTw, &BTreeMap::new()).unwrap();
        let (_, body) = t.render(&event);
        assert!(
            body.starts_with("已恢復：KubePodCrashLooping（prod/Deployment/web）在修復後 7 分鐘解除（restart，2026-11-26T04:02:00Z，succeeded）。"),
            "{body}"
        );
    }

    fn approval_request(approve_url: &str) -> Event {
        Event {
            kind: EventKind::ApprovalRequested,
            app: "web".into(),
            namespace: "prod".into(),
            target: "prod/Deployment/web".into(),
            problem: "KubePodCrashLooping: web is crash looping".into(),
            action: "restart".into(),
            rule: "restart-web".into(),
            job_id: Some(12),
            approvers: vec!["telegram:42".into(), "email:oncall-mail".into()],
            expires_in: "30m".into(),
            approval: Some(crate::notify::ApprovalPrompt {
                job_id: 12,
                expires_at: "2026-11-30T03:30:00Z".into(),
                approve_url: approve_url.into(),
                reject_url: approve_url.replace("/approve/a", "/approve/r"),
            }),
            ..Event::default()
        }
    }

    #[test]
    fn an_approval_request_says_what_runs_on_what_until_when_who_may_and_how() {
        let t = Templates::new(Language::En, &BTreeMap::new()).unwrap();
        let (subject, body) = t.render(&approval_request("https://aiops.example.com/approve/a"));
        assert_eq!(
            subject,
            "[aiops] Approval needed: restart on prod/Deployment/web"
        );
        assert_eq!(
            body,
            "aiops wants to run restart on prod/Deployment/web and waits for approval.\n\
             Problem: KubePodCrashLooping: web is crash looping\nRule: restart-web\n\
             Expires: in 30m (2026-11-30T03:30:00Z); then it goes to humans.\n\
             Who may approve: telegram:42, email:oncall-mail\n\
             Approve: https://aiops.example.com/approve/a\n\
             Reject: https://aiops.example.com/approve/r"
        );
        let t = Templates::new(Language::ZhTw, &BTreeMap::new()).unwrap();
        let (subject, body) = t.render(&approval_request(""));
        assert_eq!(subject, "[aiops] 需要核准：restart（prod/Deployment/web）");
        assert!(
            body.contains("可核准者：telegram:42、email:oncall-mail"),
            "{body}"
        );
        assert!(
            body.ends_with("POST /api/repairs/12/approve（或 /reject）。"),
            "without links it says how else: {body}"
        );
    }

    #[test]
    fn an_approval_decision_names_who_decided_in_both_languages() {
        let event = Event {
            kind: EventKind::ApprovalDecided,
            target: "prod/Deployment/web".into(),
            action: "restart".into(),
            job_id: Some(12),
            result: "rejected".into(),
            decided_by: "Ann (telegram:42) via oncall-tg".into(),
            ..Event::default()
        };
        let t = Templates::new(Language::En, &BTreeMap::new()).unwrap();
        let (subject, body) = t.render(&event);
        assert_eq!(subject, "[aiops] Rejected: restart on prod/Deployment/web");
        assert!(
            body.starts_with(
                "Rejected by Ann (telegram:42) via oncall-tg.\nAction: restart (job 12)"
            ),
            "{body}"
        );
        let t = Templates::new(Language::ZhTw, &BTreeMap::new()).unwrap();
        let (subject, body) = t.render(&event);
        assert_eq!(subject, "[aiops] 已拒絕：restart（prod/Deployment/web）");
        assert!(body.ends_with("修復不會執行。"), "{body}");
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
