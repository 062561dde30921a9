//! Repairs run by hand (`POST /api/repairs`): the occurrence a run against a target is
//! recorded as.
//!
//! Jobs and decisions point to an alert occurrence (`alert_events`, NOT NULL), and the executor
//! reads the job's labels, annotations and fingerprint from it (the playbook's `alert`, the
//! messages). A run from a stored alert points to that alert; a run against a target has none,
//! so the request itself is written as an occurrence, marked with the requester in
//! `requested_by` (migration 0017). The alert listings (`listing`) and replay (`history`) leave
//! marked rows out, since no alert fired.

use sqlx::Row;

use super::{Result, WriteTx};
use crate::alert::Alert;

impl WriteTx {
    /// Records `alert` (built by the pipeline from the request) as the occurrence of a run by
    /// hand for `requested_by`, received at `now`; returns its id. Its fingerprint is unique to
    /// the request, so it never conflicts with a stored occurrence nor is resolved by one.
    pub async fn insert_hand_occurrence(
        &mut self,
        alert: &Alert,
        requested_by: &str,
        now: i64,
    ) -> Result<i64> {
        let labels = serde_json::to_string(&alert.labels).expect("string maps serialize");
        let annotations = serde_json::to_string(&alert.annotations).expect("string maps serialize");
        let row = sqlx::query(
            "INSERT INTO alert_events (fingerprint, status, starts_at, ends_at, alertname, namespace, \
             labels, annotations, generator_url, receiver, group_key, received_at, severity, requested_by) \
             VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $8, '', '', $9, $10, $11) RETURNING id",
        )
        .bind(&alert.fingerprint)
        .bind(alert.status.as_str())
        .bind(alert.starts_at_ms())
        .bind(alert.alertname())
        .bind(alert.labels.get("namespace").cloned())
        .bind(labels)
        .bind(annotations)
        .bind(&alert.generator_url)
        .bind(now)
        .bind(alert.labels.get("severity").cloned())
        .bind(requested_by)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(row.try_get("id")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Status;
    use crate::rules::Mode;
    use crate::store::{Decision, ListFilter, NewAlertEvent, Store};

    fn alert(fingerprint: &str, alertname: &str) -> Alert {
        Alert {
            status: Status::Firing,
            labels: [("alertname", alertname), ("namespace", "prod")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: Default::default(),
            starts_at: chrono::DateTime::from_timestamp_millis(500).unwrap(),
            ends_at: None,
            generator_url: String::new(),
            fingerprint: fingerprint.into(),
        }
    }

    #[tokio::test]
    async fn a_run_by_hand_is_neither_an_alert_nor_the_intakes_history() {
        // Arrange: an alert Alertmanager sent, the occurrence a run against a target is
        // recorded as, and a refusal by hand on each (the alert's in the very millisecond it
        // was received, as replay pairs an alert with its own decisions).
        let store = Store::connect("sqlite::memory:", &crate::store::Options::default())
            .await
            .unwrap();
        let received = alert("am", "WebDown");
        let mut tx = store.begin_write().await.unwrap();
        let event = NewAlertEvent {
            alert: &received,
            receiver: "aiops",
            group_key: "{}",
            received_at: 1_000,
        };
        let am = tx.insert_alert_event(&event).await.unwrap().unwrap();
        let hand = tx
            .insert_hand_occurrence(&alert("hand:1", "ManualRepair"), "alice", 2_000)
            .await
            .unwrap();
        for (alert_event_id, created_at) in [(am, 1_000), (hand, 2_000)] {
            tx.insert_decision(&Decision {
                alert_event_id,
                rule: "restart",
                target_key: Some("prod/Deployment/web"),
                verdict: "refused",
                reason: "maintenance",
                detail: "held by the upgrade window",
                job_id: None,
                created_at,
                mode: Mode::Auto,
                requested_by: Some("alice"),
            })
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();

        // Assert: the listings show the alert only, with who asked on its decision.
        let page = ListFilter {
            limit: 10,
            ..ListFilter::default()
        };
        let listed = store.list_alerts(&page).await.unwrap();
        assert_eq!(listed.iter().map(|a| a.id).collect::<Vec<_>>(), [am]);
        assert_eq!(
            listed[0].decisions[0].requested_by.as_deref(),
            Some("alice")
        );
        assert!(
            listed[0].decisions[0]
                .sentence
                .starts_with("alice ran a repair by hand"),
            "{:?}",
            listed[0].decisions[0]
        );
        assert!(store.alert(hand).await.unwrap().is_none());
        // Replay decides the alert again and compares only the intake's decisions.
        let replayed = store.history_alerts(0, 10_000).await.unwrap();
        assert_eq!(replayed.iter().map(|a| a.id).collect::<Vec<_>>(), [am]);
        assert!(store.history_decisions(0, 10_000).await.unwrap().is_empty());
        // A window held no alert: a person's run was refused.
        let mut tx = store.begin_write().await.unwrap();
        assert!(tx.maintenance_held(0, 10_000).await.unwrap().is_empty());
        assert_eq!(
            tx.held_occurrence(&received.dedup_key()).await.unwrap(),
            None
        );
        tx.rollback().await.unwrap();
    }
}
