//! Loading checkpoint tensors into a model's [`Params`] and saving them, following MindSpore's
//! `load_param_into_net` (exact name match, float dtype conversion) and MindCV's
//! `load_model_checkpoint` (`ema.` prefix stripped when EMA weights are asked for), but strict by
//! default: every mismatch is reported.

use super::timm::{self, TimmImport, TimmLayout};
use super::{read_checkpoint, save_format, Checkpoint, CkptWriter, FileFormat, SkippedEntry};
use crate::model::{param_specs, Arch, Params, SeNet, StemPool};
use crate::tensor::{DType, RawTensor};
use crate::{Error, Result};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Exact names of the non-model entries a MindSpore/MindCV training run saves (optimizer, loss
/// scale, dataset position, RNG state).
pub const TRAINING_STATE_NAMES: &[&str] = &[
    "global_step",
    "updates",
    "learning_rate",
    "momentum",
    "scale_sense",
    "current_iterator_step",
    "last_overflow_iterator_step",
    "epoch_num",
    "epoch_loss_sum",
    "epoch_loss_steps",
    "epoch_top1_hits",
    "epoch_images",
    "epoch_seconds",
    "step_num",
    "random_op",
    "beta1_power",
    "beta2_power",
];

/// Name prefixes of per-parameter optimizer / EMA state (`moments.<name>` of nn.Momentum,
/// `ema.<name>` of MindCV's EMA, `accum.`, `adam_m.`, `adam_v.` of other optimizers).
pub const TRAINING_STATE_PREFIXES: &[&str] = &["moments.", "ema.", "accum.", "adam_m.", "adam_v."];

/// Whether `name` is training state rather than a model parameter (see
/// [`TRAINING_STATE_NAMES`] and [`TRAINING_STATE_PREFIXES`]).
pub fn is_training_state(name: &str) -> bool {
    TRAINING_STATE_NAMES.contains(&name)
        || TRAINING_STATE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// How to load a checkpoint into a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Skip (and report) missing, mis-shaped, non-float and unexpected entries instead of failing,
    /// e.g. to start from a checkpoint with another classifier.
    pub partial: bool,
    /// Load the EMA weights: `ema.<name>` gives `<name>`, the plain `<name>` entries are ignored.
    pub ema: bool,
    /// Fine-tuning: a `classifier.*` entry whose shape differs from the model's (another class
    /// count) leaves that parameter at its initial value and is listed in
    /// [`LoadReport::new_classifier`] instead of failing, as MindCV's `load_pretrained` drops
    /// the classifier when `num_classes` differs from the checkpoint's. Every other entry must
    /// still match.
    pub new_classifier: bool,
}

/// Name prefix of the classifier parameters (`classifier.weight`, `classifier.bias`).
pub const CLASSIFIER_PREFIX: &str = "classifier.";

/// A checkpoint entry that did not fit its model parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Misfit {
    /// Model parameter name.
    pub name: String,
    /// The model's shape.
    pub expected: Vec<usize>,
    /// The checkpoint's shape.
    pub found: Vec<usize>,
    /// The checkpoint's dtype (not a float dtype when the misfit is about the dtype).
    pub dtype: DType,
}

/// What [`load_params`] did. Every checkpoint entry and every model parameter is accounted for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Number of model parameters set from the checkpoint.
    pub loaded: usize,
    /// Parameters loaded from a float dtype other than Float32, with that dtype (converted to f32).
    pub converted: Vec<(String, DType)>,
    /// Training-state entries ignored (`moments.*`, `global_step`, ..., and with `ema` the plain
    /// weights superseded by their `ema.` copies), in file order.
    pub ignored: Vec<String>,
    /// Model parameters absent from the checkpoint, with their shapes (only with `partial`).
    pub missing: Vec<(String, Vec<usize>)>,
    /// Entries whose shape or dtype does not fit (only with `partial`).
    pub misfits: Vec<Misfit>,
    /// Checkpoint entries that are not model parameters, with a description (only with `partial`).
    pub unexpected: Vec<(String, String)>,
    /// Classifier entries of another shape, left at the model's initial values (only with
    /// `new_classifier`).
    pub new_classifier: Vec<Misfit>,
    /// Some when the file was a timm state dict, renamed to MindCV's names
    /// ([`super::timm`]); its network's stem pool is [`TimmLayout::stem_pool`].
    pub timm: Option<TimmLayout>,
}

impl LoadReport {
    /// Whether anything was skipped (missing, misfit or unexpected).
    pub fn skipped_any(&self) -> bool {
        !(self.missing.is_empty() && self.misfits.is_empty() && self.unexpected.is_empty())
    }

