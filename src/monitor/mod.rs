//! Per-app metrics: PromQL from a caller, confined to one app's namespace, run on the
//! configured Prometheus (`monitoring.prometheus_url`), and the canned panels every app has.
//!
//! Why a proxy rather than handing people Prometheus: a token names the apps it may see
//! ([`crate::auth::Claims`]), and Prometheus has no such notion. [`enforce`] rewrites every
//! selector of the query to its app's namespace, so a token for app A reads A's series only,
//! whatever the query; [`panels`] are the queries of the app's Grafana dashboard, under the same
//! rule. The answer is Prometheus's, typed ([`QueryData`]).
//!
//! - [`enforce`]: the rewrite (and what it refuses);
//! - [`panels`]: availability, requests per second, p95 latency, memory, 5xx rate;
//! - this file: the client of Prometheus's HTTP API (`/api/v1/query`, `/api/v1/query_range`).

pub mod enforce;
pub mod panels;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use panels::Panel;

/// Why a query was not answered. Messages never carry a secret (Prometheus takes none here).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query cannot be confined to its app (the caller's to fix).
    #[error(transparent)]
    Confine(#[from] enforce::Error),
    /// The parameters do not make a query (the caller's to fix).
    #[error("{0}")]
    Params(String),
    /// Prometheus refused the query as bad (`bad_data`) or could not evaluate it
    /// (`execution`: duplicate label sets, many-to-many matching): the caller's to fix.
    #[error("Prometheus refused the query: {0}")]
    Refused(String),
    /// Prometheus did not answer in time (its own `timeout`, or ours).
    #[error("Prometheus did not answer within {0:?}")]
    Timeout(Duration),
    /// Prometheus could not be reached, failed, or answered something that is not its API.
    #[error("Prometheus failed: {0}")]
    Upstream(String),
    /// The answer is larger than the daemon holds for one query (the caller's to narrow).
    #[error(
        "the answer is larger than {limit} bytes; narrow the query (fewer series, a shorter range or a longer step)"
    )]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
}

impl Error {
    /// Whether the caller can fix it (a 400), as opposed to Prometheus failing.
    pub fn is_callers(&self) -> bool {
        matches!(
            self,
            Error::Confine(_) | Error::Params(_) | Error::Refused(_) | Error::TooLarge { .. }
        )
    }
}

/// The largest Prometheus answer read for one query: 32 MiB of JSON is hundreds of thousands
/// of samples, more than a person reads or a panel draws, and bounds what one request holds.
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// When to evaluate: one instant, or a range with a resolution. Times and steps are passed as
/// Prometheus reads them (RFC 3339 or Unix seconds; `15s` or seconds), which it checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum When {
    /// `/api/v1/query` at `time` (Prometheus's now when `None`).
    Instant {
        /// The evaluation time.
        time: Option<String>,
    },
    /// `/api/v1/query_range`.
    Range {
        /// First evaluation.
        start: String,
        /// Last evaluation.
        end: String,
        /// Between evaluations.
        step: String,
    },
}

impl When {
    /// From the request's `time`, `start`, `end` and `step`: all three of the range, or at most
    /// `time`.
    pub fn from_params(
        time: Option<String>,
        start: Option<String>,
        end: Option<String>,
        step: Option<String>,
    ) -> Result<When> {
        match (time, start, end, step) {
            (time, None, None, None) => Ok(When::Instant { time }),
            (None, Some(start), Some(end), Some(step)) => Ok(When::Range { start, end, step }),
            (Some(_), ..) => Err(Error::Params(
                "time is for instant queries; a range query takes start, end and step".into(),
            )),
            _ => Err(Error::Params(
                "a range query needs all of start, end and step".into(),
            )),
        }
    }
}

/// One sample: Unix seconds and the value as Prometheus writes it (a string, so `NaN` and
/// `+Inf` survive JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point(pub f64, pub String);

/// One series of an instant vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Its labels.
    pub metric: BTreeMap<String, String>,
    /// Its value (absent for a native histogram, which this API does not show).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Point>,
}

/// One series of a range query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RangeSeries {
    /// Its labels.
    pub metric: BTreeMap<String, String>,
    /// Its values, oldest first (float samples only).
    #[serde(default)]
    pub values: Vec<Point>,
}

/// What a query answered, as Prometheus's `data` says it (`resultType` and `result`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum QueryData {
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range of series.
    Matrix(Vec<RangeSeries>),
    /// A scalar.
    Scalar(Point),
    /// A string.
    String(Point),
}

/// Prometheus's envelope.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// A client of one Prometheus.
#[derive(Clone, Debug)]
pub struct Prometheus {
    http: reqwest::Client,
    base: reqwest::Url,
    timeout: Duration,
}

