//! `senet train`: MindCV's `train.py` on the CPU backend — epochs over `data_dir/train_split`,
//! the per-step learning-rate list, `nn.Momentum` with weight decay and a fixed loss scale,
//! validation while training with `<model>_best.ckpt`, step checkpoints with the optimizer
//! state (`latest_k`), exact resumption, and data-parallel training over the processes of an
//! `mpirun` job (`distribute: True`; see [`run`] and [`crate::dist`]).
//!
//! Modules: `data` (epoch order, batches, the per-sample transform seam), [`state`]
//! (checkpoints, retention, resume), `log` (epoch records, `metrics.jsonl`, log lines), and the
//! loop itself ([`run`], in `trainer`). Reference: `shared/reference/mindcv.md` sections 3 and 5.
mod data;
mod log;
pub mod state;
mod trainer;

pub use log::{EpochRecord, METRICS_FILE};
pub use trainer::run;

use crate::config::{AmpLevel, CkptSavePolicy, Loss, Optimizer, Recipe, Reduction};
use crate::dist::Communicator;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A training run: the recipe after command-line overrides, and what the command line adds.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// The recipe (model, data_dir, train_split, val_split, batch_size, epoch_size, lr schedule,
    /// optimizer, loss, checkpointing keys, ...) after overrides. `ckpt_path`, when set, gives the
    /// start weights (an exact load; the optimizer starts from zero); with `pretrained: True`
    /// all but a classifier of another class count (fine-tuning); with `resume_opt: True` the
    /// run resumes from it as MindCV's does (the optimizer state of `optim_<model>.ckpt`).
    pub recipe: Recipe,
    /// Class map (one folder per line, or the TSV `index<TAB>folder<TAB>name`).
    pub class_map: Option<PathBuf>,
    /// The device (`--device`, `--device_id`, `--threads`); `auto` follows the recipe's
    /// `device_target`, in the precision of `amp_level`. On the CPU, results are bit-identical
    /// only between runs with the same thread count.
    pub device: crate::engine::device::DeviceRequest,
    /// A training checkpoint written by `senet train` or MindCV to continue from: parameters,
    /// Momentum accumulators and `global_step` (and EMA, loss-scale state) are restored from it, and the run goes on at the same step, learning
    /// rate and position in the same epoch's data order.
    pub resume: Option<PathBuf>,
    /// Stop once the global step (optimizer steps since the start of training, a resumed run
    /// included) reaches this value, saving a checkpoint there. None: run every epoch.
    pub max_steps: Option<u64>,
    /// Set (e.g. by a Ctrl-C handler) to stop after the current step: a checkpoint is saved and
    /// [`run`] returns with [`StopReason::Interrupted`]. In a data-parallel job the ranks stop
    /// together, after the step in which any of them saw its flag.
    pub stop: Option<Arc<AtomicBool>>,
    /// The communicator of a data-parallel job (recipe key `distribute: True`). None: [`run`]
    /// makes it with [`crate::dist::init`] from the launch environment (MPI is then initialised
    /// and finalised by this run: to run several jobs in one MPI process, make it once and pass
    /// it here). Must be a single process when `distribute` is false.
    pub comm: Option<Arc<dyn Communicator>>,
    /// Frozen BatchNorm: normalise with the moving statistics while training and leave them
    /// unchanged (MindSpore `nn.BatchNorm2d(use_batch_statistics=False)`; not a MindCV recipe
    /// key). Every sample's gradient then depends on that sample alone, so N ranks with batch b
    /// compute what one process with batch N*b does (the data-parallel equivalence check);
    /// also useful to fine-tune with small batches. gamma and beta are still trained.
    pub frozen_batch_norm: bool,
}

