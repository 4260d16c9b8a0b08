//! What every job starts with: a checkpoint read once, and a model holding its weights.
use crate::checkpoint::{self, timm::TimmLayout, Checkpoint, LoadOptions, LoadReport};
use crate::model::params::param_specs;
use crate::model::{Arch, Params, SeNet, MAX_CLASSES};
use crate::Tensor;
use crate::{Error, Result};
use std::path::Path;

/// Reads the checkpoint a job evaluates. Never lets a job fall back to random weights: an empty
/// path, a missing file or a directory is an error.
/// Errors: [`Error::Config`] for an empty path; [`Error::Io`] naming a missing file or one that
/// is not a regular file (a directory, a FIFO, a device); [`Error::Format`] from reading it.
pub fn open_checkpoint(path: &Path) -> Result<Checkpoint> {
    if path.as_os_str().is_empty() {
        return Err(Error::Config(
            "no checkpoint given (--ckpt_path / ckpt_path): senet never evaluates random weights"
                .into(),
        ));
    }
    // A directory, a FIFO or a device is refused by the reader itself, on the open file
    // (`fsutil::read_file`): no check-then-open race, no blocking open.
    checkpoint::read_checkpoint(path)
}

/// Number of classes of a checkpoint read from `path` (the length of `classifier.bias`, or of
/// timm's `fc.bias` / `last_linear.bias`).
/// Errors: [`Error::Format`] naming the file when it has no such 1-D tensor, or one whose
/// length is not a class count senet builds (1..=[`MAX_CLASSES`]).
pub fn classes_of(ck: &Checkpoint, path: &Path) -> Result<usize> {
    let bias = match checkpoint::timm::detect(ck) {
        Some(TimmLayout::ResNet) => "fc.bias",
        Some(TimmLayout::Legacy) => "last_linear.bias",
        None => "classifier.bias",
    };
    match ck.get(bias) {
        Some(t) if t.shape.len() == 1 && (1..=MAX_CLASSES).contains(&t.shape[0]) => Ok(t.shape[0]),
        Some(t) if t.shape.len() == 1 => Err(Error::format(
            path,
            format!(
                "'{bias}' has {} entries: not a class count senet builds (1 to {MAX_CLASSES})",
                t.shape[0]
            ),
        )),
        _ => Err(Error::format(
            path,
            format!("no 1-D '{bias}': cannot tell the number of classes"),
        )),
    }
}

/// Builds `arch` and loads `ck` (read from `path`) into it, exactly (names and shapes; see
/// [`checkpoint::load_model`]). `num_classes` None takes the class count from the checkpoint.
///
/// The model is only built once the checkpoint's classifier (`classifier.weight`, or
/// `ema.classifier.weight` with `opts.ema`) is there with the shape `[classes, features]` of
/// that model: the size of what is allocated is backed by what the file holds, so a bare
/// `classifier.bias` of a million entries cannot make a job build an 8 GB model.
/// Errors: as [`classes_of`]; [`Error::Mismatch`] from that check or the load;
/// [`Error::OutOfMemory`] building the model.
pub fn load_model(
    arch: Arch,
    num_classes: Option<usize>,
    ck: &Checkpoint,
    path: &Path,
    opts: &LoadOptions,
) -> Result<(SeNet, LoadReport)> {
    let classes = match num_classes {
        Some(n) => n,
        None => classes_of(ck, path)?,
    };
    let name = match (checkpoint::timm::detect(ck), opts.ema) {
        (Some(TimmLayout::ResNet), _) => "fc.weight",
        (Some(TimmLayout::Legacy), _) => "last_linear.weight",
        (None, true) => "ema.classifier.weight",
        (None, false) => "classifier.weight",
    };
    let expected = [classes, arch.num_features()];
    if !opts.partial && ck.get(name).map(|t| &t.shape[..]) != Some(&expected[..]) {
        let err = mismatch_without_weights(arch, classes, ck, path, opts);
        return Err(with_class_count_hint(err, classes, ck, path));
    }
    let mut net = SeNet::new(arch, classes, 0)?;
    let report = checkpoint::load_model_from(&mut net, ck, path, opts)?;
    Ok((net, report))
}

/// `err` with a last line naming the `--num_classes` to pass, when `ck` (read from `path`) has
/// a class count other than the `asked` one (a recipe's or a flag's); `err` unchanged otherwise.
fn with_class_count_hint(err: Error, asked: usize, ck: &Checkpoint, path: &Path) -> Error {
    match (err, classes_of(ck, path)) {
        (
            Error::Mismatch {
                path,
                model,
                details,
            },
            Ok(has),
        ) if has != asked => Error::Mismatch {
            details: format!(
                "{details}\nthe checkpoint has {has} classes, {asked} were asked for (the recipe's \
                 or --num_classes): pass --num_classes {has}"
            ),
            path,
            model,
        },
        (err, _) => err,
    }
}

/// The [`Error::Mismatch`] a load of `ck` into `arch` with `classes` classes reports (every
/// offending parameter), computed on the parameters' names and shapes alone: no weight is
/// allocated. Only for a checkpoint known not to fit (its classifier differs).
fn mismatch_without_weights(
    arch: Arch,
    classes: usize,
    ck: &Checkpoint,
    path: &Path,
    opts: &LoadOptions,
) -> Error {
    let shapes_only = Params::new(param_specs(arch, classes), |s| {
        Ok(Tensor {
            shape: s.shape.clone(),
            data: Vec::new(),
        })
    });
    let mut net = match shapes_only {
        Ok(params) => SeNet {
            arch,
            num_classes: classes,
            params,
            stem_pool: Default::default(),
        },
        Err(e) => return e,
    };
    match checkpoint::load_model_from(&mut net, ck, path, opts) {
        Err(e) => e,
        // Not reached (the classifier misfits), but never report success for it.
        Ok(_) => Error::Mismatch {
            path: path.to_path_buf(),
            model: format!("{} ({classes} classes)", arch.name()),
            details: "the classifier does not fit".into(),
        },
    }
}