    /// One line per skipped item, as in a [`Error::Mismatch`].
    pub fn skipped_lines(&self) -> Vec<String> {
        self.skipped_lines_with(&|n| format!("'{n}'"))
    }

    /// [`LoadReport::skipped_lines`] with each name written by `label` (quoted).
    fn skipped_lines_with(&self, label: &dyn Fn(&str) -> String) -> Vec<String> {
        let mut lines = Vec::new();
        for (n, s) in &self.missing {
            lines.push(format!(
                "missing parameter {}: expected shape {s:?}",
                label(n)
            ));
        }
        for m in &self.misfits {
            lines.push(misfit_line(m, label));
        }
        for (n, d) in &self.unexpected {
            lines.push(format!("unexpected entry {}: {d}", label(n)));
        }
        lines
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loaded {} parameters ({} converted to Float32), ignored {} training-state entries",
            self.loaded,
            self.converted.len(),
            self.ignored.len()
        )?;
        if let Some(layout) = self.timm {
            let pool = match layout {
                TimmLayout::ResNet => "padding 1 on every side",
                TimmLayout::Legacy => "ceil mode, no padding",
            };
            write!(
                f,
                "; from {layout} names (run with timm's stem max pool: {pool})"
            )?;
        }
        for l in self.skipped_lines() {
            write!(f, "\n  skipped {l}")?;
        }
        Ok(())
    }
}

fn misfit_line(m: &Misfit, label: &dyn Fn(&str) -> String) -> String {
    if is_float(m.dtype) {
        format!(
            "mis-shaped parameter {}: expected {:?}, found {:?}",
            label(&m.name),
            m.expected,
            m.found
        )
    } else {
        format!(
            "parameter {}: expected a float tensor of shape {:?}, found {} {:?}",
            label(&m.name),
            m.expected,
            m.dtype.mindspore_name(),
            m.found
        )
    }
}

fn is_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
}

/// Loads the checkpoint at `path` (`.ckpt` or `.safetensors`, by extension) into `params`.
///
/// A timm SE-ResNet/SE-ResNeXt state dict is recognised by its names ([`timm::detect`]) and
/// renamed to MindCV's first ([`timm::to_mindcv`]; errors then name the timm tensors too).
/// Names and shapes must match exactly; Float16/BFloat16/Float64 entries are converted to f32.
/// Training-state entries ([`is_training_state`]) are ignored and listed in the report. With
/// `opts.ema`, `ema.<name>` is loaded into `<name>`. Nothing is modified unless the load succeeds.
///
/// Errors: [`Error::Io`] / [`Error::Format`] from reading (naming the path; an unknown extension
/// is a `Format` error); [`Error::Mismatch`] (unless `opts.partial`) listing, one per line, every
/// missing parameter (expected shape), mis-shaped parameter (expected vs found), non-float entry
/// and unexpected entry; also (even with `partial`) when no entry at all matches a parameter.
pub fn load_params(params: &mut Params, path: &Path, opts: &LoadOptions) -> Result<LoadReport> {
    let label = format!("({} parameter tensors)", params.len());
    load_labelled(params, &read_checkpoint(path)?, path, opts, &label)
}

/// [`load_params`] into a [`SeNet`]; errors name the model's variant and class count. The
/// model's stem pool becomes the weights' network's ([`SeNet::stem_pool`]: timm's for a timm
/// state dict, [`TimmLayout::stem_pool`]; MindCV's otherwise).
pub fn load_model(model: &mut SeNet, path: &Path, opts: &LoadOptions) -> Result<LoadReport> {
    load_model_from(model, &read_checkpoint(path)?, path, opts)
}

/// [`load_model`] from a checkpoint already read from `path` (named in errors), so a caller that
/// also inspects it (e.g. for its class count) reads the file once.
pub fn load_model_from(
    model: &mut SeNet,
    ck: &Checkpoint,
    path: &Path,
    opts: &LoadOptions,
) -> Result<LoadReport> {
    let label = format!("{} ({} classes)", model.arch.name(), model.num_classes);
    let report = load_labelled(&mut model.params, ck, path, opts, &label)?;
    model.stem_pool = report.timm.map_or(StemPool::Same, TimmLayout::stem_pool);
    Ok(report)
}

fn describe(t: &RawTensor) -> String {
    format!("{} {:?}", t.dtype.mindspore_name(), t.shape)
}

fn load_labelled(
    params: &mut Params,
    ck: &Checkpoint,
    path: &Path,
    opts: &LoadOptions,
    label: &str,
) -> Result<LoadReport> {
    let import: Option<TimmImport> = match timm::detect(ck) {
        Some(layout) => Some(timm::to_mindcv(ck, layout, path)?),
        None => None,
    };
    let mut report = load_mindcv_names(
        params,
        import.as_ref().map_or(ck, |i| &i.checkpoint),
        path,
        opts,
        label,
        &|n: &str| match &import {
            Some(i) => i.describe(n),
            None => format!("'{n}'"),
        },
    )?;
    report.timm = import.map(|i| i.layout);
    Ok(report)
}

