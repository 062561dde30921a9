//! A fake Kubernetes API server for whole-repair tests.
//!
//! This is a fake, not a conformant API server; it supports exactly the requests aiops makes
//! (docs/architecture.md §5 "Kubernetes, as kubectl does it"): GET/PATCH of Deployments,
//! StatefulSets and DaemonSets (strategic merge, JSON patch, JSON merge patch, `dryRun=All`),
//! LIST of ReplicaSets, Pods and Jobs with equality label selectors and `status.phase` field
//! selectors, DELETE of Pods and Jobs, and POST of core/v1 Events.
//!
//! Server-side apply (`PATCH` with `application/apply-patch+yaml`, what `aiops deploy` sends)
//! of every kind above and of Namespaces, ServiceAccounts, ConfigMaps, Services,
//! NetworkPolicies, Ingresses, and the custom kinds Certificate (cert-manager.io/v1),
//! ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1), kept as untyped objects.
//! Like the real server it requires `fieldManager`, refuses a body whose kind or name differs
//! from the URL and a namespaced object whose Namespace does not exist, creates or merges (a
//! strategic merge into the live object: this fake does not track field ownership, so a field
//! dropped from the applied config is not removed) and records `managedFields` with the
//! manager and operation `Apply`. A Job created by apply completes at once (or fails, see
//! [`FakeApi::set_jobs_fail`]); a custom group can be made absent ([`FakeApi::without_group`])
//! to answer 404 as a cluster without the CRD does.
//!
//! It is stateful: objects are kept as JSON, and a tiny synchronous "controller" moves
//! Deployment rollouts forward after every stored change (new or reused ReplicaSet, revision
//! annotations, pods replaced, status according to a [`RolloutBehaviour`]). PATCH responses
//! show the object as written, before the controller ran, as a real API server would; read it
//! again to see the rollout.
//!
//! Every request is recorded ([`FakeApi::requests`], [`FakeApi::recorded`]) so tests can assert
//! that a repair made exactly one change.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Query, Request, State as AxumState};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, PodTemplateSpec};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";

/// How the fake Deployment controller moves a rollout forward after a template change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RolloutBehaviour {
    /// All new pods Running and Ready; Progressing=True, reason NewReplicaSetAvailable.
    #[default]
    Complete,
    /// One new pod never becomes ready; Progressing=True, reason ReplicaSetUpdated.
    Stuck,
    /// No new pod becomes ready; Progressing=False, reason ProgressDeadlineExceeded.
    Fails,
}

/// One recorded request.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path, plus `?query` when the query is not empty (empty `&` pairs dropped, otherwise as sent).
    pub path_query: String,
    /// Content-Type without parameters.
    pub content_type: Option<String>,
    /// The body, when it was JSON.
    pub body: Option<Value>,
    /// When the request arrived (wall clock, so end-to-end tests can measure alert-to-action
    /// latency against an alert's `startsAt`).
    pub at: std::time::SystemTime,
}

/// A resource the fake knows about.
struct Res {
    plural: &'static str,
    kind: &'static str,
    api_version: &'static str,
    /// Path prefix up to `/namespaces/`.
    prefix: &'static str,
}

const RESOURCES: &[Res] = &[
    Res {
        plural: "deployments",
        kind: "Deployment",
        api_version: "apps/v1",
        prefix: "/apis/apps/v1",
    },
    Res {
        plural: "statefulsets",
        kind: "StatefulSet",
        api_version: "apps/v1",
        prefix: "/apis/apps/v1",
    },
    Res {
        plural: "daemonsets",
        kind: "DaemonSet",
        api_version: "apps/v1",
        prefix: "/apis/apps/v1",
    },
    Res {
        plural: "replicasets",
        kind: "ReplicaSet",
        api_version: "apps/v1",
        prefix: "/apis/apps/v1",
    },
    Res {
        plural: "pods",
        kind: "Pod",
        api_version: "v1",
        prefix: "/api/v1",
    },
    Res {
        plural: "events",
        kind: "Event",
        api_version: "v1",
        prefix: "/api/v1",
    },
    Res {
        plural: "jobs",
        kind: "Job",
        api_version: "batch/v1",
        prefix: "/apis/batch/v1",
    },
    // Cluster-scoped: stored under the namespace "".
    Res {
        plural: "namespaces",
        kind: "Namespace",
        api_version: "v1",
        prefix: "/api/v1",
    },
    Res {
        plural: "serviceaccounts",
        kind: "ServiceAccount",
        api_version: "v1",
        prefix: "/api/v1",
    },
    Res {
        plural: "configmaps",
        kind: "ConfigMap",
        api_version: "v1",
        prefix: "/api/v1",
    },
    Res {
        plural: "services",
        kind: "Service",
        api_version: "v1",
        prefix: "/api/v1",
    },
    Res {
        plural: "networkpolicies",
        kind: "NetworkPolicy",
        api_version: "networking.k8s.io/v1",
        prefix: "/apis/networking.k8s.io/v1",
    },
    Res {
        plural: "ingresses",
        kind: "Ingress",
        api_version: "networking.k8s.io/v1",
        prefix: "/apis/networking.k8s.io/v1",
    },
    Res {
        plural: "certificates",
        kind: "Certificate",
        api_version: "cert-manager.io/v1",
        prefix: "/apis/cert-manager.io/v1",
    },
    Res {
        plural: "servicemonitors",
        kind: "ServiceMonitor",
        api_version: "monitoring.coreos.com/v1",
        prefix: "/apis/monitoring.coreos.com/v1",
    },
    Res {
        plural: "prometheusrules",
        kind: "PrometheusRule",
        api_version: "monitoring.coreos.com/v1",
        prefix: "/apis/monitoring.coreos.com/v1",
    },
];

const APPLY_PATCH: &str = "application/apply-patch+yaml";

fn res_by_plural(plural: &str) -> &'static Res {
    RESOURCES
        .iter()
        .find(|r| r.plural == plural)
        .expect("known resource")
}

/// Accepts "Deployment", "deployment", "deployments", "deploy"-style names.
fn res_by_kind(kind: &str) -> &'static Res {
    let k = kind.to_ascii_lowercase();
    RESOURCES
        .iter()
        .find(|r| r.kind.eq_ignore_ascii_case(&k) || r.plural == k)
        .unwrap_or_else(|| panic!("fakeapi: unknown kind {kind}"))
}

