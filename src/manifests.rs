//! `aiops manifests`: the Kubernetes manifests that run the daemon in a cluster.
//!
//! One multi-document YAML stream (documents separated by `---`): Namespace, ServiceAccount, the
//! minimal ClusterRole of the shipped playbooks and its binding (both named `aiops-NAMESPACE`, so
//! installs in two namespaces do not collide), the settings ConfigMap, the SQLite store's
//! PersistentVolumeClaim, the Deployment and its Service, followed by a comment block with the Alertmanager receiver. Secrets
//! are never rendered; comments say how to create them. The text is a template (so every RBAC
//! rule can carry a comment saying which host function needs it) into which only validated
//! options are substituted: the namespace and Secret name as DNS-1123 names, the image as a
//! double-quoted scalar.
//!
//! `aiops manifests --deploy-role` prints instead the ClusterRole `aiops-deploy`: what
//! `aiops deploy` needs ([`crate::rbac::deploy_rules`]), kept apart from the daemon's repair
//! role, optionally bound to the ServiceAccounts a platform team names.

use std::process::ExitCode;

/// The namespace used when none is given.
pub const DEFAULT_NAMESPACE: &str = "aiops";
/// The image used when none is given.
pub const DEFAULT_IMAGE: &str = "ghcr.io/wooo-work/aiops:latest";
/// The Secret holding the webhook token (key `token`) when none is given.
pub const DEFAULT_TOKEN_SECRET: &str = "aiops-webhook-token";

/// What varies between installations. Also the flags of `aiops manifests`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct Options {
    /// Namespace of the daemon's objects (a DNS-1123 label).
    #[arg(long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Container image of the daemon (its entrypoint is the aiops binary).
    #[arg(long, default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// Secret (created by you, key `token`) holding the webhook token Alertmanager presents.
    #[arg(long, default_value = DEFAULT_TOKEN_SECRET)]
    pub token_secret: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: DEFAULT_NAMESPACE.into(),
            image: DEFAULT_IMAGE.into(),
            token_secret: DEFAULT_TOKEN_SECRET.into(),
        }
    }
}

/// The name of the ClusterRole `aiops manifests --deploy-role` prints. One name for every
/// install: the role is the same wherever aiops runs, and the bindings carry the differences.
pub const DEPLOY_ROLE: &str = "aiops-deploy";

/// The flags of `aiops manifests`: the installation's [`Options`] and what to print.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// Where and what the daemon runs.
    #[command(flatten)]
    pub options: Options,
    /// Print only the webhook URL Alertmanager posts to.
    #[arg(long, conflicts_with = "deploy_role")]
    pub alertmanager_url_only: bool,
    /// Also grant the optional GitOps rights (`get, patch` on Argo CD Applications and Flux
    /// HelmReleases) that `gitops: hold` needs on those owners; without them it becomes skip.
    #[arg(long, conflicts_with = "deploy_role")]
    pub gitops: bool,
    /// Print only the ClusterRole `aiops-deploy` that `aiops deploy` needs (server-side apply of
    /// what `aiops render` produces), not the daemon's manifests; the other flags do not apply.
    #[arg(long)]
    pub deploy_role: bool,
    /// With --deploy-role: also bind the role to this ServiceAccount, NAMESPACE/NAME (repeatable;
    /// one ClusterRoleBinding each). Users and groups: kubectl create clusterrolebinding.
    #[arg(
        long = "deploy-service-account",
        value_name = "NAMESPACE/NAME",
        requires = "deploy_role"
    )]
    pub deploy_service_accounts: Vec<String>,
}

