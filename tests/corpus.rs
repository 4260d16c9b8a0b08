//! The regression corpus of hostile inputs (`tests/corpus/<target>/`: the reproducers of issue
//! 13, made by `tests/corpus/make_reproducers.py`, and what fuzzing found) replayed through the
//! fuzz targets' entry points (`senet::fuzzing::Target`), each file in a child process limited
//! to 3 GiB of address space and 60 s: an abort (e.g. an allocation failure), a signal, a panic
//! or a hang fails the test instead of killing the runner. Reproducers must end in an error
//! (files named `valid*` must load), with the messages the issue asks for.
mod common;

use common::child::{limit_address_space, run_with_timeout};
use senet::fuzzing::Target;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Address space of a child: above the largest image senet accepts (a 178,956,970-pixel 16-bit
/// RGBA PNG decodes into 1.43 GB, plus its RGB copy), below what any refused input would need.
const MEMORY_LIMIT: u64 = 3 << 30;
const TIMEOUT: Duration = Duration::from_secs(60);

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Every corpus file with its target.
fn corpus() -> Vec<(Target, PathBuf)> {
    let mut files = Vec::new();
    for t in Target::ALL {
        let dir = corpus_dir().join(t.name());
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        found.sort();
        assert!(!found.is_empty(), "no corpus files in {}", dir.display());
        files.extend(found.into_iter().map(|p| (t, p)));
    }
    files
}

/// Files libFuzzer wrote (crashes, timeouts, out-of-memory, slow units): any outcome but a crash.
fn is_fuzz_finding(name: &str) -> bool {
    ["crash-", "timeout-", "oom-", "slow-unit-", "leak-"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// What the messages of the issue's own examples must say.
const EXPECTED: &[(&str, &str)] = &[
    (
        "jpeg_declares_65500x65500.jpg",
        "65500x65500 pixels (4290250000) is more than the 178956970 pixels",
    ),
    (
        "png_1x20000.png",
        "resizes to 256x5120000 (1310720000 pixels)",
    ),
    ("png_declares_65535x65535.png", "65535x65535 pixels"),
    (
        "record_length_near_2_64.ckpt",
        "truncated: entry #0 at byte 0 declares 18446744073709551600 bytes",
    ),
    ("tag_length_near_2_64.ckpt", "truncated: entry #0"),
    ("content_length_near_2_64.ckpt", "truncated"),
    ("dims_product_overflows.ckpt", "needs too many bytes"),
    ("negative_dim.ckpt", "dimension -1"),
    (
        "index_99999999999.tsv",
        "line 1: class index 99999999999 is out of range",
    ),
    (
        "index_usize_max.tsv",
        "class index 18446744073709551615 is out of range",
    ),
    (
        "index_max_classes.tsv",
        "class index 1000000 is out of range",
    ),
    ("batch_size_u64_max.yaml", "batch_size"),
    ("num_classes_huge.yaml", "num_classes"),
    ("ckpt_save_dir_empty.yaml", "ckpt_save_dir"),
    (
        "header_length_near_2_64.safetensors",
        "invalid safetensors file",
    ),
];

/// The entry point of the child processes: reads the file named by the environment and runs it
/// through its target under the memory limit, printing the outcome.
#[test]
#[ignore = "run in a child process by corpus_replays_without_crash_hang_or_abort"]
fn corpus_child() {
    let (Ok(target), Ok(file)) = (
        std::env::var("SENET_CORPUS_TARGET"),
        std::env::var("SENET_CORPUS_FILE"),
    ) else {
        panic!("SENET_CORPUS_TARGET / SENET_CORPUS_FILE not set: run by the parent test only");
    };
    limit_address_space(MEMORY_LIMIT);
    let data = std::fs::read(&file).unwrap();
    let target = Target::from_name(&target).unwrap();
    match target.run(&data) {
        Ok(()) => println!("outcome: ok"),
        Err(e) => println!("outcome: error: {}", e.to_string().replace('\n', " / ")),
    }
}

fn replay(target: Target, file: &Path) -> Result<String, String> {
    let exe = std::env::current_exe().unwrap();
    let run = run_with_timeout(
        Command::new(exe)
            .args(["corpus_child", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env("SENET_CORPUS_TARGET", target.name())
            .env("SENET_CORPUS_FILE", file),
        TIMEOUT,
    );
    let outcome = run
        .stdout
        .lines()
        .find_map(|l| l.split_once("outcome: ").map(|(_, o)| o))
        .map(str::to_string);
    match outcome {
        Some(o) if run.ok() => Ok(o),
        _ => Err(run.describe()),
    }
}

#[test]
fn corpus_replays_without_crash_hang_or_abort() {
    let mut failures = Vec::new();
    let mut expected_seen = 0;
    for (target, file) in corpus() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = match replay(target, &file) {
            Ok(o) => o,
            Err(how) => {
                failures.push(format!("{}: {how}", file.display()));
                continue;
            }
        };
        if name.starts_with("valid") {
            if outcome != "ok" {
                failures.push(format!("{name} must load: {outcome}"));
            }
        } else if !is_fuzz_finding(&name) && !outcome.starts_with("error: ") {
            failures.push(format!("{name} must be refused, got {outcome}"));
        }
        if let Some((_, want)) = EXPECTED.iter().find(|(n, _)| *n == name) {
            expected_seen += 1;
            if !outcome.contains(want) {
                failures.push(format!("{name}: expected '{want}' in: {outcome}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(expected_seen, EXPECTED.len(), "a reproducer is missing");
}
