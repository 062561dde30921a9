//! `scripts/build-image`: the OCI archive it writes is an image a cluster can run. The test
//! opens the archive as a registry or runtime would (index → manifest → config and layers),
//! checks the config the chart and `aiops manifests` rely on (numeric non-root user, entrypoint
//! and command, port 9095, volumes for the writable paths, OCI labels), then extracts the root
//! file system and runs `aiops --version` with that root file system's own loader and C
//! library, so a binary that needs anything the image lacks fails here, not in a cluster.
//!
//! Needs umoci, apt-get and dpkg-deb (as `scripts/build-image` does). Outside CI a host without
//! umoci skips with a message; in CI (`CI=true`) that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `cmd`, panicking with its output when it fails; returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The JSON blob `digest` (`sha256:...`) of the OCI layout at `layout`.
fn blob(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_oci_archive_runs_aiops_as_a_non_root_user_on_port_9095_from_its_own_root_file_system() {
    if !have("umoci") || !have("dpkg-deb") {
        assert!(
            !in_ci(),
            "umoci and dpkg-deb are required in CI (apt-get install umoci)"
        );
        eprintln!("skipping: scripts/build-image needs umoci (apt-get install umoci)");
        return;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // A stable directory under target/, so the downloaded Debian packages are reused.
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("image-test");
    let stdout = run(Command::new(repo.join("scripts/build-image"))
        .env("AIOPS_BIN", env!("CARGO_BIN_EXE_aiops"))
        .env("AIOPS_IMAGE_DIR", &out_dir)
        .env("AIOPS_IMAGE_TAG", "test"));
    let archive = PathBuf::from(stdout.lines().last().unwrap().trim());
    assert_eq!(archive, out_dir.join("aiops-oci.tar"));

    // Open the archive: an OCI layout with one image tagged `test`.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout));
    assert_eq!(
        json(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        "test"
    );
    let manifest = json(&blob(&layout, manifests[0]["digest"].as_str().unwrap()));
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let image = json(&blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));

    // The config the Deployment's securityContext and probes rely on.
    assert_eq!(
        (image["os"].as_str(), image["architecture"].as_str()),
        (Some("linux"), Some("amd64"))
    );
    let config = &image["config"];
    let user = config["User"].as_str().unwrap();
    assert_eq!(user, "65532:65532", "a numeric non-root user");
    assert!(!user.starts_with("0:") && user != "root");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/aiops"])
    );
    assert_eq!(config["Cmd"], serde_json::json!(["serve"]));
    assert_eq!(config["ExposedPorts"], serde_json::json!({"9095/tcp": {}}));
    assert_eq!(
        config["Volumes"],
        serde_json::json!({"/tmp": {}, "/var/lib/aiops": {}})
    );
    assert_eq!(config["WorkingDir"], "/var/lib/aiops");
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "aiops");
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    for key in [
        "org.opencontainers.image.source",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.created",
        "org.opencontainers.image.description",
    ] {
        assert!(
            labels[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key}: {labels}"
        );
    }
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e.as_str().unwrap().starts_with("AIOPS_")),
        "no AIOPS_* defaults: they would override the settings file"
    );

    // Unpack the layers in order, as a runtime does, and run the binary with the image's own
    // dynamic loader and libraries (never the host's).
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert!(!layers.is_empty());
    for layer in layers {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        run(Command::new("tar")
            .arg("-xzf")
            .arg(blob(&layout, layer["digest"].as_str().unwrap()))
            .arg("-C")
            .arg(&rootfs));
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("aiops:x:65532:65532:"), "{passwd}");
    let bundle = rootfs.join("etc/ssl/certs/ca-certificates.crt");
    let pem = std::fs::read_to_string(&bundle).unwrap();
    assert!(
        pem.matches("BEGIN CERTIFICATE").count() > 100,
        "the CA bundle holds Debian's roots"
    );
    let tmp = std::fs::metadata(rootfs.join("tmp")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);

    let loader = rootfs.join("lib64/ld-linux-x86-64.so.2");
    assert!(loader.exists(), "the image's dynamic loader");
    let library_path = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"]
        .map(|d| rootfs.join(d).display().to_string())
        .join(":");
    let version = run(Command::new(&loader)
        .arg("--inhibit-cache")
        .arg("--library-path")
        .arg(&library_path)
        .arg(rootfs.join("usr/local/bin/aiops"))
        .arg("--version"));
    assert_eq!(
        version.trim(),
        format!("aiops {}", env!("CARGO_PKG_VERSION"))
    );
    // ...and the libraries it loaded were the image's.
    let listed = run(Command::new(&loader)
        .arg("--inhibit-cache")
        .arg("--library-path")
        .arg(&library_path)
        .arg("--list")
        .arg(rootfs.join("usr/local/bin/aiops")));
    for line in listed.lines().filter(|l| l.contains("=>")) {
        assert!(
            line.contains(&*rootfs.display().to_string()),
            "a library from outside the image: {line}"
        );
    }
}