type Key = (&'static str, String, String);

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    behaviours: HashMap<(String, String), RolloutBehaviour>,
    log: Vec<RecordedRequest>,
    resource_version: u64,
    seq: u64,
    /// API groups answered with 404, as a cluster without their CRDs.
    absent_groups: Vec<String>,
    /// Jobs created by apply fail instead of completing.
    jobs_fail: bool,
}

/// A failure answered as a Kubernetes `Status`.
struct Failure {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl Failure {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Failure {
            code,
            reason,
            message: message.into(),
        }
    }
    fn not_found(res: &Res, name: &str) -> Self {
        Failure::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{}.{} \"{name}\" not found", res.plural, group_of(res)),
        )
    }
    fn into_response(self) -> (StatusCode, Value) {
        let body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        (self.code, body)
    }
}

fn group_of(res: &Res) -> &'static str {
    match res.api_version.split_once('/') {
        Some((g, _)) => g,
        None => "",
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn short_hash(v: &Value) -> String {
    let mut h = DefaultHasher::new();
    canonical(v).hash(&mut h);
    let n = h.finish();
    // Kubernetes uses a safe-encoded alphabet without vowels; any short stable string will do.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = n;
    (0..10)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// A key-order independent rendering of a JSON value.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata object")
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn set_annotation(obj: &mut Value, key: &str, value: &str) {
    let m = meta_mut(obj);
    let ann = m.entry("annotations").or_insert_with(|| json!({}));
    if !ann.is_object() {
        *ann = json!({});
    }
    ann[key] = json!(value);
}

fn revision_of(obj: &Value) -> u64 {
    meta(obj)["annotations"][REVISION]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A pod template with the `pod-template-hash` label removed (an empty label map removed too).
fn strip_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            t["metadata"]
                .as_object_mut()
                .expect("metadata")
                .remove("labels");
        }
    }
    if t["metadata"].as_object().is_some_and(Map::is_empty) {
        t.as_object_mut().expect("template").remove("metadata");
    }
    t
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).expect("serialize")
}

fn from_value<T: DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("fakeapi: bad stored object: {e}: {v}"))
}

