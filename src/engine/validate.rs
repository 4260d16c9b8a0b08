//! `senet validate`: Top-1, Top-5 and mean loss of a checkpoint on an ImageFolder split, as
//! MindCV's `validate.py`, except that every sample is evaluated (MindCV refines the batch size
//! to a divisor of the sample count; we run the last partial batch as it is).
use super::device::{self, DeviceRequest, Forward};
use super::session::{classes_of, load_model, open_checkpoint};
use crate::checkpoint::LoadOptions;
use crate::config::{Loss, Recipe, Reduction};
use crate::data::{EvalTransform, ImageFolder, Loader, Preprocess};
use crate::model::metrics::Accumulator;
use crate::model::Arch;
use crate::{Error, Result};
use std::path::PathBuf;
use std::time::Instant;

/// A validation run: the recipe (model, data_dir, val_split, batch_size, num_parallel_workers,
/// image_resize, crop_pct, interpolation, mean, std, label_smoothing, num_classes, ckpt_path)
/// after command-line overrides.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// The recipe after command-line overrides.
    pub recipe: Recipe,
    /// Class map file (one folder per line, or the TSV `index<TAB>folder<TAB>name`).
    pub class_map: Option<PathBuf>,
    /// The device (`--device`, `--device_id`, `--threads`); `auto` follows the recipe's
    /// `device_target`, computing in the precision of `val_amp_level`.
    pub device: DeviceRequest,
    /// Whose eval transform (`--preprocess`): MindCV's (the default) or timm's.
    pub preprocess: Preprocess,
}

/// The result, with accuracies in percent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ValidateReport {
    /// MindCV model name.
    pub model: String,
    /// Samples evaluated (all of them).
    pub num_samples: usize,
    /// Top-1 accuracy, percent.
    pub top1: f64,
    /// Top-5 accuracy, percent.
    pub top5: f64,
    /// Mean loss (the recipe's cross entropy with label smoothing).
    pub loss: f64,
    /// Samples per second of wall time, decoding included.
    pub images_per_second: f64,
    /// The device the network ran on (`cpu`, `ascend:0 (float32)`).
    pub device: String,
    /// Why `--device auto` did not use the recipe's `device_target`, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_note: Option<String>,
    /// How the class folders were numbered, when they are fewer than the model's classes and no
    /// class map was given (folder k of the sorted names is class k, as MindSpore's
    /// `ImageFolderDataset` numbers them: right for a data set of its own, wrong for a subset of
    /// ImageNet's folders).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_note: Option<String>,
}

/// Checks that the recipe asks only for what `senet validate` implements: of the keys MindCV's
/// `validate.py` reads, `pretrained: True` (no downloads: the weights come from `ckpt_path`),
/// `loss` other than `CE` and `reduction` other than `mean` (the reported loss) are refused with
/// an [`Error::Config`] naming the key. The other keys validate.py reads are implemented or have
/// no effect on the figures (`mode`, `drop_rate`, `drop_path_rate`, `aux_factor`,
/// `log_interval`); keys it does not read are accepted and ignored, as there.
pub fn check_supported(r: &Recipe) -> Result<()> {
    let refuse = |key: &str, value: &dyn std::fmt::Display, why: &str| {
        Err(Error::Config(format!(
            "key '{key}' = {value}: not supported by senet validate ({why})"
        )))
    };
    if r.pretrained {
        return refuse(
            "pretrained",
            &true,
            "no downloads: pass the released weights as --ckpt_path",
        );
    }
    if r.loss != Loss::Ce {
        return refuse("loss", &r.loss, "the loss reported is cross entropy: CE");
    }
    if r.reduction != Reduction::Mean {
        return refuse("reduction", &r.reduction, "the loss reported is the mean");
    }
    Ok(())
}

