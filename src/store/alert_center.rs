//! The alert center's reads (issue 19): what automation did about an alert, and the jobs of a
//! page of alerts. The listing's filters themselves are in [`super::listing`].

use sqlx::AssertSqlSafe;

use super::jobs::{JOB_COLUMNS, job_from_row};
use super::listing::Where;
use super::{Job, JobState, Result, Store};

/// What automation did about an alert, as the alert center filters it: nothing (no job), or
/// the state of its newest job (a chain's next step is newer than the step that failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Automation {
    /// No job was created for the alert.
    None,
    /// The alert's newest job is in this state.
    Job(JobState),
}

impl Automation {
    /// `none` or a job state's name.
    pub fn parse(s: &str) -> Option<Automation> {
        match s {
            "none" => Some(Automation::None),
            s => JobState::parse(s).map(Automation::Job),
        }
    }

    /// The name [`Automation::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Automation::None => "none",
            Automation::Job(s) => s.as_str(),
        }
    }
}

impl Store {
    /// Every job of these alerts (a chain's steps included), oldest first: what the alert
    /// center says automation did about a page of alerts, in one indexed query.
    pub async fn jobs_of_alerts(&self, alert_ids: &[i64]) -> Result<Vec<Job>> {
        if alert_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = Where::new();
        let ps: Vec<String> = alert_ids.iter().map(|id| w.bind(*id)).collect();
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE alert_event_id IN ({}) ORDER BY id",
            ps.join(", ")
        );
        let rows = sqlx::query_with(AssertSqlSafe(sql), w.args)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_from_row).collect()
    }
}
