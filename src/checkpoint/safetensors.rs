//! safetensors files as MindSpore (>= 2.4) writes them with `save_checkpoint(...,
//! format="safetensors")`: standard Hugging Face safetensors, MindSpore parameter names as keys,
//! metadata `{"format": "ms"}`. Keys are laid out as the safetensors library does (by dtype
//! alignment, then name); senet also records the order the tensors were given in (MindSpore's
//! `parameters_and_names()` order for a converted `.ckpt`) under [`ORDER_KEY`], so that
//! `.ckpt` -> `.safetensors` -> `.ckpt` gives back the same file.

use super::{Checkpoint, SkippedEntry};
use crate::tensor::{DType, RawTensor};
use crate::{Error, Result};
use safetensors::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// Metadata key holding the tensor names in their original order, one per line (written by
/// [`write_safetensors`], read by [`read_safetensors`]; other readers ignore it).
pub const ORDER_KEY: &str = "senet_order";

/// Metadata key saying that the `.ckpt` the file was converted from ended with MindSpore's
/// `crc_num` record (value `"true"`), so that converting back writes one again.
pub const CKPT_CRC_KEY: &str = "senet_ckpt_crc";

fn to_st(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::F64 => Dtype::F64,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::I16 => Dtype::I16,
        DType::U16 => Dtype::U16,
        DType::I32 => Dtype::I32,
        DType::U32 => Dtype::U32,
        DType::I64 => Dtype::I64,
        DType::U64 => Dtype::U64,
        DType::Bool => Dtype::BOOL,
    }
}

fn from_st(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F64 => DType::F64,
        Dtype::I8 => DType::I8,
        Dtype::U8 => DType::U8,
        Dtype::I16 => DType::I16,
        Dtype::U16 => DType::U16,
        Dtype::I32 => DType::I32,
        Dtype::U32 => DType::U32,
        Dtype::I64 => DType::I64,
        Dtype::U64 => DType::U64,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

struct StView<'a>(&'a RawTensor);

impl View for StView<'_> {
    fn dtype(&self) -> Dtype {
        to_st(self.0.dtype)
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0.bytes)
    }
    fn data_len(&self) -> usize {
        self.0.bytes.len()
    }
}

/// Reads a safetensors file. Tensors come out in the order [`ORDER_KEY`] records when it lists
/// exactly the file's tensors, else sorted by name; dtypes without a [`DType`] (FP8, complex,
/// ...) are listed in [`Checkpoint::skipped`]; the header metadata is kept in
/// [`Checkpoint::metadata`]. The file is read whole into memory first
/// ([`crate::fsutil::read_file`]: no memory map, no blocking on a FIFO), then parsed by
/// [`parse_safetensors`].
///
/// Errors: [`Error::Io`] naming the path if it cannot be opened or read, is not a regular file,
/// or changes while read; [`Error::OutOfMemory`]; [`Error::Format`] naming the path if the
/// header or offsets are invalid (e.g. a truncated file).
pub fn read_safetensors(path: &Path) -> Result<Checkpoint> {
    parse_safetensors(path, &crate::fsutil::read_file(path)?)
}

/// Parses the bytes of a safetensors file; `path` is only used in error messages. The header
/// (its length, offsets and shapes) is validated by the `safetensors` crate with checked
/// arithmetic before any tensor is copied; each tensor's bytes are a fallible allocation.
/// Errors: as [`read_safetensors`].
pub fn parse_safetensors(path: &Path, data: &[u8]) -> Result<Checkpoint> {
    let bad = |e: safetensors::SafeTensorError| {
        Error::format(path, format!("invalid safetensors file: {e}"))
    };
    let (_, meta) = SafeTensors::read_metadata(data).map_err(bad)?;
    let st = SafeTensors::deserialize(data).map_err(bad)?;
    let mut out = Checkpoint {
        metadata: meta
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        ..Checkpoint::default()
    };
    let mut views = st.tensors();
    views.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(order) = out.metadata.get(ORDER_KEY) {
        let rank: HashMap<&str, usize> =
            order.split('\n').enumerate().map(|(i, n)| (n, i)).collect();
        if rank.len() == views.len() && views.iter().all(|(n, _)| rank.contains_key(n.as_str())) {
            views.sort_by_key(|(n, _)| rank[n.as_str()]);
        }
    }
    for (name, view) in views {
        match from_st(view.dtype()) {
            Some(dtype) => {
                let src = view.data();
                let mut bytes = crate::mem::with_capacity(src.len(), || {
                    format!("tensor '{name}' of {}", path.display())
                })?;
                bytes.extend_from_slice(src);
                out.tensors.push((
                    name,
                    RawTensor {
                        dtype,
                        shape: view.shape().to_vec(),
                        bytes,
                    },
                ))
            }
            None => out.skipped.push(SkippedEntry {
                name,
                reason: format!("unsupported safetensors dtype {:?}", view.dtype()),
            }),
        }
    }
    Ok(out)
}

/// Writes `entries` as a safetensors file with metadata `{"format": "ms"}` like MindSpore, and
/// their order under [`ORDER_KEY`]; atomic (`<path>.tmp` then rename).
///
/// Errors: [`Error::Shape`] naming a tensor whose byte count differs from shape x dtype size;
/// [`Error::Invalid`] for a duplicate name or a name holding a line break; [`Error::Io`] naming
/// the path on write failure.
pub fn write_safetensors<'a, I>(path: &Path, entries: I) -> Result<()>
where
    I: IntoIterator<Item = (&'a str, &'a RawTensor)>,
{
    write_safetensors_with(path, entries, false)
}

/// [`write_safetensors`], recording [`CKPT_CRC_KEY`] when `ckpt_crc`.
pub(super) fn write_safetensors_with<'a, I>(path: &Path, entries: I, ckpt_crc: bool) -> Result<()>
where
    I: IntoIterator<Item = (&'a str, &'a RawTensor)>,
{
    let mut views: Vec<(&str, StView)> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (name, t) in entries {
        if t.expected_bytes() != Some(t.bytes.len()) {
            return Err(Error::Shape(format!(
                "tensor '{name}': {} bytes for {:?} of shape {:?}",
                t.bytes.len(),
                t.dtype,
                t.shape
            )));
        }
        if !names.insert(name) {
            return Err(Error::Invalid(format!("duplicate tensor name '{name}'")));
        }
        if name.contains('\n') {
            return Err(Error::Invalid(format!(
                "tensor name {name:?} holds a line break"
            )));
        }
        views.push((name, StView(t)));
    }
    let order: Vec<&str> = views.iter().map(|(n, _)| *n).collect();
    let mut meta: HashMap<String, String> = [
        ("format".to_string(), "ms".to_string()),
        (ORDER_KEY.to_string(), order.join("\n")),
    ]
    .into();
    if ckpt_crc {
        meta.insert(CKPT_CRC_KEY.to_string(), "true".to_string());
    }
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::format(path, format!("cannot serialize: {e}")))?;
    crate::fsutil::write_atomic(path, &bytes)
}
