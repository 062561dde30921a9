//! Detection over small sample sources written to temporary directories, and archives of them.

use std::io::Write;
use std::path::Path;

use super::*;

/// Writes `files` (path, contents) under `dir`.
fn write(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// A sample source: (path, contents) of each file.
type Files<'a> = &'a [(&'a str, &'a str)];

async fn detect_files(files: &[(&str, &str)]) -> Result<Detection, Error> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), files);
    detect(
        &Source::Path(dir.path().to_path_buf()),
        &DetectOptions::default(),
    )
    .await
}

const NEXT_PACKAGE: &str = r#"{"name":"web","scripts":{"start":"next start"},"dependencies":{"next":"15.0.0","react":"19.0.0"}}"#;

/// Each case's files are detected as its framework, with exactly its evidence.
async fn assert_detected(cases: &[(&str, Files<'_>, Framework, &[&str])]) {
    for (what, files, framework, evidence) in cases {
        let got = detect_files(files)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got.framework, *framework, "{what}");
        assert_eq!(got.evidence, *evidence, "{what}");
    }
}

#[tokio::test]
async fn each_sample_repository_is_detected_from_the_files_that_prove_it() {
    let cases: &[(&str, Files, Framework, &[&str])] = &[
        (
            "requirements naming flask",
            &[
                ("requirements.txt", "# web\nFlask==3.0.2\ngunicorn>=21\n"),
                ("app.py", "from flask import Flask\n"),
            ],
            Framework::Flask,
            &["requirements.txt names flask"],
        ),
        (
            "pyproject (PEP 621) naming flask with extras",
            &[(
                "pyproject.toml",
                "[project]\nname = \"shop\"\ndependencies = [\"Flask[async]>=3\", \"requests\"]\n",
            )],
            Framework::Flask,
            &["pyproject.toml names flask"],
        ),
        (
            "manage.py and requirements naming django",
            &[
                ("manage.py", "#!/usr/bin/env python\n"),
                ("requirements.txt", "Django>=5.0,<6\npsycopg[binary]\n"),
            ],
            Framework::Django,
            &["requirements.txt names django", "manage.py"],
        ),
        (
            "manage.py alone",
            &[("manage.py", "#!/usr/bin/env python\n")],
            Framework::Django,
            &["manage.py"],
        ),
        (
            "poetry naming django",
            &[(
                "pyproject.toml",
                "[tool.poetry]\nname = \"shop\"\n[tool.poetry.dependencies]\npython = \"^3.12\"\ndjango = \"^5\"\n",
            )],
            Framework::Django,
            &["pyproject.toml names django"],
        ),
        (
            "package.json with next",
            &[("package.json", NEXT_PACKAGE)],
            Framework::Nextjs,
            &["package.json depends on next"],
        ),
        (
            "package.json with a start script",
            &[(
                "package.json",
                r#"{"name":"api","scripts":{"start":"node server.js"},"dependencies":{"express":"^4"}}"#,
            )],
            Framework::Nodejs,
            &["package.json has a start script (node server.js)"],
        ),
        (
            "package.json with a main",
            &[("package.json", r#"{"name":"api","main":"index.js"}"#)],
            Framework::Nodejs,
            &["package.json names main index.js"],
        ),
        (
            "go.mod",
            &[
                ("go.mod", "module example.com/shop\n\ngo 1.22\n"),
                ("main.go", "package main\n"),
            ],
            Framework::Go,
            &["go.mod (module example.com/shop)"],
        ),
        (
            "index.html only",
            &[("index.html", "<!doctype html>"), ("style.css", "")],
            Framework::Static,
            &["index.html"],
        ),
        (
            "index.html with a package.json that only builds",
            &[
                ("index.html", "<!doctype html>"),
                (
                    "package.json",
                    r#"{"devDependencies":{"vite":"5"},"scripts":{"build":"vite build"}}"#,
                ),
            ],
            Framework::Static,
            &["index.html"],
        ),
        (
            "everything in one wrapping directory, as GitHub's tarballs are",
            &[
                ("shop-main/go.mod", "module example.com/shop\n"),
                (".DS_Store", ""),
            ],
            Framework::Go,
            &["shop-main/go.mod (module example.com/shop)"],
        ),
    ];
    assert_detected(cases).await;
}

#[tokio::test]
async fn sources_that_prove_no_framework_are_unknown_and_the_error_names_what_was_found() {
    let cases: &[(&str, Files, &[&str])] = &[
        ("an empty directory", &[], &[]),
        (
            "a library of flask, not a flask app",
            &[("requirements.txt", "flask-cors\ndjango-environ\n")],
            &["requirements.txt"],
        ),
        (
            "a package.json with neither next, a start script nor a main",
            &[("package.json", r#"{"name":"lib"}"#), ("README.md", "")],
            &[
                "README.md",
                "package.json",
                "package.json without next, a start script or a main",
            ],
        ),
        (
            "an app one directory too deep",
            &[("apps/web/go.mod", "module x\n"), ("docs/x.md", "")],
            &["apps/", "docs/"],
        ),
    ];
    for (what, files, found) in cases {
        match detect_files(files).await {
            Err(Error::Unknown { found: got }) => assert_eq!(got, *found, "{what}"),
            other => panic!("{what}: expected Unknown, got {other:?}"),
        }
    }
    let text = detect_files(&[("README.md", "")])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("found: README.md") && text.contains("name the framework in the app spec"),
        "{text}"
    );
}

#[tokio::test]
async fn a_root_with_go_mod_and_next_is_ambiguous_and_the_error_names_both_proofs() {
    let e = detect_files(&[
        ("go.mod", "module example.com/api\n"),
        ("package.json", NEXT_PACKAGE),
    ])
    .await
    .unwrap_err();
    let Error::Ambiguous { candidates } = &e else {
        panic!("expected Ambiguous, got {e:?}");
    };
    let frameworks: Vec<Framework> = candidates.iter().map(|c| c.framework).collect();
    assert_eq!(frameworks, [Framework::Nextjs, Framework::Go]);
    let text = e.to_string();
    assert!(
        text.contains("nextjs (package.json depends on next)")
            && text.contains("go (go.mod (module example.com/api))"),
        "{text}"
    );
}

#[tokio::test]
async fn requirements_naming_both_flask_and_django_are_ambiguous() {
    let e = detect_files(&[("requirements.txt", "flask\ndjango\n")])
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Ambiguous { ref candidates } if candidates.len() == 2),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_broken_manifest_is_an_error_naming_the_file_not_a_guess() {
    for (file, text) in [
        ("package.json", "{ not json"),
        ("pyproject.toml", "[project\n"),
    ] {
        let e = detect_files(&[(file, text), ("index.html", "")])
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Manifest { file: f, .. } if f == file),
            "{file}: {e:?}"
        );
    }
}

#[tokio::test]
async fn a_missing_path_is_an_io_error_naming_it() {
    let e = detect(
        &Source::Path("/nonexistent/aiops-source".into()),
        &DetectOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().starts_with("/nonexistent/aiops-source: "),
        "{e}"
    );
}

/// A .tar.gz of `entries`: (name as stored, contents); names are written raw, so unsafe ones
/// can be made.
fn tar_gz(path: &Path, entries: &[(&str, &[u8])]) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    tar_entries(gz, entries).finish().unwrap();
}

/// An uncompressed .tar of `entries`, as [`tar_gz`] writes them.
fn plain_tar(path: &Path, entries: &[(&str, &[u8])]) {
    tar_entries(std::fs::File::create(path).unwrap(), entries);
}

/// Writes `entries` as a tar into `out` and gives `out` back.
fn tar_entries<W: Write>(out: W, entries: &[(&str, &[u8])]) -> W {
    let mut tar = tar::Builder::new(out);
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // Raw name bytes: `set_path` refuses `..`, which is the point of these tests.
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        tar.append(&header, *data).unwrap();
    }
    tar.into_inner().unwrap()
}

