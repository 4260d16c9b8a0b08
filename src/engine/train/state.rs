//! Training checkpoints: writing `<model>-<epoch>_<batch>.ckpt` with the model parameters and the
//! optimizer state, and `optim_<model>.ckpt` with the optimizer alone, keeping the latest
//! `keep_checkpoint_max`, and reading the state back to resume.
//!
//! A training checkpoint is what MindCV 0.3 saves of its training cell
//! (`save_checkpoint(train_network)` in `StateMonitor`), in this order:
//! - every model parameter, BN moving statistics included, Float32, in MindSpore's
//!   `parameters_and_names()` order (what [`crate::checkpoint::save_params`] writes);
//! - `global_step` (Int32, shape `[1]`): optimizer steps done;
//! - `momentum` (Float32, shape `[]`): nn.Momentum's momentum;
//! - `moments.<name>` (Float32, the parameter's shape) for every trainable parameter: the
//!   Momentum accumulators, as MindSpore's `nn.Momentum` names them;
//! - `learning_rate` (Float32, shape `[total steps]`): the whole per-step list the optimizer was
//!   built with (MindCV passes the scheduler's list; nn.Momentum reads `learning_rate[global_step]`);
//! - with EMA: `ema.<name>` for every parameter and `updates` (Float32, shape `[]`), MindCV's
//!   `TrainStep` EMA state;
//! - with a loss-scale manager that checks overflow (`drop_overflow_update`, `dynamic`):
//!   `scale_sense` (Float32, shape `[]`), the current scale, and for a dynamic one
//!   `current_iterator_step` and `last_overflow_iterator_step` (Int32, shape `[]`), the counters
//!   of MindSpore's `DynamicLossScaleUpdateCell` (MindSpore's parameter names);
//! - `epoch_loss_sum` (Float64, shape `[]`), `epoch_loss_steps`, `epoch_top1_hits` and
//!   `epoch_images` (Int64, shape `[]`): the sums of the steps of the epoch so far
//!   ([`EpochSums`]), so that a run resumed inside an epoch logs that epoch's loss and training
//!   accuracy in `metrics.jsonl` over all its steps (senet's names; MindSpore's
//!   `load_param_into_net` leaves them aside). No wall time is kept: a checkpoint depends on
//!   the computation only.
//!
//! `optim_<model>.ckpt` is what MindCV 0.3 saves of the optimizer alone
//! (`save_checkpoint(optimizer, "<ckpt_save_dir>/optim_<model>.ckpt")`, overwritten at every step
//! checkpoint) and what its `train.py --ckpt_path X --resume_opt True` loads into the optimizer:
//! `global_step`, the trainable parameters (the optimizer holds them), `momentum`, `moments.*`,
//! `learning_rate`, in that order (the order and dtypes of MindSpore 2.10's file, checked with
//! MindCV 0.3's own run). MindSpore loads it only when the new run's `learning_rate` list has the
//! same length (`epoch_size` x steps per epoch).
//!
//! [`crate::checkpoint::load_model`] ignores the training state, so such a file validates and
//! predicts like a plain weights file.
use crate::backend::Backend;
use crate::checkpoint::{read_checkpoint, Checkpoint, CkptWriter};
use crate::model::Params;
use crate::optim::{LossScaler, TrainNet};
use crate::tensor::{DType, RawTensor};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// File name of the checkpoint written after `batch` batches of epoch `epoch` (1-based):
/// `<model>-<epoch>_<batch>.ckpt`, as MindCV / MindSpore's `ModelCheckpoint` name them (at the
/// end of an epoch `batch` = steps per epoch).
pub fn step_ckpt_name(model: &str, epoch: u64, batch: usize) -> String {
    format!("{model}-{epoch}_{batch}.ckpt")
}

/// File name of the best-validation checkpoint: `<model>_best.ckpt`.
pub fn best_ckpt_name(model: &str) -> String {
    format!("{model}_best.ckpt")
}

/// File name of the optimizer checkpoint MindCV's resume reads: `optim_<model>.ckpt`.
pub fn optim_ckpt_name(model: &str) -> String {
    format!("optim_{model}.ckpt")
}

