//! Onboarding checks against real servers on 127.0.0.1: framework detection of a git repository
//! made here with the `git` CLI, fetched over file:// and from `git daemon` (git://), and the
//! DNS check against Debian's `dnsmasq` serving right, wrong, missing and CNAME records.
//!
//! Outside CI a missing `git` or `dnsmasq` skips a test with the reason printed; in CI it fails
//! (.ci/run installs them). Every server is started on a free port, waited on until its port
//! answers, and stopped by PID when its guard drops. The git CLI, dnsmasq and the server starter
//! are in tests/common (git.rs, dnsmasq.rs, programs.rs), shared with tests/real_cluster_deploy.rs.

use crate::common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aiops::deploy::detect::{self, DetectOptions, Detection, Framework, Source};
use aiops::deploy::dns::{self, Expected};
use common::dnsmasq::Dnsmasq;
use common::git::{git, git_bin};
use common::programs::{Proc, start_listening};

// ---------------------------------------------------------------------------------------------
// git

/// A bare repository `shop.git` under a temporary directory: `main` is a Go service after three
/// commits (so a depth-1 fetch is distinguishable from a full one); `site` replaces it with a
/// static site.
struct SampleRepo {
    root: tempfile::TempDir,
    git: PathBuf,
}

impl SampleRepo {
    fn new(git_bin: &Path) -> SampleRepo {
        let root = tempfile::tempdir().unwrap();
        let work = root.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let g = |args: &[&str]| git(git_bin, &work, args);
        g(&["init", "-q", "-b", "main"]);
        std::fs::write(work.join("README.md"), "shop\n").unwrap();
        g(&["add", "."]);
        g(&["commit", "-q", "-m", "readme"]);
        std::fs::write(work.join("go.mod"), "module example.com/shop\n\ngo 1.22\n").unwrap();
        g(&["add", "."]);
        g(&["commit", "-q", "-m", "go module"]);
        std::fs::write(work.join("main.go"), "package main\n\nfunc main() {}\n").unwrap();
        g(&["add", "."]);
        g(&["commit", "-q", "-m", "main"]);
        g(&["checkout", "-q", "-b", "site"]);
        g(&["rm", "-q", "go.mod", "main.go"]);
        std::fs::write(work.join("index.html"), "<!doctype html>\n").unwrap();
        g(&["add", "."]);
        g(&["commit", "-q", "-m", "static site"]);
        g(&["checkout", "-q", "main"]);
        git(
            git_bin,
            root.path(),
            &["clone", "-q", "--bare", "work", "shop.git"],
        );
        SampleRepo {
            root,
            git: git_bin.to_path_buf(),
        }
    }

    fn bare(&self) -> PathBuf {
        self.root.path().join("shop.git")
    }

    fn file_url(&self) -> String {
        format!("file://{}", self.bare().display())
    }

    /// The commit `rev` names in the sample.
    fn rev(&self, rev: &str) -> String {
        git(&self.git, &self.bare(), &["rev-parse", rev])
    }
}

async fn detect_git(url: &str, reference: Option<&str>) -> Result<Detection, detect::Error> {
    let source = Source::Git {
        url: url.to_string(),
        reference: reference.map(str::to_string),
    };
    detect::detect(&source, &DetectOptions::default()).await
}

/// Fetches `url` with depth 1 and checks the result is one commit, `expected`, and shallow.
async fn assert_shallow_fetch(git_bin: &Path, url: &str, expected: &str) {
    let dest = tempfile::tempdir().unwrap();
    let repo = dest.path().join("fetched.git");
    let opts = DetectOptions {
        clone_timeout: Duration::from_secs(60),
        ..DetectOptions::default()
    };
    let fetched = detect::git::fetch(url, None, &repo, &opts)
        .await
        .unwrap_or_else(|e| panic!("fetch {url}: {e}"));
    assert_eq!(fetched.commit, expected);
    assert!(
        fetched.shallow,
        "a depth-1 fetch of three commits is shallow"
    );
    let count = git(git_bin, &repo, &["rev-list", "--count", expected]);
    assert_eq!(count, "1", "the fetch holds one commit of the history");
}