/// A .zip of `entries` (name as stored, contents).
fn zip_file(path: &Path, entries: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        zip.start_file(*name, opts).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

async fn detect_archive(path: &Path, opts: &DetectOptions) -> Result<Detection, Error> {
    detect(&Source::Archive(path.to_path_buf()), opts).await
}

#[tokio::test]
async fn uploaded_tar_gz_and_zip_sources_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("upload.bin");
    tar_gz(
        &tgz,
        &[
            ("shop-main/manage.py", b"#!/usr/bin/env python\n"),
            ("shop-main/shop/settings.py", b""),
        ],
    );
    let got = detect_archive(&tgz, &DetectOptions::default())
        .await
        .unwrap();
    assert_eq!(got.framework, Framework::Django);
    assert_eq!(got.evidence, ["shop-main/manage.py"]);

    let zip = dir.path().join("upload.zip");
    zip_file(
        &zip,
        &[
            ("package.json", NEXT_PACKAGE.as_bytes()),
            ("pages/index.js", b""),
        ],
    );
    let got = detect_archive(&zip, &DetectOptions::default())
        .await
        .unwrap();
    assert_eq!(got.framework, Framework::Nextjs);
}

#[tokio::test]
async fn archive_entries_that_escape_the_destination_are_refused_and_nothing_lands_outside() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let opts = DetectOptions {
        work_dir: Some(work.clone()),
        ..DetectOptions::default()
    };
    for (kind, name) in [
        ("tar", "../evil.txt"),
        ("tar", "/tmp/aiops-evil.txt"),
        ("zip", "../evil.txt"),
        ("zip", "a/../../evil.txt"),
        ("zip", "/evil.txt"),
    ] {
        let archive = dir.path().join("upload");
        let entries: &[(&str, &[u8])] = &[("index.html", b"<!doctype html>"), (name, b"pwned")];
        if kind == "tar" {
            tar_gz(&archive, entries);
        } else {
            zip_file(&archive, entries);
        }
        let e = detect_archive(&archive, &opts).await.unwrap_err();
        match &e {
            Error::UnsafeEntry { entry, .. } => assert_eq!(entry, name, "{kind}"),
            other => panic!("{kind} {name}: expected UnsafeEntry, got {other:?}"),
        }
        assert!(e.to_string().contains(name), "{e}");
        assert!(!dir.path().join("evil.txt").exists());
        assert!(!work.join("evil.txt").exists());
        assert!(!Path::new("/tmp/aiops-evil.txt").exists());
        // The extraction directory is gone too.
        assert_eq!(
            std::fs::read_dir(&work).unwrap().count(),
            0,
            "{kind} {name}"
        );
    }
}

