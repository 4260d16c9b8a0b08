//! What every job starts with: a checkpoint read once, and a model holding its weights.
use crate::checkpoint::{self, timm::TimmLayout, Checkpoint, LoadOptions, LoadReport};
use crate::model::arch::stem_conv_side;
use crate::model::{Arch, SeNet, StemPool};
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

/// Refuses weights whose network pools its stem differently from senet's on
/// `height x width` inputs: senet runs MindCV's stem max pool ([`StemPool::Same`]); timm's
/// resnet.py networks pad it by 1 on every side ([`StemPool::Pad1`]), so their weights would
/// not give timm's logits; timm's legacy senet.py pool ([`StemPool::CeilMode`]) has MindCV's
/// windows when the stem output side is even (224 -> 112). `timm` is the load's
/// [`LoadReport::timm`].
/// Errors: [`Error::Mismatch`] naming `path` and saying why.
pub fn check_stem_pool(
    timm: Option<TimmLayout>,
    path: &Path,
    height: usize,
    width: usize,
) -> Result<()> {
    let Some(layout) = timm else {
        return Ok(());
    };
    let pool = layout.stem_pool();
    let fits = |side: usize| pool.same_windows(StemPool::Same, stem_conv_side(side));
    if fits(height) && fits(width) {
        return Ok(());
    }
    let why = match pool {
        StemPool::Pad1 => "its network pads the stem max pool by 1 on every side (timm \
                           resnet.py's nn.MaxPool2d(3, 2, padding=1)); senet does not run that \
                           pooling yet, and with MindCV's (padding bottom/right) these weights \
                           would not give timm's logits"
            .to_string(),
        _ => format!(
            "its network's stem max pool (timm senet.py's ceil_mode=True) has MindCV's windows \
             only where the stem output side is even, not for {height}x{width} inputs (use an \
             image size of 224, or a multiple of 4)"
        ),
    };
    Err(Error::Mismatch {
        path: path.to_path_buf(),
        model: format!("senet's network ({layout} weights)"),
        details: why,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stem_pool_check_follows_the_windows() {
        let p = Path::new("w.safetensors");
        assert!(check_stem_pool(None, p, 224, 224).is_ok());
        // timm senet.py (ceil_mode): MindCV's windows where the stem output side is even.
        assert!(check_stem_pool(Some(TimmLayout::Legacy), p, 224, 224).is_ok());
        assert!(check_stem_pool(Some(TimmLayout::Legacy), p, 227, 224).is_ok());
        let e = check_stem_pool(Some(TimmLayout::Legacy), p, 224, 226).unwrap_err();
        assert!(e.to_string().contains("224x226"), "{e}");
        // timm resnet.py (padding 1): other windows at every even stem output side.
        let e = check_stem_pool(Some(TimmLayout::ResNet), p, 224, 224).unwrap_err();
        assert!(e.to_string().contains("w.safetensors"), "{e}");
        assert!(e.to_string().contains("by 1 on every side"), "{e}");
    }
}
