//! `senet inspect`: what a checkpoint file holds (tensors, dtypes, shapes), which variant and
//! class count its parameters are, and which entries are training state — without building a
//! model or loading weights.
use std::path::Path;

use crate::checkpoint::{self, is_training_state, timm, Checkpoint, FileFormat};
use crate::Result;

/// One tensor of a checkpoint.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TensorInfo {
    /// Its name in the file.
    pub name: String,
    /// MindSpore's name of its element type (`Float32`, `Float16`, `Int32`, ...).
    pub dtype: &'static str,
    /// Its shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Whether it is training state (optimizer moments, step, learning rate, ...) rather than a
    /// model parameter ([`checkpoint::is_training_state`]).
    pub training_state: bool,
}

/// What [`inspect`] reports of a file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// `ckpt` (MindSpore protobuf) or `safetensors`.
    pub format: &'static str,
    /// `mindcv`, or timm's layout (`timm`, `timm_legacy`) by its tensor names.
    pub names: &'static str,
    /// The variant whose parameters (names and shapes) the file's model entries are exactly,
    /// if one is (e.g. `seresnet50`), and its class count; None for anything else.
    pub model: Option<&'static str>,
    /// The class count of that variant.
    pub num_classes: Option<usize>,
    /// Elements of the model parameters (training state excluded), saturating.
    pub parameter_values: usize,
    /// Every tensor, in the file's order.
    pub tensors: Vec<TensorInfo>,
    /// Entries the reader skipped (not tensors), with why.
    pub skipped: Vec<String>,
}

/// Reads `path` (a `.ckpt` or `.safetensors` file) and describes it.
/// Errors: as [`checkpoint::read_checkpoint`] (each names the file); timm files are also
/// checked as [`timm::to_mindcv`] does, to name the variant.
pub fn inspect(path: &Path) -> Result<Inspection> {
    let ck = checkpoint::read_checkpoint(path)?;
    let format = match checkpoint::save_format(path)? {
        FileFormat::Ckpt => "ckpt",
        FileFormat::Safetensors => "safetensors",
    };
    let (names, model) = match timm::detect(&ck) {
        Some(layout) => {
            let import = timm::to_mindcv(&ck, layout, path)?;
            (layout.name(), checkpoint::likely_model(&import.checkpoint))
        }
        None => ("mindcv", checkpoint::likely_model(&ck)),
    };
    Ok(Inspection {
        format,
        names,
        model: model.map(|(m, _)| m),
        num_classes: model.map(|(_, c)| c),
        parameter_values: parameter_values(&ck),
        tensors: tensors(&ck),
        skipped: ck
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.name, s.reason))
            .collect(),
    })
}

fn tensors(ck: &Checkpoint) -> Vec<TensorInfo> {
    ck.tensors
        .iter()
        .map(|(name, t)| TensorInfo {
            name: name.clone(),
            dtype: t.dtype.mindspore_name(),
            shape: t.shape.clone(),
            training_state: is_training_state(name),
        })
        .collect()
}

fn parameter_values(ck: &Checkpoint) -> usize {
    ck.tensors
        .iter()
        .filter(|(n, _)| !is_training_state(n))
        .fold(0usize, |acc, (_, t)| acc.saturating_add(t.numel()))
}
