//! What the data-parallel tests share: a small CIFAR-10 job, its single-process reference run
//! and the arguments of one rank, and the comparison of a data-parallel run with that reference
//! (parameters, Momentum accumulators, logged figures) within a tolerance derived from the
//! arithmetic. Used by `tests/dist.rs` (launchers, MPI) and `tests/dist_hccl.rs` (HCCL's
//! rank-table launch on the emulated NPUs).
use super::cli::extract_cifar10;
use super::step::HF32_STEP_TOL;
use senet::checkpoint::read_checkpoint;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A small CPU recipe: seresnet18 at 32x32 with MindCV's train transforms, label smoothing,
/// weight decay and a loss scale (so the equivalence covers them), validating after each epoch.
pub fn write_recipe(dir: &Path, data: &Path, epochs: u32) -> PathBuf {
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

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `senet <args>` with extra environment variables, launcher variables removed.
pub fn senet(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = super::cli::command(args);
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
pub fn rel_max(a: &[f32], b: &[f32]) -> f64 {
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
pub fn metrics(dir: &Path) -> (serde_json::Value, usize) {
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
pub struct Tolerance {
    pub param: f64,
    pub moment: f64,
    pub loss: f64,
    pub same_predictions: bool,
}

/// Both runs do the same arithmetic on the same values except the order of the FLOAT sums the
/// batch split changes (a weight gradient summed over 8 images or over 4 + 4, then all-reduced):
/// the CPU's jobs, and any job of one step.
pub const SAME_ARITHMETIC: Tolerance = Tolerance {
    param: 1e-5,
    moment: 1e-4,
    loss: 1e-5,
    same_predictions: true,
};

/// A CPU job of several steps with the CPU's default data gradients: those of 3x3 stride-1
/// convs by Winograd F(4x4, 3x3) (`SENET_CPU_DGRAD=direct` takes direct sums; that job is
/// [`SAME_ARITHMETIC`]).
///
/// Step 1 is [`SAME_ARITHMETIC`]: each image's forward, loss and data gradients are the same
/// bits in a batch of 8 on 2 threads as in a batch of 4 on 1 (`tests/batch_split.rs`), only
/// the weight gradients' sums over the batch are ordered differently. From step 2 the runs
/// start from parameters a few units of 2^-24 apart. Direct sums move by about that much; the
/// Winograd transforms round intermediate values larger than their outputs, and a change δ
/// of an operand moves such a rounding by a whole unit with probability ~δ/ulp, so the two
/// runs become two differently rounded computations of the same steps, each within the
/// step's rounding error g of exact arithmetic. In the model of [`super::step::logit_bound`]
/// (independent relative errors adding up like a random walk), each of the `W` Winograd data
/// gradients on the backward path perturbs its result by `κ·u` relative, u = 2^-24 and κ
/// [`winograd_growth`], and the step's gradients by `g = sqrt(W)·κ·u`. As in [`hf32_steps`],
/// the gradients of steps 2 and 3 then differ by up to `2g`, and so do the Momentum
/// accumulator and the parameter change relative to their size (sums of the steps' gradients
/// with positive weights), which bounds each parameter's difference relative to its value;
/// the logged losses, of those parameters, by `2g`. Accuracies stay compared: at 2g the
/// runs' logits are far from flipping an argmax of this job (they would flip only for a
/// near-tie, and the job's data are fixed). For the seresnet18 job, W = 13 (every 3x3 conv of
/// the 8 blocks but the 3 strided ones), κ = 256: `2g` = 1.1e-4.
pub fn winograd_steps() -> Tolerance {
    use senet::model::{blocks, Arch};
    let winograd_convs: usize = blocks(Arch::SeResNet18)
        .iter()
        .map(|b| if b.stride == 1 { 2 } else { 1 })
        .sum();
    let u = 2f64.powi(-24);
    let g = (winograd_convs as f64).sqrt() * winograd_growth() * u;
    Tolerance {
        param: 2.0 * g,
        moment: SAME_ARITHMETIC.moment.max(2.0 * g),
        loss: 2.0 * g,
        same_predictions: true,
    }
}

/// κ: how much larger than the direct sum's the magnitudes are that Winograd F(4x4, 3x3)
/// rounds, for unit inputs and weights. In one dimension an output of F(4, 3) is
/// `Aᵀ[(G g) ⊙ (Bᵀ d)]`, whose terms' magnitudes sum to at most
/// `max_o Σ_i |Aᵀ[o][i]| · Σ_j |G[i][j]| · Σ_j |Bᵀ[i][j]|` where the direct sum of 3 taps has
/// 3 (matrices of `kernels/cpu/winograd_avx512.c`, Lavin & Gray 2016); the 2-D transforms are
/// the 1-D ones on rows and columns, so the ratio squares: (48 / 3)² = 256.
pub fn winograd_growth() -> f64 {
    const BT: [[f64; 6]; 6] = [
        [4., 0., -5., 0., 1., 0.],
        [0., -4., -4., 1., 1., 0.],
        [0., 4., -4., -1., 1., 0.],
        [0., -2., -1., 2., 1., 0.],
        [0., 2., -1., -2., 1., 0.],
        [0., 4., 0., -5., 0., 1.],
    ];
    const G: [[f64; 3]; 6] = [
        [0.25, 0., 0.],
        [-1. / 6., -1. / 6., -1. / 6.],
        [-1. / 6., 1. / 6., -1. / 6.],
        [1. / 24., 1. / 12., 1. / 6.],
        [1. / 24., -1. / 12., 1. / 6.],
        [0., 0., 1.],
    ];
    const AT: [[f64; 6]; 4] = [
        [1., 1., 1., 1., 1., 0.],
        [0., 1., -1., 2., -2., 0.],
        [0., 1., 1., 4., 4., 0.],
        [0., 1., -1., 8., -8., 1.],
    ];
    let abs_sum = |row: &[f64]| row.iter().map(|v| v.abs()).sum::<f64>();
    let one_d = AT
        .iter()
        .map(|a| {
            (0..6)
                .map(|i| a[i].abs() * abs_sum(&G[i]) * abs_sum(&BT[i]))
                .sum::<f64>()
        })
        .fold(0.0, f64::max);
    (one_d / 3.0).powi(2)
}

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
pub fn hf32_steps() -> Tolerance {
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
pub fn assert_equivalent(one: &Path, two: &Path, job: Job, tol: &Tolerance) {
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
pub struct Job {
    pub train: &'static str,
    pub steps: usize,
}

/// 30 training images (3 per class): one process with batch 8 takes 30 // 8 = 3 steps; two
/// ranks with batch 4 take 15 images each, 15 // 4 = 3 steps, and batch k of both ranks is
/// batch k of the single process.
pub const THREE_STEPS: Job = Job {
    train: "cifar10/train/*/000[0-2].jpg",
    steps: 3,
};

/// 10 training images: 10 // 8 = 1 step; two ranks take 5 each, 5 // 4 = 1 step.
pub const ONE_STEP: Job = Job {
    train: "cifar10/train/*/0000.jpg",
    steps: 1,
};

/// The job of the equivalence tests in `dir`: `job`'s training images and 10 validation
/// images of CIFAR-10, and the recipe.
pub fn small_job(dir: &Path, job: Job) -> PathBuf {
    let data = extract_cifar10(dir, &[job.train, "cifar10/val/*/0000.jpg"]);
    write_recipe(dir, &data, 1)
}

/// The single-process reference run of [`small_job`]: batch 8, BatchNorm frozen, into `dir`.
pub fn one_process(recipe: &Path, dir: &Path, extra: &[&str], env: &[(&str, &str)]) {
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
pub fn rank_args<'a>(recipe: &'a Path, dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
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
pub fn emulator() -> String {
    super::emu::library().to_str().unwrap().to_string()
}
