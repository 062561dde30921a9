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
    let url = alertmanager_url(opts)?;
    // A JSON string is a valid YAML double-quoted scalar: the image cannot break the document.
    let image = serde_json::Value::String(opts.image.clone()).to_string();
    Ok(TEMPLATE
        .replace("@URL@", &url)
        .replace("@NS@", &opts.namespace)
        .replace("@IMAGE@", &image)
        .replace("@TOKEN_SECRET@", &opts.token_secret)
        .replace("@RBAC_RULES@", &cluster_role_rules()))
}

/// The ClusterRole's rules, from the one permission table ([`crate::rbac`]) the cluster
/// preflight also reads; each rule is preceded by a comment naming who needs it.
fn cluster_role_rules() -> String {
    let mut out = String::new();
    for rule in crate::rbac::rules(&crate::rbac::all()) {
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

/// The ClusterRole's rules as the Helm chart carries them (`charts/aiops/files`): the chart
/// cannot run Rust, so it keeps a copy that a test holds equal to [`cluster_role_rules`].
pub const CHART_CLUSTER_ROLE_RULES: &str =
    include_str!("../charts/aiops/files/clusterrole-rules.yaml");

/// The rules [`render`] prints, unindented: what `CHART_CLUSTER_ROLE_RULES` must hold after
/// its header comment.
pub fn cluster_role_rules_text() -> String {
    cluster_role_rules()
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// What `aiops manifests` prints: the manifests, or with `alertmanager_url_only` the webhook URL.
pub fn output(opts: &Options, alertmanager_url_only: bool) -> Result<String, Error> {
    if alertmanager_url_only {
        alertmanager_url(opts).map(|url| url + "\n")
    } else {
        render(opts)
    }
}

/// `aiops manifests`: prints [`output`] on stdout.
pub fn print(opts: &Options, alertmanager_url_only: bool) -> Result<ExitCode, Error> {
    print!("{}", output(opts, alertmanager_url_only)?);
    Ok(ExitCode::SUCCESS)
}

const TEMPLATE: &str = r##"# aiops: receives Alertmanager webhooks and repairs Kubernetes workloads with Rhai playbooks.
# Rendered by `aiops manifests`; apply with: aiops manifests --namespace @NS@ | kubectl apply -f -
#
# Not rendered here; create them yourself (the pod starts once the first three exist):
#   # the webhook token, also given to Alertmanager (see the end of this file); never commit it
#   kubectl -n @NS@ create secret generic @TOKEN_SECRET@ --from-literal=token=$(openssl rand -hex 32)
#   # the rules and playbooks, from your checkout
#   kubectl -n @NS@ create configmap aiops-rules --from-file=rules/
#   kubectl -n @NS@ create configmap aiops-playbooks --from-file=playbooks/
#   # optional: a PostgreSQL store, needed for more than one replica
#   kubectl -n @NS@ create secret generic aiops-database --from-literal=url='postgres://USER:PASSWORD@HOST/DB'
#   # optional: the /api's JWT secret (without it the API answers 401)
#   kubectl -n @NS@ create secret generic aiops-jwt --from-literal=secret=$(openssl rand -hex 32)
apiVersion: v1
kind: Namespace
metadata:
  name: @NS@
  labels:
    app.kubernetes.io/name: aiops
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: aiops
  namespace: @NS@
  labels:
    app.kubernetes.io/name: aiops
---
# What every playbook host function may need (docs/playbooks.md, section 3), plus Events; each
# rule names the functions that use it. `aiops check --cluster` says which ones your playbooks need.
# To confine aiops to some namespaces, bind this ClusterRole with RoleBindings in those namespaces
# instead of the ClusterRoleBinding below, and set guard.namespaces.allow to match.
# Named after the namespace: two installs in two namespaces do not collide.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: aiops-@NS@
  labels:
    app.kubernetes.io/name: aiops
rules:
@RBAC_RULES@---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: aiops-@NS@
  labels:
    app.kubernetes.io/name: aiops
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: aiops-@NS@
subjects:
  - kind: ServiceAccount
    name: aiops
    namespace: @NS@
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: aiops-config
  namespace: @NS@
  labels:
    app.kubernetes.io/name: aiops
data:
  # Mounted as a single file (subPath), so an edit needs a restart:
  #   kubectl -n @NS@ rollout restart deployment/aiops
  aiops.yaml: |
    # aiops settings (README, "Settings"); AIOPS_* environment variables override them.
    listen: 0.0.0.0:9095
    # The store. The Deployment sets AIOPS_DATABASE_URL from Secret aiops-database (key url)
    # when that Secret exists, and it overrides this line: a PostgreSQL URL is what replicas need.
    # Without it the store is this SQLite file on the PersistentVolumeClaim aiops-data: one
    # replica only, and its history (dedup, cooldowns, budgets, the knowledge base) survives
    # restarts and rollouts.
    database_url: "sqlite:///var/lib/aiops/aiops.db?mode=rwc"
    # The token Alertmanager presents; required, as the daemon listens beyond loopback.
    webhook_token_file: /var/run/secrets/aiops/token
    rules_dir: /etc/aiops/rules
    playbooks_dir: /etc/aiops/playbooks
    # Act on the cluster as the pod's ServiceAccount (the ClusterRole above).
    cluster:
      in_cluster: true
---
# The SQLite store's volume (unused, and deletable, once the store is PostgreSQL).
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: aiops-data
  namespace: @NS@
  labels:
    app.kubernetes.io/name: aiops
spec:
  accessModes: ["ReadWriteOnce"]
  resources:
    requests:
      storage: 1Gi
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: aiops
  namespace: @NS@
  labels:
    app.kubernetes.io/name: aiops
spec:
  # 1 replica: the default SQLite store has one writer. Raise it only with PostgreSQL (Secret
  # aiops-database): replicas then share the store and claim jobs with FOR UPDATE SKIP LOCKED.
  replicas: 1
  # Recreate: never two pods with separate SQLite stores, which could both act on one alert.
  # With PostgreSQL, RollingUpdate is safe.
  strategy:
    type: Recreate
  selector:
    matchLabels:
      app.kubernetes.io/name: aiops
  template:
    metadata:
      labels:
        app.kubernetes.io/name: aiops
    spec:
      serviceAccountName: aiops
      securityContext:
        runAsNonRoot: true
        # an explicit non-root user, so runAsNonRoot holds whatever the image's USER says
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: aiops
          image: @IMAGE@
          args: ["--log-format", "json", "--config", "/etc/aiops/aiops.yaml", "serve"]
          ports:
            - name: http
              containerPort: 9095
              protocol: TCP
          env:
            # PostgreSQL URL of the store; overrides database_url when the Secret exists
            - name: AIOPS_DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: aiops-database
                  key: url
                  optional: true
            # The /api's HS256 secret (at least 32 bytes); without the Secret the /api stays closed
            - name: AIOPS_JWT_SECRET
              valueFrom:
                secretKeyRef:
                  name: aiops-jwt
                  key: secret
                  optional: true
          livenessProbe:
            httpGet:
              path: /-/healthy
              port: http
            periodSeconds: 10
          readinessProbe:
            httpGet:
              path: /-/ready
              port: http
            periodSeconds: 5
          resources:
            requests:
              memory: 32Mi
              cpu: 50m
            limits:
              memory: 128Mi
          securityContext:
            runAsNonRoot: true
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: token
              mountPath: /var/run/secrets/aiops
              readOnly: true
            - name: config
              mountPath: /etc/aiops/aiops.yaml
              subPath: aiops.yaml
              readOnly: true
            - name: rules
              mountPath: /etc/aiops/rules
              readOnly: true
            - name: playbooks
              mountPath: /etc/aiops/playbooks
              readOnly: true
            # the writable paths (the root file system is read-only): the SQLite store and /tmp
            - name: data
              mountPath: /var/lib/aiops
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: token
          secret:
            secretName: @TOKEN_SECRET@
            items:
              - key: token
                path: token
        - name: config
          configMap:
            name: aiops-config
        # Rules and playbooks come from your checkout; create (or update) them with
        #   kubectl -n @NS@ create configmap aiops-rules --from-file=rules/
        #   kubectl -n @NS@ create configmap aiops-playbooks --from-file=playbooks/
        # (to update: add --dry-run=client -o yaml | kubectl apply -f -). The mounted files follow
        # within a minute or so; then reload: POST /-/reload (with the token) or a rollout restart.
        - name: rules
          configMap:
            name: aiops-rules
        - name: playbooks
          configMap:
            name: aiops-playbooks
        - name: data
          persistentVolumeClaim:
            claimName: aiops-data
        - name: tmp
          emptyDir: {}
---
apiVersion: v1
kind: Service
metadata:
  name: aiops
  namespace: @NS@
  labels:
    app.kubernetes.io/name: aiops
spec:
  selector:
    app.kubernetes.io/name: aiops
  ports:
    - name: http
      port: 9095
      targetPort: http
      protocol: TCP

# Alertmanager: give it the token of Secret @TOKEN_SECRET@ (key token) as a file, e.g. a copy
# of that Secret in Alertmanager's namespace mounted under /etc/alertmanager/secrets/ (with
# prometheus-operator, alertmanagerSpec.secrets mounts /etc/alertmanager/secrets/SECRET/KEY:
# adjust credentials_file), then add to alertmanager.yml:
#
# receivers:
#   - name: aiops
#     webhook_configs:
#       - url: @URL@
#         send_resolved: true   # resolves cancel waiting repairs
#         http_config:
#           authorization:
#             type: Bearer
#             credentials_file: /etc/alertmanager/secrets/aiops-token
# route:
#   routes:
#     - receiver: aiops
#       matchers: ['auto_repair=~".+"']
#       continue: true
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_charts_cluster_role_rules_are_the_permission_tables() {
        // The chart's copy: its header comment, then exactly the rules `aiops manifests` prints.
        let generated = cluster_role_rules_text();
        let header = CHART_CLUSTER_ROLE_RULES
            .strip_suffix(&generated)
            .unwrap_or_else(|| {
                panic!(
                    "charts/aiops/files/clusterrole-rules.yaml differs from src/rbac.rs; after its \
                     header it must read:\n{generated}"
                )
            });
        assert!(
            header.lines().all(|l| l.starts_with('#')),
            "only comments may precede the rules: {header:?}"
        );
    }
}