/// Mismatch lines shown in full up to this many; beyond, the first [`SHOWN_LINES`] and a count.
const MAX_LINES: usize = 20;
/// Lines shown of a longer mismatch list.
const SHOWN_LINES: usize = 10;

/// The mismatch lines of a load, with a first line naming the variant the checkpoint's entries
/// fit when it is another ([`likely_model`]), and a list longer than [`MAX_LINES`] cut to its
/// first [`SHOWN_LINES`] and a count of the rest by kind (a checkpoint of another variant
/// misses or mis-shapes hundreds of parameters).
fn shortened(lines: Vec<String>, report: &LoadReport, likely: Option<String>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(model) = likely {
        out.push(format!(
            "the checkpoint's entries are exactly the parameters of {model}: pass --model \
             {}, or give the checkpoint of this model",
            model.split(' ').next().unwrap_or_default()
        ));
    }
    if lines.len() <= MAX_LINES {
        out.extend(lines);
        return out;
    }
    let n = lines.len();
    out.extend(lines.into_iter().take(SHOWN_LINES));
    out.push(format!(
        "... and {} more ({} missing, {} mis-shaped or not float, {} unexpected in all)",
        n - SHOWN_LINES,
        report.missing.len(),
        report.misfits.len(),
        report.unexpected.len()
    ));
    out
}

/// The variant name and class count whose parameters (names and shapes, [`param_specs`]) the
/// checkpoint's model entries are exactly (training state set aside), if one is. The class count
/// is read from `classifier.bias`.
pub(crate) fn likely_model(ck: &Checkpoint) -> Option<(&'static str, usize)> {
    let entries: HashMap<&str, &[usize]> = ck
        .tensors
        .iter()
        .filter(|(n, _)| !is_training_state(n))
        .map(|(n, t)| (n.as_str(), t.shape.as_slice()))
        .collect();
    let classes = match entries.get("classifier.bias") {
        Some([c]) => *c,
        _ => return None,
    };
    Arch::ALL.into_iter().find_map(|arch| {
        let specs = param_specs(arch, classes);
        let fits = specs.len() == entries.len()
            && specs
                .iter()
                .all(|s| entries.get(s.name.as_str()) == Some(&s.shape.as_slice()));
        fits.then(|| (arch.name(), classes))
    })
}

