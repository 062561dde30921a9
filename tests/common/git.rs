//! The `git` CLI in tests: found on PATH (skipped without it outside CI), run isolated from this
//! machine's git configuration, and test repositories made with it. Shared by the detection
//! tests (tests/deploy_onboarding.rs) and the deployment of a git app (tests/real_cluster_deploy.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::programs::require;

/// Runs `git args` in `dir`, isolated from this machine's git configuration; panics on failure.
pub fn git(git_bin: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(git_bin)
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The git binary, or `None` (skipped, saying why) outside CI; in CI its absence fails the test.
pub fn git_bin() -> Option<PathBuf> {
    Some(require(&["git"], "apt-get install git")?.remove(0))
}

/// A bare repository `root/NAME.git` whose branch `main` holds `files` (path, contents) in one
/// commit, made in a work tree `root/NAME-work`; returns the bare repository's path.
pub fn bare_repo(git_bin: &Path, root: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let work = root.join(format!("{name}-work"));
    std::fs::create_dir_all(&work).unwrap();
    git(git_bin, &work, &["init", "-q", "-b", "main"]);
    for (path, contents) in files {
        let path = work.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    git(git_bin, &work, &["add", "."]);
    git(git_bin, &work, &["commit", "-q", "-m", "initial"]);
    let bare = format!("{name}.git");
    git(
        git_bin,
        root,
        &[
            "clone",
            "-q",
            "--bare",
            &format!("{name}-work"),
            bare.as_str(),
        ],
    );
    root.join(bare)
}
