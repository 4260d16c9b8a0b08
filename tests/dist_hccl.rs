//! HCCL's rank-table launch on the emulated NPUs, as MindSpore's scripts do it (no MPI, any
//! build): 2 ranks match 1 process with the global batch, the gradient all-reduce overlaps the
//! backward, and a dead rank ends the job. The MPI launches: `tests/dist.rs`.
mod common;

use common::cli::{extract_cifar10, SENET};
use common::dist::*;
use senet::checkpoint::read_checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A rank table (format 1.0) of one server with devices 0 and 1 as ranks 0 and 1.
fn write_rank_table(dir: &Path) -> PathBuf {
    let path = dir.join("rank_table.json");
    std::fs::write(
        &path,
        r#"{"version": "1.0", "server_count": "1", "status": "completed",
 "server_list": [{"server_id": "127.0.0.1", "device": [
   {"device_id": "0", "device_ip": "192.168.100.101", "rank_id": "0"},
   {"device_id": "1", "device_ip": "192.168.100.102", "rank_id": "1"}]}]}"#,
    )
    .unwrap();
    path
}

/// Starts 2 ranks of `senet <args>` the rank-table way (a table in `dir`; `RANK_TABLE_FILE`,
/// `RANK_ID`, `RANK_SIZE`, `DEVICE_ID` per process, no MPI) on the emulated NPUs, with `env`
/// added, and waits for both.
fn rank_table_job(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Vec<Output> {
    rank_table_job_with(dir, args, [&[], &[]], env)
}

/// [`rank_table_job`] with `extra[r]` appended to rank r's arguments.
fn rank_table_job_with(
    dir: &Path,
    args: &[&str],
    extra: [&[&str]; 2],
    env: &[(&str, &str)],
) -> Vec<Output> {
    let table = write_rank_table(dir);
    let emu = emulator();
    let children: Vec<_> = (0..2)
        .map(|rank| {
            let mut c = Command::new(SENET);
            c.args(args)
                .args(extra[rank])
                .env("SENET_CANN_LIB", &emu)
                .env("RANK_TABLE_FILE", &table)
                .env("RANK_ID", rank.to_string())
                .env("RANK_SIZE", "2")
                .env("DEVICE_ID", rank.to_string())
                .envs(env.iter().copied())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            for key in [
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "PMI_RANK",
                "PMI_SIZE",
            ] {
                c.env_remove(key);
            }
            c.spawn().expect("start a rank")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait for a rank"))
        .collect()
}

/// HCCL's rank-table launch, as MindSpore's scripts do it: one process per device, each with
/// `RANK_TABLE_FILE`, `RANK_ID`, `RANK_SIZE` and `DEVICE_ID` (no MPI), on the emulated NPUs;
/// the ranks join with `HcclCommInitClusterInfo` and all-reduce the gradients in device buckets.
#[test]
fn rank_table_launch_on_the_emulated_npu_matches_one_process() {
    for (job, tol) in [(ONE_STEP, SAME_ARITHMETIC), (THREE_STEPS, hf32_steps())] {
        let tmp = tempfile::tempdir().unwrap();
        let recipe = small_job(tmp.path(), job);
        let emu = emulator();
        let env = [("SENET_CANN_LIB", emu.as_str())];
        let one = tmp.path().join("one");
        one_process(&recipe, &one, &["--device", "ascend"], &env);
        let two = tmp.path().join("two");
        let outs = rank_table_job(
            tmp.path(),
            &rank_args(&recipe, &two, &["--device", "ascend"]),
            &[],
        );
        for out in &outs {
            assert!(out.status.success(), "{}", text(out));
        }
        let t = text(&outs[0]);
        assert!(t.contains("data parallel over 2 ranks (hccl)"), "{t}");
        assert!(
            String::from_utf8_lossy(&outs[1].stdout).trim().is_empty(),
            "rank 1 printed"
        );
        assert_equivalent(&one, &two, job, &tol);
    }
}

/// The gradient all-reduce overlaps the backward on the emulated NPUs: in each rank's trace of
/// queued device work (`SENET_EMU_TRACE`) of a 1-step job, the first gradient bucket's
/// `HcclAllReduce` is queued on a stream other than the backward's, after the backward's
/// first `aclnnConvolutionBackward` and before its last one (the stem's); a smaller bucket
/// size (`SENET_BUCKET_CAP_MB`) makes more buckets, all queued before the backward ends but
/// the last. The emulator refuses any bucket whose all-reduce is not ordered after the
/// packing by an event (a data race), so the job succeeding shows the events are there.
#[test]
fn the_gradient_all_reduce_is_queued_during_the_backward() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = small_job(tmp.path(), ONE_STEP);
    let mut before_end = Vec::new();
    for (cap, dir) in [("25", "default"), ("4", "small")] {
        let two = tmp.path().join(dir);
        std::fs::create_dir_all(&two).unwrap();
        let trace = two.join("trace-{pid}.txt");
        let env = [
            ("SENET_EMU_TRACE", trace.to_str().unwrap()),
            ("SENET_BUCKET_CAP_MB", cap),
        ];
        let outs = rank_table_job(
            tmp.path(),
            &rank_args(&recipe, &two, &["--device", "ascend"]),
            &env,
        );
        for out in &outs {
            assert!(out.status.success(), "{}", text(out));
        }
        let traces: Vec<PathBuf> = std::fs::read_dir(&two)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("trace-")
            })
            .collect();
        assert_eq!(traces.len(), 2, "one trace per rank: {traces:?}");
        for t in traces {
            let text = std::fs::read_to_string(&t).unwrap();
            let lines: Vec<(&str, &str)> = text
                .lines()
                .map(|l| l.split_once('\t').expect("stream<TAB>call"))
                .collect();
            let conv_bw: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].1 == "aclnnConvolutionBackward")
                .collect();
            // seresnet18 in a 1-step job: 20 filter gradients and 19 data gradients (none for
            // the image), each one aclnnConvolutionBackward.
            assert_eq!(conv_bw.len(), 39, "{}", t.display());
            let (first, last) = (conv_bw[0], conv_bw[38]);
            let compute = lines[last].0;
            assert!(conv_bw.iter().all(|&i| lines[i].0 == compute));
            let reduces: Vec<usize> = (first..lines.len())
                .filter(|&i| lines[i].1 == "HcclAllReduce")
                .collect();
            assert!(
                !reduces.is_empty(),
                "no HcclAllReduce after the backward began"
            );
            assert!(
                reduces.iter().all(|&i| lines[i].0 != compute),
                "an all-reduce on the compute stream {compute}"
            );
            assert!(
                reduces[0] < last,
                "the first bucket's all-reduce (line {}) comes after the backward's last convolution gradient (line {last})",
                reduces[0] + 1
            );
            let before = reduces.iter().filter(|&&i| i < last).count();
            // Only the last bucket (it holds the stem's gradients) follows the backward.
            assert_eq!(reduces.len(), before + 1, "{}", t.display());
            before_end.push(before);
        }
    }
    // Buckets close once they hold the cap (DDP's rule), in the backward's order. 25 MiB
    // (6,553,600 values): seresnet18's 11.7 M gradients make 2 buckets, the first closed inside
    // layer4. 4 MiB (1,048,576 values): layer4.1.conv2, layer4.1.conv1, layer4.0.conv2 (2.36 M
    // each) close one each; layer4.0.conv1 (1.18 M) one; layer3.1's two convs (0.59 M each)
    // one; layer3.0 (0.59 M + 0.29 M + 0.03 M) with layer2.1.conv2 (0.15 M) one; the rest
    // (0.6 M) is the last bucket.
    assert_eq!(before_end, [1, 1, 6, 6]);
    // The buckets (25 MiB, or 4 MiB with gradients as large as a bucket reduced in place) change
    // where each value travels, not its arithmetic (a sum over the ranks, then times 1/2): the
    // two runs end bit for bit alike.
    let ckpt = format!("seresnet18-1_{}.ckpt", ONE_STEP.steps);
    let a = read_checkpoint(&tmp.path().join("default").join(&ckpt)).unwrap();
    let b = read_checkpoint(&tmp.path().join("small").join(&ckpt)).unwrap();
    let names: Vec<&str> = a.names().collect();
    assert_eq!(names, b.names().collect::<Vec<_>>());
    for name in names {
        assert!(
            a.get(name).unwrap().bytes == b.get(name).unwrap().bytes,
            "{name} differs between bucket sizes"
        );
    }
}