/// Options that cannot produce valid manifests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The namespace is not a DNS-1123 label.
    #[error(
        "invalid namespace {value:?}: {reason}; a namespace is a DNS-1123 label: 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit (e.g. aiops)"
    )]
    Namespace {
        /// The rejected value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The image is empty or cannot be an image reference.
    #[error("invalid image {value:?}: {reason} (e.g. {DEFAULT_IMAGE})")]
    Image {
        /// The rejected value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token Secret's name is not a DNS-1123 subdomain.
    #[error(
        "invalid token secret name {value:?}: {reason}; a Secret name is a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', at most 253 characters (e.g. {DEFAULT_TOKEN_SECRET})"
    )]
    TokenSecret {
        /// The rejected value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A --deploy-service-account is not NAMESPACE/NAME of valid names.
    #[error(
        "invalid deploy service account {value:?}: {reason}; give NAMESPACE/NAME, a DNS-1123 label and subdomain (e.g. ci/deployer)"
    )]
    ServiceAccount {
        /// The rejected value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why `s` cannot be an image reference, if it cannot.
fn image_problem(s: &str) -> Option<String> {
    if s.trim().is_empty() {
        return Some("it is empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("it contains whitespace or control characters".into());
    }
    None
}

impl Options {
    /// Checks every option, naming the first bad one.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(reason) = crate::k8s_name::namespace(&self.namespace)
            .err()
            .map(|e| e.to_string())
        {
            return Err(Error::Namespace {
                value: self.namespace.clone(),
                reason,
            });
        }
        if let Some(reason) = image_problem(&self.image) {
            return Err(Error::Image {
                value: self.image.clone(),
                reason,
            });
        }
        if let Some(reason) = crate::k8s_name::dns1123_subdomain(&self.token_secret)
            .err()
            .map(|e| e.to_string())
        {
            return Err(Error::TokenSecret {
                value: self.token_secret.clone(),
                reason,
            });
        }
        Ok(())
    }
}

/// The URL Alertmanager posts to: the Service in `opts.namespace`.
pub fn alertmanager_url(opts: &Options) -> Result<String, Error> {
    opts.validate()?;
    Ok(format!(
        "http://aiops.{}.svc:9095/webhook/alertmanager",
        opts.namespace
    ))
}

/// Renders the manifests: one YAML stream, documents separated by `---` lines, ending with the
/// Alertmanager receiver as a comment block.
pub fn render(opts: &Options) -> Result<String, Error> {
    render_with(opts, false)
}

/// [`render`], with `gitops` the optional GitOps rules ([`crate::rbac::gitops_rules`]) added
/// to the ClusterRole.
pub fn render_with(opts: &Options, gitops: bool) -> Result<String, Error> {
    let url = alertmanager_url(opts)?;
    // A JSON string is a valid YAML double-quoted scalar: the image cannot break the document.
    let image = serde_json::Value::String(opts.image.clone()).to_string();
    Ok(TEMPLATE
        .replace("@URL@", &url)
        .replace("@NS@", &opts.namespace)
        .replace("@IMAGE@", &image)
        .replace("@TOKEN_SECRET@", &opts.token_secret)
        .replace(
            "@RBAC_RULES@",
            &format!("{}{}", cluster_role_rules(), gitops_rules(gitops)),
        ))
}

/// The optional GitOps rules under their comment, or nothing.
fn gitops_rules(gitops: bool) -> String {
    if gitops {
        commented_rules(&crate::rbac::gitops_rules())
    } else {
        String::new()
    }
}

/// The ClusterRole's rules, from the one permission table ([`crate::rbac`]) the cluster
/// preflight also reads; each rule is preceded by a comment naming who needs it.
fn cluster_role_rules() -> String {
    commented_rules(&crate::rbac::rules(&crate::rbac::all()))
}

/// `rules` as YAML list items indented two spaces, each under a comment naming its users,
/// wrapped before 100 columns.
fn commented_rules(rules: &[crate::rbac::Rule]) -> String {
    let mut out = String::new();
    for rule in rules {
        let mut line = String::from("  #");
        for (i, user) in rule.users.iter().enumerate() {
            let word = if i + 1 < rule.users.len() {
                format!(" {user},")
            } else {
                format!(" {user}")
            };
            if line.len() + word.len() > 98 {
                out.push_str(&line);
                out.push('\n');
                line = String::from("  #");
            }
            line.push_str(&word);
        }
        out.push_str(&line);
        out.push('\n');
        out.push_str(&rule.to_yaml(2));
    }
    out
}

/// `rules` without the two spaces of indentation [`commented_rules`] gives them.
fn unindented(rules: &str) -> String {
    rules
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The ClusterRole's rules as the Helm chart carries them (`charts/aiops/files`): the chart
/// cannot run Rust, so it keeps a copy that a test holds equal to [`cluster_role_rules`].
pub const CHART_CLUSTER_ROLE_RULES: &str =
    include_str!("../charts/aiops/files/clusterrole-rules.yaml");

/// The rules [`render`] prints, unindented: what `CHART_CLUSTER_ROLE_RULES` must hold after
/// its header comment.
pub fn cluster_role_rules_text() -> String {
    unindented(&cluster_role_rules())
}

/// What `aiops manifests` prints without `--deploy-role`: the manifests, or with
/// `alertmanager_url_only` the webhook URL.
pub fn output(opts: &Options, alertmanager_url_only: bool) -> Result<String, Error> {
    if alertmanager_url_only {
        alertmanager_url(opts).map(|url| url + "\n")
    } else {
        render(opts)
    }
}

/// The chart's optional GitOps rules (`rbac.gitops`), kept equal to
/// [`crate::rbac::gitops_rules`] by a test as [`CHART_CLUSTER_ROLE_RULES`] is.
pub const CHART_GITOPS_RULES: &str = include_str!("../charts/aiops/files/gitops-rules.yaml");

/// The GitOps rules unindented: what `CHART_GITOPS_RULES` must hold after its header comment.
pub fn gitops_rules_text() -> String {
    unindented(&gitops_rules(true))
}

impl Args {
    /// What `aiops manifests` prints for these flags: [`output`], or with `deploy_role` the
    /// deploy role ([`render_deploy_role`]).
    pub fn output(&self) -> Result<String, Error> {
        if self.deploy_role {
            render_deploy_role(&self.deploy_service_accounts)
        } else if self.gitops && !self.alertmanager_url_only {
            render_with(&self.options, true)
        } else {
            output(&self.options, self.alertmanager_url_only)
        }
    }

    /// `aiops manifests`: prints [`Args::output`] on stdout.
    pub fn print(&self) -> Result<ExitCode, Error> {
        print!("{}", self.output()?);
        Ok(ExitCode::SUCCESS)
    }
}

/// `NAMESPACE/NAME` of a ServiceAccount, both checked.
fn service_account(value: &str) -> Result<(&str, &str), Error> {
    let bad = |reason: String| Error::ServiceAccount {
        value: value.to_string(),
        reason,
    };
    let (ns, name) = value
        .split_once('/')
        .ok_or_else(|| bad("there is no '/'".into()))?;
    crate::k8s_name::namespace(ns).map_err(|e| bad(format!("namespace: {e}")))?;
    crate::k8s_name::dns1123_subdomain(name).map_err(|e| bad(format!("name: {e}")))?;
    Ok((ns, name))
}

/// The ClusterRole [`DEPLOY_ROLE`] with the rules of [`crate::rbac::deploy_rules`], each under
/// a comment naming the kinds (or waits) that need it, then one ClusterRoleBinding per
/// ServiceAccount in `service_accounts` (`NAMESPACE/NAME`), named `aiops-deploy:NAMESPACE:NAME`
/// so that binding a second account never replaces the first.
pub fn render_deploy_role(service_accounts: &[String]) -> Result<String, Error> {
    let accounts = service_accounts
        .iter()
        .map(|sa| service_account(sa))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = DEPLOY_ROLE_TEMPLATE.replace("@ROLE@", DEPLOY_ROLE).replace(
        "@RBAC_RULES@",
        &commented_rules(&crate::rbac::deploy_rules()),
    );
    for (ns, name) in accounts {
        out.push_str(
            &DEPLOY_BINDING_TEMPLATE
                .replace("@ROLE@", DEPLOY_ROLE)
                .replace("@NS@", ns)
                .replace("@NAME@", name),
        );
    }
    Ok(out)
}

/// The deploy role's rules as the Helm chart carries them (`charts/aiops/files`), held equal
/// to [`deploy_role_rules_text`] by a test, as [`CHART_CLUSTER_ROLE_RULES`] is.
pub const CHART_DEPLOY_ROLE_RULES: &str =
    include_str!("../charts/aiops/files/deploy-clusterrole-rules.yaml");

/// The rules [`render_deploy_role`] prints, unindented: what `CHART_DEPLOY_ROLE_RULES` must
/// hold after its header comment.
pub fn deploy_role_rules_text() -> String {
    unindented(&commented_rules(&crate::rbac::deploy_rules()))
}

const DEPLOY_ROLE_TEMPLATE: &str = r##"# aiops deploy: server-side apply (create, then patch) of every kind `aiops render` produces, and
# reading the migrations Job and the Deployments it waits for. Not the daemon's role: aiops serve
# never needs these rights, and its ClusterRole (`aiops manifests`) must not grant them.
# Rendered by `aiops manifests --deploy-role`; bind it to the account that runs aiops deploy:
#   aiops manifests --deploy-role --deploy-service-account ci/deployer | kubectl apply -f -
#   kubectl create clusterrolebinding aiops-deploy-alice --clusterrole=@ROLE@ --user=alice
# Bound cluster-wide because a deploy creates the app's Namespace; to confine it to namespaces
# that exist already, bind it with RoleBindings in them instead.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: @ROLE@
  labels:
    app.kubernetes.io/name: aiops
rules:
@RBAC_RULES@"##;

const DEPLOY_BINDING_TEMPLATE: &str = r##"---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: @ROLE@:@NS@:@NAME@
  labels:
    app.kubernetes.io/name: aiops
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: @ROLE@
subjects:
  - kind: ServiceAccount
    name: @NAME@
    namespace: @NS@
"##;

/// The daemon's manifests with `@NS@`, `@IMAGE@`, `@TOKEN_SECRET@`, `@URL@` and `@RBAC_RULES@`
/// to fill in: a file of its own, so it reads (and diffs) as the YAML it is.
const TEMPLATE: &str = include_str!("manifests/daemon.yaml.in");

#[cfg(test)]
mod tests {
    use super::*;

    /// `chart` (a file of `charts/aiops/files`) is comments, then exactly `generated`.
    fn assert_chart_copy(file: &str, chart: &str, generated: &str) {
        let header = chart.strip_suffix(generated).unwrap_or_else(|| {
            panic!(
                "charts/aiops/files/{file} differs from src/rbac.rs; after its header it must \
                 read:\n{generated}"
            )
        });
        assert!(
            header.lines().all(|l| l.starts_with('#')),
            "only comments may precede the rules: {header:?}"
        );
    }

    #[test]
    fn the_charts_cluster_role_rules_are_the_permission_tables() {
        assert_chart_copy(
            "clusterrole-rules.yaml",
            CHART_CLUSTER_ROLE_RULES,
            &cluster_role_rules_text(),
        );
    }

    #[test]
    fn the_charts_gitops_rules_are_the_gitops_permission_table() {
        assert_chart_copy(
            "gitops-rules.yaml",
            CHART_GITOPS_RULES,
            &gitops_rules_text(),
        );
    }

    #[test]
    fn only_manifests_with_gitops_grant_patch_on_applications_and_helmreleases() {
        let args = |gitops| Args {
            gitops,
            ..Args::default()
        };
        let plain = args(false).output().unwrap();
        let with = args(true).output().unwrap();
        for resource in ["applications", "helmreleases"] {
            assert!(!plain.contains(resource), "{plain}");
            assert!(with.contains(resource), "{with}");
        }
        assert!(with.contains("apiGroups: [\"argoproj.io\"]"), "{with}");
        assert!(with.contains("verbs: [\"get\", \"patch\"]"), "{with}");
        assert!(!with.contains("kustomizations"), "{with}");
    }

    #[test]
    fn the_charts_deploy_role_rules_are_the_deploy_permission_table() {
        assert_chart_copy(
            "deploy-clusterrole-rules.yaml",
            CHART_DEPLOY_ROLE_RULES,
            &deploy_role_rules_text(),
        );
    }

    fn documents(yaml: &str) -> Vec<serde_json::Value> {
        serde_yaml::Deserializer::from_str(yaml)
            .map(|doc| <serde_json::Value as serde::Deserialize>::deserialize(doc).unwrap())
            .collect()
    }

    #[test]
    fn the_deploy_role_alone_is_a_cluster_role_with_the_deploy_rules() {
        use k8s_openapi::api::rbac::v1::ClusterRole;
        let docs = documents(&render_deploy_role(&[]).unwrap());
        assert_eq!(docs.len(), 1, "{docs:?}");
        let role: ClusterRole = serde_json::from_value(docs[0].clone()).unwrap();
        assert_eq!(role.metadata.name.as_deref(), Some("aiops-deploy"));
        let rules = role.rules.unwrap();
        let want = crate::rbac::deploy_rules();
        assert_eq!(rules.len(), want.len());
        for (got, want) in rules.iter().zip(&want) {
            assert_eq!(got.api_groups, Some(vec![want.group.to_string()]));
            assert_eq!(got.resources.as_deref().unwrap(), want.resources.as_slice());
            assert_eq!(got.verbs, want.verbs);
        }
    }

    #[test]
    fn each_named_service_account_gets_its_own_binding_to_the_deploy_role() {
        use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
        let yaml =
            render_deploy_role(&["ci/deployer".to_string(), "team-a/release".to_string()]).unwrap();
        let bindings: Vec<ClusterRoleBinding> = documents(&yaml)[1..]
            .iter()
            .map(|d| serde_json::from_value(d.clone()).unwrap())
            .collect();
        let summary: Vec<String> = bindings
            .iter()
            .map(|b| {
                let s = &b.subjects.as_ref().unwrap()[0];
                format!(
                    "{} -> {} {} {}/{}",
                    b.metadata.name.as_deref().unwrap(),
                    b.role_ref.name,
                    s.kind,
                    s.namespace.as_deref().unwrap(),
                    s.name
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "aiops-deploy:ci:deployer -> aiops-deploy ServiceAccount ci/deployer",
                "aiops-deploy:team-a:release -> aiops-deploy ServiceAccount team-a/release",
            ]
        );
    }

    #[test]
    fn a_deploy_service_account_that_is_not_namespace_slash_name_is_a_clear_error() {
        for (bad, reason) in [
            ("deployer", "there is no '/'"),
            ("Bad_NS/deployer", "namespace: "),
            ("ci/", "name: "),
            ("ci/a b", "name: "),
        ] {
            let err = render_deploy_role(&[bad.to_string()])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("invalid deploy service account {bad:?}: {reason}"))
                    && err.ends_with(
                        "give NAMESPACE/NAME, a DNS-1123 label and subdomain (e.g. ci/deployer)"
                    ),
                "{err}"
            );
        }
    }

    #[test]
    fn the_cli_flags_choose_what_is_printed() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse = |argv: &[&str]| {
            Cli::try_parse_from(std::iter::once("manifests").chain(argv.iter().copied()))
                .map(|c| c.args)
        };
        let role = parse(&["--deploy-role", "--deploy-service-account", "ci/deployer"]).unwrap();
        assert_eq!(
            role.output().unwrap(),
            render_deploy_role(&["ci/deployer".into()]).unwrap()
        );
        assert_eq!(
            parse(&[]).unwrap().output().unwrap(),
            render(&Options::default()).unwrap()
        );
        // A binding without the role, or the URL and the role at once, are refused by clap.
        assert!(parse(&["--deploy-service-account", "ci/deployer"]).is_err());
        assert!(parse(&["--deploy-role", "--alertmanager-url-only"]).is_err());
    }
}
