//! Data-parallel training through the `senet` binary, as users launch it.
//!
//! Without MPI (any build): `distribute: True` without a launcher is an error showing the
//! `mpirun` command, a launcher's variables with `distribute: False` and several ranks are an
//! error, and (built without the `mpi` feature) a launched `--distribute` run says how to build
//! with MPI.
//!
//! With the `mpi` feature (`cargo test --features mpi --test dist`), each test starts real
//! 2-process jobs with `mpirun -n 2 --allow-run-as-root --oversubscribe`:
//! - 2 ranks with batch b produce, after k = 3 steps, the parameters (and Momentum
//!   accumulators, and validation figures) of 1 process with batch 2b, to 1e-5 relative on the
//!   CPU ([`SAME_ARITHMETIC`]; on the emulated NPU see [`hf32_steps`]), with
//!   BatchNorm frozen (`--freeze_bn`: the moving statistics normalise, so no statistic depends
//!   on how the batch is split); only rank 0 logs and writes files;
//! - a rank that dies (fault injection `SENET_TEST_ABORT_AT_STEP`) ends the job with a non-zero
//!   status within 60 s, as does a rank that hangs (`SENET_TEST_HANG_AT_STEP`, the others'
//!   collective timeout `SENET_DIST_TIMEOUT` set to 3 s) and a rank that disagrees with the
//!   others.
//!
//! When `mpirun` is missing these tests say so and pass, unless `SENET_REQUIRE_MPI` is set
//! (CI sets it), in which case they fail; so does a build without the `mpi` feature.
mod common;