/// The optimizer's scalars and learning-rate list, as nn.Momentum holds them.
#[derive(Debug, Clone, Copy)]
pub struct OptimizerState<'a> {
    /// Optimizer steps done.
    pub global_step: u64,
    /// nn.Momentum's `momentum`.
    pub momentum: f32,
    /// The learning rate of every step of the run (`epoch_size` x steps per epoch).
    pub learning_rate: &'a [f32],
}

impl OptimizerState<'_> {
    /// `global_step` as MindSpore's Int32. Errors: [`Error::Invalid`] when it does not fit.
    fn step_i32(&self) -> Result<i32> {
        i32::try_from(self.global_step).map_err(|_| {
            Error::Invalid(format!(
                "global_step {} does not fit MindSpore's Int32 global_step",
                self.global_step
            ))
        })
    }
}

/// What the steps of an epoch add up to so far (all of them: a resumed run carries the sums of
/// the steps before the resume in its checkpoint).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EpochSums {
    /// Sum of the steps' global-batch mean losses, over the steps whose loss is finite.
    pub loss_sum: f64,
    /// Steps summed in `loss_sum`.
    pub loss_steps: u64,
    /// Top-1 hits over the epoch's images so far.
    pub top1_hits: u64,
    /// Training images so far.
    pub images: u64,
}

/// The checkpoint entries of [`EpochSums`] (see the module docs).
const EPOCH_SUM_NAMES: [&str; 4] = [
    "epoch_loss_sum",
    "epoch_loss_steps",
    "epoch_top1_hits",
    "epoch_images",
];

/// Writes `params` (all, or only the trainable ones) as Float32 entries.
fn write_params(w: &mut CkptWriter, params: &Params, trainable_only: bool) -> Result<()> {
    for (spec, t) in params.iter() {
        if !trainable_only || spec.kind.trainable() {
            let raw = RawTensor::from_f32(t);
            w.write(&spec.name, raw.dtype, &raw.shape, &raw.bytes)?;
        }
    }
    Ok(())
}

/// Writes nn.Momentum's state: `global_step`, (with `params`) the trainable parameters,
/// `momentum`, `moments.*`, `learning_rate`.
fn write_optimizer<B: Backend>(
    w: &mut CkptWriter,
    net: &TrainNet<B>,
    params: Option<&Params>,
    opt: &OptimizerState,
) -> Result<()> {
    w.write(
        "global_step",
        DType::I32,
        &[1],
        &opt.step_i32()?.to_le_bytes(),
    )?;
    if let Some(p) = params {
        write_params(w, p, true)?;
    }
    w.write("momentum", DType::F32, &[], &opt.momentum.to_le_bytes())?;
    for (name, t) in net.moments()? {
        let raw = RawTensor::from_f32(&t);
        w.write(&name, raw.dtype, &raw.shape, &raw.bytes)?;
    }
    let bytes: Vec<u8> = opt
        .learning_rate
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    w.write(
        "learning_rate",
        DType::F32,
        &[opt.learning_rate.len()],
        &bytes,
    )
}

