//! Running the `senet` binary, for the tests that drive the CLI.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `senet` binary of this build.
pub const SENET: &str = env!("CARGO_BIN_EXE_senet");

/// `senet <args>` in the package folder, not started yet (to add environment variables).
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(SENET);
    c.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Runs `senet <args>` in the package folder and waits for it.
pub fn senet(args: &[&str]) -> Output {
    command(args).output().expect("run senet")
}

/// Asserts that `out` is a success (showing its stdout and stderr when not); returns its
/// stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "senet failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Asserts a non-zero exit whose stderr contains every one of `needles`.
pub fn fails_naming(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "stderr does not name {n:?}: {err}");
    }
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Extracts the members of `shared/datasets/cifar10.tar.gz` matching `patterns` (tar
/// wildcards) into `dir`; returns `dir/cifar10`.
pub fn extract_cifar10(dir: &Path, patterns: &[&str]) -> PathBuf {
    let tarball = super::shared().join("datasets/cifar10.tar.gz");
    let out = Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir)
        .arg("--wildcards")
        .args(patterns)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("cifar10")
}