/// A rank that dies in a rank-table job (no mpirun to end the job): the other rank's next
/// HCCL collective fails, and it exits non-zero naming the call, within a bounded time.
#[test]
fn a_dead_rank_in_a_rank_table_job_ends_the_other_with_an_hccl_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = extract_cifar10(tmp.path(), &["cifar10/train/*/000[0-3].jpg"]);
    let recipe = write_recipe(tmp.path(), &data, 20);
    let out_dir = tmp.path().join("out");
    // Find (or build) the emulator before the clock starts.
    emulator();
    let t0 = std::time::Instant::now();
    let outs = rank_table_job(
        tmp.path(),
        &rank_args(
            &recipe,
            &out_dir,
            &["--device", "ascend", "--val_while_train", "False"],
        ),
        &[("SENET_TEST_ABORT_AT_STEP", "2")],
    );
    let secs = t0.elapsed().as_secs_f64();
    assert!(!outs[1].status.success(), "{}", text(&outs[1]));
    let t = text(&outs[0]);
    assert!(!outs[0].status.success(), "rank 0 went on: {t}");
    assert!(t.contains("Hccl"), "rank 0's error does not name HCCL: {t}");
    assert!(secs < 60.0, "the job took {secs:.0}s");
}

/// Ranks whose float32 matrix products would round differently (one with torch_npu's default
/// FLOAT cube for Dense, one with `--matmul_allow_hf32 True`) refuse to start: each names the
/// two settings, before any step.
#[test]
fn ranks_with_different_cube_switches_refuse_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = small_job(tmp.path(), ONE_STEP);
    let two = tmp.path().join("two");
    let outs = rank_table_job_with(
        tmp.path(),
        &rank_args(&recipe, &two, &["--device", "ascend"]),
        [&[], &["--matmul_allow_hf32", "True"]],
        &[],
    );
    // Each rank names what it has.
    let has = [
        "device ascend (float32).",
        "device ascend (float32, conv_allow_hf32=true, matmul_allow_hf32=true).",
    ];
    for (out, has) in outs.iter().zip(has) {
        let t = text(out);
        assert!(!out.status.success(), "{t}");
        assert!(
            t.contains("disagree on the recipe") && t.contains(has),
            "{t}"
        );
    }
    assert!(!two.join("seresnet18-1_1.ckpt").exists());
}