#[tokio::test]
async fn a_repository_cloned_over_file_url_is_detected_from_its_head_or_a_branch() {
    let Some(git_bin) = git_bin() else { return };
    let repo = SampleRepo::new(&git_bin);

    let head = detect_git(&repo.file_url(), None).await.unwrap();
    assert_eq!(head.framework, Framework::Go);
    assert_eq!(head.evidence, ["go.mod (module example.com/shop)"]);

    let site = detect_git(&repo.file_url(), Some("site")).await.unwrap();
    assert_eq!(site.framework, Framework::Static);
    assert_eq!(site.evidence, ["index.html"]);

    assert_shallow_fetch(&git_bin, &repo.file_url(), &repo.rev("main")).await;
}

#[tokio::test]
async fn a_fetch_receiving_more_than_its_byte_cap_is_stopped_with_the_limit() {
    let Some(git_bin) = git_bin() else { return };
    let repo = SampleRepo::new(&git_bin);
    // A branch `big` whose one commit holds 1 MiB that does not compress (xorshift bytes).
    let work = repo.root.path().join("work");
    let g = |args: &[&str]| git(&git_bin, &work, args);
    g(&["checkout", "-q", "-b", "big"]);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(work.join("blob.bin"), noise).unwrap();
    g(&["add", "."]);
    g(&["commit", "-q", "-m", "a large file"]);
    g(&["push", "-q", "../shop.git", "big"]);

    let opts = DetectOptions {
        max_fetch_bytes: 256 * 1024,
        ..DetectOptions::default()
    };
    let source = |reference: &str| Source::Git {
        url: repo.file_url(),
        reference: Some(reference.to_string()),
    };
    let e = detect::detect(&source("big"), &opts).await.unwrap_err();
    assert!(
        matches!(e, detect::Error::GitTooLarge { limit: 262_144, .. }),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains(&repo.file_url()) && text.contains("more than 262144 bytes"),
        "{text}"
    );
    // The cap stops the large pack only: the small branch fetches under it.
    let main = detect::detect(&source("main"), &opts).await.unwrap();
    assert_eq!(main.framework, Framework::Go);
}

