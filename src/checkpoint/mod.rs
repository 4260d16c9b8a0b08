//! Checkpoints: MindSpore `.ckpt` ([`read_ckpt`], [`write_ckpt`]) and safetensors
//! ([`read_safetensors`], [`write_safetensors`]) files, either by extension
//! ([`read_checkpoint`], [`write_checkpoint`]), and loading them into / saving them from a
//! model's parameters by name ([`load_model`], [`save_params`]); timm's names for the same
//! tensors ([`timm`], a public module: its functions read as `timm::detect`, `timm::to_mindcv`).
//!
//! The file formats live in private modules (`mindspore`, with its protobuf schema `proto`;
//! `safetensors`; `load`): what callers use is re-exported here.
//!
//! Follows MindSpore's `mindspore/train/serialization.py` and `checkpoint.proto`
//! (see `shared/reference/mindcv.md` section 6); tensors are [`RawTensor`]s holding exactly the
//! stored bytes.

mod load;
mod mindspore;
mod proto;
mod safetensors;
pub mod timm;

pub use load::{
    is_training_state, load_model, load_model_from, load_params, save_params, save_params_with,
    LoadOptions, LoadReport, Misfit, SaveOptions, CLASSIFIER_PREFIX, TRAINING_STATE_NAMES,
    TRAINING_STATE_PREFIXES,
};
pub(crate) use load::{likely_model, non_finite_count};
pub use mindspore::{parse_ckpt, read_ckpt, write_ckpt, CkptWriter};
pub use safetensors::{parse_safetensors, read_safetensors, write_safetensors};

use crate::tensor::RawTensor;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// An entry of a checkpoint file that is not returned as a tensor (a `"str"` entry, a map
/// tensor, `random_op` state, an unsupported dtype), with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEntry {
    /// The entry's tag (name).
    pub name: String,
    /// Why it is not a tensor, e.g. "string entry", "map tensor (3 tensors)".
    pub reason: String,
}

/// The contents of a checkpoint file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// Named tensors: file order for `.ckpt` (chunks merged), name order for safetensors.
    pub tensors: Vec<(String, RawTensor)>,
    /// Entries not returned as tensors.
    pub skipped: Vec<SkippedEntry>,
    /// `.ckpt` only: the CRC-32 of a trailing `crc_num` record, when present (always verified).
    pub crc: Option<u32>,
    /// safetensors only: the header's `__metadata__` (MindSpore writes `format: ms`).
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// The tensor named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Tensor names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }
}

/// Checkpoint file formats, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// MindSpore protobuf `.ckpt`.
    Ckpt,
    /// Hugging Face `.safetensors`.
    Safetensors,
}

/// The format of `path` from its extension (`.ckpt` or `.safetensors`).
/// Errors: [`Error::Format`] naming the path for a directory or any other extension.
pub fn save_format(path: &Path) -> Result<FileFormat> {
    if path.is_dir() {
        return Err(Error::format(
            path,
            "is a directory: expected a .ckpt or .safetensors file",
        ));
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("ckpt") => Ok(FileFormat::Ckpt),
        Some("safetensors") => Ok(FileFormat::Safetensors),
        _ => Err(Error::format(
            path,
            "unknown checkpoint format: expected a .ckpt or .safetensors file",
        )),
    }
}

/// Whether `path` is a pickled PyTorch file (`torch.save`): a `.pth`, `.pt`, `.bin` or `.pkl`
/// name, or content starting as a zip archive (`torch.save`'s format since PyTorch 1.6, also
/// PyTorch Lightning's `.ckpt`) or a pickle (protocol 2-5).
fn is_pytorch_pickle(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if matches!(ext.as_deref(), Some("pth" | "pt" | "bin" | "pkl")) {
        return true;
    }
    let mut head = [0u8; 4];
    // Only a regular file is peeked at (a FIFO would block the open): anything else is left to
    // the reader, which refuses it naming the file.
    let read = crate::fsutil::open_regular(path).is_ok_and(|(mut f, _)| {
        use std::io::Read;
        f.read_exact(&mut head).is_ok()
    });
    read && (head == *b"PK\x03\x04" || (head[0] == 0x80 && (2..=5).contains(&head[1])))
}

/// Reads a `.ckpt` ([`read_ckpt`]) or `.safetensors` ([`read_safetensors`]) file, by extension.
/// A pickled PyTorch file is refused before anything is unpickled, with the command that saves
/// a state dict as safetensors (which senet reads, timm's names included: [`timm`]).
/// Errors: as those; [`Error::Format`] naming the path for a pickle or another extension.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    if is_pytorch_pickle(path) {
        return Err(Error::format(
            path,
            "a pickled PyTorch file (torch.save): senet does not read pickles (loading one can \
             run arbitrary code). Save the weights as safetensors and pass that file: \
             safetensors.torch.save_file(model.state_dict(), \"model.safetensors\")",
        ));
    }
    match save_format(path)? {
        FileFormat::Ckpt => read_ckpt(path),
        FileFormat::Safetensors => read_safetensors(path),
    }
}

/// Writes every tensor of `ckpt` to `path` as `.ckpt` or `.safetensors`, by extension, in
/// `ckpt`'s order (a `.safetensors` records it, see [`safetensors::ORDER_KEY`]); skipped entries
/// are not written. A `crc_num` record ends a `.ckpt` when `ckpt` came from a `.ckpt` with one
/// (or from a `.safetensors` converted from such a file), so a conversion to `.safetensors` and
/// back gives the original bytes. Atomic (temporary name, then rename).
/// Errors: [`Error::Format`] for another extension, [`Error::Io`] naming the path.
pub fn write_checkpoint(path: &Path, ckpt: &Checkpoint) -> Result<()> {
    let entries = ckpt.tensors.iter().map(|(n, t)| (n.as_str(), t));
    let crc = ckpt.crc.is_some()
        || ckpt
            .metadata
            .get(safetensors::CKPT_CRC_KEY)
            .map(String::as_str)
            == Some("true");
    match save_format(path)? {
        FileFormat::Ckpt => write_ckpt(path, entries, crc),
        FileFormat::Safetensors => safetensors::write_safetensors_with(path, entries, crc),
    }
}