use common::cli::{extract_cifar10, SENET};
use common::step::HF32_STEP_TOL;
use senet::checkpoint::read_checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A small CPU recipe: seresnet18 at 32x32 with MindCV's train transforms, label smoothing,
/// weight decay and a loss scale (so the equivalence covers them), validating after each epoch.
fn write_recipe(dir: &Path, data: &Path, epochs: u32) -> PathBuf {
    let path = dir.join("recipe.yaml");
    std::fs::write(
        &path,
        format!(
            "model: seresnet18\ndata_dir: {}\ndevice_target: CPU\n\
             image_resize: 32\ncrop_pct: 1.0\ninterpolation: bilinear\n\
             opt: momentum\nmomentum: 0.9\nweight_decay: 0.0001\nloss_scale: 1024\n\
             scheduler: warmup_cosine_decay\nlr: 0.02\nmin_lr: 0.0\nwarmup_epochs: 0\n\
             epoch_size: {epochs}\ndecay_epochs: {epochs}\nlabel_smoothing: 0.1\n\
             num_parallel_workers: 1\nlog_interval: 1\nval_while_train: True\n",
            data.display()
        ),
    )
    .unwrap();
    path
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `senet <args>` with extra environment variables, launcher variables removed.
fn senet(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = common::cli::command(args);
    for key in [
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "PMI_RANK",
        "PMI_SIZE",
        "RANK_TABLE_FILE",
        "RANK_ID",
        "RANK_SIZE",
        "MS_ROLE",
        "MS_WORKER_NUM",
    ] {
        c.env_remove(key);
    }
    c.envs(env.iter().copied());
    c.output().expect("run senet")
}

/// Largest `|a - b| / max|b|` over the elements of one tensor.
fn rel_max(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

/// The last line of `dir/metrics.jsonl`, and the number of lines.
fn metrics(dir: &Path) -> (serde_json::Value, usize) {
    let t = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let lines: Vec<&str> = t.lines().collect();
    (
        serde_json::from_str(lines.last().unwrap()).unwrap(),
        lines.len(),
    )
}

/// How closely a data-parallel run must reproduce one process with the global batch: the
/// largest `max|diff| / max|value|` of a parameter and of a Momentum accumulator, the relative
/// difference of the logged training and validation losses, and whether the accuracies must be
/// equal.
struct Tolerance {
    param: f64,
    moment: f64,
    loss: f64,
    same_predictions: bool,
}

/// Both runs do the same arithmetic on the same values except the order of the FLOAT sums the
/// batch split changes (a weight gradient summed over 8 images or over 4 + 4, then all-reduced):
/// the CPU's jobs, and any job of one step.
const SAME_ARITHMETIC: Tolerance = Tolerance {
    param: 1e-5,
    moment: 1e-4,
    loss: 1e-5,
    same_predictions: true,
};

/// A FLOAT job of several steps on the emulated A2, whose convolutions run in HFLOAT32
/// (USE_HF32, the backend's mode for FLOAT convolutions there).
///
/// Step 1 is [`SAME_ARITHMETIC`] (checked on its own by the rank-table test). From step 2 the
/// two runs' parameters differ by those FLOAT-sized amounts (~2^-24 relative), and the cube
/// rounds every FLOAT operand to 11 mantissa bits: a change δ of an operand moves its HFLOAT32
/// value by a whole HFLOAT32 ulp (2^-11 relative) with probability ~δ/ulp, so an HF32 step is a
/// discontinuous function of its inputs and the two runs become two differently rounded
/// HFLOAT32 computations of the same steps. (The same job with a FLOAT cube, KEEP_DTYPE on the
/// emulated 950 through a local change of the backend, stayed within 3e-6, inside
/// [`SAME_ARITHMETIC`]: the difference is the rounding, not the data-parallel code.) Each run's step is within the HF32 step's error of exact arithmetic, so the two are
/// within twice it: with `(l, g, _)` = [`HF32_STEP_TOL`] (the HF32 step's sensitivity, see
/// there), the gradients of steps 2 and 3 differ by up to `2g` relative; the accumulator
/// `v3 = g3 + μ g2 + μ² g1` (step 1's agrees) and the parameter change `θ3 - θ0 = -lr (v1 + v2 +
/// v3)` by up to `2g` of their size, which bounds the parameter's difference relative to its
/// value for every tensor (a BatchNorm beta starts at 0, so its value is its change; every
/// other tensor's value is larger than its change); the logged losses by `2l`. Accuracies are
/// argmaxes, which flip for near-ties under any perturbation: not compared (the one-step job
/// compares them). Like [`HF32_STEP_TOL`] this is a sensitivity, not a rigorous bound (the
/// norms are maxima here, relative L2 there).
fn hf32_steps() -> Tolerance {
    let (l, g, _) = HF32_STEP_TOL;
    Tolerance {
        param: 2.0 * g,
        moment: 2.0 * g,
        loss: 2.0 * l,
        same_predictions: false,
    }
}

/// The checks of a data-parallel run (`two`) against one process with the global batch
/// (`one`) after `job`: the same files, one metrics record, every parameter and Momentum
/// accumulator, the logged loss and validation figures within `tol`.
fn assert_equivalent(one: &Path, two: &Path, job: Job, tol: &Tolerance) {
    let files = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(files(one), files(two));
    let (m1, n1) = metrics(one);
    let (m2, n2) = metrics(two);
    assert_eq!((n1, n2), (1, 1), "one record per epoch, from rank 0 only");

    let ckpt = format!("seresnet18-1_{}.ckpt", job.steps);
    let a = read_checkpoint(&one.join(&ckpt)).unwrap();
    let b = read_checkpoint(&two.join(&ckpt)).unwrap();
    let names: Vec<&str> = a.names().collect();
    assert_eq!(names, b.names().collect::<Vec<_>>());
    let (mut worst_param, mut worst_moment) = ((0.0f64, ""), (0.0f64, ""));
    for name in &names {
        let (x, y) = (a.get(name).unwrap(), b.get(name).unwrap());
        if *name == "global_step" {
            assert_eq!(x.bytes, y.bytes);
            continue;
        }
        let (x, y) = (x.to_f32().unwrap(), y.to_f32().unwrap());
        assert_eq!(x.shape, y.shape, "{name}");
        let e = rel_max(&y.data, &x.data);
        let worst = if name.starts_with("moments.") {
            &mut worst_moment
        } else {
            &mut worst_param
        };
        if e > worst.0 {
            *worst = (e, name);
        }
    }
    eprintln!(
        "after {} step(s): worst parameter {} at {:.2e}, worst Momentum accumulator {} at \
         {:.2e} (max |diff| / max |value| per tensor)",
        job.steps, worst_param.1, worst_param.0, worst_moment.1, worst_moment.0
    );
    assert!(worst_param.0 <= tol.param, "{worst_param:?}");
    // The accumulators are sums of the (averaged) gradients: the gradients agree too.
    assert!(worst_moment.0 <= tol.moment, "{worst_moment:?}");
    // The logged loss is the global batch's; validation covers every image once.
    let f = |m: &serde_json::Value, k: &str| m[k].as_f64().unwrap();
    for key in ["loss", "val_loss"] {
        let (x, y) = (f(&m1, key), f(&m2, key));
        assert!((x - y).abs() <= tol.loss * x, "{key}: {x} vs {y}");
    }
    if tol.same_predictions {
        for key in ["train_top1", "val_top1", "val_top5"] {
            assert_eq!(f(&m1, key), f(&m2, key), "{key}");
        }
    }
}

/// The training images of an equivalence job and the steps one epoch of it takes.
#[derive(Debug, Clone, Copy)]
struct Job {
    train: &'static str,
    steps: usize,
}

/// 30 training images (3 per class): one process with batch 8 takes 30 // 8 = 3 steps; two
/// ranks with batch 4 take 15 images each, 15 // 4 = 3 steps, and batch k of both ranks is
/// batch k of the single process.
const THREE_STEPS: Job = Job {
    train: "cifar10/train/*/000[0-2].jpg",
    steps: 3,
};

/// 10 training images: 10 // 8 = 1 step; two ranks take 5 each, 5 // 4 = 1 step.
const ONE_STEP: Job = Job {
    train: "cifar10/train/*/0000.jpg",
    steps: 1,
};

/// The job of the equivalence tests in `dir`: `job`'s training images and 10 validation
/// images of CIFAR-10, and the recipe.
fn small_job(dir: &Path, job: Job) -> PathBuf {
    let data = extract_cifar10(dir, &[job.train, "cifar10/val/*/0000.jpg"]);
    write_recipe(dir, &data, 1)
}

/// The single-process reference run of [`small_job`]: batch 8, BatchNorm frozen, into `dir`.
fn one_process(recipe: &Path, dir: &Path, extra: &[&str], env: &[(&str, &str)]) {
    let mut args = vec![
        "train",
        "-c",
        recipe.to_str().unwrap(),
        "--batch_size",
        "8",
        "--threads",
        "2",
        "--freeze_bn",
        "--ckpt_save_dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = senet(&args, env);
    assert!(out.status.success(), "{}", text(&out));
}

/// The arguments of one rank of [`small_job`]'s data-parallel run (batch 4) into `dir`.
fn rank_args<'a>(recipe: &'a Path, dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "-c",
        recipe.to_str().unwrap(),
        "--batch_size",
        "4",
        "--threads",
        "1",
        "--freeze_bn",
        "--distribute",
        "--ckpt_save_dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

/// The Ascend emulator (`sys/emulator`) as `SENET_CANN_LIB`.
fn emulator() -> String {
    common::emu::library().to_str().unwrap().to_string()
}

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
    let table = write_rank_table(dir);
    let emu = emulator();
    let children: Vec<_> = (0..2)
        .map(|rank| {
            let mut c = Command::new(SENET);
            c.args(args)
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

#[test]
fn distribute_without_a_launcher_shows_the_mpirun_command() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = write_recipe(tmp.path(), &tmp.path().join("none"), 1);
    let r = recipe.to_str().unwrap();
    let out = senet(&["train", "-c", r, "--distribute"], &[]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "mpirun --allow-run-as-root -n 8 {SENET} train -c {r} --distribute"
        )),
        "{t}"
    );
    assert!(t.contains("--distribute False"), "{t}");
    if !cfg!(feature = "mpi") {
        assert!(t.contains("cargo build --release --features mpi"), "{t}");
    }
    // The recipe key alone: the command gains --distribute.
    std::fs::write(
        &recipe,
        std::fs::read_to_string(&recipe).unwrap() + "distribute: True\n",
    )
    .unwrap();
    let out = senet(&["train", "-c", r], &[]);
    let t = text(&out);
    assert!(
        t.contains(&format!("-n 8 {SENET} train -c {r} --distribute")),
        "{t}"
    );
}

#[test]
fn several_ranks_without_distribute_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = write_recipe(tmp.path(), &tmp.path().join("none"), 1);
    let env = [("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2")];
    let out = senet(&["train", "-c", recipe.to_str().unwrap()], &env);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("distribute is False") && t.contains("rank 1 of 2"),
        "{t}"
    );
}