#[tokio::test]
async fn archives_over_the_entry_or_byte_caps_are_refused_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![b'x'; 10_000];
    let many: Vec<(String, &[u8])> = (0..20).map(|i| (format!("f{i}.txt"), &b"x"[..])).collect();
    let many: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    let small = DetectOptions {
        max_archive_bytes: 5_000,
        max_archive_entries: 10,
        ..DetectOptions::default()
    };
    for kind in ["tar", "zip"] {
        let archive = dir.path().join(format!("upload-{kind}"));
        let write_with = |entries: &[(&str, &[u8])]| {
            if kind == "tar" {
                tar_gz(&archive, entries)
            } else {
                zip_file(&archive, entries)
            }
        };
        write_with(&[("index.html", b""), ("big.bin", &big)]);
        let e = detect_archive(&archive, &small).await.unwrap_err();
        assert!(
            matches!(e, Error::TooLarge { limit: 5_000, .. }),
            "{kind}: {e:?}"
        );
        assert!(e.to_string().contains("more than 5000 bytes"), "{e}");

        write_with(&many);
        let e = detect_archive(&archive, &small).await.unwrap_err();
        assert!(
            matches!(e, Error::TooManyEntries { limit: 10, .. }),
            "{kind}: {e:?}"
        );

        // Exactly at the caps is fine.
        let exact = DetectOptions {
            max_archive_bytes: 10_000,
            max_archive_entries: 2,
            ..DetectOptions::default()
        };
        write_with(&[("index.html", b""), ("big.bin", &big)]);
        assert_eq!(
            detect_archive(&archive, &exact).await.unwrap().framework,
            Framework::Static,
            "{kind}"
        );
    }
}

