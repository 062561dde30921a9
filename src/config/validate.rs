//! The last step of loading: secrets read from their files, then the checks that refuse an
//! unsafe or impossible combination before anything starts. Each message names the key (and
//! its variable) to change, and never shows a secret's value.

use std::time::Duration;

use super::{Error, MIN_WEBHOOK_TOKEN_BYTES, Result, Secret, Settings};

impl Settings {
    /// Resolves indirections and refuses unsafe combinations.
    pub(super) fn finish(&mut self) -> Result<()> {
        if let Some(path) = &self.webhook_token_file {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            self.webhook_token = Some(Secret::new(text.trim()));
        }
        if let Some(t) = &self.webhook_token
            && t.expose().len() < MIN_WEBHOOK_TOKEN_BYTES
        {
            // The length may be said; the value never is.
            return Err(Error::Invalid(format!(
                "the webhook token (webhook_token / AIOPS_WEBHOOK_TOKEN / webhook_token_file) must be at least {MIN_WEBHOOK_TOKEN_BYTES} bytes, it has {}: a short token can be guessed. Generate one with `head -c 24 /dev/urandom | base64` and give Alertmanager the same value",
                t.expose().len()
            )));
        }
        if let Some(k) = &self.approval_secret
            && k.expose().len() < crate::approval::MIN_SECRET_BYTES
        {
            return Err(Error::Invalid(format!(
                "approval_secret (AIOPS_APPROVAL_SECRET) signs approval links and must be at least {} bytes, it has {}: generate one with `head -c 32 /dev/urandom | base64`",
                crate::approval::MIN_SECRET_BYTES,
                k.expose().len()
            )));
        }
        if let Some(url) = &self.external_url {
            // Approval links are built on it: a typo here sends people to the wrong host.
            let parsed = reqwest::Url::parse(url).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
            if parsed.is_none() {
                return Err(Error::Invalid(format!(
                    "external_url (AIOPS_EXTERNAL_URL) must be an http:// or https:// address without query or fragment, such as https://aiops.example.com; got {url:?}"
                )));
            }
            self.external_url = Some(url.trim_end_matches('/').to_owned());
        }
        for (key, url) in [
            (
                "monitoring.prometheus_url (AIOPS_PROMETHEUS_URL)",
                &mut self.monitoring.prometheus_url,
            ),
            (
                "monitoring.grafana.url (AIOPS_GRAFANA_URL)",
                &mut self.monitoring.grafana.url,
            ),
        ] {
            if let Some(u) = url {
                // Paths are joined onto it: a query or fragment would end up in every request.
                let parsed = reqwest::Url::parse(u).ok();
                // Credentials in the URL would be repeated in errors and settings dumps: the
                // token goes in its own setting (a secret), and the URL is never echoed then.
                if parsed
                    .as_ref()
                    .is_some_and(|p| !p.username().is_empty() || p.password().is_some())
                {
                    return Err(Error::Invalid(format!(
                        "{key} must not carry credentials (user:password@); give Grafana's token in monitoring.grafana.token (or _env, _file), and put Prometheus behind a URL without them"
                    )));
                }
                let ok = parsed.is_some_and(|p| {
                    matches!(p.scheme(), "http" | "https")
                        && p.host().is_some()
                        && p.query().is_none()
                        && p.fragment().is_none()
                });
                if !ok {
                    return Err(Error::Invalid(format!(
                        "{key} must be an http:// or https:// address without query or fragment; got {u:?}"
                    )));
                }
                *u = u.trim_end_matches('/').to_owned();
            }
        }
        if self.monitoring.query_timeout.0.is_zero() || self.monitoring.grafana.timeout.0.is_zero()
        {
            return Err(Error::Invalid(
                "monitoring.query_timeout and monitoring.grafana.timeout must be above 0s".into(),
            ));
        }
        crate::maintenance::from_settings(&self.maintenance).map_err(Error::Invalid)?;
        if self.maintenance_refresh.0.is_zero() {
            return Err(Error::Invalid(
                "maintenance_refresh (AIOPS_MAINTENANCE_REFRESH) must be above 0s".into(),
            ));
        }
        if let Some(problem) = self.gitops.problems().into_iter().next() {
            return Err(Error::Invalid(problem));
        }
        if let Some(path) = &self.api.jwt_secret_file {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            self.api.jwt_secret = Some(Secret::new(text.trim()));
        }
        if self
            .api
            .jwt_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() < 32)
        {
            return Err(Error::Invalid(
                "the JWT secret (api.jwt_secret / AIOPS_JWT_SECRET) must be at least 32 bytes"
                    .into(),
            ));
        }
        if self.api.max_page.is_some_and(|n| n < 1) {
            return Err(Error::Invalid("api.max_page must be at least 1".into()));
        }
        if self.api.max_body_bytes.is_some_and(|n| n < 1024) {
            return Err(Error::Invalid(
                "api.max_body_bytes must be at least 1024".into(),
            ));
        }
        if self.api.max_depth.is_some_and(|n| n < 4) {
            return Err(Error::Invalid(
                "api.max_depth must be at least 4 (an app spec nests 4 levels)".into(),
            ));
        }
        let h = &self.http;
        if h.header_read_timeout.0.is_zero()
            || h.body_read_timeout.0.is_zero()
            || h.idle_timeout.0.is_zero()
        {
            return Err(Error::Invalid(
                "http.header_read_timeout, http.body_read_timeout and http.idle_timeout must be above 0s".into(),
            ));
        }
        if h.max_connections == 0 {
            return Err(Error::Invalid(
                "http.max_connections must be at least 1".into(),
            ));
        }
        let day = Duration::from_secs(86_400);
        if self.retention.repairs.0 < 30 * day {
            return Err(Error::Invalid(
                "retention.repairs must be at least 30d: choose: best and the playbooks' kb_* functions read 30 days of repairs".into(),
            ));
        }
        if self.retention.alerts.0 < day || self.retention.audit.0 < day {
            return Err(Error::Invalid(
                "retention.alerts and retention.audit must be at least 1d".into(),
            ));
        }
        if self.retention.stats.0 < self.retention.repairs.0 {
            return Err(Error::Invalid(
                "retention.stats must be at least retention.repairs: the rollup outlives the repairs it counts".into(),
            ));
        }
        if self.intake.max_body_bytes < 1024 {
            return Err(Error::Invalid(
                "intake.max_body_bytes must be at least 1024".into(),
            ));
        }
        if self.jobs.workers == 0 {
            return Err(Error::Invalid("jobs.workers must be at least 1".into()));
        }
        if self.jobs.queue_capacity == 0 {
            return Err(Error::Invalid(
                "jobs.queue_capacity must be at least 1".into(),
            ));
        }
        if self.cluster.state_file.is_some()
            && (self.cluster.kubeconfig.is_some() || self.cluster.in_cluster)
        {
            return Err(Error::Invalid(
                "cluster.state_file (the in-memory cluster) and a Kubernetes backend (cluster.kubeconfig or cluster.in_cluster) exclude each other".into(),
            ));
        }
        if self.playbook.max_replicas == 0 {
            return Err(Error::Invalid(
                "playbook.max_replicas must be at least 1 (it caps what scale() may set)".into(),
            ));
        }
        if self.playbook.max_chain_steps == 0 {
            return Err(Error::Invalid(
                "playbook.max_chain_steps must be at least 1".into(),
            ));
        }
        if self.playbook.timeout.0.is_zero() || self.playbook.call_timeout.0.is_zero() {
            return Err(Error::Invalid(
                "playbook.timeout and playbook.call_timeout must be above 0s".into(),
            ));
        }
        // Below these a shipped playbook cannot run at all: the engine and its inputs alone
        // take a few hundred KiB.
        if self.playbook.max_memory.0 < 1 << 20 {
            return Err(Error::Invalid(
                "playbook.max_memory must be at least 1Mi".into(),
            ));
        }
        if self.playbook.max_cpu.0 < Duration::from_millis(10) {
            return Err(Error::Invalid(
                "playbook.max_cpu must be at least 10ms".into(),
            ));
        }
        if self.playbook.max_log_line.0 < 256
            || self.playbook.max_log.0 < self.playbook.max_log_line.0
        {
            return Err(Error::Invalid(
                "playbook.max_log_line must be at least 256 bytes and playbook.max_log at least playbook.max_log_line".into(),
            ));
        }
        if self.jobs.poll_interval.0.is_zero() {
            return Err(Error::Invalid("jobs.poll_interval must be above 0s".into()));
        }
        let hook = &self.deploy.webhook_url;
        if !(hook.starts_with("http://") || hook.starts_with("https://"))
            || hook.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::Invalid(format!(
                "deploy.webhook_url {hook:?} must be an http:// or https:// URL (AIOPS_DEPLOY_WEBHOOK_URL)"
            )));
        }
        if self.deploy.poll.0.is_zero() || self.deploy.rollout_timeout.0.is_zero() {
            return Err(Error::Invalid(
                "deploy.poll and deploy.rollout_timeout must be above 0s".into(),
            ));
        }
        let url = self.database_url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(Error::Invalid(
                "database_url must start with sqlite: or postgres:// (AIOPS_DATABASE_URL)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::env;
    use super::*;

    #[test]
    fn a_webhook_token_under_16_bytes_is_refused_without_showing_it() {
        let err = Settings::load_with(None, env(&[("AIOPS_WEBHOOK_TOKEN", "fifteen-chars!!")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at least 16 bytes") && err.contains("it has 15"),
            "{err}"
        );
        assert!(!err.contains("fifteen-chars"), "{err}");
        let s = Settings::load_with(None, env(&[("AIOPS_WEBHOOK_TOKEN", "sixteen-chars!!!")]));
        assert!(s.is_ok());
    }
}
