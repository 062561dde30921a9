//! The canned panels every app has: the queries of its Grafana dashboard
//! (`src/deploy/templates/dashboard.json`), on the metrics its PrometheusRule alerts on
//! (kube-state-metrics, cAdvisor, ingress-nginx), so `/api/monitor` shows what the dashboard and
//! the alerts see. A test renders the shipped dashboard and checks each panel's queries against
//! these, so the two cannot drift apart.

use serde::Serialize;

/// One canned panel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Panel {
    /// Available replicas over desired (kube-state-metrics).
    Availability,
    /// Requests per second through the ingress (ingress-nginx).
    Qps,
    /// 95th percentile request latency through the ingress.
    P95Latency,
    /// Working set per pod, and the memory limit (cAdvisor, kube-state-metrics).
    Memory,
    /// Share of requests answered 5xx.
    #[serde(rename = "5xx_rate")]
    ErrorRate,
}

impl Panel {
    /// Every panel, in the dashboard's order.
    pub const ALL: [Panel; 5] = [
        Panel::Availability,
        Panel::Qps,
        Panel::P95Latency,
        Panel::Memory,
        Panel::ErrorRate,
    ];

    /// Its name in `?panel=`.
    pub fn id(self) -> &'static str {
        match self {
            Panel::Availability => "availability",
            Panel::Qps => "qps",
            Panel::P95Latency => "p95_latency",
            Panel::Memory => "memory",
            Panel::ErrorRate => "5xx_rate",
        }
    }

    /// The panel named `id`.
    pub fn parse(id: &str) -> Option<Panel> {
        Panel::ALL.into_iter().find(|p| p.id() == id)
    }

    /// Its title on the dashboard.
    pub fn title(self) -> &'static str {
        match self {
            Panel::Availability => "Availability",
            Panel::Qps => "Requests per second",
            Panel::P95Latency => "p95 latency",
            Panel::Memory => "Memory (working set) per pod",
            Panel::ErrorRate => "5xx rate",
        }
    }

    /// Its unit, as Grafana names it.
    pub fn unit(self) -> &'static str {
        match self {
            Panel::Availability | Panel::ErrorRate => "percentunit",
            Panel::Qps => "reqps",
            Panel::P95Latency => "s",
            Panel::Memory => "bytes",
        }
    }

    /// Its queries for app `name` in `namespace`, in the dashboard's order (refId A, B, …).
    pub fn queries(self, name: &str, namespace: &str) -> Vec<String> {
        let dep = format!(r#"namespace="{namespace}", deployment="{name}""#);
        let ing = format!(r#"namespace="{namespace}", ingress="{name}""#);
        let ctr = format!(r#"namespace="{namespace}", container="{name}""#);
        match self {
            Panel::Availability => vec![format!(
                "kube_deployment_status_replicas_available{{{dep}}} / kube_deployment_spec_replicas{{{dep}}}"
            )],
            Panel::Qps => vec![format!(
                "sum(rate(nginx_ingress_controller_requests{{{ing}}}[5m]))"
            )],
            Panel::P95Latency => vec![format!(
                "histogram_quantile(0.95, sum by (le) (rate(nginx_ingress_controller_request_duration_seconds_bucket{{{ing}}}[5m])))"
            )],
            Panel::Memory => vec![
                format!("sum by (pod) (container_memory_working_set_bytes{{{ctr}}})"),
                format!(r#"max(kube_pod_container_resource_limits{{{ctr}, resource="memory"}})"#),
            ],
            Panel::ErrorRate => vec![format!(
                r#"sum(rate(nginx_ingress_controller_requests{{{ing}, status=~"5.."}}[5m])) / sum(rate(nginx_ingress_controller_requests{{{ing}}}[5m]))"#
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::{AppSpec, Options, render};

    #[test]
    fn the_panels_are_the_queries_of_the_shipped_dashboard() {
        let spec = AppSpec::parse(
            include_str!("../../tests/golden/deploy/flask-basic.app.yaml"),
            "flask-basic.app.yaml",
        )
        .unwrap();
        let rendered = render(&spec, &Options::default()).unwrap();
        let dashboard: serde_json::Value = serde_json::from_str(&rendered.dashboard).unwrap();
        let panels = dashboard["panels"].as_array().unwrap();
        assert_eq!(panels.len(), Panel::ALL.len());
        for (panel, shown) in Panel::ALL.into_iter().zip(panels) {
            assert_eq!(shown["title"], panel.title(), "{panel:?}");
            assert_eq!(
                shown["fieldConfig"]["defaults"]["unit"],
                panel.unit(),
                "{panel:?}"
            );
            let exprs: Vec<&str> = shown["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap())
                .collect();
            assert_eq!(
                exprs,
                panel.queries(&spec.name, &spec.namespace()),
                "{panel:?}"
            );
        }
    }

    #[test]
    fn every_panel_query_is_already_confined_to_its_app() {
        for p in Panel::ALL {
            assert_eq!(Panel::parse(p.id()), Some(p));
            for q in p.queries("web", "shop") {
                super::super::enforce::confine(&q, "shop").unwrap_or_else(|e| panic!("{q}: {e}"));
                assert!(
                    super::super::enforce::confine(&q, "blog").is_err(),
                    "{q} names its namespace, so another app cannot run it"
                );
            }
        }
        assert_eq!(Panel::parse("cpu"), None);
    }
}
