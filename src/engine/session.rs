//! What every job starts with: a checkpoint read once, and a model holding its weights.
use crate::checkpoint::{self, timm::TimmLayout, Checkpoint, LoadOptions, LoadReport};
use crate::model::{Arch, SeNet};
use crate::{Error, Result};
use std::path::Path;

/// Reads the checkpoint a job evaluates. Never lets a job fall back to random weights: an empty
/// path, a missing file or a directory is an error.
/// Errors: [`Error::Config`] for an empty path; [`Error::Io`] naming a missing file or a
/// directory; [`Error::Format`] from reading it.
pub fn open_checkpoint(path: &Path) -> Result<Checkpoint> {
    if path.as_os_str().is_empty() {
        return Err(Error::Config(
            "no checkpoint given (--ckpt_path / ckpt_path): senet never evaluates random weights"
                .into(),
        ));
    }
    match std::fs::metadata(path) {
        Err(e) => return Err(Error::io(path, e)),
        Ok(m) if !m.is_file() => {
            return Err(Error::io(
                path,
                std::io::Error::other("is not a checkpoint file (a directory?)"),
            ))
        }
        Ok(_) => {}
    }
    checkpoint::read_checkpoint(path)
}

/// Number of classes of a checkpoint read from `path` (the length of `classifier.bias`, or of
/// timm's `fc.bias` / `last_linear.bias`).
/// Errors: [`Error::Format`] naming the file when it has no such 1-D tensor.
pub fn classes_of(ck: &Checkpoint, path: &Path) -> Result<usize> {
    let bias = match checkpoint::timm::detect(ck) {
        Some(TimmLayout::ResNet) => "fc.bias",
        Some(TimmLayout::Legacy) => "last_linear.bias",
        None => "classifier.bias",
    };
    match ck.get(bias) {
        Some(t) if t.shape.len() == 1 => Ok(t.shape[0]),
        _ => Err(Error::format(
            path,
            format!("no 1-D '{bias}': cannot tell the number of classes (pass --num_classes)"),
        )),
    }
}

/// Builds `arch` and loads `ck` (read from `path`) into it, exactly (names and shapes; see
/// [`checkpoint::load_model`]). `num_classes` None takes the class count from the checkpoint.
/// Errors: as [`classes_of`]; [`Error::Mismatch`] from the load.
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
    let mut net = SeNet::new(arch, classes, 0)?;
    let report = checkpoint::load_model_from(&mut net, ck, path, opts)?;
    Ok((net, report))
}