/// Runs the validation. `progress(done, total)` is called after each batch.
/// Errors: values [`check_supported`] refuses, unknown model, missing or mismatched checkpoint,
/// unreadable data dir, an image that cannot be decoded (named), a label outside the model's
/// classes.
pub fn run(
    opts: &ValidateOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<ValidateReport> {
    let r = &opts.recipe;
    check_supported(r)?;
    let arch = Arch::from_name(&r.model)?;
    let transform = super::eval_transform(r)?.with_preprocess(opts.preprocess);
    let folder = ImageFolder::open(
        &PathBuf::from(&r.data_dir),
        &r.val_split,
        opts.class_map.as_deref(),
    )?;
    let ckpt_path = PathBuf::from(&r.ckpt_path);
    let ckpt = open_checkpoint(&ckpt_path)?;
    let num_classes = match r.num_classes {
        Some(n) => n,
        None => {
            let data_classes = folder.classes.len();
            // A clearer message than a classifier shape mismatch when the counts differ.
            if let Ok(ckpt_classes) = classes_of(&ckpt, &ckpt_path) {
                if ckpt_classes != data_classes {
                    return Err(Error::Config(format!(
                        "{} has {ckpt_classes} classes but {} has {data_classes} class folders: \
                         pass --num_classes {ckpt_classes} (or a --class_map giving the \
                         checkpoint's class indices)",
                        ckpt_path.display(),
                        folder.root.display()
                    )));
                }
            }
            data_classes
        }
    };
    let class_note = (opts.class_map.is_none() && folder.classes.len() < num_classes).then(|| {
        format!(
            "{} has {} class folders for a {num_classes}-class model and no --class_map: \
             folder k of the sorted names is class k (MindSpore's ImageFolderDataset \
             numbering); if the folders are some of the model's classes (e.g. ImageNet \
             synsets), pass --class_map with the model's class list, or the accuracy is wrong",
            folder.root.display(),
            folder.classes.len()
        )
    });
    if let Some((path, label)) = folder.samples.iter().find(|(_, l)| *l >= num_classes) {
        return Err(Error::Config(format!(
            "{}: class index {label} is outside the model's {num_classes} classes",
            path.display()
        )));
    }
    // `ema: True` validates the `ema.*` weights of a checkpoint, as MindCV's validate.py.
    let load = LoadOptions {
        ema: r.ema,
        ..LoadOptions::default()
    };
    let (dev, device_note) = device::resolve(&opts.device, r.device_target, r.val_amp_level)?;
    let (net, _report) = load_model(arch, Some(num_classes), &ckpt, &ckpt_path, &load)?;
    // The checkpoint's tensors (as large as the network, twice with momentum or EMA) and the
    // network are not needed once the inference copy exists: the peak comes later.
    drop(ckpt);
    let mut inf = device::inference(&net, dev)?;
    drop(net);
    let (acc, secs) = evaluate(
        inf.as_mut(),
        folder.samples,
        transform,
        r.batch_size,
        r.num_parallel_workers,
        r.label_smoothing,
        &mut progress,
    )?;
    Ok(ValidateReport {
        model: arch.name().to_string(),
        num_samples: acc.samples,
        top1: acc.top1(),
        top5: acc.top5(),
        loss: acc.loss(),
        images_per_second: acc.samples as f64 / secs.max(1e-9),
        device: dev.describe(),
        device_note,
        class_note,
    })
}

/// Evaluates `inf` on `samples` (`(image, class index)`, every one, in order; the last batch
/// may be smaller) through MindCV's eval `transform`, `batch_size` images per forward and
/// `num_workers` decoding threads (0 = one per core). Returns the Top-1/Top-5/loss accumulator
/// (loss: cross entropy with `label_smoothing`) and the wall time in seconds, decoding included.
/// `progress(done, total)` is called after each batch. Used by `senet validate` and by the
/// training loop's validation (on a network built from the current parameters).
/// Errors: an image that cannot be decoded (named), a forward error; labels must be below the
/// network's classes (checked by the callers; a label out of range panics in the accumulator).
pub fn evaluate(
    inf: &mut dyn Forward,
    samples: Vec<(PathBuf, usize)>,
    transform: EvalTransform,
    batch_size: usize,
    num_workers: usize,
    label_smoothing: f64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Accumulator, f64)> {
    let total = samples.len();
    let num_classes = inf.num_classes();
    let loader = Loader::new(samples, transform, batch_size, num_workers)?;
    let mut acc = Accumulator::default();
    let t0 = Instant::now();
    for batch in loader {
        let batch = batch?;
        let logits = inf.forward(&batch.images)?;
        acc.add(&logits.data, num_classes, &batch.labels, label_smoothing);
        progress(acc.samples, total);
    }
    Ok((acc, t0.elapsed().as_secs_f64()))
}