/// Writes the training state of `net` to `path` (see the module docs), atomically (through a
/// temporary file). `params` is a scratch parameter set of the same model, overwritten with the
/// current values; `epoch` the sums of the current epoch's steps.
/// Nothing non-finite is ever written: a parameter or Momentum accumulator holding a NaN or an
/// infinity (a finite gradient times a huge learning rate can overflow a weight) is an error
/// naming it, and the file is not created.
/// Errors: [`Error::Invalid`] naming `path` and the non-finite tensor; [`Error::Io`] naming the
/// file, backend download errors, a `global_step` beyond Int32.
pub fn save_state<B: Backend>(
    path: &Path,
    net: &TrainNet<B>,
    params: &mut Params,
    opt: &OptimizerState,
    epoch: &EpochSums,
) -> Result<()> {
    net.read_params(params)?;
    refuse_writing_non_finite(path, net, params, opt.global_step)?;
    let mut w = CkptWriter::create(path, false)?;
    write_params(&mut w, params, false)?;
    write_optimizer(&mut w, net, None, opt)?;
    if let Some(ema) = net.ema_params()? {
        for (name, t) in ema {
            let raw = RawTensor::from_f32(&t);
            w.write(&name, raw.dtype, &raw.shape, &raw.bytes)?;
        }
        // MindCV's TrainStep counter of EMA updates, a float32 scalar.
        w.write("updates", DType::F32, &[], &net.ema_updates().to_le_bytes())?;
    }
    let scaler = net.loss_scaler();
    if scaler.checks_overflow() {
        w.write(
            "scale_sense",
            DType::F32,
            &[],
            &scaler.scale().to_le_bytes(),
        )?;
    }
    if let LossScaler::Dynamic {
        cur_iter,
        last_overflow_iter,
        ..
    } = scaler
    {
        for (name, v) in [
            ("current_iterator_step", cur_iter),
            ("last_overflow_iterator_step", last_overflow_iter),
        ] {
            let v = i32::try_from(*v)
                .map_err(|_| Error::Invalid(format!("{name} {v} does not fit Int32")))?;
            w.write(name, DType::I32, &[], &v.to_le_bytes())?;
        }
    }
    write_epoch_sums(&mut w, epoch)?;
    w.finish()
}

/// [`Error::Invalid`] naming `path` when a parameter or Momentum accumulator of `net` holds a
/// NaN or an infinity (`params` holds the current values).
fn refuse_writing_non_finite<B: Backend>(
    path: &Path,
    net: &TrainNet<B>,
    params: &Params,
    global_step: u64,
) -> Result<()> {
    let moments = net.moments()?;
    let tensors = params.iter().map(|(s, t)| (s.name.as_str(), t));
    let mut tensors = tensors.chain(moments.iter().map(|(n, t)| (n.as_str(), t)));
    match tensors.find(|(_, t)| crate::checkpoint::non_finite_count(&t.data).is_some()) {
        Some((name, _)) => Err(Error::Invalid(format!(
            "not writing {}: '{name}' holds NaN or infinite values after global step \
             {global_step} (lower lr or set clip_grad)",
            path.display()
        ))),
        None => Ok(()),
    }
}

/// Writes the [`EpochSums`] entries.
fn write_epoch_sums(w: &mut CkptWriter, epoch: &EpochSums) -> Result<()> {
    let [loss_sum, loss_steps, hits, images] = EPOCH_SUM_NAMES;
    w.write(loss_sum, DType::F64, &[], &epoch.loss_sum.to_le_bytes())?;
    for (name, v) in [
        (loss_steps, epoch.loss_steps),
        (hits, epoch.top1_hits),
        (images, epoch.images),
    ] {
        let v = i64::try_from(v).map_err(|_| Error::Invalid(format!("{name} {v} overflows")))?;
        w.write(name, DType::I64, &[], &v.to_le_bytes())?;
    }
    Ok(())
}

/// Writes MindCV's `optim_<model>.ckpt` (see the module docs) of `net` to `path`, atomically.
/// `params` is a scratch parameter set as in [`save_state`].
/// Errors: as [`save_state`].
pub fn save_optimizer<B: Backend>(
    path: &Path,
    net: &TrainNet<B>,
    params: &mut Params,
    opt: &OptimizerState,
) -> Result<()> {
    net.read_params(params)?;
    let mut w = CkptWriter::create(path, false)?;
    write_optimizer(&mut w, net, Some(params), opt)?;
    w.finish()
}

/// The loss-scale manager `fresh` (from the recipe) with the state a checkpoint saved: the
/// scale and, for a dynamic manager, MindSpore's iteration counters. A manager without state
/// in the checkpoint (written with a fixed scale) is returned unchanged.
pub fn restore_scaler(fresh: LossScaler, st: &ResumeState) -> LossScaler {
    match (fresh, st.scale_sense) {
        (
            LossScaler::Fixed {
                drop_overflow_update,
                ..
            },
            Some(scale),
        ) => LossScaler::Fixed {
            scale,
            drop_overflow_update,
        },
        (LossScaler::Dynamic { factor, window, .. }, Some(scale)) => match st.scaler_iters {
            Some((cur_iter, last_overflow_iter)) => LossScaler::Dynamic {
                scale,
                factor,
                window,
                cur_iter,
                last_overflow_iter,
            },
            None => LossScaler::dynamic(scale),
        },
        (fresh, _) => fresh,
    }
}

