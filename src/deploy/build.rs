//! The image build of a git app: where the image goes, and the Kaniko Job that builds it.
//!
//! A git app that names no `image` is built in the cluster by Kaniko's executor (a Job,
//! rendered from `templates/build-job.yaml` like every other object, so an SRE can read and
//! override it), fetching the repository itself and pushing `<deploy.registry>/<name>:<tag>`.
//! Kaniko fetches git over https (or http, told by `GIT_PULL_METHOD`); a `git://`, ssh or
//! `file://` source cannot be fetched from inside the cluster without credentials or the
//! daemon's disk, and an upload has no place in the cluster to be read from, so those are
//! refused with what to do instead. The tag is the spec's `version`, else the time of the
//! deployment (`b20261201-103000`): a new tag per deployment, since a Job per image is never
//! run twice.

use super::spec::{AppSpec, SourceType};
use crate::config::DeploySettings;

/// What a build needs, for the template and the build_image step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildPlan {
    /// Kaniko's `--context` (`git://host/path`).
    pub context: String,
    /// The image pushed (`registry/name:tag`), which the app then runs.
    pub destination: String,
    /// The builder image.
    pub builder_image: String,
    /// `http` when the repository is served over plain http (Kaniko's `GIT_PULL_METHOD`).
    pub pull_method: Option<&'static str>,
    /// The dockerconfigjson Secret the push authenticates with.
    pub push_secret: Option<String>,
    /// When the deployment was queued (epoch ms): the Job's name carries it, so each
    /// deployment builds anew (a failed build is not answered by the old Job, a Job's pod
    /// template cannot change, and the same `version` again is rebuilt from the source).
    pub queued_at: i64,
}

impl BuildPlan {
    /// The Job's name: one per deployment.
    pub fn job_name(&self, app: &str) -> String {
        let key = format!("{}@{}", self.destination, self.queued_at);
        format!(
            "{app}-build-{:08x}",
            super::render::fnv64(key.as_bytes()) & 0xffff_ffff
        )
    }
}

/// Why an app cannot be built in the cluster; the build_image step fails with this.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No registry to push to.
    #[error(
        "app {app} has no image and deploy.registry (AIOPS_DEPLOY_REGISTRY) is not set, so a build has nowhere to push: set it, or build the image yourself and write `image:`"
    )]
    NoRegistry {
        /// The app.
        app: String,
    },
    /// A source the in-cluster builder cannot fetch.
    #[error("{0}")]
    Unbuildable(String),
}

/// The build of `spec`, if it needs one: `None` for a docker app or one that names its image.
/// `now_ms` (when the deployment was queued) stamps the tag when the spec names no version,
/// and the Job's name.
pub fn plan(
    spec: &AppSpec,
    settings: &DeploySettings,
    now_ms: i64,
) -> Result<Option<BuildPlan>, Error> {
    if spec.image.is_some() || spec.source_type == SourceType::Docker {
        return Ok(None);
    }
    if spec.source_type == SourceType::Upload {
        return Err(Error::Unbuildable(format!(
            "app {}: an upload cannot be built in the cluster (Kaniko reads git over http(s)); build the image from the archive and write `image:`",
            spec.name
        )));
    }
    let url = spec.source_url.as_deref().unwrap_or_default();
    let (context, pull_method) = kaniko_context(url).ok_or_else(|| {
        Error::Unbuildable(format!(
            "source_url {url}: the in-cluster build fetches git over https:// or http:// only; give such a URL, or build the image yourself and write `image:`"
        ))
    })?;
    let registry = settings
        .registry
        .as_deref()
        .map(|r| r.trim_end_matches('/'))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Error::NoRegistry {
            app: spec.name.clone(),
        })?;
    let tag = match &spec.version {
        Some(v) => v.clone(),
        None => chrono::DateTime::from_timestamp_millis(now_ms)
            .unwrap_or_default()
            .format("b%Y%m%d-%H%M%S")
            .to_string(),
    };
    Ok(Some(BuildPlan {
        context,
        destination: format!("{registry}/{}:{tag}", spec.name),
        builder_image: settings.builder_image.clone(),
        pull_method,
        push_secret: settings.registry_secret.clone(),
        queued_at: now_ms,
    }))
}

/// Kaniko's git context for a repository URL: `git://` + host and path (Kaniko clones over
/// https unless `GIT_PULL_METHOD=http`). `None` for what it cannot fetch.
fn kaniko_context(url: &str) -> Option<(String, Option<&'static str>)> {
    let lower = url.to_ascii_lowercase();
    let (rest, method) = if lower.starts_with("https://") {
        (&url["https://".len()..], None)
    } else if lower.starts_with("http://") {
        (&url["http://".len()..], Some("http"))
    } else {
        return None;
    };
    // The spec refuses credentials in a URL; a query or fragment has no meaning to Kaniko.
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    (!rest.is_empty()).then(|| (format!("git://{rest}"), method))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> AppSpec {
        AppSpec::parse(
            &format!("name: shop\ndomain: shop.example.com\nframework: flask\n{extra}"),
            "x",
        )
        .unwrap()
    }

    fn settings(registry: Option<&str>) -> DeploySettings {
        DeploySettings {
            registry: registry.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn a_docker_app_or_one_naming_its_image_is_not_built() {
        let s = settings(Some("r.example.com/apps"));
        assert_eq!(plan(&spec("image: shop:1\n"), &s, 0), Ok(None));
        assert_eq!(
            plan(
                &spec(
                    "source_type: git\nsource_url: https://git.example.com/shop.git\nimage: shop:1\n"
                ),
                &s,
                0
            ),
            Ok(None)
        );
    }

    #[test]
    fn a_git_app_is_built_from_its_url_to_the_registry_tagged_by_version_or_time() {
        let s = settings(Some("r.example.com/apps/"));
        let p = plan(
            &spec("source_type: git\nsource_url: https://git.example.com/acme/shop.git\n"),
            &s,
            1_796_121_000_000,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.context, "git://git.example.com/acme/shop.git");
        assert_eq!(p.destination, "r.example.com/apps/shop:b20261201-103000");
        assert_eq!(p.pull_method, None);
        assert_eq!(p.builder_image, crate::config::DEFAULT_BUILDER_IMAGE);
        let p = plan(
            &spec("source_type: git\nsource_url: http://127.0.0.1:9418/shop\nversion: 2.0.1\n"),
            &s,
            0,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (p.context.as_str(), p.destination.as_str(), p.pull_method),
            (
                "git://127.0.0.1:9418/shop",
                "r.example.com/apps/shop:2.0.1",
                Some("http")
            )
        );
        assert!(p.job_name("shop").starts_with("shop-build-"));
    }

    #[test]
    fn what_the_cluster_cannot_build_is_refused_saying_what_to_do() {
        let s = settings(Some("r.example.com"));
        for (extra, says) in [
            (
                "source_type: git\nsource_url: git://git.example.com/shop.git\n",
                "https:// or http:// only",
            ),
            (
                "source_type: git\nsource_url: git@git.example.com:acme/shop.git\n",
                "https:// or http:// only",
            ),
            (
                "source_type: upload\nsource_url: /srv/shop.tar.gz\n",
                "an upload cannot be built",
            ),
        ] {
            let e = plan(&spec(extra), &s, 0).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("image:"), "{extra}: {e}");
        }
        let e = plan(
            &spec("source_type: git\nsource_url: https://git.example.com/shop.git\n"),
            &settings(None),
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("AIOPS_DEPLOY_REGISTRY"), "{e}");
    }
}