#[tokio::test]
async fn a_missing_branch_is_an_error_naming_the_url_and_the_branch() {
    let Some(git_bin) = git_bin() else { return };
    let repo = SampleRepo::new(&git_bin);
    let e = detect_git(&repo.file_url(), Some("no-such-branch"))
        .await
        .unwrap_err();
    assert!(matches!(e, detect::Error::Git { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&repo.file_url()) && text.contains("no-such-branch"),
        "{text}"
    );
}

/// `git daemon` serving a directory over git:// on 127.0.0.1; killed by PID on drop.
struct GitDaemon {
    _proc: Proc,
    port: u16,
    _log_dir: tempfile::TempDir,
}

impl GitDaemon {
    async fn start(git_bin: &Path, base: &Path) -> GitDaemon {
        let log_dir = tempfile::tempdir().unwrap();
        // The daemon's own binary, not `git daemon`: git runs it as a child, which killing
        // git's PID would leave behind.
        let exec_path = git(git_bin, base, &["--exec-path"]);
        let daemon = Path::new(&exec_path).join("git-daemon");
        let (proc, port) = start_listening("git daemon", log_dir.path(), |port| {
            let mut cmd = Command::new(&daemon);
            cmd.arg("--reuseaddr")
                .arg(format!("--base-path={}", base.display()))
                .arg("--export-all")
                .arg(format!("--port={port}"))
                .arg("--listen=127.0.0.1")
                .arg(base)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1");
            cmd
        })
        .await;
        GitDaemon {
            _proc: proc,
            port,
            _log_dir: log_dir,
        }
    }
}

#[tokio::test]
async fn a_repository_served_by_git_daemon_is_fetched_shallowly_and_detected() {
    let Some(git_bin) = git_bin() else { return };
    let repo = SampleRepo::new(&git_bin);
    let daemon = GitDaemon::start(&git_bin, repo.root.path()).await;
    let url = format!("git://127.0.0.1:{}/shop.git", daemon.port);

    let head = detect_git(&url, None).await.unwrap();
    assert_eq!(head.framework, Framework::Go);
    let site = detect_git(&url, Some("site")).await.unwrap();
    assert_eq!(site.framework, Framework::Static);

    assert_shallow_fetch(&git_bin, &url, &repo.rev("main")).await;
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_with_the_url_and_the_limit() {
    // Accepted by the kernel's backlog, never answered: a fetch waits for the server forever.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "git://127.0.0.1:{}/shop.git",
        silent.local_addr().unwrap().port()
    );
    let opts = DetectOptions {
        clone_timeout: Duration::from_millis(500),
        ..DetectOptions::default()
    };
    let source = Source::Git {
        url: url.clone(),
        reference: None,
    };
    let started = std::time::Instant::now();
    let e = detect::detect(&source, &opts).await.unwrap_err();
    assert!(matches!(e, detect::Error::GitTimeout { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = e.to_string();
    assert!(text.contains(&url) && text.contains("500ms"), "{text}");
}

#[tokio::test]
async fn credentials_in_a_git_url_never_reach_the_error() {
    let closed = common::stand_ins::closed_addr();
    let url = format!("https://deploy:hunter2-token@{closed}/shop.git");
    let e = detect_git(&url, None).await.unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains(&closed.to_string()), "{text}");
}

// ---------------------------------------------------------------------------------------------
// DNS

fn ingress(addresses: &[&str], hostnames: &[&str]) -> Expected {
    Expected {
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        hostnames: hostnames.iter().map(|h| h.to_string()).collect(),
    }
}

fn ip(a: &str) -> IpAddr {
    a.parse().unwrap()
}

/// The records the DNS tests ask about: names in .test are answered here only (an unknown one
/// is NXDOMAIN); CNAME targets must be names dnsmasq knows itself (host records).
const RECORDS: &[&str] = &[
    "--local=/test/",
    "--host-record=right.test,10.0.0.5",
    "--host-record=wrong.test,203.0.113.9",
    "--host-record=lb.ingress.test,198.51.100.7",
    "--host-record=split.test,10.0.0.5",
    "--host-record=split.test,203.0.113.9",
    "--cname=alias.test,right.test",
    "--cname=stale.test,wrong.test",
    "--cname=lb-alias.test,lb.ingress.test",
];

/// dnsmasq serving [`RECORDS`], or `None` (skipped) outside CI.
async fn dnsmasq() -> Option<Dnsmasq> {
    Dnsmasq::require(RECORDS).await
}

#[tokio::test]
async fn a_domain_pointing_at_the_ingress_passes_directly_or_through_a_cname() {
    let Some(server) = dnsmasq().await else {
        return;
    };
    let opts = server.options();
    let expected = ingress(&["10.0.0.5", "2001:db8::5"], &[]);

    let direct = dns::verify("right.test", &expected, &opts)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.proc.log_tail()));
    assert_eq!(direct.addresses, [ip("10.0.0.5")]);
    assert!(direct.cnames.is_empty());

    let alias = dns::verify("alias.test", &expected, &opts).await.unwrap();
    assert_eq!(alias.addresses, [ip("10.0.0.5")]);
    assert_eq!(alias.cnames, ["right.test"]);

    // A CNAME to the ingress's host name passes whatever that name's addresses are.
    let lb = dns::verify("lb-alias.test", &ingress(&[], &["LB.ingress.test."]), &opts)
        .await
        .unwrap();
    assert_eq!(lb.cnames, ["lb.ingress.test"]);
}

#[tokio::test]
async fn a_domain_pointing_elsewhere_is_a_mismatch_saying_what_was_found_and_the_fix() {
    let Some(server) = dnsmasq().await else {
        return;
    };
    let opts = server.options();
    let expected = ingress(&["10.0.0.5"], &[]);

    let e = dns::verify("wrong.test", &expected, &opts)
        .await
        .unwrap_err();
    match &e {
        dns::Error::Mismatch { found, cnames, .. } => {
            assert_eq!(found, &[ip("203.0.113.9")]);
            assert!(cnames.is_empty());
        }
        other => panic!("expected Mismatch, got {other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "wrong.test resolves to 203.0.113.9 but the ingress is 10.0.0.5; point wrong.test's \
         A/AAAA records at 10.0.0.5 or pass --skip-dns-check"
    );

    let e = dns::verify("stale.test", &expected, &opts)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("stale.test resolves to 203.0.113.9 (through CNAME wrong.test)"),
        "{e}"
    );

    // One ingress address among others is not enough: part of the traffic goes elsewhere.
    let e = dns::verify("split.test", &expected, &opts)
        .await
        .unwrap_err();
    match e {
        dns::Error::Mismatch { found, .. } => {
            assert_eq!(found, [ip("10.0.0.5"), ip("203.0.113.9")])
        }
        other => panic!("expected Mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_domain_without_records_is_nxdomain_and_the_error_says_what_to_create() {
    let Some(server) = dnsmasq().await else {
        return;
    };
    let e = dns::verify(
        "missing.test",
        &ingress(&["10.0.0.5"], &["lb.ingress.test"]),
        &server.options(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, dns::Error::NoRecords { nxdomain: true, .. }),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("missing.test has no A or AAAA record (NXDOMAIN")
            && text.contains("pointing at 10.0.0.5 (or make it a CNAME to lb.ingress.test)")
            && text.contains("--skip-dns-check"),
        "{text}"
    );
}

#[tokio::test]
async fn a_dns_server_that_does_not_answer_is_a_resolver_error_naming_it() {
    // A UDP port nobody serves: the query is refused or times out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let opts = dns::Options {
        nameserver: Some(addr),
        timeout: Duration::from_millis(300),
        attempts: 0,
    };
    let e = dns::verify("right.test", &ingress(&["10.0.0.5"], &[]), &opts)
        .await
        .unwrap_err();
    assert!(matches!(e, dns::Error::Resolver { .. }), "{e:?}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}

/// The original design's example registration through `POST /api/apps`: name, display name,
/// domain, a git source, no framework, a plan. The framework is detected from the repository
/// (served by git daemon) and stored with the app; a repository proving nothing is refused with
/// what it holds, and a `file://` source is never read for an API caller.
#[tokio::test]
async fn the_original_designs_registration_is_accepted_with_its_framework_detected() {
    use aiops::auth::Role;
    let Some(git_bin) = git_bin() else { return };
    let repo = SampleRepo::new(&git_bin);
    // A second repository whose head proves no framework.
    let work = repo.root.path().join("docs-work");
    std::fs::create_dir(&work).unwrap();
    git(&git_bin, &work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("NOTES.md"), "notes\n").unwrap();
    git(&git_bin, &work, &["add", "."]);
    git(&git_bin, &work, &["commit", "-q", "-m", "notes"]);
    git(
        &git_bin,
        repo.root.path(),
        &["clone", "-q", "--bare", "docs-work", "docs.git"],
    );
    let daemon = GitDaemon::start(&git_bin, repo.root.path()).await;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
    let app = common::TestApp::spawn_app(
        common::Spawn::new(common::Db::Sqlite).env("AIOPS_JWT_SECRET", SECRET),
    )
    .await;
    let editor = common::api::token(SECRET, Role::Editor, &["app-shop", "app-docs"]);
    let register = |name: &str, url: String| {
        let body = format!(
            "name: {name}\ndisplay_name: Shop\ndomain: {name}.example.com\nsource_type: git\n\
             source_url: {url}\nplan: standard\n"
        );
        app.api_register_app(&editor, body)
    };

    let (status, body) =
        register("shop", format!("git://127.0.0.1:{}/shop.git", daemon.port)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["namespace"], "app-shop");
    assert_eq!(body["spec"]["framework"], "go", "{body}");
    assert_eq!(body["spec"]["source_type"], "git");
    // Stored so: the manifests now wait only for the image (the build), not the framework.
    let (status, m) = app.api_get(&editor, "/api/apps/shop/manifests").await;
    assert_eq!(status, 422, "{m}");
    assert!(
        m["error"]
            .as_str()
            .unwrap()
            .starts_with("image: app shop has no image yet"),
        "{m}"
    );

    let (status, body) =
        register("docs", format!("git://127.0.0.1:{}/docs.git", daemon.port)).await;
    assert_eq!(status, 422, "{body}");
    let e = body["error"].as_str().unwrap();
    assert!(
        e.starts_with("framework: no framework found") && e.contains("NOTES.md"),
        "{body}"
    );
    assert_eq!(body["field"], "framework");

    let (status, body) = register("docs", repo.file_url()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("daemon's own disk"),
        "{body}"
    );
    // The scheme's case does not matter: FILE:// is file://.
    let (status, body) = register("docs", repo.file_url().replacen("file", "FILE", 1)).await;
    assert_eq!(status, 400, "{body}");
    // ssh would use the daemon's own keys.
    let (status, body) = register("docs", "git@127.0.0.1:docs.git".into()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("the daemon's own keys"),
        "{body}"
    );
    // Nothing refused was registered.
    let (_, list) = app.api_get(&editor, "/api/apps").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

    // A daemon that lists its git hosts fetches from no other.
    let strict = common::TestApp::spawn_app(
        common::Spawn::new(common::Db::Sqlite)
            .env("AIOPS_JWT_SECRET", SECRET)
            .env("AIOPS_DEPLOY_SOURCE_HOSTS", "git.example.com"),
    )
    .await;
    let body = format!(
        "name: shop\ndomain: shop.example.com\nsource_type: git\n\
         source_url: git://127.0.0.1:{}/shop.git\n",
        daemon.port
    );
    let (status, body) = strict.api_register_app(&editor, body).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains(
            "its host is not one this daemon fetches from (deploy.source_hosts: git.example.com)"
        ),
        "{body}"
    );
}

/// `aiops deploy` checks the domain before anything else, against the configured ingress and
/// DNS server; a mismatch stops it, `--skip-dns-check` is said, and a git app's framework is
/// detected from its repository. No cluster is configured here, so a deploy that passes its
/// checks stops at the cluster, which proves the checks come first.
#[tokio::test]
async fn aiops_deploy_checks_dns_first_and_detects_a_git_apps_framework() {
    let Some(server) = dnsmasq().await else {
        return;
    };
    let Some(git_bin) = git_bin() else { return };
    let repo = SampleRepo::new(&git_bin);
    let dir = tempfile::tempdir().unwrap();
    let spec = |domain: &str| {
        let path = dir.path().join(format!("{domain}.yaml"));
        std::fs::write(
            &path,
            format!(
                "name: shop\ndomain: {domain}\nsource_type: git\nsource_url: {}\n\
                 image: registry.example.com/shop:1\n",
                repo.file_url()
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let envs = std::collections::HashMap::from([
        ("AIOPS_DEPLOY_INGRESS_ADDRESSES", "10.0.0.5".to_string()),
        ("AIOPS_DEPLOY_DNS_SERVER", server.addr.to_string()),
        (
            "AIOPS_DATABASE_URL",
            format!("sqlite://{}/a.db?mode=rwc", dir.path().display()),
        ),
        ("AIOPS_LOG", "warn".to_string()),
    ]);
    let deploy = |args: Vec<String>| {
        let (dir, envs) = (dir.path().to_path_buf(), envs.clone());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            common::run_cli(&dir, &args, &envs)
        })
    };

    let (status, out, err) = deploy(vec!["deploy".into(), spec("wrong.test")])
        .await
        .unwrap();
    assert!(!status.success());
    assert!(
        err.contains("wrong.test resolves to 203.0.113.9 but the ingress is 10.0.0.5"),
        "{out}\n{err}\n{}",
        server.proc.log_tail()
    );
    assert!(!err.contains("needs a cluster"), "DNS comes first: {err}");

    let (status, out, err) = deploy(vec!["deploy".into(), spec("right.test")])
        .await
        .unwrap();
    assert!(!status.success());
    assert!(
        out.contains("dns: right.test → 10.0.0.5 (the ingress)"),
        "{out}\n{err}"
    );
    assert!(
        out.contains("framework: go (go.mod (module example.com/shop))"),
        "{out}\n{err}"
    );
    assert!(err.contains("aiops deploy needs a cluster"), "{out}\n{err}");

    let (_, out, err) = deploy(vec![
        "deploy".into(),
        spec("wrong.test"),
        "--skip-dns-check".into(),
    ])
    .await
    .unwrap();
    assert!(
        out.contains("dns: not checked (--skip-dns-check)"),
        "{out}\n{err}"
    );
    assert!(err.contains("aiops deploy needs a cluster"), "{out}\n{err}");
}