/// The optimizer state of a training checkpoint.
#[derive(Debug, Clone)]
pub struct ResumeState {
    /// Optimizer steps done (`global_step`).
    pub global_step: u64,
    /// The stored `momentum`, when present.
    pub momentum: Option<f32>,
    /// The stored `learning_rate`: MindCV's whole per-step list (senet before this layout
    /// stored one value, the next step's), when present.
    pub learning_rate: Option<Vec<f32>>,
    /// `(parameter name, Momentum accumulator)` for every trainable parameter.
    pub moments: Vec<(String, crate::Tensor)>,
    /// `(parameter name, EMA value)` for every parameter, when the checkpoint has `ema.*`.
    pub ema: Vec<(String, crate::Tensor)>,
    /// EMA updates done (`updates`), 0 without EMA.
    pub ema_updates: f32,
    /// The loss scale (`scale_sense`), when the run checked overflow.
    pub scale_sense: Option<f32>,
    /// A dynamic loss scale's (`current_iterator_step`, `last_overflow_iterator_step`).
    pub scaler_iters: Option<(u64, u64)>,
    /// The sums of the steps of the epoch the checkpoint was written in, when it has them.
    pub epoch_sums: Option<EpochSums>,
}

/// The Momentum side of a checkpoint: `global_step`, `momentum`, `learning_rate`, `moments.*`.
struct MomentumState {
    global_step: u64,
    momentum: Option<f32>,
    learning_rate: Option<Vec<f32>>,
    moments: Vec<(String, crate::Tensor)>,
}

/// The `global_step` of `ck` (read from `path`), None when it has none.
/// Errors: [`Error::Format`] when it is not one non-negative integer.
fn global_step_of(ck: &Checkpoint, path: &Path) -> Result<Option<u64>> {
    let Some(gs) = ck.get("global_step") else {
        return Ok(None);
    };
    let step = match (gs.dtype, gs.numel(), gs.bytes.as_slice()) {
        (DType::I32, 1, b) => i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64,
        (DType::I64, 1, b) => i64::from_le_bytes(b.try_into().expect("8 bytes")),
        _ => {
            return Err(Error::format(
                path,
                format!(
                    "'global_step' is {} {:?}, expected one Int32",
                    gs.dtype.mindspore_name(),
                    gs.shape
                ),
            ))
        }
    };
    u64::try_from(step)
        .map(Some)
        .map_err(|_| Error::format(path, format!("negative global_step {step}")))
}

/// The Momentum state of `ck` (read from `path`) for the trainable parameters of `params`.
/// Errors: [`Error::Format`] naming the file when `global_step` or a `moments.` entry is missing
/// (`what` says what kind of file was expected) or malformed.
fn momentum_state(
    ck: &Checkpoint,
    path: &Path,
    params: &Params,
    what: &str,
) -> Result<MomentumState> {
    let not_training = |missing: &str| Error::format(path, format!("no '{missing}': not {what}"));
    let global_step = global_step_of(ck, path)?.ok_or_else(|| not_training("global_step"))?;
    let f32s = |name: &str| -> Result<Option<Vec<f32>>> {
        ck.get(name)
            .map(|t| {
                t.to_f32()
                    .map(|t| t.data)
                    .map_err(|e| Error::format(path, format!("'{name}': {e}")))
            })
            .transpose()
    };
    let momentum = f32s("momentum")?.and_then(|v| v.first().copied());
    let learning_rate = f32s("learning_rate")?;
    let mut moments = Vec::new();
    for spec in params.specs().iter().filter(|s| s.kind.trainable()) {
        let key = format!("moments.{}", spec.name);
        let t = ck.get(&key).ok_or_else(|| not_training(&key))?;
        let t = t
            .to_f32()
            .map_err(|e| Error::format(path, format!("'{key}': {e}")))?;
        moments.push((spec.name.clone(), t));
    }
    refuse_non_finite(path, "moments.", &moments)?;
    let scalars = momentum.iter().chain(learning_rate.iter().flatten());
    if scalars.clone().any(|v| !v.is_finite()) {
        return Err(Error::format(
            path,
            "'momentum' or 'learning_rate' is NaN or infinite: the optimizer state is damaged",
        ));
    }
    Ok(MomentumState {
        global_step,
        momentum,
        learning_rate,
        moments,
    })
}