/// Checks that an object still has the shape of its kind.
fn validate(res: &Res, v: &Value) -> Result<(), Failure> {
    fn check<T: DeserializeOwned>(v: &Value) -> Result<(), String> {
        serde_json::from_value::<T>(v.clone())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    let r = match res.plural {
        "deployments" => check::<Deployment>(v),
        "statefulsets" => check::<StatefulSet>(v),
        "daemonsets" => check::<DaemonSet>(v),
        "replicasets" => check::<ReplicaSet>(v),
        "pods" => check::<Pod>(v),
        "events" => check::<Event>(v),
        "jobs" => check::<Job>(v),
        "namespaces" => check::<k8s_openapi::api::core::v1::Namespace>(v),
        "serviceaccounts" => check::<k8s_openapi::api::core::v1::ServiceAccount>(v),
        "configmaps" => check::<k8s_openapi::api::core::v1::ConfigMap>(v),
        "services" => check::<k8s_openapi::api::core::v1::Service>(v),
        "networkpolicies" => check::<k8s_openapi::api::networking::v1::NetworkPolicy>(v),
        "ingresses" => check::<k8s_openapi::api::networking::v1::Ingress>(v),
        // Custom resources are kept untyped.
        _ => Ok(()),
    };
    r.map_err(|e| {
        Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{} is invalid: {e}", res.kind),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch (the subset aiops relies on).

fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ports" => Some("containerPort"),
        "hostAliases" => Some("ip"),
        "ownerReferences" => Some("uid"),
        "conditions" => Some("type"),
        _ => None,
    }
}

/// Strategic merge: maps merge recursively, `null` deletes, lists with a Kubernetes merge key
/// (e.g. `containers` by `name`) merge element-wise, other lists are replaced.
/// Directives: `$patch: replace|delete` on maps and list elements; other `$…` keys are dropped.
pub fn strategic_merge(doc: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *doc = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut fresh = Value::Object(Map::new());
        let mut without = p.clone();
        without.remove("$patch");
        strategic_merge(&mut fresh, &Value::Object(without));
        *doc = fresh;
        return;
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let d = doc.as_object_mut().expect("object");
    for (k, pv) in p {
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() || pv.get("$patch").and_then(Value::as_str) == Some("delete") {
            d.remove(k);
            continue;
        }
        match (pv, merge_key(k)) {
            (Value::Array(pa), Some(key)) => {
                let mut da = match d.remove(k) {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                merge_list(&mut da, pa, key);
                d.insert(k.clone(), Value::Array(da));
            }
            (Value::Object(_), _) => {
                let slot = d
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                strategic_merge(slot, pv);
            }
            _ => {
                d.insert(k.clone(), pv.clone());
            }
        }
    }
}

fn merge_list(da: &mut Vec<Value>, pa: &[Value], key: &str) {
    if pa
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        da.clear();
    }
    for item in pa {
        if item.get("$patch").and_then(Value::as_str) == Some("replace") {
            continue;
        }
        let Some(kv) = item.get(key).filter(|_| item.is_object()) else {
            da.push(item.clone());
            continue;
        };
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            da.retain(|e| e.get(key) != Some(kv));
            continue;
        }
        match da.iter_mut().find(|e| e.get(key) == Some(kv)) {
            Some(existing) => strategic_merge(existing, item),
            None => {
                let mut fresh = Value::Object(Map::new());
                strategic_merge(&mut fresh, item);
                da.push(fresh);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Selectors.

fn label_matches(labels: &Value, selector: &str) -> Result<bool, Failure> {
    for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let bad = || {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("unsupported label selector: {term}"),
            )
        };
        if term.contains('(') || term.contains(' ') {
            return Err(bad());
        }
        let ok = if let Some((k, v)) = term.split_once("!=") {
            labels[k.trim()].as_str() != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels[k.trim()].as_str() == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            labels.get(k).is_none()
        } else {
            labels.get(term).is_some()
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn field_matches(obj: &Value, selector: &str) -> Result<bool, Failure> {
    for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (field, value, negate) = if let Some((f, v)) = term.split_once("!=") {
            (f, v, true)
        } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            (f, v, false)
        } else {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("invalid field selector: {term}"),
            ));
        };
        let pointer = match field.trim() {
            "status.phase" => "/status/phase",
            "metadata.name" => "/metadata/name",
            "metadata.namespace" => "/metadata/namespace",
            other => {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("field label not supported: {other}"),
                ));
            }
        };
        let actual = str_at(obj, pointer).unwrap_or("");
        if (actual == value.trim()) == negate {
            return Ok(false);
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// State: storage and the fake controllers.

impl State {
    fn next_rv(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    fn random_suffix(&mut self) -> String {
        self.seq += 1;
        let h = short_hash(&json!([self.seq, uuid::Uuid::new_v4().to_string()]));
        h[..5].to_owned()
    }

    fn get(&self, res: &Res, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(res.plural, ns.to_owned(), name.to_owned()))
    }

    fn list(&self, res: &Res, ns: &str) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((p, n, _), _)| *p == res.plural && n == ns)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Stores an object: fills apiVersion, kind, namespace, uid, creationTimestamp, and a new
    /// resourceVersion. Returns the stored copy.
    fn store(&mut self, res: &'static Res, ns: &str, mut obj: Value) -> Value {
        obj["apiVersion"] = json!(res.api_version);
        obj["kind"] = json!(res.kind);
        if meta(&obj)["name"].as_str().is_none_or(str::is_empty) {
            let base = meta(&obj)["generateName"]
                .as_str()
                .unwrap_or("obj-")
                .to_owned();
            let suffix = self.random_suffix();
            meta_mut(&mut obj).insert("name".into(), json!(format!("{base}{suffix}")));
        }
        let rv = self.next_rv();
        let m = meta_mut(&mut obj);
        if ns.is_empty() {
            m.remove("namespace");
        } else {
            m.insert("namespace".into(), json!(ns));
        }
        m.entry("uid")
            .or_insert_with(|| json!(uuid::Uuid::new_v4().to_string()));
        m.entry("creationTimestamp").or_insert_with(|| json!(now()));
        m.insert("resourceVersion".into(), json!(rv));
        let name = m["name"].as_str().expect("name").to_owned();
        self.objects
            .insert((res.plural, ns.to_owned(), name), obj.clone());
        obj
    }

    fn remove(&mut self, res: &Res, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .remove(&(res.plural, ns.to_owned(), name.to_owned()))
    }

    /// Writes a changed object as the API server would: identity and status kept from the
    /// stored object, generation bumped when the spec changed; then runs the controller.
    /// Returns the object as written (before the controller ran).
    fn update(
        &mut self,
        res: &'static Res,
        ns: &str,
        name: &str,
        mut new: Value,
        dry_run: bool,
    ) -> Result<Value, Failure> {
        let old = self
            .get(res, ns, name)
            .cloned()
            .ok_or_else(|| Failure::not_found(res, name))?;
        new["apiVersion"] = json!(res.api_version);
        new["kind"] = json!(res.kind);
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
        ] {
            match meta(&old).get(field) {
                Some(v) => {
                    let v = v.clone();
                    meta_mut(&mut new).insert(field.into(), v);
                }
                None => {
                    meta_mut(&mut new).remove(field);
                }
            }
        }
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        let spec_changed = old.get("spec") != new.get("spec");
        let is_workload = matches!(res.plural, "deployments" | "statefulsets" | "daemonsets");
        if spec_changed && is_workload {
            let generation = meta(&old)["generation"].as_i64().unwrap_or(1) + 1;
            meta_mut(&mut new).insert("generation".into(), json!(generation));
        }
        validate(res, &new)?;
        if dry_run {
            return Ok(new);
        }
        let written = self.store(res, ns, new);
        if spec_changed {
            self.reconcile(res, ns, name);
        }
        Ok(written)
    }

    fn reconcile(&mut self, res: &Res, ns: &str, name: &str) {
        match res.plural {
            "deployments" => self.reconcile_deployment(ns, name),
            "statefulsets" => self.reconcile_statefulset(ns, name),
            "daemonsets" => self.reconcile_daemonset(ns, name),
            _ => {}
        }
    }

    fn owned_by(&self, res: &Res, ns: &str, owner_uid: &str) -> Vec<Value> {
        self.list(res, ns)
            .into_iter()
            .filter(|o| {
                meta(o)["ownerReferences"].as_array().is_some_and(|refs| {
                    refs.iter().any(|r| {
                        r["uid"].as_str() == Some(owner_uid) && r["controller"] == json!(true)
                    })
                })
            })
            .collect()
    }

    fn owner_ref(owner: &Value) -> Value {
        json!({
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": meta(owner)["name"],
            "uid": meta(owner)["uid"],
            "controller": true,
            "blockOwnerDeletion": true,
        })
    }

    /// The fake Deployment controller: picks or creates the ReplicaSet for the current template,
    /// numbers revisions like Kubernetes, replaces the pods, and writes status by behaviour.
    fn reconcile_deployment(&mut self, ns: &str, name: &str) {
        let rs_res = res_by_plural("replicasets");
        let pod_res = res_by_plural("pods");
        let Some(dep) = self.get(res_by_plural("deployments"), ns, name).cloned() else {
            return;
        };
        if dep["spec"]["paused"] == json!(true) {
            return;
        }
        let uid = meta(&dep)["uid"].as_str().expect("uid").to_owned();
        let generation = meta(&dep)["generation"].as_i64().unwrap_or(1);
        let replicas = dep["spec"]["replicas"].as_i64().unwrap_or(1);
        let template = strip_hash(&dep["spec"]["template"]);
        let owned = self.owned_by(rs_res, ns, &uid);
        let max_rev = owned.iter().map(revision_of).max().unwrap_or(0);

        let matched = owned
            .iter()
            .find(|rs| strip_hash(&rs["spec"]["template"]) == template)
            .cloned();
        let (mut new_rs, revision) = match matched {
            Some(rs) => {
                let r = revision_of(&rs);
                if r < max_rev {
                    (rs, max_rev + 1)
                } else {
                    (rs, r.max(1))
                }
            }
            None => {
                let hash = short_hash(&template);
                let mut labels = template["metadata"]["labels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                labels.insert(HASH_LABEL.into(), json!(hash));
                let mut selector = dep["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                selector.insert(HASH_LABEL.into(), json!(hash));
                let mut rs_template = template.clone();
                rs_template["metadata"]["labels"] = Value::Object(labels.clone());
                let rs = json!({
                    "metadata": {
                        "name": format!("{name}-{hash}"),
                        "labels": labels,
                        "annotations": {},
                        "ownerReferences": [Self::owner_ref(&dep)],
                    },
                    "spec": {
                        "replicas": replicas,
                        "selector": {"matchLabels": selector},
                        "template": rs_template,
                    },
                });
                (rs, max_rev + 1)
            }
        };
        let rev = revision.to_string();
        set_annotation(&mut new_rs, REVISION, &rev);
        set_annotation(
            &mut new_rs,
            "deployment.kubernetes.io/desired-replicas",
            &replicas.to_string(),
        );
        let behaviour = self
            .behaviours
            .get(&(ns.to_owned(), name.to_owned()))
            .copied()
            .unwrap_or_default();
        let (ready, pod_kind) = match behaviour {
            RolloutBehaviour::Complete => (replicas, PodKind::Running),
            RolloutBehaviour::Stuck => ((replicas - 1).max(0), PodKind::Running),
            RolloutBehaviour::Fails => (0, PodKind::CrashLooping),
        };
        new_rs["spec"]["replicas"] = json!(replicas);
        new_rs["status"] = json!({
            "replicas": replicas,
            "fullyLabeledReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": 1,
        });
        let new_rs = self.store(rs_res, ns, new_rs);
        let new_rs_name = meta(&new_rs)["name"].as_str().expect("name").to_owned();
        let new_rs_uid = meta(&new_rs)["uid"].as_str().expect("uid").to_owned();

        // Old ReplicaSets scale to zero; all their pods go.
        for mut rs in owned {
            let rs_uid = meta(&rs)["uid"].as_str().unwrap_or("").to_owned();
            for pod in self.owned_by(pod_res, ns, &rs_uid) {
                self.remove(pod_res, ns, meta(&pod)["name"].as_str().unwrap_or(""));
            }
            if rs_uid != new_rs_uid {
                rs["spec"]["replicas"] = json!(0);
                rs["status"] = json!({"replicas": 0, "observedGeneration": 1});
                self.store(rs_res, ns, rs);
            }
        }
        for i in 0..replicas {
            let kind = if i < ready {
                PodKind::Running
            } else if pod_kind == PodKind::CrashLooping {
                PodKind::CrashLooping
            } else {
                PodKind::Pending
            };
            let pod = self.pod_for(&new_rs, kind);
            self.store(pod_res, ns, pod);
        }

        let t = now();
        let (conditions, available) = match behaviour {
            RolloutBehaviour::Complete => (
                json!([
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                     "message": "Deployment has minimum availability.", "lastUpdateTime": t, "lastTransitionTime": t},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                     "message": format!("ReplicaSet \"{new_rs_name}\" has successfully progressed."),
                     "lastUpdateTime": t, "lastTransitionTime": t},
                ]),
                replicas,
            ),
            RolloutBehaviour::Stuck => (
                json!([
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                     "message": "Deployment has minimum availability.", "lastUpdateTime": t, "lastTransitionTime": t},
                    {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                     "message": format!("ReplicaSet \"{new_rs_name}\" is progressing."),
                     "lastUpdateTime": t, "lastTransitionTime": t},
                ]),
                ready,
            ),
            RolloutBehaviour::Fails => {
                // The real controller reports a timeout only once the progress deadline has
                // passed since the rollout began (aiops tells a condition left from an earlier
                // rollout by exactly that), so the fake stamps it at the deadline, not now.
                let deadline = dep["spec"]["progressDeadlineSeconds"]
                    .as_i64()
                    .unwrap_or(600);
                let timed_out = (chrono::Utc::now() + chrono::Duration::seconds(deadline))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                (
                    json!([
                        {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                         "message": "Deployment does not have minimum availability.", "lastUpdateTime": t, "lastTransitionTime": t},
                        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                         "message": format!("ReplicaSet \"{new_rs_name}\" has timed out progressing."),
                         "lastUpdateTime": timed_out, "lastTransitionTime": timed_out},
                    ]),
                    0,
                )
            }
        };
        let mut status = json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": available,
            "availableReplicas": available,
            "conditions": conditions,
        });
        if replicas > available {
            status["unavailableReplicas"] = json!(replicas - available);
        }
        let mut dep = self
            .get(res_by_plural("deployments"), ns, name)
            .cloned()
            .expect("deployment");
        set_annotation(&mut dep, REVISION, &rev);
        dep["status"] = status;
        self.store(res_by_plural("deployments"), ns, dep);
    }

    fn pod_for(&mut self, rs: &Value, kind: PodKind) -> Value {
        let template = &rs["spec"]["template"];
        let suffix = self.random_suffix();
        let name = format!("{}-{suffix}", meta(rs)["name"].as_str().unwrap_or("pod"));
        let mut pod = json!({
            "metadata": {
                "name": name,
                "labels": template["metadata"]["labels"],
                "ownerReferences": [Self::owner_ref(rs)],
            },
            "spec": template["spec"],
        });
        if let Some(ann) = template["metadata"].get("annotations") {
            pod["metadata"]["annotations"] = ann.clone();
        }
        pod["spec"]["nodeName"] = json!("fake-node");
        pod["status"] = pod_status(&pod["spec"], kind);
        pod
    }

    fn reconcile_statefulset(&mut self, ns: &str, name: &str) {
        let res = res_by_plural("statefulsets");
        let Some(mut sts) = self.get(res, ns, name).cloned() else {
            return;
        };
        let replicas = sts["spec"]["replicas"].as_i64().unwrap_or(1);
        let revision = format!("{name}-{}", short_hash(&sts["spec"]["template"]));
        sts["status"] = json!({
            "observedGeneration": meta(&sts)["generation"],
            "replicas": replicas,
            "readyReplicas": replicas,
            "currentReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
        });
        self.store(res, ns, sts);
    }

    fn reconcile_daemonset(&mut self, ns: &str, name: &str) {
        let res = res_by_plural("daemonsets");
        let Some(mut ds) = self.get(res, ns, name).cloned() else {
            return;
        };
        let desired = ds["status"]["desiredNumberScheduled"].as_i64().unwrap_or(1);
        ds["status"] = json!({
            "observedGeneration": meta(&ds)["generation"],
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": desired,
            "numberReady": desired,
            "numberAvailable": desired,
            "updatedNumberScheduled": desired,
            "numberMisscheduled": 0,
        });
        self.store(res, ns, ds);
    }

    /// Server-side apply: create, or merge into the live object; see the module docs for
    /// what this fake does and does not do.
    fn server_side_apply(
        &mut self,
        res: &'static Res,
        ns: &str,
        name: &str,
        query: &HashMap<String, String>,
        body: &[u8],
        dry_run: bool,
    ) -> Result<(StatusCode, Value), Failure> {
        let bad = |m: String| Failure::new(StatusCode::BAD_REQUEST, "BadRequest", m);
        let manager = query
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                bad("PATCH requests with apply content-type must specify fieldManager".into())
            })?
            .clone();
        let text = std::str::from_utf8(body).map_err(|e| bad(format!("body: {e}")))?;
        let mut applied: Value =
            serde_yaml::from_str(text).map_err(|e| bad(format!("invalid apply patch: {e}")))?;
        if applied["apiVersion"] != json!(res.api_version) || applied["kind"] != json!(res.kind) {
            return Err(bad(format!(
                "the body is {} {}, the URL names {} {}",
                applied["apiVersion"], applied["kind"], res.api_version, res.kind
            )));
        }
        if str_at(&applied, "/metadata/name") != Some(name) {
            return Err(bad(
                "the name of the object does not match the name on the URL".into(),
            ));
        }
        if let Some(body_ns) = str_at(&applied, "/metadata/namespace")
            && body_ns != ns
        {
            return Err(bad(
                "the namespace of the object does not match the namespace on the URL".into(),
            ));
        }
        if !ns.is_empty() && self.get(res_by_plural("namespaces"), "", ns).is_none() {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("namespaces \"{ns}\" not found"),
            ));
        }
        if let Some(o) = applied.as_object_mut() {
            o.remove("status");
        }
        let managed = json!([{
            "manager": manager,
            "operation": "Apply",
            "apiVersion": res.api_version,
            "fieldsType": "FieldsV1",
            "time": now(),
        }]);
        if let Some(mut live) = self.get(res, ns, name).cloned() {
            strategic_merge(&mut live, &applied);
            meta_mut(&mut live).insert("managedFields".into(), managed);
            let written = self.update(res, ns, name, live, dry_run)?;
            return Ok((StatusCode::OK, written));
        }
        meta_mut(&mut applied).insert("generation".into(), json!(1));
        meta_mut(&mut applied).insert("managedFields".into(), managed);
        applied["apiVersion"] = json!(res.api_version);
        applied["kind"] = json!(res.kind);
        validate(res, &applied)?;
        if dry_run {
            return Ok((StatusCode::CREATED, applied));
        }
        let written = self.store(res, ns, applied);
        match res.plural {
            "jobs" => self.finish_job(ns, name),
            _ => self.reconcile(res, ns, name),
        }
        Ok((StatusCode::CREATED, written))
    }

    /// The fake Job controller: a Job created by apply completes (or fails) at once.
    fn finish_job(&mut self, ns: &str, name: &str) {
        let res = res_by_plural("jobs");
        let Some(mut job) = self.get(res, ns, name).cloned() else {
            return;
        };
        let t = now();
        job["status"] = if self.jobs_fail {
            json!({"failed": 3, "startTime": t, "conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit", "lastTransitionTime": t}]})
        } else {
            json!({"succeeded": 1, "startTime": t, "completionTime": t, "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": t},
                {"type": "Complete", "status": "True", "lastTransitionTime": t}]})
        };
        self.store(res, ns, job);
    }

    // -----------------------------------------------------------------------------------------
    // HTTP dispatch.

    fn dispatch(
        &mut self,
        method: &Method,
        path: &str,
        query: &HashMap<String, String>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(StatusCode, Value), Failure> {
        let not_found = || {
            Failure::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("the server could not find the requested resource ({method} {path})"),
            )
        };
        let (res, ns, name) = parse_path(path).ok_or_else(not_found)?;
        if self
            .absent_groups
            .iter()
            .any(|g| res.api_version.starts_with(&format!("{g}/")))
        {
            return Err(not_found());
        }
        let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
        match (method.as_str(), name) {
            ("PATCH", Some(name)) if content_type == Some(APPLY_PATCH) => {
                self.server_side_apply(res, &ns, &name, query, body, dry_run)
            }
            ("GET", Some(name)) => {
                let obj = self
                    .get(res, &ns, &name)
                    .cloned()
                    .ok_or_else(|| Failure::not_found(res, &name))?;
                Ok((StatusCode::OK, obj))
            }
            ("GET", None) => {
                let mut items = Vec::new();
                for obj in self.list(res, &ns) {
                    if let Some(sel) = query.get("labelSelector")
                        && !label_matches(&meta(&obj)["labels"], sel)?
                    {
                        continue;
                    }
                    if let Some(sel) = query.get("fieldSelector")
                        && !field_matches(&obj, sel)?
                    {
                        continue;
                    }
                    items.push(obj);
                }
                Ok((
                    StatusCode::OK,
                    json!({
                        "apiVersion": res.api_version,
                        "kind": format!("{}List", res.kind),
                        "metadata": {"resourceVersion": self.resource_version.to_string()},
                        "items": items,
                    }),
                ))
            }
            ("PATCH", Some(name))
                if matches!(res.plural, "deployments" | "statefulsets" | "daemonsets") =>
            {
                let old = self
                    .get(res, &ns, &name)
                    .cloned()
                    .ok_or_else(|| Failure::not_found(res, &name))?;
                let patched = apply_patch(old, content_type, body)?;
                let written = self.update(res, &ns, &name, patched, dry_run)?;
                Ok((StatusCode::OK, written))
            }
            ("DELETE", Some(name)) if matches!(res.plural, "pods" | "jobs") => {
                let options: Value = if body.is_empty() {
                    json!({})
                } else {
                    serde_json::from_slice(body).unwrap_or(json!({}))
                };
                let dry_run = dry_run
                    || options["dryRun"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|v| v == "All"));
                let obj = self
                    .get(res, &ns, &name)
                    .cloned()
                    .ok_or_else(|| Failure::not_found(res, &name))?;
                if !dry_run {
                    self.remove(res, &ns, &name);
                    if res.plural == "jobs" {
                        let pods = res_by_plural("pods");
                        for pod in self.list(pods, &ns) {
                            if meta(&pod)["labels"]["job-name"].as_str() == Some(name.as_str()) {
                                self.remove(pods, &ns, meta(&pod)["name"].as_str().unwrap_or(""));
                            }
                        }
                    }
                }
                Ok((StatusCode::OK, obj))
            }
            ("POST", None) if res.plural == "events" => {
                let mut obj: Value = serde_json::from_slice(body).map_err(|e| {
                    Failure::new(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("invalid body: {e}"),
                    )
                })?;
                if let Some(body_ns) = str_at(&obj, "/metadata/namespace")
                    && body_ns != ns
                {
                    return Err(Failure::new(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                if let Some(name) = str_at(&obj, "/metadata/name")
                    && self.get(res, &ns, name).is_some()
                {
                    return Err(Failure::new(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        format!("events \"{name}\" already exists"),
                    ));
                }
                obj["apiVersion"] = json!(res.api_version);
                obj["kind"] = json!(res.kind);
                meta_mut(&mut obj).insert("namespace".into(), json!(ns));
                validate(res, &obj)?;
                if dry_run {
                    return Ok((StatusCode::CREATED, obj));
                }
                let stored = self.store(res, &ns, obj);
                Ok((StatusCode::CREATED, stored))
            }
            _ => Err(Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("the fake API server does not support {method} {path}"),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PodKind {
    Running,
    Pending,
    CrashLooping,
}

fn pod_status(spec: &Value, kind: PodKind) -> Value {
    let t = now();
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let base =
                json!({"name": c["name"], "image": c["image"], "imageID": "", "containerID": ""});
            let mut s = base;
            match kind {
                PodKind::Running => {
                    s["ready"] = json!(true);
                    s["started"] = json!(true);
                    s["restartCount"] = json!(0);
                    s["state"] = json!({"running": {"startedAt": t}});
                }
                PodKind::Pending => {
                    s["ready"] = json!(false);
                    s["started"] = json!(false);
                    s["restartCount"] = json!(0);
                    s["state"] = json!({"waiting": {"reason": "ContainerCreating"}});
                }
                PodKind::CrashLooping => {
                    s["ready"] = json!(false);
                    s["started"] = json!(false);
                    s["restartCount"] = json!(3);
                    s["state"] = json!({"waiting": {"reason": "CrashLoopBackOff",
                        "message": "back-off 40s restarting failed container"}});
                    s["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error",
                        "startedAt": t, "finishedAt": t}});
                }
            }
            s
        })
        .collect();
    let (phase, ready) = match kind {
        PodKind::Running => ("Running", "True"),
        PodKind::Pending => ("Pending", "False"),
        PodKind::CrashLooping => ("Running", "False"),
    };
    json!({
        "phase": phase,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
            {"type": "Ready", "status": ready, "lastTransitionTime": t},
            {"type": "ContainersReady", "status": ready, "lastTransitionTime": t},
        ],
        "containerStatuses": statuses,
        "hostIP": "10.0.0.1",
        "podIP": "10.1.0.1",
        "startTime": t,
        "qosClass": "Burstable",
    })
}