#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_says_how_to_build_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = write_recipe(tmp.path(), &tmp.path().join("none"), 1);
    let env = [("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")];
    let out = senet(
        &["train", "-c", recipe.to_str().unwrap(), "--distribute"],
        &env,
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("built without MPI support")
            && t.contains("cargo build --release --features mpi"),
        "{t}"
    );
    assert!(
        std::env::var_os("SENET_REQUIRE_MPI").is_none(),
        "SENET_REQUIRE_MPI is set but this test build has no `mpi` feature: run \
         `cargo test --features mpi --test dist`"
    );
    eprintln!(
        "note: the 2-process MPI tests need `cargo test --features mpi --test dist` (OpenMPI)"
    );
}

#[cfg(feature = "mpi")]
mod mpi {
    use super::*;
    use std::time::{Duration, Instant};

    /// `mpirun`, or None (with a message) when it is missing and `SENET_REQUIRE_MPI` is unset.
    fn mpirun() -> Option<PathBuf> {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("mpirun"))
                .find(|p| p.is_file())
        });
        if found.is_none() {
            assert!(
                std::env::var_os("SENET_REQUIRE_MPI").is_none(),
                "SENET_REQUIRE_MPI is set but mpirun is not on the PATH: apt-get install \
                 libopenmpi-dev openmpi-bin"
            );
            eprintln!("SKIPPED: mpirun not found (apt-get install openmpi-bin to run this test)");
        }
        found
    }

    /// `mpirun -n 2 --allow-run-as-root --oversubscribe [mpirun_args] senet <args>`, killed
    /// after `limit`. Returns the output and the wall time.
    fn mpirun_job(
        mpirun: &Path,
        mpirun_args: &[&str],
        args: &[&str],
        limit: Duration,
    ) -> (Output, Duration) {
        let mut c = Command::new(mpirun);
        c.args(["-n", "2", "--allow-run-as-root", "--oversubscribe"])
            .args(mpirun_args)
            .arg(SENET)
            .args(args);
        run_limited(c, limit)
    }

    /// Runs `c` (launcher variables of an enclosing job removed), killed after `limit`.
    fn run_limited(mut c: Command, limit: Duration) -> (Output, Duration) {
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for key in ["RANK_TABLE_FILE", "RANK_ID", "RANK_SIZE", "MS_ROLE"] {
            c.env_remove(key);
        }
        let t0 = Instant::now();
        let mut child = c.spawn().expect("start mpirun");
        // Read the pipes on threads so that a chatty job cannot block on them.
        let mut so = child.stdout.take().unwrap();
        let mut se = child.stderr.take().unwrap();
        let ro = std::thread::spawn(move || {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut so, &mut b).ok();
            b
        });
        let re = std::thread::spawn(move || {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut se, &mut b).ok();
            b
        });
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > limit {
                child.kill().ok();
                let s = child.wait().unwrap();
                let out = Output {
                    status: s,
                    stdout: ro.join().unwrap(),
                    stderr: re.join().unwrap(),
                };
                panic!(
                    "the mpirun job did not end within {limit:?}: killed\n{}",
                    text(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let out = Output {
            status,
            stdout: ro.join().unwrap(),
            stderr: re.join().unwrap(),
        };
        (out, t0.elapsed())
    }

    /// The body of [`collectives_over_two_ranks`] on each rank (started by mpirun with
    /// `SENET_DIST_WORKER=1`; does nothing in a normal test run).
    #[test]
    fn collectives_worker() {
        use half::f16;
        use senet::backend::cpu::CpuBackend;
        use senet::dist::{self, GradBuffer, GradientReducer, HostStagedReducer};
        if std::env::var_os("SENET_DIST_WORKER").is_none() {
            return;
        }
        let comm = dist::init(true).unwrap();
        let (rank, size) = (comm.rank(), comm.size());
        assert_eq!((comm.name(), size), ("mpi", 2));
        let r = rank as f32;
        // f32 in place, longer than one message would need; f64 exact; f16 widened.
        let mut v: Vec<f32> = (0..100_003).map(|i| i as f32 + r * 0.5).collect();
        comm.all_reduce_sum_f32(&mut v).unwrap();
        assert!(v
            .iter()
            .enumerate()
            .all(|(i, x)| *x == 2.0 * i as f32 + 0.5));
        let mut d = [1e15 + rank as f64, 0.25];
        comm.all_reduce_sum_f64(&mut d).unwrap();
        assert_eq!(d, [2e15 + 1.0, 0.5]);
        let mut h = [f16::from_f32(1.5 + r), f16::from_f32(-2.0)];
        comm.all_reduce_sum_f16(&mut h).unwrap();
        assert_eq!((h[0].to_f32(), h[1].to_f32()), (4.0, -4.0));
        // Broadcast from rank 1.
        let mut b = vec![r; 5];
        comm.broadcast_f32(&mut b, 1).unwrap();
        assert_eq!(b, vec![1.0; 5]);
        let mut bytes = [rank as u8; 3];
        comm.broadcast_bytes(&mut bytes, 0).unwrap();
        assert_eq!(bytes, [0; 3]);
        assert!(comm.broadcast_f32(&mut b, 2).is_err());
        comm.barrier().unwrap();
        // Agreement: both ranks get the same verdict.
        dist::agree(&*comm, "a count", 7).unwrap();
        let e = dist::agree(&*comm, "a count", 7 + rank as u64)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("disagree on a count") && e.contains("rank 0 has 7"),
            "{e}"
        );
        assert!(dist::agree_on(&*comm, "a text", &format!("rank {rank}")).is_err());
        // The gradient reducer in buckets of 3 values: the mean of both ranks' gradients.
        let be = CpuBackend::new(1).unwrap();
        let mut red = HostStagedReducer::new(comm.clone(), 12).unwrap();
        let (mut g1, mut g2) = (vec![1.0 + r, 2.0 + r], vec![10.0 * (1.0 + r); 4]);
        let mut grads = [
            GradBuffer::<CpuBackend> {
                name: "a",
                grad: &mut g1,
                len: 2,
            },
            GradBuffer {
                name: "b",
                grad: &mut g2,
                len: 4,
            },
        ];
        GradientReducer::all_reduce_mean(&mut red, &be, &mut grads).unwrap();
        assert_eq!(g1, [1.5, 2.5]);
        assert_eq!(g2, [15.0; 4]);
        eprintln!("rank {rank}: collectives ok");
    }

    #[test]
    fn collectives_over_two_ranks() {
        let Some(mpirun) = mpirun() else { return };
        let me = std::env::current_exe().unwrap();
        let mut c = Command::new(&mpirun);
        c.args(["-n", "2", "--allow-run-as-root", "--oversubscribe"])
            .args(["-x", "SENET_DIST_WORKER=1"])
            .arg(&me)
            .args(["--exact", "mpi::collectives_worker", "--nocapture"]);
        let (out, _) = run_limited(c, Duration::from_secs(60));
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert_eq!(t.matches("collectives ok").count(), 2, "{t}");
    }

    #[test]
    fn two_ranks_with_batch_b_match_one_process_with_batch_2b() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let recipe = small_job(tmp.path(), THREE_STEPS);
        let one = tmp.path().join("one");
        let two = tmp.path().join("two");
        one_process(&recipe, &one, &[], &[]);
        let (out, secs) = mpirun_job(
            &mpirun,
            &[],
            &rank_args(&recipe, &two, &[]),
            Duration::from_secs(300),
        );
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        eprintln!("2-rank job: {:.1}s", secs.as_secs_f64());
        // Rank 0 alone reports and writes.
        assert_eq!(t.matches("Model: seresnet18").count(), 1, "{t}");
        assert!(t.contains("data parallel over 2 ranks (mpi)"), "{t}");
        assert!(t.contains("global batch 8"), "{t}");
        assert_equivalent(&one, &two, THREE_STEPS, &SAME_ARITHMETIC);
    }

    /// The same job on the emulated NPUs under mpirun: MPI carries the host collectives and
    /// HCCL's root info (`HcclGetRootInfo` on rank 0, `HcclCommInitRootInfo` everywhere); the
    /// gradients are all-reduced by HCCL in device buckets. Rank r drives NPU r (its local rank).
    #[test]
    fn mpirun_on_the_emulated_npu_uses_hccl_and_matches_one_process() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let recipe = small_job(tmp.path(), THREE_STEPS);
        let emu = emulator();
        let one = tmp.path().join("one");
        let two = tmp.path().join("two");
        one_process(
            &recipe,
            &one,
            &["--device", "ascend"],
            &[("SENET_CANN_LIB", emu.as_str())],
        );
        let export = format!("SENET_CANN_LIB={emu}");
        let (out, secs) = mpirun_job(
            &mpirun,
            &["-x", &export],
            &rank_args(&recipe, &two, &["--device", "ascend"]),
            Duration::from_secs(300),
        );
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        eprintln!("2-rank HCCL job: {:.1}s", secs.as_secs_f64());
        assert!(
            t.contains("data parallel over 2 ranks (mpi; gradients over hccl)"),
            "{t}"
        );
        assert!(t.contains("ascend:0"), "{t}");
        assert_equivalent(&one, &two, THREE_STEPS, &hf32_steps());
    }

    /// Two ranks told to use the same NPU (`--device_id 3` for every rank, as an exported
    /// `DEVICE_ID` would do) stop at once, saying which ranks share which device.
    #[test]
    fn two_ranks_on_one_npu_are_refused() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let recipe = small_job(tmp.path(), THREE_STEPS);
        let out_dir = tmp.path().join("out");
        let export = format!("SENET_CANN_LIB={}", emulator());
        let (out, _) = mpirun_job(
            &mpirun,
            &["-x", &export],
            &rank_args(
                &recipe,
                &out_dir,
                &["--device", "ascend", "--device_id", "3"],
            ),
            Duration::from_secs(120),
        );
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("ranks 0 and 1 both use device 3"), "{t}");
    }

    #[test]
    fn a_killed_rank_ends_the_job_within_60_seconds() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let data = extract_cifar10(tmp.path(), &["cifar10/train/*/000[0-3].jpg"]);
        // Long enough that rank 0 is still training when rank 1 dies at step 2.
        let recipe = write_recipe(tmp.path(), &data, 20);
        let (out, secs) = mpirun_job(
            &mpirun,
            &["-x", "SENET_TEST_ABORT_AT_STEP=2"],
            &[
                "train",
                "-c",
                recipe.to_str().unwrap(),
                "--val_while_train",
                "False",
                "--batch_size",
                "4",
                "--threads",
                "1",
                "--distribute",
                "--ckpt_save_dir",
                tmp.path().join("ck").to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        let t = text(&out);
        eprintln!("job ended after {:.1}s:\n{t}", secs.as_secs_f64());
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("SENET_TEST_ABORT_AT_STEP"), "{t}");
        // Rank 0 did not finish the 20 epochs.
        assert!(!t.contains("Finished at global step"), "{t}");
    }

    #[test]
    fn a_stuck_rank_ends_the_job_after_the_collective_timeout() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let data = extract_cifar10(tmp.path(), &["cifar10/train/*/000[0-3].jpg"]);
        let recipe = write_recipe(tmp.path(), &data, 20);
        let (out, secs) = mpirun_job(
            &mpirun,
            &[
                "-x",
                "SENET_TEST_HANG_AT_STEP=2",
                "-x",
                "SENET_DIST_TIMEOUT=3",
            ],
            &[
                "train",
                "-c",
                recipe.to_str().unwrap(),
                "--val_while_train",
                "False",
                "--batch_size",
                "4",
                "--threads",
                "1",
                "--distribute",
                "--ckpt_save_dir",
                tmp.path().join("ck").to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        let t = text(&out);
        eprintln!("job ended after {:.1}s", secs.as_secs_f64());
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("hanging (SENET_TEST_HANG_AT_STEP)"), "{t}");
        assert!(
            t.contains("senet rank 0 of 2: an all-reduce") && t.contains("more than 3 s"),
            "{t}"
        );
    }

    #[test]
    fn ranks_that_disagree_abort_the_job() {
        let Some(mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let data = extract_cifar10(tmp.path(), &["cifar10/train/*/000[0-3].jpg"]);
        let recipe = write_recipe(tmp.path(), &data, 1);
        let r = recipe.to_str().unwrap();
        let ck = tmp.path().join("ck");
        let ck = ck.to_str().unwrap();
        // MPMD: rank 1 gets another batch size, hence another number of steps per epoch.
        let common = [
            "train",
            "-c",
            r,
            "--val_while_train",
            "False",
            "--threads",
            "1",
            "--distribute",
            "--ckpt_save_dir",
            ck,
        ];
        let mut args: Vec<&str> = common.to_vec();
        args.extend(["--batch_size", "4", ":", "-n", "1", SENET]);
        args.extend(common);
        args.extend(["--batch_size", "2"]);
        // `-n 2` of mpirun_job would start two of the first program: MPMD needs -n 1 each.
        let mut c = Command::new(&mpirun);
        c.args(["--allow-run-as-root", "--oversubscribe", "-n", "1", SENET])
            .args(&args);
        let (out, _) = run_limited(c, Duration::from_secs(60));
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(t.contains("disagree on the run"), "{t}");
        assert!(t.contains("aborting the job"), "{t}");
    }
}
