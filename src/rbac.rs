//! The Kubernetes permissions of the playbook host API: one table that both the ClusterRole of
//! `aiops manifests` and the cluster preflight (`aiops check --cluster`) read.
//!
//! Each host function that reaches the API server lists the (apiGroup, resource, verb) triples it
//! needs, including what the daemon does on its behalf (the rollout verification after a change
//! reads the workload and, for Deployments, lists its ReplicaSets). The preflight derives the
//! set a configuration needs from the host functions its playbooks actually call (walking their
//! compiled ASTs), so a team that ships only `cleanup` is not told to grant `patch` on
//! Deployments. docs/playbooks.md §3 documents the same table per function.
//!
//! `aiops deploy` is a second, separate set ([`deploy_all`]): it creates Namespaces, Services,
//! Ingresses and more, which the daemon's repair role must never be able to do. Its permissions
//! are derived from the kinds `aiops deploy` applies ([`crate::deploy::apply::KINDS`]), so a kind
//! added there is in the printed role without a second edit; a test renders every framework and
//! checks the role covers exactly what render produces.

use std::collections::{BTreeMap, BTreeSet};

use crate::deploy::apply::KINDS;
use crate::playbook::Catalog;

/// One permission: a verb on a resource of an API group (`""` is the core group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    /// API group (`""`, `apps`, `batch`).
    pub group: &'static str,
    /// Resource, plural (`deployments`).
    pub resource: &'static str,
    /// Verb (`get`, `list`, `patch`, `delete`, `create`).
    pub verb: &'static str,
}

impl Permission {
    /// `patch apps/deployments`, `list pods` (core): how messages name it.
    pub fn describe(&self) -> String {
        if self.group.is_empty() {
            format!("{} {}", self.verb, self.resource)
        } else {
            format!("{} {}/{}", self.verb, self.group, self.resource)
        }
    }
}

const fn p(group: &'static str, resource: &'static str, verb: &'static str) -> Permission {
    Permission {
        group,
        resource,
        verb,
    }
}

/// Reading any workload kind: the target's kind comes from alert labels at run time.
const GET_WORKLOADS: [Permission; 3] = [
    p("apps", "deployments", "get"),
    p("apps", "statefulsets", "get"),
    p("apps", "daemonsets", "get"),
];
const PATCH_WORKLOADS: [Permission; 3] = [
    p("apps", "deployments", "patch"),
    p("apps", "statefulsets", "patch"),
    p("apps", "daemonsets", "patch"),
];
const LIST_REPLICASETS: Permission = p("apps", "replicasets", "list");

/// A host function and what it needs.
#[derive(Debug)]
pub struct HostCall {
    /// The function's name in Rhai.
    pub name: &'static str,
    /// Every permission it (or the verification after it) may use.
    pub needs: &'static [Permission],
}

/// The host functions that reach the API server. Functions not listed (log, quantity,
/// http_get, kb_*) need no Kubernetes permission.
pub const HOST_CALLS: &[HostCall] = &[
    // get: the paused/opt-out checks and the rollout verification after success (the workload's
    // own status: no ReplicaSet is read, as the real-cluster suite shows); patch: the restart.
    HostCall {
        name: "restart",
        needs: &[
            GET_WORKLOADS[0],
            GET_WORKLOADS[1],
            GET_WORKLOADS[2],
            PATCH_WORKLOADS[0],
            PATCH_WORKLOADS[1],
            PATCH_WORKLOADS[2],
        ],
    },
    HostCall {
        name: "rollout_status",
        needs: &GET_WORKLOADS,
    },
    HostCall {
        name: "wait_rollout",
        needs: &GET_WORKLOADS,
    },
    // Deployments only: the previous revision is a ReplicaSet.
    HostCall {
        name: "rollback",
        needs: &[
            p("apps", "deployments", "get"),
            p("apps", "deployments", "patch"),
            LIST_REPLICASETS,
        ],
    },
    HostCall {
        name: "replicas",
        needs: &GET_WORKLOADS,
    },
    // The workload's labels, annotations and managedFields: who owns it (Argo CD, Flux).
    HostCall {
        name: "gitops",
        needs: &GET_WORKLOADS,
    },
    HostCall {
        name: "memory",
        needs: &GET_WORKLOADS,
    },
    HostCall {
        name: "set_memory",
        needs: &[
            GET_WORKLOADS[0],
            GET_WORKLOADS[1],
            GET_WORKLOADS[2],
            PATCH_WORKLOADS[0],
            PATCH_WORKLOADS[1],
            PATCH_WORKLOADS[2],
        ],
    },
    // get: the opt-out check, the current count and the rollout verification after success;
    // patch on the scale subresource only (`kubectl scale`), never on the pod template.
    // DaemonSets have no scale subresource.
    HostCall {
        name: "scale",
        needs: &[
            GET_WORKLOADS[0],
            GET_WORKLOADS[1],
            p("apps", "deployments/scale", "patch"),
            p("apps", "statefulsets/scale", "patch"),
        ],
    },
    // get: the workload's selector.
    HostCall {
        name: "last_terminations",
        needs: &[
            GET_WORKLOADS[0],
            GET_WORKLOADS[1],
            GET_WORKLOADS[2],
            p("", "pods", "list"),
        ],
    },
    HostCall {
        name: "delete_failed_pods",
        needs: &[p("", "pods", "list"), p("", "pods", "delete")],
    },
    HostCall {
        name: "delete_finished_jobs",
        needs: &[p("batch", "jobs", "list"), p("batch", "jobs", "delete")],
    },
];