fn parse_path(path: &str) -> Option<(&'static Res, String, Option<String>)> {
    // Cluster-scoped Namespaces: /api/v1/namespaces[/NAME].
    match path.strip_prefix("/api/v1/namespaces") {
        Some("") => return Some((res_by_plural("namespaces"), String::new(), None)),
        Some(rest) if rest.starts_with('/') && rest.len() > 1 && !rest[1..].contains('/') => {
            return Some((
                res_by_plural("namespaces"),
                String::new(),
                Some(rest[1..].to_owned()),
            ));
        }
        _ => {}
    }
    for prefix in [
        "/api/v1",
        "/apis/apps/v1",
        "/apis/batch/v1",
        "/apis/networking.k8s.io/v1",
        "/apis/cert-manager.io/v1",
        "/apis/monitoring.coreos.com/v1",
    ] {
        let Some(rest) = path
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("/namespaces/"))
        else {
            continue;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (ns, plural, name) = match parts.as_slice() {
            [ns, plural] => (*ns, *plural, None),
            [ns, plural, name] => (*ns, *plural, Some(*name)),
            _ => return None,
        };
        let res = RESOURCES
            .iter()
            .find(|r| r.plural == plural && r.prefix == prefix)?;
        if ns.is_empty() || name.is_some_and(str::is_empty) {
            return None;
        }
        return Some((res, ns.to_owned(), name.map(str::to_owned)));
    }
    None
}

