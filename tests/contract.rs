//! The gRPC contract by the ecosystem's rules: `buf lint` (STANDARD and
//! COMMENTS, `buf.yaml`) passes, and `buf breaking` finds no breaking change
//! against the last released contract: the newest `v*` tag, or, before the
//! first tag, the committed image `contract/baseline.binpb`. A deliberately
//! broken copy of the contract must be reported.
//!
//! `buf` comes from PyPI's `buf-bin`, which `./scripts/test` installs into
//! `.venv`. `UPDATE_GOLDEN=1` (exactly) rewrites the baseline image from
//! `proto/`: only for an intended break before the first release.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `buf` with `args` in `dir`; fails the test with what to install
/// when `buf` is missing.
fn buf(dir: &Path, args: &[&str]) -> Output {
    Command::new("buf")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run buf ({err}): run the suite with ./scripts/test, which installs \
                 PyPI's buf-bin into .venv, or `pip install buf-bin`"
            )
        })
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The contract breaking changes are checked against: the newest `v*` tag,
/// else the committed image.
fn baseline() -> String {
    let tag = Command::new("git")
        .args(["describe", "--tags", "--abbrev=0", "--match", "v*"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|t| !t.is_empty());
    match tag {
        Some(tag) => format!(".git#tag={tag}"),
        None => "contract/baseline.binpb".to_string(),
    }
}

#[test]
fn contract_passes_buf_lint() {
    let output = buf(&root(), &["lint"]);
    assert!(output.status.success(), "buf lint:\n{}", text(&output));
}

#[test]
fn contract_has_no_breaking_change_against_the_last_release() {
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        let output = buf(&root(), &["build", "-o", "contract/baseline.binpb"]);
        assert!(output.status.success(), "buf build:\n{}", text(&output));
    }
    let against = baseline();
    let output = buf(&root(), &["breaking", "--against", &against]);
    assert!(
        output.status.success(),
        "buf breaking against {against}:\n{}",
        text(&output)
    );
}

/// Copies the workspace's contract (buf.yaml and proto/) into `dir`.
fn copy_contract(dir: &Path) {
    std::fs::copy(root().join("buf.yaml"), dir.join("buf.yaml")).expect("copy buf.yaml");
    let from = root().join("proto/associations/v1");
    let to = dir.join("proto/associations/v1");
    std::fs::create_dir_all(&to).expect("mkdir");
    for entry in std::fs::read_dir(&from).expect("read proto/") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy proto");
    }
}

#[test]
fn a_breaking_change_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_contract(dir.path());
    let file = dir.path().join("proto/associations/v1/associations.proto");
    let proto = std::fs::read_to_string(&file).expect("read");
    // A field's type changes and another field disappears.
    let broken = proto
        .replace(
            "  // The record's id.\n  int64 object_id = 3;",
            "  // The record's id.\n  string object_id = 3;",
        )
        .replace(
            "  // Resumes the stream right after this message.\n  string cursor = 2;\n  // The same rows as columns",
            "  // The same rows as columns",
        );
    assert_ne!(
        broken, proto,
        "the contract changed: update this test's edits"
    );
    assert_eq!(
        broken.matches("string object_id = 3;").count(),
        1,
        "one field's type changed"
    );
    std::fs::write(&file, broken).expect("write");
    let baseline = root().join("contract/baseline.binpb");
    let output = buf(
        dir.path(),
        &["breaking", "--against", baseline.to_str().expect("path")],
    );
    let report = text(&output);
    assert!(!output.status.success(), "buf breaking passed:\n{report}");
    assert!(
        report.contains("object_id") && report.contains("ListAssociationsRequest"),
        "the type change is named:\n{report}"
    );
    assert!(
        report.contains("ExportAssociationsResponse") && report.contains("cursor"),
        "the removed field is named:\n{report}"
    );
}