/// What the daemon itself needs whatever the playbooks: an Event on each target a repair
/// changed (a refusal is logged, never fatal to the repair).
pub const DAEMON: &[Permission] = &[p("", "events", "create")];

/// Who needs a permission, for messages: host functions and the daemon.
pub const DAEMON_USER: &str = "the daemon (an Event on each target a repair changed)";

/// Optional: what `gitops: hold` needs on the GitOps controllers' objects (pausing an Argo CD
/// Application's automated sync or a Flux HelmRelease, and reading whether Argo CD says Git
/// agrees). Without them a hold on those owners becomes a skip; a Flux Kustomization's hold is
/// an annotation on the workload and needs none of them. Granted by `aiops manifests --gitops`
/// and the chart's `rbac.gitops`; `aiops check --cluster` reports them as information.
pub const GITOPS: &[Permission] = &[
    p("argoproj.io", "applications", "get"),
    p("argoproj.io", "applications", "patch"),
    p("helm.toolkit.fluxcd.io", "helmreleases", "get"),
    p("helm.toolkit.fluxcd.io", "helmreleases", "patch"),
];

/// Who needs [`GITOPS`], for messages and the rule's comment.
pub const GITOPS_USER: &str =
    "gitops: hold on Argo CD Applications and Flux HelmReleases (optional)";

/// The optional [`GITOPS`] rules, one per API group.
pub fn gitops_rules() -> Vec<Rule> {
    let perms = GITOPS
        .iter()
        .map(|p| (*p, vec![GITOPS_USER.to_string()]))
        .collect();
    group_rules(&perms, GITOPS.iter().copied())
}

/// The host functions `ast` calls (as functions or methods), among [`HOST_CALLS`].
pub fn calls_in(ast: &rhai::AST) -> BTreeSet<&'static str> {
    let mut found = BTreeSet::new();
    ast.walk(&mut |path: &[rhai::ASTNode]| {
        // A call is an expression (`let r = replicas(t)`, `t.replicas()`) or, on its own
        // line, a statement (`restart(t);`).
        let name = match path.last() {
            Some(rhai::ASTNode::Expr(
                rhai::Expr::FnCall(call, _) | rhai::Expr::MethodCall(call, _),
            ))
            | Some(rhai::ASTNode::Stmt(rhai::Stmt::FnCall(call, _))) => Some(call.name.as_str()),
            _ => None,
        };
        // `scale` is also the quantity helper `scale(bytes, factor)`, which needs nothing.
        if name == Some("scale") && first_argument(path).is_some_and(is_number) {
            return true;
        }
        if let Some(call) = name.and_then(|n| HOST_CALLS.iter().find(|c| c.name == n)) {
            found.insert(call.name);
        }
        true
    });
    found
}