fn apply_patch(mut doc: Value, content_type: Option<&str>, body: &[u8]) -> Result<Value, Failure> {
    let bad = |e: String| Failure::new(StatusCode::BAD_REQUEST, "BadRequest", e);
    match content_type {
        Some("application/strategic-merge-patch+json") => {
            let p: Value =
                serde_json::from_slice(body).map_err(|e| bad(format!("invalid patch: {e}")))?;
            if !p.is_object() {
                return Err(bad("strategic merge patch must be a JSON object".into()));
            }
            strategic_merge(&mut doc, &p);
        }
        Some("application/merge-patch+json") => {
            let p: Value =
                serde_json::from_slice(body).map_err(|e| bad(format!("invalid patch: {e}")))?;
            json_patch::merge(&mut doc, &p);
        }
        Some("application/json-patch+json") => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| bad(format!("invalid json patch: {e}")))?;
            json_patch::patch(&mut doc, &p.0).map_err(|e| {
                Failure::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("json patch failed: {e}"),
                )
            })?;
        }
        other => {
            return Err(Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format: {}",
                    other.unwrap_or("(none)")
                ),
            ));
        }
    }
    Ok(doc)
}

async fn handle(AxumState(state): AxumState<Arc<Mutex<State>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
    let query: HashMap<String, String> = Query::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    // kube's URLs look like `…/web?&fieldManager=aiops`: empty pairs are dropped from the log.
    let pairs: Vec<&str> = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .collect();
    let path_query = if pairs.is_empty() {
        path.clone()
    } else {
        format!("{path}?{}", pairs.join("&"))
    };
    let (code, value) = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.log.push(RecordedRequest {
            method: parts.method.to_string(),
            path_query,
            content_type: content_type.clone(),
            body: serde_json::from_slice(&bytes).ok(),
            at: std::time::SystemTime::now(),
        });
        match st.dispatch(
            &parts.method,
            &path,
            &query,
            content_type.as_deref(),
            &bytes,
        ) {
            Ok(ok) => ok,
            Err(f) => f.into_response(),
        }
    };
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp.into_response()
}

