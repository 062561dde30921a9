//! Per-app metrics and dashboards against the real programs (or a faithful stand-in):
//!
//! - `/api/monitor/{app}` through the daemon, against Debian's `prometheus` scraping a small
//!   exporter served here with two apps' series (`namespace` labels). A token for one app must
//!   never read the other's series, whatever the query. Outside CI a missing `prometheus` skips
//!   with the reason; in CI (`CI=true`) it fails.
//! - [`aiops::deploy::grafana`] against a Grafana stand-in on 127.0.0.1 that follows Grafana's
//!   documented folder and dashboard API, versions and 412s included.

use crate::common;
use crate::e2e::harness;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiops::auth::Role;
use aiops::deploy::grafana::{self, FolderState, Grafana, Pushed};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use common::{Db, Spawn, TestApp, repo, wait};
use reqwest::StatusCode as Status;
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef-monitor";

/// The exporter's series. Every value of app `blog` is one no query over `shop`'s series can
/// produce, so a blog value in an answer to a shop token is a leak, whatever the query did.
const EXPOSITION: &str = "\
# TYPE app_value gauge
app_value{namespace=\"shop\",pod=\"shop-1\"} 1
app_value{namespace=\"shop\",pod=\"shop-2\"} 3
app_value{namespace=\"blog\",pod=\"blog-1\"} 7777
# TYPE secret_of_blog gauge
secret_of_blog{namespace=\"blog\"} 9999
# TYPE kube_deployment_spec_replicas gauge
kube_deployment_spec_replicas{namespace=\"shop\",deployment=\"shop\"} 2
kube_deployment_spec_replicas{namespace=\"blog\",deployment=\"blog\"} 8888
# TYPE kube_deployment_status_replicas_available gauge
kube_deployment_status_replicas_available{namespace=\"shop\",deployment=\"shop\"} 1
kube_deployment_status_replicas_available{namespace=\"blog\",deployment=\"blog\"} 8888
";

const BLOG_VALUES: [&str; 3] = ["7777", "8888", "9999"];

/// Serves EXPOSITION at `/metrics` on 127.0.0.1:0; the address.
async fn exporter() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/metrics", get(|| async { EXPOSITION }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Every value (sample values, scalars) and every `namespace` label in an answer's results.
fn values_and_namespaces(body: &Value) -> (Vec<String>, Vec<String>) {
    let mut values = Vec::new();
    let mut namespaces = Vec::new();
    for r in body["results"].as_array().unwrap() {
        let result = &r["result"];
        let point = |p: &Value, out: &mut Vec<String>| out.push(p[1].as_str().unwrap().to_string());
        match r["resultType"].as_str().unwrap() {
            "vector" | "matrix" => {
                for s in result.as_array().unwrap() {
                    if let Some(ns) = s["metric"]["namespace"].as_str() {
                        namespaces.push(ns.to_string());
                    }
                    if !s["value"].is_null() {
                        point(&s["value"], &mut values);
                    }
                    for p in s["values"].as_array().into_iter().flatten() {
                        point(p, &mut values);
                    }
                }
            }
            _ => point(result, &mut values),
        }
    }
    (values, namespaces)
}

/// `GET /api/monitor/{app}` with `params`.
async fn monitor(
    app: &TestApp,
    token: &str,
    name: &str,
    params: &[(&str, &str)],
) -> (Status, Value) {
    let url = with_params(&app.url(&format!("/api/monitor/{name}")), params);
    app.api_send(app.client.get(url), token).await
}

/// `url` with `params` percent-encoded as its query.
fn with_params(url: &str, params: &[(&str, &str)]) -> reqwest::Url {
    reqwest::Url::parse_with_params(url, params).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_one_app_never_reads_another_apps_series_whatever_the_query() {
    let Some(bins) = harness::require(&["prometheus"]) else {
        return;
    };
    let target = exporter().await;
    let closed = common::stand_ins::closed_addr();
    let prom = harness::Prometheus::start(
        &bins[0],
        &target.to_string(),
        &closed.to_string(),
        "groups: []\n",
    )
    .await;
    let prom_url = format!("http://127.0.0.1:{}", prom.port);

    // Prometheus has scraped both apps' series (polled, not slept on).
    let client = reqwest::Client::new();
    wait::until(
        "Prometheus to have both apps' series",
        Duration::from_secs(60),
        async || {
            let v: Value = client
                .get(with_params(
                    &format!("{prom_url}/api/v1/query"),
                    &[("query", "count by (namespace) (app_value)")],
                ))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v["data"]["result"].as_array()?.len() == 2).then_some(())
        },
        || prom.proc.log_tail(),
    )
    .await;

    let app = TestApp::spawn_app(
        Spawn::new(Db::Sqlite)
            .env("AIOPS_JWT_SECRET", SECRET)
            .env("AIOPS_PROMETHEUS_URL", &format!("{prom_url}/")),
    )
    .await;
    let editor = common::api::token(SECRET, Role::Editor, &["shop", "blog"]);
    for name in ["shop", "blog"] {
        let spec = std::fs::read_to_string(repo().join("tests/golden/deploy/flask-basic.app.yaml"))
            .unwrap()
            .replace("name: shop", &format!("name: {name}\nnamespace: {name}"));
        let (status, body) = app.api_register_app(&editor, spec).await;
        assert_eq!(status, 201, "{body}");
    }
    let shop = common::api::token(SECRET, Role::Viewer, &["shop"]);
    let admin = common::api::token(SECRET, Role::Admin, &[]);

    // The data is there: an admin reading blog sees blog's series (so the checks below can fail).
    let (status, body) = monitor(&app, &admin, "blog", &[("query", "secret_of_blog")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(values_and_namespaces(&body).0, ["9999"], "{body}");
    // Prometheus's own answer to a selector of everything, unconfined, has blog's values.
    let raw: Value = client
        .get(with_params(
            &format!("{prom_url}/api/v1/query"),
            &[("query", r#"{__name__=~".+"}"#)],
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(raw.to_string().contains("9999"));

    // The shop token and blog: 404, as for an app that does not exist, panels included.
    for path in [
        "/api/monitor/blog?query=up",
        "/api/monitor/blog?panel=availability",
        "/api/monitor/blog/panels",
        "/api/monitor/nothing?query=up",
    ] {
        let (status, body) = app.api_get(&shop, path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }

    // Queries that try to reach past the app: answered with shop's series only.
    for q in [
        "app_value",
        r#"{__name__=~".+"}"#,
        r#"{__name__=~".+", namespace="shop"}"#,
        r#"{__name__="secret_of_blog"}"#,
        "app_value or on() secret_of_blog",
        "app_value + on() group_left sum(secret_of_blog)",
        "sum by (namespace) ({__name__=~\".+\"})",
        "count({__name__=~\"secret.*\"})",
        "max_over_time(secret_of_blog[1m:1s])",
        "last_over_time({__name__=~\".+\"}[1m:1s])",
        "sum(rate({__name__=~\"app_.*\"}[1m])) or vector(0)",
        r#"label_replace(app_value, "namespace", "blog", "", "")"#,
        r#"label_replace(secret_of_blog, "namespace", "shop", "", "")"#,
        "absent(secret_of_blog)",
        "topk(100, {__name__=~\".+\"} offset 1s)",
        "scalar(sum(secret_of_blog))",
    ] {
        for token in [&shop, &admin] {
            let (status, body) = monitor(&app, token, "shop", &[("query", q)]).await;
            assert_eq!(status, 200, "{q}: {body}");
            let (values, namespaces) = values_and_namespaces(&body);
            for v in &values {
                assert!(
                    !BLOG_VALUES.contains(&v.as_str()),
                    "{q} leaked blog's {v}: {body}"
                );
            }
            // label_replace may relabel shop's own series; any other namespace label is a leak.
            if !q.starts_with("label_replace(app_value") {
                assert!(namespaces.iter().all(|n| n == "shop"), "{q}: {body}");
            }
            let sent = body["results"][0]["query"].as_str().unwrap();
            assert!(
                sent.contains(r#"namespace="shop""#),
                "{q} was sent as {sent}"
            );
        }
    }
    // Relabelled to blog, it is still shop's data (values 1 and 3).
    let (_, body) = monitor(
        &app,
        &shop,
        "shop",
        &[(
            "query",
            r#"label_replace(app_value, "namespace", "blog", "", "")"#,
        )],
    )
    .await;
    let (mut values, _) = values_and_namespaces(&body);
    values.sort();
    assert_eq!(values, ["1", "3"], "{body}");

    // A namespace matcher other than the app's is refused, never widened or narrowed.
    for q in [
        r#"secret_of_blog{namespace="blog"}"#,
        r#"{namespace=~"blog|shop"}"#,
        r#"{namespace=~".+"}"#,
        r#"{__name__=~".+", namespace!="shop"}"#,
        r#"app_value{namespace!~"shop"}"#,
        r#"app_value{namespace="shop"} or app_value{namespace="blog"}"#,
        r#"max_over_time(secret_of_blog{namespace="blog"}[5m:1m])"#,
        r#"info(app_value)"#,
        r#"{__name__=~".+" or namespace="blog"}"#,
    ] {
        let (status, body) = monitor(&app, &shop, "shop", &[("query", q)]).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert_eq!(body["field"], "query", "{q}: {body}");
        assert!(!body.to_string().contains("9999"), "{body}");
    }
    let (_, body) = monitor(&app, &shop, "shop", &[("query", r#"up{namespace="blog"}"#)]).await;
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains(r#"namespace="shop""#) && message.contains(r#"namespace="blog""#),
        "{message}"
    );

    // A range query: a matrix of shop's series only. The newest samples may be younger than
    // the last whole second, so it is asked again until the range holds one.
    let body = wait::until(
        "a range query with samples",
        Duration::from_secs(30),
        async || {
            let now = chrono::Utc::now().timestamp();
            let (start, end) = ((now - 30).to_string(), (now + 1).to_string());
            let params = [
                ("query", r#"{__name__=~"app_value|secret_of_blog"}"#),
                ("start", start.as_str()),
                ("end", end.as_str()),
                ("step", "1s"),
            ];
            let (status, body) = monitor(&app, &shop, "shop", &params).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["results"][0]["resultType"], "matrix", "{body}");
            (!values_and_namespaces(&body).0.is_empty()).then_some(body)
        },
        || prom.proc.log_tail(),
    )
    .await;
    let (values, namespaces) = values_and_namespaces(&body);
    assert!(values.iter().all(|v| v == "1" || v == "3"), "{body}");
    assert!(namespaces.iter().all(|n| n == "shop"), "{body}");

    // The canned availability panel: shop's 1 of 2 replicas.
    let (status, body) = monitor(&app, &shop, "shop", &[("panel", "availability")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["panel"], "availability");
    assert_eq!(values_and_namespaces(&body).0, ["0.5"], "{body}");
    let (status, body) = app.api_get(&shop, "/api/monitor/shop/panels").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 5);

    // Bad input says what is wrong.
    for (params, says) in [
        (vec![], "query"),
        (vec![("query", "up"), ("panel", "qps")], "one of the two"),
        (vec![("panel", "cpu")], "unknown panel"),
        (vec![("query", "sum(")], "not valid PromQL"),
        (vec![("query", "up"), ("start", "1")], "start, end and step"),
        (
            vec![
                ("query", "up"),
                ("start", "x"),
                ("end", "y"),
                ("step", "1s"),
            ],
            "Prometheus refused",
        ),
    ] {
        let (status, body) = monitor(&app, &shop, "shop", &params).await;
        assert_eq!(status, 400, "{params:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{params:?}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_prometheus_the_route_says_how_to_configure_one() {
    let app = TestApp::spawn_app(Spawn::new(Db::Sqlite).env("AIOPS_JWT_SECRET", SECRET)).await;
    let admin = common::api::token(SECRET, Role::Admin, &[]);
    let spec =
        std::fs::read_to_string(repo().join("tests/golden/deploy/flask-basic.app.yaml")).unwrap();
    assert_eq!(app.api_register_app(&admin, spec).await.0, 201);
    let (status, body) = monitor(&app, &admin, "shop", &[("query", "up")]).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("AIOPS_PROMETHEUS_URL"),
        "{body}"
    );
}

// ---- Grafana ----

const GRAFANA_TOKEN: &str = "glsa_stand-in-service-account-token";

/// One request the stand-in received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Value,
}

/// A stored dashboard.
#[derive(Clone, Debug, PartialEq)]
struct Stored {
    id: i64,
    version: i64,
    folder: String,
    model: Value,
}

#[derive(Default)]
struct GrafanaState {
    seen: Vec<Seen>,
    /// uid → title.
    folders: BTreeMap<String, String>,
    dashboards: BTreeMap<String, Stored>,
    next_id: i64,
    /// Someone saves the dashboard in the UI between our read and our write.
    edit_before_next_save: bool,
}

type Shared = Arc<Mutex<GrafanaState>>;

fn message(status: StatusCode, body: Value) -> axum::response::Response {
    (status, Json(body)).into_response()
}

/// Records the request; the 401 to answer unless it carries the service-account token.
fn admit(
    st: &Shared,
    method: &str,
    path: String,
    headers: &HeaderMap,
    body: Value,
) -> Option<axum::response::Response> {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ok = authorization.as_deref() == Some(&format!("Bearer {GRAFANA_TOKEN}"));
    st.lock().unwrap().seen.push(Seen {
        method: method.into(),
        path,
        authorization,
        body,
    });
    (!ok).then(|| message(StatusCode::UNAUTHORIZED, json!({"message": "Unauthorized"})))
}

async fn get_folder(
    State(st): State<Shared>,
    Path(uid): Path<String>,
    h: HeaderMap,
) -> axum::response::Response {
    if let Some(r) = admit(&st, "GET", format!("/api/folders/{uid}"), &h, Value::Null) {
        return r;
    }
    let s = st.lock().unwrap();
    match s.folders.get(&uid) {
        Some(title) => message(
            StatusCode::OK,
            json!({"id": 1, "uid": uid, "title": title, "url": format!("/dashboards/f/{uid}/"), "version": 1}),
        ),
        None => message(
            StatusCode::NOT_FOUND,
            json!({"message": "folder not found", "status": "not-found"}),
        ),
    }
}

async fn create_folder(
    State(st): State<Shared>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    if let Some(r) = admit(&st, "POST", "/api/folders".into(), &h, body.clone()) {
        return r;
    }
    let mut s = st.lock().unwrap();
    let (uid, title) = (
        body["uid"].as_str().unwrap_or_default().to_string(),
        body["title"].as_str().unwrap_or_default().to_string(),
    );
    if title.is_empty() {
        return message(
            StatusCode::BAD_REQUEST,
            json!({"message": "folder title cannot be empty"}),
        );
    }
    if s.folders.contains_key(&uid) || s.folders.values().any(|t| *t == title) {
        return message(
            StatusCode::CONFLICT,
            json!({"message": "a folder with the same name already exists"}),
        );
    }
    s.folders.insert(uid.clone(), title.clone());
    message(
        StatusCode::OK,
        json!({"id": 1, "uid": uid, "title": title, "version": 1}),
    )
}

async fn get_dashboard(
    State(st): State<Shared>,
    Path(uid): Path<String>,
    h: HeaderMap,
) -> axum::response::Response {
    if let Some(r) = admit(
        &st,
        "GET",
        format!("/api/dashboards/uid/{uid}"),
        &h,
        Value::Null,
    ) {
        return r;
    }
    let s = st.lock().unwrap();
    match s.dashboards.get(&uid) {
        Some(d) => {
            let mut model = d.model.clone();
            model["id"] = json!(d.id);
            model["uid"] = json!(uid);
            model["version"] = json!(d.version);
            message(
                StatusCode::OK,
                json!({"dashboard": model, "meta": {"folderUid": d.folder, "url": format!("/d/{uid}/x"), "version": d.version}}),
            )
        }
        None => message(
            StatusCode::NOT_FOUND,
            json!({"message": "Dashboard not found"}),
        ),
    }
}

/// `POST /api/dashboards/db` as Grafana does it: a new uid creates version 1; an existing one
/// needs the version it has (unless `overwrite`); a title taken by another dashboard in the
/// folder is `name-exists`.
async fn save_dashboard(
    State(st): State<Shared>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> axum::response::Response {
    if let Some(r) = admit(&st, "POST", "/api/dashboards/db".into(), &h, body.clone()) {
        return r;
    }
    let mut s = st.lock().unwrap();
    let model = body["dashboard"].clone();
    let uid = model["uid"].as_str().unwrap_or_default().to_string();
    let folder = body["folderUid"].as_str().unwrap_or_default().to_string();
    let overwrite = body["overwrite"].as_bool().unwrap_or(false);
    if !s.folders.contains_key(&folder) {
        return message(
            StatusCode::BAD_REQUEST,
            json!({"message": "folder not found"}),
        );
    }
    if std::mem::take(&mut s.edit_before_next_save)
        && let Some(d) = s.dashboards.get_mut(&uid)
    {
        d.version += 1;
    }
    let title = model["title"].as_str().unwrap_or_default();
    if s.dashboards
        .iter()
        .any(|(u, d)| *u != uid && d.folder == folder && d.model["title"] == title)
    {
        return message(
            StatusCode::PRECONDITION_FAILED,
            json!({"status": "name-exists", "message": "A dashboard with the same name in the folder already exists"}),
        );
    }
    let next_id = s.next_id + 1;
    let (id, version) = match s.dashboards.get(&uid) {
        Some(d) if !overwrite && model["version"].as_i64() != Some(d.version) => {
            return message(
                StatusCode::PRECONDITION_FAILED,
                json!({"status": "version-mismatch", "message": "The dashboard has been changed by someone else"}),
            );
        }
        Some(d) => (d.id, d.version + 1),
        None => {
            if !model["id"].is_null() {
                return message(
                    StatusCode::NOT_FOUND,
                    json!({"message": "Dashboard not found"}),
                );
            }
            (next_id, 1)
        }
    };
    s.next_id = next_id;
    let mut stored = model.clone();
    if let Some(o) = stored.as_object_mut() {
        o.remove("id");
        o.remove("version");
    }
    s.dashboards.insert(
        uid.clone(),
        Stored {
            id,
            version,
            folder,
            model: stored,
        },
    );
    message(
        StatusCode::OK,
        json!({"id": id, "uid": uid, "url": format!("/d/{uid}/x"), "status": "success", "version": version, "slug": "x"}),
    )
}

/// The stand-in on 127.0.0.1:0; its URL and state.
async fn grafana_stand_in() -> (String, Shared) {
    let st = Shared::default();
    let app = Router::new()
        .route("/api/folders/{uid}", get(get_folder))
        .route("/api/folders", post(create_folder))
        .route("/api/dashboards/uid/{uid}", get(get_dashboard))
        .route("/api/dashboards/db", post(save_dashboard))
        .with_state(st.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), st)
}

/// The shop app's rendered dashboard, as a deploy renders it.
fn shop_dashboard() -> String {
    let text =
        std::fs::read_to_string(repo().join("tests/golden/deploy/flask-basic.app.yaml")).unwrap();
    let spec = aiops::deploy::AppSpec::parse(&text, "flask-basic.app.yaml").unwrap();
    aiops::deploy::render(&spec, &aiops::deploy::Options::default())
        .unwrap()
        .dashboard
}

/// The client as the settings make it: the token read from a file named in the settings.
fn client_from_settings(url: &str, token: &str) -> (Grafana, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("grafana-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let settings = dir.path().join("aiops.yaml");
    std::fs::write(
        &settings,
        format!(
            "monitoring:\n  grafana:\n    token_file: {}\n",
            token_file.display()
        ),
    )
    .unwrap();
    let s = aiops::config::Settings::load_with(Some(&settings), |k| {
        (k == "AIOPS_GRAFANA_URL").then(|| url.to_string())
    })
    .unwrap();
    assert!(
        !format!("{s:?}").contains(token),
        "the settings never show the token"
    );
    (
        Grafana::from_settings(&s.monitoring.grafana)
            .unwrap()
            .unwrap(),
        dir,
    )
}

#[tokio::test]
async fn a_dashboard_is_pushed_into_its_apps_folder_once_and_again_only_when_it_changed() {
    let (url, st) = grafana_stand_in().await;
    let (g, _dir) = client_from_settings(&url, GRAFANA_TOKEN);
    let dashboard = shop_dashboard();

    // First deploy: the folder is made, the dashboard created at version 1.
    let pushed = g
        .push_app(
            "shop",
            "Shop \"storefront\"",
            &dashboard,
            "aiops deploy 1.4.2",
        )
        .await
        .unwrap();
    assert_eq!(
        pushed,
        Pushed::Created {
            uid: "shop".into(),
            version: 1,
            url: "/d/shop/x".into()
        }
    );
    {
        let s = st.lock().unwrap();
        let calls: Vec<String> = s
            .seen
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            calls,
            [
                "GET /api/folders/aiops-shop",
                "POST /api/folders",
                "GET /api/dashboards/uid/shop",
                "POST /api/dashboards/db"
            ]
        );
        assert!(
            s.seen
                .iter()
                .all(|r| r.authorization.as_deref() == Some(&*format!("Bearer {GRAFANA_TOKEN}")))
        );
        assert_eq!(
            s.seen[1].body,
            json!({"uid": "aiops-shop", "title": "Shop \"storefront\""})
        );
        let save = &s.seen[3].body;
        assert_eq!(save["folderUid"], "aiops-shop");
        assert_eq!(save["overwrite"], false);
        assert_eq!(save["message"], "aiops deploy 1.4.2");
        assert!(
            save["dashboard"]["id"].is_null() && save["dashboard"].get("version").is_none(),
            "{save}"
        );
        assert_eq!(save["dashboard"]["uid"], "shop");
    }

    // Re-deploy, same dashboard: unchanged, nothing saved, no new version.
    st.lock().unwrap().seen.clear();
    let pushed = g
        .push_app(
            "shop",
            "Shop \"storefront\"",
            &dashboard,
            "aiops deploy 1.4.2",
        )
        .await
        .unwrap();
    assert_eq!(
        pushed,
        Pushed::Unchanged {
            uid: "shop".into(),
            version: 1
        }
    );
    {
        let s = st.lock().unwrap();
        assert!(s.seen.iter().all(|r| r.method == "GET"), "{:?}", s.seen);
        assert_eq!(s.dashboards["shop"].version, 1);
    }

    // A changed dashboard is saved against the version read: 1 → 2.
    let changed = dashboard.replace("\"refresh\": \"30s\"", "\"refresh\": \"1m\"");
    assert_ne!(changed, dashboard);
    st.lock().unwrap().seen.clear();
    let pushed = g
        .push_dashboard(&grafana::folder_uid("shop"), &changed, "refresh 1m")
        .await
        .unwrap();
    assert_eq!(
        pushed,
        Pushed::Updated {
            uid: "shop".into(),
            previous: 1,
            version: 2,
            url: "/d/shop/x".into()
        }
    );
    {
        let s = st.lock().unwrap();
        let save = s.seen.iter().find(|r| r.method == "POST").unwrap();
        assert_eq!(save.body["dashboard"]["version"], 1);
        assert_eq!(save.body["overwrite"], false);
    }

    // Someone saves it in Grafana between our read and our write: reported, not overwritten.
    st.lock().unwrap().edit_before_next_save = true;
    let err = g
        .push_dashboard(&grafana::folder_uid("shop"), &dashboard, "back")
        .await
        .unwrap_err();
    assert!(
        matches!(err, grafana::Error::VersionMismatch { version: 2, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("changed in Grafana") && text.contains("not overwritten"),
        "{text}"
    );
    {
        let s = st.lock().unwrap();
        assert_eq!(
            s.dashboards["shop"].version, 3,
            "only the other edit's version"
        );
        assert_eq!(
            s.dashboards["shop"].model["refresh"], "1m",
            "our change was not written"
        );
    }
}

#[tokio::test]
async fn a_title_taken_a_foreign_folder_and_a_wrong_token_are_reported_clearly() {
    let (url, st) = grafana_stand_in().await;
    let (g, _dir) = client_from_settings(&url, GRAFANA_TOKEN);
    let dashboard = shop_dashboard();

    // Another dashboard in the app's folder already has the title.
    g.ensure_folder("aiops-shop", "Shop").await.unwrap();
    let other = dashboard.replace("\"uid\": \"shop\"", "\"uid\": \"shop-old\"");
    assert!(matches!(
        g.push_dashboard("aiops-shop", &other, "old").await.unwrap(),
        Pushed::Created { .. }
    ));
    let err = g
        .push_dashboard("aiops-shop", &dashboard, "new")
        .await
        .unwrap_err();
    assert!(matches!(err, grafana::Error::NameExists { .. }), "{err:?}");
    assert!(
        err.to_string().contains("Shop \\\"storefront\\\"")
            || err.to_string().contains("storefront"),
        "{err}"
    );

    // The folder exists: ensured again, not created again.
    assert_eq!(
        g.ensure_folder("aiops-shop", "Shop").await.unwrap(),
        FolderState::Existing
    );
    // A folder of another uid with the app's folder title: 409, named.
    let err = g.ensure_folder("aiops-blog", "Shop").await.unwrap_err();
    assert!(
        matches!(err, grafana::Error::FolderConflict { .. }),
        "{err:?}"
    );

    // A wrong token: refused, and the error never shows either token.
    let (bad, _dir2) = client_from_settings(&url, "glsa_wrong-token-value");
    let err = bad
        .push_app("blog", "Blog", &dashboard, "x")
        .await
        .unwrap_err();
    assert!(
        matches!(err, grafana::Error::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    let text = format!("{err} {err:?} {bad:?}");
    assert!(
        !text.contains("wrong-token-value") && !text.contains(GRAFANA_TOKEN),
        "{text}"
    );
    assert!(!st.lock().unwrap().folders.contains_key("aiops-blog"));

    // A dashboard without a uid is refused before anything is sent.
    let before = st.lock().unwrap().seen.len();
    let err = g
        .push_dashboard("aiops-shop", "{\"title\": \"x\"}", "x")
        .await
        .unwrap_err();
    assert!(matches!(err, grafana::Error::Dashboard(_)), "{err:?}");
    assert_eq!(st.lock().unwrap().seen.len(), before);
}

#[tokio::test]
async fn a_dashboard_with_the_apps_uid_in_someone_elses_folder_is_neither_overwritten_nor_moved() {
    let (url, st) = grafana_stand_in().await;
    let (g, _dir) = client_from_settings(&url, GRAFANA_TOKEN);
    let dashboard = shop_dashboard();
    // A team's own dashboard that happens to have the uid "shop", in its folder.
    g.ensure_folder("team-x", "Team X").await.unwrap();
    let theirs = dashboard.replace("\"title\": \"", "\"title\": \"Team X ");
    assert!(matches!(
        g.push_dashboard("team-x", &theirs, "theirs").await.unwrap(),
        Pushed::Created { .. }
    ));
    let before = st.lock().unwrap().dashboards["shop"].clone();

    let err = g
        .push_app("shop", "Shop", &dashboard, "deploy")
        .await
        .unwrap_err();
    assert!(matches!(err, grafana::Error::NotOurs { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(
            "dashboard shop already exists in folder team-x rather than aiops's folder aiops-shop"
        ),
        "{err}"
    );
    assert_eq!(
        st.lock().unwrap().dashboards["shop"],
        before,
        "left as it was"
    );
}