/// [`load_labelled`] of a checkpoint with MindCV's names; `name_label` writes a parameter's name
/// in error lines.
fn load_mindcv_names(
    params: &mut Params,
    ck: &Checkpoint,
    path: &Path,
    opts: &LoadOptions,
    label: &str,
    name_label: &dyn Fn(&str) -> String,
) -> Result<LoadReport> {
    let mut report = LoadReport::default();
    let mut unexpected: Vec<(String, String)> = Vec::new();
    // Model-parameter candidates: model name -> checkpoint tensor.
    let mut candidates: Vec<(String, &RawTensor)> = Vec::new();
    let has_ema = ck.tensors.iter().any(|(n, _)| n.starts_with("ema."));
    for (name, t) in &ck.tensors {
        if opts.ema {
            if let Some(base) = name.strip_prefix("ema.") {
                candidates.push((base.to_string(), t));
            } else if is_training_state(name) || params.get(name).is_some() {
                report.ignored.push(name.clone());
            } else {
                unexpected.push((name.clone(), describe(t)));
            }
        } else if is_training_state(name) {
            report.ignored.push(name.clone());
        } else {
            candidates.push((name.clone(), t));
        }
    }
    for SkippedEntry { name, reason } in &ck.skipped {
        if is_training_state(name) || (opts.ema && params.get(name).is_some()) {
            report.ignored.push(name.clone());
        } else {
            unexpected.push((name.clone(), reason.clone()));
        }
    }
    let mut accepted: HashMap<String, &RawTensor> = HashMap::new();
    let mut seen: HashMap<&str, ()> = HashMap::new();
    let mut misfits = Vec::new();
    for (name, t) in &candidates {
        let Some(p) = params.get(name) else {
            unexpected.push((name.clone(), describe(t)));
            continue;
        };
        seen.insert(name.as_str(), ());
        if p.shape != t.shape || !is_float(t.dtype) {
            let misfit = Misfit {
                name: name.clone(),
                expected: p.shape.clone(),
                found: t.shape.clone(),
                dtype: t.dtype,
            };
            if opts.new_classifier && is_float(t.dtype) && name.starts_with(CLASSIFIER_PREFIX) {
                report.new_classifier.push(misfit);
            } else {
                misfits.push(misfit);
            }
        } else {
            accepted.insert(name.clone(), *t);
        }
    }
    let missing: Vec<(String, Vec<usize>)> = params
        .specs()
        .iter()
        .filter(|s| !seen.contains_key(s.name.as_str()))
        .map(|s| (s.name.clone(), s.shape.clone()))
        .collect();
    report.missing = missing;
    report.misfits = misfits;
    report.unexpected = unexpected;
    if report.skipped_any() && !opts.partial {
        let mut lines = Vec::new();
        if opts.ema && !has_ema {
            lines.push(
                "no 'ema.*' entries in the checkpoint (EMA weights were asked for)".to_string(),
            );
        }
        // A hint only for another variant (another class count alone shows as two classifier
        // lines).
        let likely = likely_model(ck).filter(|(arch, _)| !label.starts_with(&format!("{arch} ")));
        lines.extend(shortened(
            report.skipped_lines_with(name_label),
            &report,
            likely.map(|(arch, classes)| format!("{arch} ({classes} classes)")),
        ));
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            model: label.to_string(),
            details: lines.join("\n"),
        });
    }
    if accepted.is_empty() {
        // Even a partial load must load something: a wrong file never passes silently.
        let mut lines = vec!["no checkpoint entry matches a model parameter".to_string()];
        lines.extend(report.skipped_lines_with(name_label));
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            model: label.to_string(),
            details: lines.join("\n"),
        });
    }
    // Convert everything first so that a failure leaves `params` untouched.
    let mut converted = Vec::with_capacity(accepted.len());
    for s in params.specs() {
        if let Some(t) = accepted.get(&s.name) {
            let v = t
                .to_f32()
                .map_err(|e| Error::format(path, format!("tensor '{}': {e}", s.name)))?;
            if t.dtype != DType::F32 {
                report.converted.push((s.name.clone(), t.dtype));
            }
            converted.push((s.name.clone(), v));
        }
    }
    // NaN or infinite weights would make every output NaN: refuse them.
    let bad: Vec<String> = converted
        .iter()
        .filter_map(|(name, v)| {
            non_finite_count(&v.data)
                .map(|n| format!("{name}: {n} of {} values are NaN or infinite", v.data.len()))
        })
        .collect();
    if !bad.is_empty() {
        return Err(Error::Mismatch {
            path: path.to_path_buf(),
            model: label.to_string(),
            details: bad.join("\n"),
        });
    }
    report.loaded = converted.len();
    for (name, v) in converted {
        *params
            .get_mut(&name)
            .expect("accepted names are model parameters") = v;
    }
    Ok(report)
}

/// How many of `values` are NaN or infinite; None when all are finite.
pub(crate) fn non_finite_count(values: &[f32]) -> Option<usize> {
    let n = values.iter().filter(|x| !x.is_finite()).count();
    (n > 0).then_some(n)
}

/// How to save parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaveOptions {
    /// `.ckpt` only: append MindSpore's `crc_num` record (`save_checkpoint(crc_check=True)`).
    pub crc_check: bool,
}

/// Saves `params` as Float32 tensors under their MindCV names, in the model's order (which is
/// MindSpore's `parameters_and_names()` order): a MindSpore
/// `.ckpt` (exactly `mindspore.save_checkpoint(net, path)`'s bytes) or a `.safetensors` file
/// (metadata `{"format": "ms"}`), chosen by extension; atomic (temporary file then rename).
///
/// Errors: [`Error::Format`] naming the path for another extension; [`Error::Io`] naming the
/// (temporary) path on write failure.
pub fn save_params(params: &Params, path: &Path) -> Result<()> {
    save_params_with(params, path, &SaveOptions::default())
}

/// [`save_params`] with options (CRC record for `.ckpt`).
pub fn save_params_with(params: &Params, path: &Path, opts: &SaveOptions) -> Result<()> {
    match save_format(path)? {
        FileFormat::Ckpt => {
            let mut w = CkptWriter::create(path, opts.crc_check)?;
            for (spec, t) in params.iter() {
                let raw = RawTensor::from_f32(t);
                w.write(&spec.name, raw.dtype, &raw.shape, &raw.bytes)?;
            }
            w.finish()
        }
        FileFormat::Safetensors => {
            let raws: Vec<(&str, RawTensor)> = params
                .iter()
                .map(|(s, t)| (s.name.as_str(), RawTensor::from_f32(t)))
                .collect();
            super::write_safetensors(path, raws.iter().map(|(n, t)| (*n, t)))
        }
    }
}