impl Prometheus {
    /// A client of the Prometheus at `base_url` (`http://prometheus:9090`, a path prefix
    /// allowed); a query may take `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Prometheus> {
        let base = reqwest::Url::parse(&format!("{}/", base_url.trim_end_matches('/')))
            .map_err(|e| Error::Upstream(format!("prometheus_url {base_url:?}: {e}")))?;
        // No redirects: an answer from elsewhere is not this Prometheus's. A little over the
        // query's own timeout, so Prometheus's "query timed out" arrives before ours.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout + Duration::from_secs(2))
            .build()
            .map_err(|e| Error::Upstream(format!("HTTP client: {e}")))?;
        Ok(Prometheus {
            http,
            base,
            timeout,
        })
    }

    /// From the settings: `None` when no Prometheus is configured.
    pub fn from_settings(s: &crate::config::MonitoringSettings) -> Option<Result<Prometheus>> {
        s.prometheus_url
            .as_deref()
            .map(|url| Prometheus::new(url, s.query_timeout.0))
    }

    /// Runs `query` confined to `namespace` ([`enforce::confine`]); the query as sent and
    /// Prometheus's answer.
    pub async fn query(
        &self,
        namespace: &str,
        query: &str,
        when: &When,
    ) -> Result<(String, QueryData)> {
        let confined = enforce::confine(query, namespace)?;
        let data = self.send(&confined, when).await?;
        Ok((confined, data))
    }

    async fn send(&self, promql: &str, when: &When) -> Result<QueryData> {
        let (path, mut params) = match when {
            When::Instant { time } => (
                "api/v1/query",
                time.iter()
                    .map(|t| ("time", t.as_str()))
                    .collect::<Vec<_>>(),
            ),
            When::Range { start, end, step } => (
                "api/v1/query_range",
                vec![
                    ("start", start.as_str()),
                    ("end", end.as_str()),
                    ("step", step.as_str()),
                ],
            ),
        };
        let timeout = format!("{}ms", self.timeout.as_millis());
        params.push(("query", promql));
        params.push(("timeout", timeout.as_str()));
        let mut url = self
            .base
            .join(path)
            .map_err(|e| Error::Upstream(e.to_string()))?;
        // Percent-encoded by `url`, so nothing in the query can add a parameter of its own.
        url.query_pairs_mut().extend_pairs(&params);
        let resp = self.http.get(url).send().await.map_err(|e| {
            if e.is_timeout() {
                Error::Timeout(self.timeout)
            } else {
                Error::Upstream(e.without_url().to_string())
            }
        })?;
        let status = resp.status();
        // Read in chunks up to a cap: any token may ask for every series of its app over a long
        // range, and the answer is held (then decoded and encoded again) in memory.
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Error::Upstream(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(Error::TooLarge {
                    limit: MAX_ANSWER_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        let env: Envelope = serde_json::from_slice(&body).map_err(|_| {
            Error::Upstream(format!("HTTP {status} with a body that is not its API's"))
        })?;
        match (env.status.as_str(), env.data) {
            ("success", Some(data)) => Ok(data),
            _ => {
                let message = env.error.unwrap_or_else(|| format!("HTTP {status}"));
                Err(match env.error_type.as_deref() {
                    Some("bad_data" | "execution") => Error::Refused(message),
                    Some("timeout") | Some("canceled") => Error::Timeout(self.timeout),
                    _ => Error::Upstream(message),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_needs_start_end_and_step_and_no_time() {
        assert_eq!(
            When::from_params(None, None, None, None).unwrap(),
            When::Instant { time: None }
        );
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            When::from_params(None, s("1"), s("2"), s("15s")).unwrap(),
            When::Range {
                start: "1".into(),
                end: "2".into(),
                step: "15s".into()
            }
        );
        for (t, a, b, c) in [
            (None, s("1"), None, s("15s")),
            (None, None, None, s("15s")),
            (s("1"), s("1"), s("2"), s("15s")),
        ] {
            let e = When::from_params(t, a, b, c).unwrap_err();
            assert!(e.is_callers(), "{e}");
        }
    }

    #[test]
    fn prometheus_answers_of_each_type_read_as_typed_data() {
        let v: QueryData = serde_json::from_str(
            r#"{"resultType":"vector","result":[{"metric":{"namespace":"shop"},"value":[1.5,"2"]}]}"#,
        )
        .unwrap();
        assert_eq!(
            v,
            QueryData::Vector(vec![Sample {
                metric: [("namespace".to_string(), "shop".to_string())].into(),
                value: Some(Point(1.5, "2".into()))
            }])
        );
        let m: QueryData = serde_json::from_str(
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1,"NaN"],[2,"+Inf"]]}]}"#,
        )
        .unwrap();
        let QueryData::Matrix(series) = m else {
            panic!("matrix")
        };
        assert_eq!(series[0].values[1], Point(2.0, "+Inf".into()));
        let s: QueryData =
            serde_json::from_str(r#"{"resultType":"scalar","result":[3,"1"]}"#).unwrap();
        assert_eq!(s, QueryData::Scalar(Point(3.0, "1".into())));
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_cap_is_refused_not_held() {
        // A stand-in answering a valid envelope padded past the cap.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let big = format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[]}},"pad":"{}"}}"#,
            "x".repeat(MAX_ANSWER_BYTES)
        );
        let app = axum::Router::new().route(
            "/api/v1/query",
            axum::routing::get(move || {
                let big = big.clone();
                async move { big }
            }),
        );
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let p = Prometheus::new(&format!("http://{addr}"), Duration::from_secs(10)).unwrap();
        let e = p
            .query("shop", "up", &When::Instant { time: None })
            .await
            .unwrap_err();
        assert!(matches!(e, Error::TooLarge { .. }), "{e}");
        assert!(e.is_callers());
        server.abort();
    }
}