impl ResumeState {
    /// The state of `momentum` with the training cell's state (EMA, loss scale) of `ck`, read
    /// from `path`.
    fn new(momentum: MomentumState, ck: &Checkpoint, path: &Path, params: &Params) -> Result<Self> {
        let mut ema = Vec::new();
        for spec in params.specs() {
            if let Some(t) = ck.get(&format!("ema.{}", spec.name)) {
                let t = t
                    .to_f32()
                    .map_err(|e| Error::format(path, format!("'ema.{}': {e}", spec.name)))?;
                ema.push((spec.name.clone(), t));
            }
        }
        refuse_non_finite(path, "ema.", &ema)?;
        let scalar = |name: &str| -> Option<f64> {
            let t = ck.get(name)?;
            match (t.dtype, t.bytes.as_slice()) {
                (DType::F32, [a, b, c, d]) => Some(f32::from_le_bytes([*a, *b, *c, *d]) as f64),
                (DType::I32, [a, b, c, d]) => Some(i32::from_le_bytes([*a, *b, *c, *d]) as f64),
                (DType::F64, b) => Some(f64::from_le_bytes(b.try_into().ok()?)),
                (DType::I64, b) => Some(i64::from_le_bytes(b.try_into().ok()?) as f64),
                _ => None,
            }
        };
        if let Some(bad) = ["scale_sense", "updates"]
            .into_iter()
            .chain(EPOCH_SUM_NAMES)
            .find(|n| scalar(n).is_some_and(|v| !v.is_finite()))
        {
            return Err(Error::format(
                path,
                format!("'{bad}' is NaN or infinite: the optimizer state is damaged"),
            ));
        }
        let epoch_sums = match EPOCH_SUM_NAMES.map(scalar) {
            [Some(loss_sum), Some(loss_steps), Some(hits), Some(images)]
                if [loss_steps, hits, images].iter().all(|v| *v >= 0.0) =>
            {
                Some(EpochSums {
                    loss_sum,
                    loss_steps: loss_steps as u64,
                    top1_hits: hits as u64,
                    images: images as u64,
                })
            }
            _ => None,
        };
        let scaler_iters = match (
            scalar("current_iterator_step"),
            scalar("last_overflow_iterator_step"),
        ) {
            (Some(c), Some(l)) if c >= 0.0 && l >= 0.0 => Some((c as u64, l as u64)),
            _ => None,
        };
        Ok(ResumeState {
            global_step: momentum.global_step,
            momentum: momentum.momentum,
            learning_rate: momentum.learning_rate,
            moments: momentum.moments,
            ema,
            ema_updates: scalar("updates").unwrap_or(0.0) as f32,
            scale_sense: scalar("scale_sense").map(|v| v as f32),
            scaler_iters,
            epoch_sums,
        })
    }
}