#[tokio::test]
async fn an_upload_that_is_not_an_archive_says_so_with_its_first_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.tar.gz");
    std::fs::write(&path, "name: shop\n").unwrap();
    let e = detect_archive(&path, &DetectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnsupportedArchive { .. }), "{e:?}");
    assert!(e.to_string().contains("6e 61 6d 65"), "{e}");
}

#[tokio::test]
async fn links_in_an_archive_are_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("upload.tgz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&archive).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    tar.append_link(&mut header, "package.json", "/etc/passwd")
        .unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_size(0);
    tar.append_data(&mut file, "index.html", &b""[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap();

    let dest = tempfile::tempdir().unwrap();
    let got = archive::extract(
        &archive,
        dest.path(),
        &archive::Limits::from(&DetectOptions::default()),
    )
    .unwrap();
    assert_eq!(got.skipped, ["package.json"]);
    assert_eq!(got.files, 1);
    assert!(std::fs::symlink_metadata(dest.path().join("package.json")).is_err());
}

/// A .tar.gz holding a small index.html after `extra`, an entry nothing is written for: a PAX
/// header (read whole into memory by the tar reader) or a link carrying data (stepped over by
/// reading it).
fn tar_gz_with_hidden_bulk(path: &Path, extra: tar::EntryType, bulk: usize) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(extra);
    header.set_mode(0o644);
    let data = if extra == tar::EntryType::XHeader {
        // One PAX record, "<length> comment=<value>\n", its length counting itself.
        let body = format!("comment={}\n", "x".repeat(bulk));
        let mut len = body.len() + 2;
        while format!("{len} {body}").len() != len {
            len += 1;
        }
        format!("{len} {body}").into_bytes()
    } else {
        header.set_link_name("index.html").unwrap();
        vec![b'x'; bulk]
    };
    header.set_path("bulk").unwrap();
    header.set_size(data.len() as u64);
    header.set_cksum();
    tar.append(&header, data.as_slice()).unwrap();
    let mut file = tar::Header::new_ustar();
    file.set_size(15);
    file.set_mode(0o644);
    tar.append_data(&mut file, "index.html", &b"<!doctype html>"[..])
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap();
}

#[tokio::test]
async fn tar_headers_and_skipped_entries_count_against_the_byte_cap() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DetectOptions {
        max_archive_bytes: 1_000,
        ..DetectOptions::default()
    };
    // Far past the cap plus the allowance of the two entries, though only 15 bytes are written.
    let bulk = 4 * archive::HEADER_ALLOWANCE as usize;
    for extra in [tar::EntryType::XHeader, tar::EntryType::Symlink] {
        let path = dir.path().join("upload.tgz");
        tar_gz_with_hidden_bulk(&path, extra, bulk);
        let e = detect_archive(&path, &opts).await.unwrap_err();
        assert!(
            matches!(e, Error::TooLarge { limit: 1_000, .. }),
            "{extra:?}: {e:?}"
        );
        // The same archive under a cap it fits is extracted: the meter refuses bulk, not tars.
        let roomy = DetectOptions {
            max_archive_bytes: 2 * bulk as u64,
            ..DetectOptions::default()
        };
        assert_eq!(
            detect_archive(&path, &roomy).await.unwrap().framework,
            Framework::Static,
            "{extra:?}"
        );
    }
}

#[tokio::test]
async fn an_uncompressed_tar_upload_is_detected_and_held_to_the_same_caps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upload.tar");
    plain_tar(
        &path,
        &[
            ("shop-main/go.mod", b"module example.com/shop\n"),
            ("shop-main/main.go", b"package main\n"),
        ],
    );
    let got = detect_archive(&path, &DetectOptions::default())
        .await
        .unwrap();
    assert_eq!(got.framework, Framework::Go);
    assert_eq!(got.evidence, ["shop-main/go.mod (module example.com/shop)"]);

    plain_tar(&path, &[("index.html", b""), ("big.bin", &[b'x'; 10_000])]);
    let small = DetectOptions {
        max_archive_bytes: 5_000,
        ..DetectOptions::default()
    };
    let e = detect_archive(&path, &small).await.unwrap_err();
    assert!(matches!(e, Error::TooLarge { limit: 5_000, .. }), "{e:?}");

    plain_tar(&path, &[("../evil.txt", b"pwned")]);
    let e = detect_archive(&path, &DetectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnsafeEntry { .. }), "{e:?}");
}