/// Something that happened during [`run`], for progress display and logging.
#[derive(Debug, Clone)]
pub enum TrainEvent<'a> {
    /// The run is set up.
    Started {
        /// Model name.
        model: &'a str,
        /// Classifier outputs.
        num_classes: usize,
        /// Training images.
        train_samples: usize,
        /// Validation images, when validating while training.
        val_samples: Option<usize>,
        /// Optimizer steps per epoch.
        steps_per_epoch: usize,
        /// Epochs of the whole run (`epoch_size`).
        num_epochs: u64,
        /// Global step the run starts at (0, or the resumed step).
        start_step: u64,
    },
    /// An informational message (resume, precision, transform notes).
    Note(String),
    /// An epoch's batches begin; `first_batch` > 0 when resuming inside it.
    EpochStart {
        /// Epoch, 1-based.
        epoch: u64,
        /// Batches already done in this epoch.
        first_batch: usize,
        /// Batches in the epoch.
        steps_per_epoch: usize,
    },
    /// One optimizer step done.
    Step {
        /// Epoch, 1-based.
        epoch: u64,
        /// Batches done in this epoch, this one included (1-based).
        batch: usize,
        /// Global step after this step.
        global_step: u64,
        /// The batch's mean loss (unscaled).
        loss: f64,
        /// The learning rate this step used.
        lr: f32,
        /// Training images per second in this epoch so far, decoding included.
        images_per_second: f64,
    },
    /// MindCV's `log_interval` line (`Epoch: [e/E], batch: [b/B], loss: ..., lr: ..., time: ...`).
    Log(String),
    /// Validation progress (`done` of `total` images).
    Validating {
        /// Images evaluated so far.
        done: usize,
        /// Images to evaluate.
        total: usize,
    },
    /// A validation finished: MindCV's line.
    Validated(String),
    /// An epoch finished.
    Epoch(&'a EpochRecord),
    /// A checkpoint was written.
    Saved(&'a Path),
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum StopReason {
    /// Every epoch ran.
    Finished,
    /// `max_steps` was reached.
    MaxSteps,
    /// The stop flag was set (Ctrl-C).
    Interrupted,
}

/// The outcome of [`run`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    /// Model name.
    pub model: String,
    /// Global step at the end.
    pub global_step: u64,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Why the run ended.
    pub stop: StopReason,
    /// The last checkpoint written (None if none was).
    pub last_checkpoint: Option<PathBuf>,
    /// Best validation Top-1 (percent) seen, this run or (when resuming) before.
    pub best_val_top1: Option<f64>,
    /// Records of the epochs finished by this run.
    pub epochs: Vec<EpochRecord>,
    /// This process's rank in the job (0 for a single process); only rank 0 logs and saves.
    pub rank: usize,
    /// Processes in the job (1 without `distribute`).
    pub world_size: usize,
}

/// The error for a recipe value `senet train` does not implement.
fn unsupported(key: &str, value: impl std::fmt::Display, why: &str) -> Error {
    Error::Config(format!(
        "key '{key}' = {value}: not supported by senet train{why}"
    ))
}

/// Checks that the recipe asks only for what `senet train` implements exactly. Every value that
/// would change the result and is not implemented is an [`Error::Config`] naming the key:
/// `opt` other than `momentum`; `loss` other than `CE`, `reduction` other than `mean`;
/// `mixup`, `cutmix` > 0, `auto_augment` set, `aug_splits` > 0, `re_prob` > 0,
/// `aug_repeats` > 1; `gradient_accumulation_steps` > 1, `layer_decay` set, `drop_rate` /
/// `drop_path_rate` > 0; `amp_level` O1/O3;
/// `pretrained: true` without `ckpt_path` (no downloads) or with `resume_opt`; `num_samples`
/// set; `in_channels` != 3; `ckpt_save_policy: top_k`; `resume_opt: true` without `ckpt_path`.
/// `pretrained: true` with `ckpt_path` fine-tunes (see [`run`]); `resume_opt: true` with
/// `ckpt_path` is MindCV's resume.
///
/// `amp_level: O2` (the SENet recipes) computes in float16 on Ascend (MindSpore's O2: BatchNorm,
/// loss and master weights in float32) and in float32 on the CPU, which has no float16 path.
/// `loss_scale_type` fixed (with or without `drop_overflow_update`), dynamic and auto follow
/// MindCV's loss-scale managers ([`crate::optim::LossScaler`]). `distribute: true` is checked
/// against the launch environment by [`run`] ([`crate::dist::init`]). Keys without effect
/// (`mode`, `device_target`, `dataset_sink_mode`, `val_amp_level`,
/// `eval_shuffle`, `aux_factor` — SENet has no auxiliary head) are accepted.
pub fn check_supported(r: &Recipe) -> Result<()> {
    if r.opt != Optimizer::Momentum {
        return Err(unsupported("opt", r.opt, " (only 'momentum', nn.Momentum)"));
    }
    if r.loss != Loss::Ce {
        return Err(unsupported("loss", r.loss, " (only 'CE')"));
    }
    if r.reduction != Reduction::Mean {
        return Err(unsupported("reduction", r.reduction, " (only 'mean')"));
    }
    for (key, v) in [
        ("mixup", r.mixup),
        ("cutmix", r.cutmix),
        ("re_prob", r.re_prob),
    ] {
        if v > 0.0 {
            return Err(unsupported(key, v, " yet (set it to 0)"));
        }
    }
    if let Some(a) = &r.auto_augment {
        return Err(unsupported("auto_augment", a, " yet (set it to None)"));
    }
    if r.aug_splits > 0 {
        return Err(unsupported(
            "aug_splits",
            r.aug_splits,
            " yet (set it to 0)",
        ));
    }
    if r.aug_repeats > 1 {
        return Err(unsupported(
            "aug_repeats",
            r.aug_repeats,
            " yet (set it to 0)",
        ));
    }
    if r.gradient_accumulation_steps > 1 {
        return Err(unsupported(
            "gradient_accumulation_steps",
            r.gradient_accumulation_steps,
            " yet (set it to 1)",
        ));
    }
    if let Some(v) = r.layer_decay {
        return Err(unsupported("layer_decay", v, " yet"));
    }
    for (key, v) in [
        ("drop_rate", r.drop_rate),
        ("drop_path_rate", r.drop_path_rate),
    ] {
        if let Some(v) = v.filter(|v| *v > 0.0) {
            return Err(unsupported(key, v, " yet (SENet's default is 0)"));
        }
    }
    if matches!(r.amp_level, AmpLevel::O1 | AmpLevel::O3) {
        return Err(unsupported(
            "amp_level",
            r.amp_level,
            " (O0, or O2: float16 compute on Ascend, float32 on the CPU)",
        ));
    }
    if r.pretrained && r.ckpt_path.is_empty() {
        return Err(unsupported(
            "pretrained",
            true,
            " without ckpt_path (senet downloads nothing: fine-tune with --pretrained True \
             --ckpt_path <the released weights>)",
        ));
    }
    if r.pretrained && r.resume_opt {
        return Err(unsupported(
            "pretrained",
            true,
            " with resume_opt: True (fine-tuning starts a new run; resuming continues one)",
        ));
    }
    if let Some(n) = r.num_samples {
        return Err(unsupported("num_samples", n, " yet"));
    }
    if r.in_channels != 3 {
        return Err(unsupported("in_channels", r.in_channels, " (RGB only)"));
    }
    if r.ckpt_save_policy == Some(CkptSavePolicy::TopK) {
        return Err(unsupported(
            "ckpt_save_policy",
            "top_k",
            " yet (latest_k or None)",
        ));
    }
    if r.ckpt_save_policy == Some(CkptSavePolicy::LatestK) && r.keep_checkpoint_max == 0 {
        return Err(Error::Config(
            "key 'keep_checkpoint_max' = 0: latest_k needs at least 1".into(),
        ));
    }
    if r.resume_opt && r.ckpt_path.is_empty() {
        return Err(unsupported(
            "resume_opt",
            true,
            " without ckpt_path (MindCV's resume: --ckpt_path <model>-<e>_<b>.ckpt --resume_opt \
             True)",
        ));
    }
    Ok(())
}