/// Refuses optimizer or EMA state (`<prefix><name>` entries) holding NaN or infinite values,
/// naming every such entry and its count: [`Error::Format`] naming `path`.
fn refuse_non_finite(path: &Path, prefix: &str, state: &[(String, crate::Tensor)]) -> Result<()> {
    let bad: Vec<String> = state
        .iter()
        .filter_map(|(name, t)| {
            crate::checkpoint::non_finite_count(&t.data).map(|n| {
                format!(
                    "'{prefix}{name}': {n} of {} values are NaN or infinite",
                    t.data.len()
                )
            })
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(Error::format(
        path,
        format!(
            "damaged optimizer state (resuming would train on NaN weights):\n{}",
            bad.join("\n")
        ),
    ))
}

/// Reads `global_step`, `momentum`, `learning_rate`, the `moments.<name>` of every trainable
/// parameter of `params`, the EMA and the loss-scale state from the training checkpoint at
/// `path` (the weights are loaded separately, with [`crate::checkpoint::load_model`]).
/// Errors: [`Error::Format`] naming the file when `global_step` is missing or not one integer,
/// or a trainable parameter has no `moments.` entry (a weights-only file: use `--ckpt_path` to
/// start from it instead); read errors as [`read_checkpoint`].
pub fn read_state(path: &Path, params: &Params) -> Result<ResumeState> {
    let ck = read_checkpoint(path)?;
    let what = "a training checkpoint (to start from its weights without the optimizer state, \
                pass it as --ckpt_path)";
    let m = momentum_state(&ck, path, params, what)?;
    ResumeState::new(m, &ck, path, params)
}

/// MindCV's split resume: the Momentum state from the optimizer file `optim`
/// (`optim_<model>.ckpt`), the EMA and loss-scale state from the checkpoint `weights` (the
/// file whose weights are loaded). Errors: as [`read_state`] for `optim`; [`Error::Format`]
/// naming both files when `weights` holds a `global_step` other than `optim`'s (an optimizer
/// file of another save: MindCV overwrites it at every step checkpoint).
pub fn read_split_state(weights: &Path, optim: &Path, params: &Params) -> Result<ResumeState> {
    let ck_o = read_checkpoint(optim)?;
    let m = momentum_state(
        &ck_o,
        optim,
        params,
        "an optimizer checkpoint (optim_<model>.ckpt)",
    )?;
    let ck_w = read_checkpoint(weights)?;
    if let Some(step) = global_step_of(&ck_w, weights)? {
        if step != m.global_step {
            return Err(Error::format(
                optim,
                format!(
                    "global_step {} but the checkpoint being resumed, {}, is at global_step \
                     {step}: this optimizer file belongs to another save (MindCV overwrites it \
                     at every step checkpoint); resume from the matching <model>-<epoch>_<batch>.ckpt \
                     or with --resume {}",
                    m.global_step,
                    weights.display(),
                    weights.display()
                ),
            ));
        }
    }
    ResumeState::new(m, &ck_w, weights, params)
}

/// `(epoch, batch)` of a step checkpoint name `<model>-<epoch>_<batch>.ckpt`, else None.
pub fn parse_step_ckpt_name(model: &str, file_name: &str) -> Option<(u64, u64)> {
    let rest = file_name.strip_prefix(model)?.strip_prefix('-')?;
    let rest = rest.strip_suffix(".ckpt")?;
    let (e, b) = rest.split_once('_')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !(digits(e) && digits(b)) {
        return None;
    }
    Some((e.parse().ok()?, b.parse().ok()?))
}

/// MindCV's `latest_k` policy: keeps the `keep` most recent step checkpoints
/// `<model>-<epoch>_<batch>.ckpt` in `dir` (most recent by modification time, then by
/// `(epoch, batch)`), deletes the others and returns them. `<model>_best.ckpt` and other files
/// are never touched. Errors: [`Error::Io`] naming the folder or a file that cannot be removed.
pub fn prune_checkpoints(dir: &Path, model: &str, keep: usize) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(eb) = parse_step_ckpt_name(model, &name) {
            let mtime = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_err(|e| Error::io(entry.path(), e))?;
            found.push((mtime, eb, entry.path()));
        }
    }
    found.sort();
    let excess = found.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for (_, _, path) in found.into_iter().take(excess) {
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        removed.push(path);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names() {
        assert_eq!(
            step_ckpt_name("seresnet18", 3, 781),
            "seresnet18-3_781.ckpt"
        );
        assert_eq!(
            parse_step_ckpt_name("seresnet18", "seresnet18-3_781.ckpt"),
            Some((3, 781))
        );
        assert_eq!(
            parse_step_ckpt_name("seresnet18", "seresnet18_best.ckpt"),
            None
        );
        assert_eq!(
            parse_step_ckpt_name("seresnet18", "seresnet18-3_.ckpt"),
            None
        );
        assert_eq!(
            parse_step_ckpt_name("seresnet18", "seresnet18-3_7.ckpt.tmp"),
            None
        );
        assert_eq!(
            parse_step_ckpt_name("seresnet1", "seresnet18-3_7.ckpt"),
            None
        );
    }
}