#[test]
fn a_git_source_debug_prints_without_the_credentials_in_its_url() {
    for url in [
        "https://deploy:hunter2-token@git.example.com/acme/shop.git",
        "deploy:hunter2-token@git.example.com:acme/shop.git",
    ] {
        let source = Source::Git {
            url: url.into(),
            reference: Some("main".into()),
        };
        let text = format!("{source:?} {source:#?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("git.example.com") && text.contains("main"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_byte_order_mark_at_the_start_of_a_manifest_is_ignored() {
    let cases: &[(&str, &str, Framework)] = &[
        ("requirements.txt", "\u{feff}Flask==3.0\n", Framework::Flask),
        (
            "pyproject.toml",
            "\u{feff}[project]\nname = \"shop\"\ndependencies = [\"django\"]\n",
            Framework::Django,
        ),
        (
            "package.json",
            "\u{feff}{\"main\":\"index.js\"}",
            Framework::Nodejs,
        ),
    ];
    for (file, text, framework) in cases {
        let got = detect_files(&[(file, text)])
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(got.framework, *framework, "{file}");
    }
}

#[tokio::test]
async fn next_in_dev_dependencies_or_a_next_start_script_is_nextjs() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"scripts":{"build":"next build"},"devDependencies":{"next":"15"}}"#,
            "package.json depends on next (devDependencies)",
        ),
        (
            r#"{"scripts":{"start":"next start -p $PORT"}}"#,
            "package.json has a start script running next start (next start -p $PORT)",
        ),
    ];
    for (package, evidence) in cases {
        let got = detect_files(&[("package.json", package)]).await.unwrap();
        assert_eq!(got.framework, Framework::Nextjs, "{package}");
        assert_eq!(got.evidence, [*evidence], "{package}");
    }
    // A start script merely mentioning next is still a Node.js app.
    let got = detect_files(&[(
        "package.json",
        r#"{"scripts":{"start":"node next-server.js"}}"#,
    )])
    .await
    .unwrap();
    assert_eq!(got.framework, Framework::Nodejs);
}

#[tokio::test]
async fn files_a_requirements_txt_includes_are_read_one_level_deep() {
    let cases: &[(&str, Files, Framework, &[&str])] = &[
        (
            "-r into a directory",
            &[
                ("requirements.txt", "-r requirements/base.txt\ngunicorn\n"),
                ("requirements/base.txt", "\u{feff}Django>=5\n"),
            ],
            Framework::Django,
            &["requirements/base.txt (included by requirements.txt) names django"],
        ),
        (
            "--requirement= and -rfile, inside a wrapping directory, one level only",
            &[
                (
                    "shop-main/requirements.txt",
                    "--requirement=./base.txt  # shared\n-rprod.txt\n",
                ),
                ("shop-main/base.txt", "flask\n-r deeper.txt\n"),
                ("shop-main/prod.txt", "gunicorn\n"),
                // Not read: an include of an include is two levels deep.
                ("shop-main/deeper.txt", "django\n"),
            ],
            Framework::Flask,
            &["shop-main/base.txt (included by shop-main/requirements.txt) names flask"],
        ),
    ];
    assert_detected(cases).await;
}

#[tokio::test]
async fn an_included_requirements_file_outside_the_source_or_missing_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "django\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("link.txt")).unwrap();
    for (include, says) in [
        ("../secret.txt", "outside the source"),
        ("a/../../secret.txt", "outside the source"),
        ("/etc/passwd", "outside the source"),
        ("link.txt", "no such regular file"),
        ("missing.txt", "no such regular file"),
    ] {
        std::fs::write(root.join("requirements.txt"), format!("-r {include}\n")).unwrap();
        let e = detect(&Source::Path(root.clone()), &DetectOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Manifest { file, .. } if file == "requirements.txt"),
            "{include}: {e:?}"
        );
        assert!(e.to_string().contains(says), "{include}: {e}");
    }
}