/// The first argument of the call at the end of `path`: `a` in `f(a, …)`, or in `a.f(…)`
/// the object the method is called on.
fn first_argument<'a>(path: &[rhai::ASTNode<'a>]) -> Option<&'a rhai::Expr> {
    match path.last()? {
        rhai::ASTNode::Expr(rhai::Expr::FnCall(call, _))
        | rhai::ASTNode::Stmt(rhai::Stmt::FnCall(call, _)) => call.args.first(),
        rhai::ASTNode::Expr(rhai::Expr::MethodCall(..)) => {
            match path.get(path.len().checked_sub(2)?)? {
                rhai::ASTNode::Expr(rhai::Expr::Dot(dot, ..)) => Some(&dot.lhs),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether `e` is visibly a number: Rhai picks `scale(bytes, factor)` or
/// `scale(target, replicas)` by the arguments' types at run time, so the RBAC a call needs is
/// judged from its first argument's expression: a number, arithmetic, a function that returns
/// a number, or a `.limit`/`.request` read (what `memory()` returns) is the quantity helper.
/// Anything else counts as the replica form, so the preflight asks for a permission too many
/// rather than one too few.
fn is_number(e: &rhai::Expr) -> bool {
    const NUMERIC: [&str; 7] = ["quantity", "cpu", "seconds", "scale", "max", "min", "abs"];
    const ARITHMETIC: [&str; 6] = ["+", "-", "*", "/", "%", "**"];
    match e {
        rhai::Expr::IntegerConstant(..) | rhai::Expr::FloatConstant(..) => true,
        rhai::Expr::FnCall(call, _) => {
            let name = call.name.as_str();
            (call.is_operator_call() && ARITHMETIC.contains(&name))
                || (!call.is_operator_call() && NUMERIC.contains(&name))
        }
        // `mem.limit`, and `limit` itself when it is the object of `mem.limit.scale(…)`.
        rhai::Expr::Dot(dot, ..) => is_number(&dot.rhs),
        rhai::Expr::Property(p, _) => matches!(p.2.as_str(), "limit" | "request"),
        _ => false,
    }
}

/// Every permission the playbooks of `catalog` named in `used` need (the rules' playbooks: a
/// file no rule runs needs nothing), plus [`DAEMON`]'s, each with who needs it
/// (`host function (playbook, ...)`), in a stable order.
pub fn needed(catalog: &Catalog, used: &BTreeSet<&str>) -> BTreeMap<Permission, Vec<String>> {
    let mut by_call: BTreeMap<&'static str, Vec<&str>> = BTreeMap::new();
    for name in catalog.names().filter(|n| used.contains(n)) {
        if let Some(pb) = catalog.get(name) {
            for call in calls_in(&pb.ast) {
                by_call.entry(call).or_default().push(name);
            }
        }
    }
    let mut out: BTreeMap<Permission, Vec<String>> = BTreeMap::new();
    for call in HOST_CALLS {
        if let Some(playbooks) = by_call.get(call.name) {
            let who = format!("{} ({})", call.name, playbooks.join(", "));
            for perm in call.needs {
                let users = out.entry(*perm).or_default();
                if !users.contains(&who) {
                    users.push(who.clone());
                }
            }
        }
    }
    for perm in DAEMON {
        out.entry(*perm).or_default().push(DAEMON_USER.to_string());
    }
    out
}

/// Every permission any host function may need, plus the daemon's: the ClusterRole of
/// `aiops manifests`, with the host functions that use each.
pub fn all() -> BTreeMap<Permission, Vec<String>> {
    let mut out: BTreeMap<Permission, Vec<String>> = BTreeMap::new();
    for call in HOST_CALLS {
        for perm in call.needs {
            let users = out.entry(*perm).or_default();
            if !users.iter().any(|u| u == call.name) {
                users.push(call.name.to_string());
            }
        }
    }
    for perm in DAEMON {
        out.entry(*perm).or_default().push(DAEMON_USER.to_string());
    }
    out
}

/// One ClusterRole rule: resources of one group sharing the same verbs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The API group.
    pub group: &'static str,
    /// Resources, in table order.
    pub resources: Vec<&'static str>,
    /// Verbs, in Kubernetes' usual order (get, list, watch, create, update, patch, delete).
    pub verbs: Vec<&'static str>,
    /// Who needs it (host functions, the daemon), deduplicated, for the comment above it.
    pub users: Vec<String>,
}

const VERB_ORDER: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

/// Groups permissions into as few rules as grant exactly them: per group, the resources
/// with identical verb sets share a rule. Order follows [`HOST_CALLS`], then [`DAEMON`].
pub fn rules(perms: &BTreeMap<Permission, Vec<String>>) -> Vec<Rule> {
    let table = HOST_CALLS.iter().flat_map(|c| c.needs).chain(DAEMON);
    group_rules(perms, table.copied())
}

/// [`rules`] with the order of (group, resource) first seen in `table`; resources `table`
/// never names are left out (they are not in any role this crate prints).
fn group_rules(
    perms: &BTreeMap<Permission, Vec<String>>,
    table: impl Iterator<Item = Permission>,
) -> Vec<Rule> {
    // (group, resource) in the order the table first mentions them.
    let mut order: Vec<(&'static str, &'static str)> = Vec::new();
    for perm in table {
        if !order.contains(&(perm.group, perm.resource)) {
            order.push((perm.group, perm.resource));
        }
    }
    let mut out: Vec<Rule> = Vec::new();
    for (group, resource) in order {
        let mut verbs: Vec<&'static str> = Vec::new();
        let mut users: Vec<String> = Vec::new();
        for (perm, who) in perms {
            if perm.group == group && perm.resource == resource {
                verbs.push(perm.verb);
                for w in who {
                    if !users.contains(w) {
                        users.push(w.clone());
                    }
                }
            }
        }
        if verbs.is_empty() {
            continue;
        }
        verbs.sort_by_key(|v| VERB_ORDER.iter().position(|o| o == v).unwrap_or(usize::MAX));
        match out
            .iter_mut()
            .find(|r| r.group == group && r.verbs == verbs)
        {
            Some(rule) => {
                rule.resources.push(resource);
                for u in users {
                    if !rule.users.contains(&u) {
                        rule.users.push(u);
                    }
                }
            }
            None => out.push(Rule {
                group,
                resources: vec![resource],
                verbs,
                users,
            }),
        }
    }
    out
}

/// The verbs server-side apply needs on every kind `aiops deploy` applies: `patch` is the
/// request itself; `create` is checked as well when the object does not exist yet (the real
/// API server answers "cannot create" to an apply of a new object without it), so a first
/// deploy needs both and a redeploy only `patch`.
pub const APPLY_VERBS: [&str; 2] = ["create", "patch"];

/// What `aiops deploy` reads besides applying: (kind, who needs it). The migrations Job is
/// read until it completes, each Deployment until its rollout is done (its own status only,
/// as the cluster backend's rollout status reads no ReplicaSet).
pub const DEPLOY_READS: &[(&str, &str)] = &[
    ("Job", "the wait for the migrations Job"),
    ("Deployment", "the rollout wait"),
];

/// Every permission `aiops deploy` needs, with who needs each (the kind it applies, or the
/// wait in [`DEPLOY_READS`]): the ClusterRole of `aiops manifests --deploy-role`. Derived from
/// [`KINDS`], the kinds deploy applies, so the two cannot drift.
pub fn deploy_all() -> BTreeMap<Permission, Vec<String>> {
    let mut out: BTreeMap<Permission, Vec<String>> = BTreeMap::new();
    for (perm, who) in deploy_table() {
        let users = out.entry(perm).or_default();
        if !users.iter().any(|u| u == who) {
            users.push(who.to_string());
        }
    }
    out
}

/// The deploy permissions in [`KINDS`] order, each with who needs it: each kind's
/// [`APPLY_VERBS`] (the kind itself), then `get` for the kinds of [`DEPLOY_READS`] (the wait).
fn deploy_table() -> impl Iterator<Item = (Permission, &'static str)> {
    KINDS.iter().flat_map(|k| {
        let read = DEPLOY_READS
            .iter()
            .find(|(kind, _)| *kind == k.kind)
            .map(|(_, wait)| (p(k.group, k.plural, "get"), *wait));
        APPLY_VERBS
            .map(|verb| (p(k.group, k.plural, verb), k.kind))
            .into_iter()
            .chain(read)
    })
}

/// The ClusterRole rules of `aiops manifests --deploy-role`, in [`KINDS`] order.
pub fn deploy_rules() -> Vec<Rule> {
    group_rules(&deploy_all(), deploy_table().map(|(perm, _)| perm))
}

fn quoted(items: &[&str]) -> String {
    let items: Vec<String> = items
        .iter()
        .map(|i| serde_json::Value::String((*i).to_string()).to_string())
        .collect();
    format!("[{}]", items.join(", "))
}

impl Rule {
    /// The rule as a YAML list item indented by `indent` spaces, as a ClusterRole's `rules:`
    /// holds it: `- apiGroups: ["apps"]` / `resources: [...]` / `verbs: [...]`.
    pub fn to_yaml(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        format!(
            "{pad}- apiGroups: {}\n{pad}  resources: {}\n{pad}  verbs: {}\n",
            quoted(&[self.group]),
            quoted(&self.resources),
            quoted(&self.verbs)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `group:resources:verbs` per rule.
    fn summary(rules: &[Rule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| {
                format!(
                    "{}:{}:{}",
                    r.group,
                    r.resources.join(","),
                    r.verbs.join(",")
                )
            })
            .collect()
    }

    fn catalog(scripts: &[(&str, &str)]) -> Catalog {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in scripts {
            std::fs::write(dir.path().join(format!("{name}.rhai")), text).unwrap();
        }
        Catalog::load_dir(&crate::playbook::sandboxed_engine(), dir.path()).unwrap()
    }

    #[test]
    fn the_calls_of_a_playbook_are_found_in_functions_and_method_calls_too() {
        let c = catalog(&[(
            "p",
            "fn clean(ns) { delete_failed_pods(ns, \"1h\") }\nlet r = target.replicas();\nclean(target.namespace);\nrestart(target);\nlog(\"x\");",
        )]);
        let calls = calls_in(&c.get("p").unwrap().ast);
        assert_eq!(
            calls.into_iter().collect::<Vec<_>>(),
            ["delete_failed_pods", "replicas", "restart"]
        );
    }

    #[test]
    fn a_cleanup_only_set_needs_pods_jobs_and_events_and_nothing_on_workloads() {
        let c = catalog(&[(
            "cleanup",
            "delete_failed_pods(target.namespace, \"1h\"); delete_finished_jobs(target.namespace, \"1h\");",
        )]);
        let rules = rules(&needed(&c, &c.names().collect()));
        let yaml: String = rules.iter().map(|r| r.to_yaml(0)).collect();
        assert_eq!(
            yaml,
            "- apiGroups: [\"\"]\n  resources: [\"pods\"]\n  verbs: [\"list\", \"delete\"]\n\
             - apiGroups: [\"batch\"]\n  resources: [\"jobs\"]\n  verbs: [\"list\", \"delete\"]\n\
             - apiGroups: [\"\"]\n  resources: [\"events\"]\n  verbs: [\"create\"]\n"
        );
    }

    #[test]
    fn a_playbook_no_rule_runs_needs_nothing() {
        let c = catalog(&[("spare", "restart(target);")]);
        let needed = needed(&c, &BTreeSet::new());
        assert_eq!(needed.into_keys().collect::<Vec<_>>(), DAEMON.to_vec());
    }

    #[test]
    fn the_embedded_playbooks_need_every_permission_but_the_scale_subresource() {
        // No shipped playbook scales replicas (scale_memory's `scale(bytes, factor)` is the
        // quantity helper), so the scale subresource is the one part of the role they leave.
        let c = Catalog::load_embedded(&crate::playbook::sandboxed_engine()).unwrap();
        let needed: BTreeSet<Permission> = needed(&c, &c.names().collect()).into_keys().collect();
        let all: BTreeSet<Permission> = all().into_keys().collect();
        let unused: Vec<String> = all.difference(&needed).map(Permission::describe).collect();
        assert_eq!(
            unused,
            [
                "patch apps/deployments/scale",
                "patch apps/statefulsets/scale"
            ]
        );
        assert!(needed.is_subset(&all));
    }

    #[test]
    fn the_two_scales_are_told_apart_by_their_first_argument() {
        let calls = |script: &str| {
            let c = catalog(&[("p", script)]);
            calls_in(&c.get("p").unwrap().ast)
                .into_iter()
                .collect::<Vec<_>>()
        };
        // The quantity helper, as scale_memory calls it, and its other visible forms.
        assert_eq!(
            calls("let mem = memory(target); scale(mem.limit, 1.2);"),
            ["memory"]
        );
        assert_eq!(
            calls(
                "scale(mem.limit, f); scale(512, 2); scale(quantity(\"1Gi\"), 1.5); scale(a * 2, 1.2); mem.request.scale(2);"
            ),
            Vec::<&str>::new()
        );
        // The replica form, and anything that could be it.
        assert_eq!(calls("scale(target, 3);"), ["scale"]);
        assert_eq!(
            calls("let t = #{namespace: \"a\", kind: \"Deployment\", name: \"b\"}; scale(t, 3);"),
            ["scale"]
        );
        assert_eq!(calls("target.scale(3);"), ["scale"]);
        assert_eq!(calls("fn up(t) { scale(t, 2) } up(target);"), ["scale"]);
    }

    #[test]
    fn a_scaling_playbook_needs_the_scale_subresource_and_no_template_patch() {
        let c = catalog(&[("up", "scale(target, 3); wait_rollout(target);")]);
        let yaml: Vec<String> = summary(&rules(&needed(&c, &c.names().collect())));
        assert_eq!(
            yaml,
            [
                "apps:deployments,statefulsets,daemonsets:get",
                "apps:deployments/scale,statefulsets/scale:patch",
                ":events:create",
            ]
        );
    }

    #[test]
    fn the_full_role_is_six_rules_in_table_order() {
        assert_eq!(
            summary(&rules(&all())),
            [
                "apps:deployments,statefulsets,daemonsets:get,patch",
                "apps:replicasets:list",
                "apps:deployments/scale,statefulsets/scale:patch",
                ":pods:list,delete",
                "batch:jobs:list,delete",
                ":events:create",
            ]
        );
    }

    /// (group, resource) of every object `aiops render` produces for the golden app specs,
    /// which together use every framework, plan and option that adds an object.
    fn rendered_resources() -> BTreeSet<(&'static str, &'static str)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/deploy");
        let mut out = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with(".app.yaml") {
                continue;
            }
            let spec = crate::deploy::AppSpec::load(&path).unwrap();
            let rendered = crate::deploy::render(&spec, &Default::default()).unwrap();
            for m in &rendered.objects {
                let kind = crate::deploy::apply::resource_of(m).unwrap();
                out.insert((kind.group, kind.plural));
            }
        }
        out
    }

    #[test]
    fn the_deploy_role_grants_create_and_patch_on_exactly_what_render_produces() {
        let perms = deploy_all();
        let applied: BTreeSet<(&str, &str)> = perms
            .keys()
            .filter(|p| p.verb == "patch")
            .map(|p| (p.group, p.resource))
            .collect();
        assert_eq!(applied, rendered_resources());
        for (group, resource) in applied {
            assert!(
                perms.contains_key(&p(group, resource, "create")),
                "{resource}"
            );
        }
        // Beyond apply, only the two waits read, and nothing is ever listed or deleted.
        let reads: Vec<String> = perms
            .keys()
            .filter(|p| !APPLY_VERBS.contains(&p.verb))
            .map(Permission::describe)
            .collect();
        assert_eq!(reads, ["get apps/deployments", "get batch/jobs"]);
    }

    #[test]
    fn the_deploy_role_is_six_rules_in_the_order_deploy_applies() {
        let with_users: Vec<String> = deploy_rules()
            .iter()
            .zip(summary(&deploy_rules()))
            .map(|(r, line)| format!("{line}:{}", r.users.join(",")))
            .collect();
        assert_eq!(
            with_users,
            [
                ":namespaces,serviceaccounts,configmaps,services:create,patch:Namespace,ServiceAccount,ConfigMap,Service",
                "networking.k8s.io:networkpolicies,ingresses:create,patch:NetworkPolicy,Ingress",
                "apps:deployments:get,create,patch:Deployment,the rollout wait",
                "batch:jobs:get,create,patch:Job,the wait for the migrations Job",
                "cert-manager.io:certificates:create,patch:Certificate",
                "monitoring.coreos.com:servicemonitors,prometheusrules:create,patch:ServiceMonitor,PrometheusRule",
            ]
        );
    }

    #[test]
    fn the_repair_role_cannot_create_what_deploy_creates() {
        // The two roles are separate on purpose: the daemon answers alerts from the network,
        // and must not be able to create Namespaces, Services or Ingresses.
        let repair: BTreeSet<Permission> = all().into_keys().collect();
        let creates: Vec<String> = deploy_all()
            .into_keys()
            .filter(|p| p.verb == "create" && repair.contains(p))
            .map(|p| p.describe())
            .collect();
        assert!(creates.is_empty(), "{creates:?}");
    }
}
