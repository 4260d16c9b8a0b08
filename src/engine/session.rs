//! What every job starts with: a model with a checkpoint's weights, and the CPU backend.
use crate::checkpoint::{self, LoadOptions, LoadReport};
use crate::model::{Arch, SeNet};
use crate::{Error, Result};
use std::path::Path;

/// Builds `arch` and loads the checkpoint at `ckpt` into it (exact names and shapes; see
/// [`checkpoint::load_model`]). `num_classes` None takes the class count from the checkpoint's
/// `classifier.bias`. Never falls back to random weights: an empty or missing path is an error.
/// Errors: [`Error::Config`] for an empty path; [`Error::Io`] naming a missing file;
/// [`Error::Format`] / [`Error::Mismatch`] from the checkpoint.
pub fn load_model(
    arch: Arch,
    num_classes: Option<usize>,
    ckpt: &Path,
    opts: &LoadOptions,
) -> Result<(SeNet, LoadReport)> {
    if ckpt.as_os_str().is_empty() {
        return Err(Error::Config(
            "no checkpoint given (--ckpt_path / ckpt_path): senet never evaluates random weights"
                .into(),
        ));
    }
    match std::fs::metadata(ckpt) {
        Err(e) => return Err(Error::io(ckpt, e)),
        Ok(m) if !m.is_file() => {
            return Err(Error::io(
                ckpt,
                std::io::Error::other("is not a checkpoint file (a directory?)"),
            ))
        }
        Ok(_) => {}
    }
    let classes = match num_classes {
        Some(n) => n,
        None => classes_in_checkpoint(ckpt)?,
    };
    let mut net = SeNet::new(arch, classes, 0)?;
    let report = checkpoint::load_model(&mut net, ckpt, opts)?;
    Ok((net, report))
}

/// Number of classes of the checkpoint at `path` (the length of `classifier.bias`).
/// Errors: [`Error::Format`] naming the file when it has no `classifier.bias`.
pub fn classes_in_checkpoint(path: &Path) -> Result<usize> {
    let ckpt = checkpoint::read_checkpoint(path)?;
    match ckpt.get("classifier.bias") {
        Some(t) if t.shape.len() == 1 => Ok(t.shape[0]),
        _ => Err(Error::format(
            path,
            "no 1-D 'classifier.bias': cannot tell the number of classes (pass --num_classes)",
        )),
    }
}
