//! Training checkpoints: writing `<model>-<epoch>_<batch>.ckpt` with the model parameters and the
//! optimizer state, keeping the latest `keep_checkpoint_max`, and reading the state back to
//! resume.
//!
//! A training checkpoint is a MindSpore `.ckpt` holding, in this order:
//! - every model parameter, BN moving statistics included, Float32, in MindSpore's
//!   `parameters_and_names()` order (what [`crate::checkpoint::save_params`] writes);
//! - `moments.<name>` (Float32, the parameter's shape) for every trainable parameter: the
//!   Momentum accumulators, as MindSpore's `nn.Momentum` names them;
//! - `global_step` (Int32, shape `[1]`): optimizer steps done;
//! - `learning_rate` (Float32, shape `[1]`): the learning rate of the next step;
//! - with a loss-scale manager that checks overflow (`drop_overflow_update`, `dynamic`):
//!   `scale_sense` (Float32, shape `[]`), the current scale, and for a dynamic one
//!   `current_iterator_step` and `last_overflow_iterator_step` (Int32, shape `[]`), the counters
//!   of MindSpore's `DynamicLossScaleUpdateCell` (MindSpore's parameter names).
//!
//! [`crate::checkpoint::load_model`] ignores the last three kinds, so such a file validates and
//! predicts like a plain weights file.
use crate::backend::Backend;
use crate::checkpoint::{read_checkpoint, CkptWriter};
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

/// Writes the training state of `net` to `path` (see the module docs), atomically (through
/// `<path>.tmp`). `params` is a scratch parameter set of the same model, overwritten with the
/// current values. Errors: [`Error::Io`] naming the file, backend download errors.
pub fn save_state<B: Backend>(
    path: &Path,
    net: &TrainNet<B>,
    params: &mut Params,
    global_step: u64,
    next_lr: f32,
) -> Result<()> {
    net.read_params(params)?;
    let step = i32::try_from(global_step).map_err(|_| {
        Error::Invalid(format!(
            "global_step {global_step} does not fit MindSpore's Int32 global_step"
        ))
    })?;
    let mut w = CkptWriter::create(path, false)?;
    for (spec, t) in params.iter() {
        let raw = RawTensor::from_f32(t);
        w.write(&spec.name, raw.dtype, &raw.shape, &raw.bytes)?;
    }
    for (name, t) in net.moments()? {
        let raw = RawTensor::from_f32(&t);
        w.write(&name, raw.dtype, &raw.shape, &raw.bytes)?;
    }
    if let Some(ema) = net.ema_params()? {
        for (name, t) in ema {
            let raw = RawTensor::from_f32(&t);
            w.write(&name, raw.dtype, &raw.shape, &raw.bytes)?;
        }
        // MindCV's TrainStep counter of EMA updates, a float32 scalar.
        w.write("updates", DType::F32, &[], &net.ema_updates().to_le_bytes())?;
    }
    w.write("global_step", DType::I32, &[1], &step.to_le_bytes())?;
    w.write("learning_rate", DType::F32, &[1], &next_lr.to_le_bytes())?;
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
    /// The stored learning rate of the next step, when present.
    pub learning_rate: Option<f32>,
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
}

/// Reads `global_step`, `learning_rate` and the `moments.<name>` of every trainable parameter of
/// `params` from the checkpoint at `path` (the weights are loaded separately, with
/// [`crate::checkpoint::load_model`]).
/// Errors: [`Error::Format`] naming the file when `global_step` is missing or not one integer,
/// or a trainable parameter has no `moments.` entry (a weights-only file: use `--ckpt_path` to
/// start from it instead); read errors as [`read_checkpoint`].
pub fn read_state(path: &Path, params: &Params) -> Result<ResumeState> {
    let ck = read_checkpoint(path)?;
    let not_training = |what: &str| {
        Error::format(
            path,
            format!(
                "{what}: not a training checkpoint written by `senet train` (to start from its \
                 weights without the optimizer state, pass it as --ckpt_path)"
            ),
        )
    };
    let gs = ck
        .get("global_step")
        .ok_or_else(|| not_training("no 'global_step'"))?;
    let global_step = match (gs.dtype, gs.numel(), gs.bytes.as_slice()) {
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
    let global_step = u64::try_from(global_step)
        .map_err(|_| Error::format(path, format!("negative global_step {global_step}")))?;
    let learning_rate = ck
        .get("learning_rate")
        .and_then(|t| t.to_f32().ok())
        .and_then(|t| t.data.first().copied());
    let mut moments = Vec::new();
    for spec in params.specs().iter().filter(|s| s.kind.trainable()) {
        let key = format!("moments.{}", spec.name);
        let t = ck
            .get(&key)
            .ok_or_else(|| not_training(&format!("no '{key}'")))?;
        let t = t
            .to_f32()
            .map_err(|e| Error::format(path, format!("'{key}': {e}")))?;
        moments.push((spec.name.clone(), t));
    }
    let mut ema = Vec::new();
    for spec in params.specs() {
        if let Some(t) = ck.get(&format!("ema.{}", spec.name)) {
            let t = t
                .to_f32()
                .map_err(|e| Error::format(path, format!("'ema.{}': {e}", spec.name)))?;
            ema.push((spec.name.clone(), t));
        }
    }
    let ema_updates = ck
        .get("updates")
        .and_then(|t| t.to_f32().ok())
        .and_then(|t| t.data.first().copied())
        .unwrap_or(0.0);
    let scalar = |name: &str| -> Option<f64> {
        let t = ck.get(name)?;
        match (t.dtype, t.bytes.as_slice()) {
            (DType::F32, [a, b, c, d]) => Some(f32::from_le_bytes([*a, *b, *c, *d]) as f64),
            (DType::I32, [a, b, c, d]) => Some(i32::from_le_bytes([*a, *b, *c, *d]) as f64),
            _ => None,
        }
    };
    let scale_sense = scalar("scale_sense").map(|v| v as f32);
    let scaler_iters = match (
        scalar("current_iterator_step"),
        scalar("last_overflow_iterator_step"),
    ) {
        (Some(c), Some(l)) if c >= 0.0 && l >= 0.0 => Some((c as u64, l as u64)),
        _ => None,
    };
    Ok(ResumeState {
        global_step,
        learning_rate,
        moments,
        ema,
        ema_updates,
        scale_sense,
        scaler_iters,
    })
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