// ---------------------------------------------------------------------------------------------
// Public API.

/// A fake, not a conformant API server; supports exactly the requests aiops makes.
/// Serves plain HTTP on 127.0.0.1 until dropped.
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A container for [`FakeApi::add_deployment`] and friends:
/// (name, image, memory request, memory limit).
pub type ContainerSpec<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>);

fn template_json(name: &str, containers: &[ContainerSpec<'_>]) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(cname, image, request, limit)| {
            let mut c = json!({"name": cname, "image": image});
            let mut resources = Map::new();
            if let Some(r) = request {
                resources.insert("requests".into(), json!({"memory": r}));
            }
            if let Some(l) = limit {
                resources.insert("limits".into(), json!({"memory": l}));
            }
            if !resources.is_empty() {
                c["resources"] = Value::Object(resources);
            }
            c
        })
        .collect();
    json!({"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}})
}

impl FakeApi {
    /// Binds 127.0.0.1:0 and serves in a tokio task.
    pub async fn start() -> FakeApi {
        let state = Arc::new(Mutex::new(State::default()));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake API server");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake API server");
        });
        FakeApi {
            state,
            addr,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube::Client for this server (default namespace "default").
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().expect("url"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// Writes a kubeconfig: cluster "fake" (plain http), context "fake", user "fake" with no
    /// credentials, namespace "default", current-context "fake".
    pub fn write_kubeconfig(&self, path: &Path) {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\npreferences: {{}}\n",
            url = self.url()
        );
        std::fs::write(path, yaml).expect("write kubeconfig");
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a Deployment (generation 1, selector and template labels `app: name`), its
    /// ReplicaSet revision 1 and `replicas` Running pods; status complete.
    pub fn add_deployment(
        &self,
        ns: &str,
        name: &str,
        replicas: i32,
        containers: &[ContainerSpec<'_>],
    ) {
        let dep = json!({
            "metadata": {"name": name, "generation": 1, "labels": {"app": name}, "annotations": {}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": template_json(name, containers),
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "progressDeadlineSeconds": 600,
                "revisionHistoryLimit": 10,
            },
            "status": {},
        });
        let mut st = self.lock();
        let res = res_by_plural("deployments");
        validate(
            res,
            &json!({"metadata": {"name": name}, "spec": dep["spec"]}),
        )
        .unwrap_or_else(|f| panic!("{}", f.message));
        st.store(res, ns, dep);
        // The first rollout always completes, whatever behaviour is set later.
        let previous = st.behaviours.remove(&(ns.to_owned(), name.to_owned()));
        st.reconcile_deployment(ns, name);
        if let Some(b) = previous {
            st.behaviours.insert((ns.to_owned(), name.to_owned()), b);
        }
    }

    /// Creates a StatefulSet (selector/template labels `app: name`), status complete.
    pub fn add_statefulset(
        &self,
        ns: &str,
        name: &str,
        replicas: i32,
        containers: &[ContainerSpec<'_>],
    ) {
        let sts = json!({
            "metadata": {"name": name, "generation": 1, "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "serviceName": name,
                "selector": {"matchLabels": {"app": name}},
                "template": template_json(name, containers),
            },
        });
        let mut st = self.lock();
        st.store(res_by_plural("statefulsets"), ns, sts);
        st.reconcile_statefulset(ns, name);
    }

    /// Creates a DaemonSet scheduled on `nodes` nodes, status complete.
    pub fn add_daemonset(
        &self,
        ns: &str,
        name: &str,
        nodes: i32,
        containers: &[ContainerSpec<'_>],
    ) {
        let ds = json!({
            "metadata": {"name": name, "generation": 1, "labels": {"app": name}},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": template_json(name, containers),
            },
            "status": {"desiredNumberScheduled": nodes},
        });
        let mut st = self.lock();
        st.store(res_by_plural("daemonsets"), ns, ds);
        st.reconcile_daemonset(ns, name);
    }

    /// Sets `spec.paused` as `kubectl rollout pause/resume` would (generation bumped and
    /// observed). Resuming rolls out a template changed while paused.
    pub fn set_paused(&self, ns: &str, name: &str, paused: bool) {
        let mut st = self.lock();
        let res = res_by_plural("deployments");
        let mut dep = st
            .get(res, ns, name)
            .cloned()
            .unwrap_or_else(|| panic!("no deployment {ns}/{name}"));
        if dep["spec"]["paused"].as_bool().unwrap_or(false) == paused {
            return;
        }
        dep["spec"]["paused"] = json!(paused);
        let generation = meta(&dep)["generation"].as_i64().unwrap_or(1) + 1;
        meta_mut(&mut dep).insert("generation".into(), json!(generation));
        let observed = dep["status"]["observedGeneration"].as_i64().unwrap_or(0);
        if observed == generation - 1 {
            dep["status"]["observedGeneration"] = json!(generation);
        }
        st.store(res, ns, dep);
        if !paused {
            st.reconcile_deployment(ns, name);
        }
    }

    /// Sets `metadata.annotations[key] = value` on an object of `kind` ("Deployment",
    /// "ReplicaSet", "Pod", "Job", …; plural names work too). Not a spec change.
    pub fn annotate(&self, kind: &str, ns: &str, name: &str, key: &str, value: &str) {
        let res = res_by_kind(kind);
        let mut st = self.lock();
        let mut obj = st
            .get(res, ns, name)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {ns}/{name}"));
        set_annotation(&mut obj, key, value);
        st.store(res, ns, obj);
    }

    /// Simulates a user deploy: changes the Deployment's pod template and rolls it out
    /// (new ReplicaSet and revision) according to the current behaviour.
    pub fn roll_out(
        &self,
        ns: &str,
        name: &str,
        template_change: impl FnOnce(&mut PodTemplateSpec),
    ) {
        let mut dep = self.deployment(ns, name);
        let spec = dep.spec.as_mut().expect("deployment spec");
        template_change(&mut spec.template);
        let mut st = self.lock();
        st.update(
            res_by_plural("deployments"),
            ns,
            name,
            to_value(&dep),
            false,
        )
        .unwrap_or_else(|f| panic!("roll_out: {}", f.message));
    }

    /// Changes a stored object as `kubectl edit` would: `change` gets the JSON, the result is
    /// written like a PATCH (generation bump, controller run).
    pub fn edit(&self, kind: &str, ns: &str, name: &str, change: impl FnOnce(&mut Value)) {
        let res = res_by_kind(kind);
        let mut st = self.lock();
        let mut obj = st
            .get(res, ns, name)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {ns}/{name}"));
        change(&mut obj);
        if matches!(res.plural, "deployments" | "statefulsets" | "daemonsets") {
            st.update(res, ns, name, obj, false)
                .unwrap_or_else(|f| panic!("edit: {}", f.message));
        } else {
            st.store(res, ns, obj);
        }
    }

    fn add<T: serde::Serialize>(&self, plural: &str, obj: &T) {
        let v = to_value(obj);
        let ns = str_at(&v, "/metadata/namespace")
            .unwrap_or("default")
            .to_owned();
        self.lock().store(res_by_plural(plural), &ns, v);
    }

    /// Stores an arbitrary pod (namespace from metadata, "default" if absent; generateName works).
    pub fn add_pod(&self, pod: Pod) {
        self.add("pods", &pod);
    }

    /// Stores an arbitrary Job.
    pub fn add_job(&self, job: Job) {
        self.add("jobs", &job);
    }

    /// Stores an arbitrary ReplicaSet (e.g. one not owned by any Deployment).
    pub fn add_replicaset(&self, rs: ReplicaSet) {
        self.add("replicasets", &rs);
    }

    /// How later template changes of this Deployment roll out (default Complete).
    pub fn set_rollout_behaviour(&self, ns: &str, name: &str, behaviour: RolloutBehaviour) {
        self.lock()
            .behaviours
            .insert((ns.to_owned(), name.to_owned()), behaviour);
    }

    fn one<T: DeserializeOwned>(&self, plural: &str, ns: &str, name: &str) -> T {
        let st = self.lock();
        let v = st
            .get(res_by_plural(plural), ns, name)
            .unwrap_or_else(|| panic!("no {plural} {ns}/{name}"));
        from_value(v)
    }

    fn all<T: DeserializeOwned>(&self, plural: &str, ns: &str) -> Vec<T> {
        self.lock()
            .list(res_by_plural(plural), ns)
            .iter()
            .map(from_value)
            .collect()
    }

    /// The stored Deployment; panics when missing.
    pub fn deployment(&self, ns: &str, name: &str) -> Deployment {
        self.one("deployments", ns, name)
    }

    /// Whether a Deployment exists.
    pub fn has_deployment(&self, ns: &str, name: &str) -> bool {
        self.lock()
            .get(res_by_plural("deployments"), ns, name)
            .is_some()
    }

    pub fn statefulset(&self, ns: &str, name: &str) -> StatefulSet {
        self.one("statefulsets", ns, name)
    }

    pub fn daemonset(&self, ns: &str, name: &str) -> DaemonSet {
        self.one("daemonsets", ns, name)
    }

    /// ReplicaSets of a namespace, by name.
    pub fn replicasets(&self, ns: &str) -> Vec<ReplicaSet> {
        self.all("replicasets", ns)
    }

    /// Pods of a namespace, by name.
    pub fn pods(&self, ns: &str) -> Vec<Pod> {
        self.all("pods", ns)
    }

    /// Jobs of a namespace, by name.
    pub fn jobs(&self, ns: &str) -> Vec<Job> {
        self.all("jobs", ns)
    }

    /// Events of a namespace, by name.
    pub fn events(&self, ns: &str) -> Vec<Event> {
        self.all("events", ns)
    }

    /// The request log: (method, path plus `?query` when not empty — empty `&` pairs dropped,
    /// otherwise still percent-encoded as sent — and content-type without parameters).
    pub fn requests(&self) -> Vec<(String, String, Option<String>)> {
        self.lock()
            .log
            .iter()
            .map(|r| {
                (
                    r.method.clone(),
                    r.path_query.clone(),
                    r.content_type.clone(),
                )
            })
            .collect()
    }

    /// The request log with JSON bodies (DELETE options, patches, created events).
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.lock().log.clone()
    }

    /// Requests other than GET: the changes attempted.
    pub fn writes(&self) -> Vec<(String, String, Option<String>)> {
        self.requests()
            .into_iter()
            .filter(|(m, _, _)| m != "GET")
            .collect()
    }

    /// Answers 404 for every path of an API group (e.g. `monitoring.coreos.com`), as a
    /// cluster without that CRD does.
    pub fn without_group(&self, group: &str) {
        self.lock().absent_groups.push(group.to_owned());
    }

    /// Jobs created from now on fail (BackoffLimitExceeded) instead of completing.
    pub fn set_jobs_fail(&self, fail: bool) {
        self.lock().jobs_fail = fail;
    }

    /// Any stored object as JSON (`kind` as for [`FakeApi::annotate`]; namespace "" for
    /// cluster-scoped kinds), None when absent.
    pub fn object(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let res = res_by_kind(kind);
        self.lock().get(res, ns, name).cloned()
    }

    /// Forgets the request log (e.g. after test setup).
    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }
}
