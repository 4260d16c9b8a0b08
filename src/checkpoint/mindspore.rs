//! MindSpore `.ckpt` files: reading and writing exactly the layout of MindSpore's
//! `save_checkpoint` / `load_checkpoint` (`mindspore/train/serialization.py`,
//! schema in `mindspore/ccsrc/utils/checkpoint.proto`).
//!
//! Layout: a concatenation of independently serialized `Checkpoint` messages, one per tensor
//! (or per 512 MiB chunk of a large tensor: every chunk is another `Value` with the same tag and
//! the full dims), in parameter order, no header. Scalars are written with `dims = [0]`. With
//! `crc_check` the file ends with `b"crc_num"` + the zlib CRC-32 of all preceding bytes as 10
//! big-endian bytes (17 bytes).

use super::proto::{self, ValueKind};
use super::{Checkpoint, SkippedEntry};
use crate::mem;
use crate::tensor::{DType, RawTensor};
use crate::{Error, Result};
use prost::bytes::Bytes;
use prost::Message;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Chunk size of large tensors: MindSpore's `1024 * SLICE_SIZE` bytes (512 MiB).
pub const SLICE_BYTES: usize = 512 * 1024 * 1024;

/// Length of the trailing CRC record: `b"crc_num"` + 10 big-endian bytes.
const CRC_RECORD_LEN: usize = 17;
const CRC_MAGIC: &[u8] = b"crc_num";

/// Reads a MindSpore `.ckpt` file.
///
/// Consecutive values with the same tag are concatenated (chunked tensors); dims may be packed or
/// unpacked; dims `[]` or `[0]` with one element's bytes give a scalar (shape `[]`), `[0]` with
/// no bytes an empty tensor of shape `[0]`. Entries of type `"str"`, map tensors, `random_op` and
/// unknown dtypes are listed in [`Checkpoint::skipped`]. A trailing `crc_num` record is stripped
/// and verified.
///
/// The file is read whole into memory first ([`crate::fsutil::read_file`]), never memory-mapped:
/// a file truncated or rewritten in place while it loads is an error, not a `SIGBUS`; a FIFO or
/// device is refused without blocking. Every length, offset and count taken from the file is
/// checked arithmetic, and every buffer is a fallible allocation.
///
/// Errors: [`Error::Io`] naming the path if it cannot be opened or read, is not a regular file,
/// or changes while read; [`Error::OutOfMemory`] naming it; [`Error::Format`] naming the path
/// for an empty, truncated or corrupt file (saying which entry and how many bytes it declares vs
/// has), a CRC mismatch, a tag repeated non-consecutively, chunks of one tag with different
/// dims/dtype, or a tensor whose byte count differs from dims x dtype size (naming the tag).
pub fn read_ckpt(path: &Path) -> Result<Checkpoint> {
    let data = crate::fsutil::read_file(path)?;
    parse_ckpt_bytes(path, Bytes::from(data))
}

/// Parses the bytes of a `.ckpt` file; `path` is only used in error messages. See [`read_ckpt`].
/// (The bytes are copied once into a buffer the tensors can share; [`read_ckpt`] avoids that copy.)
pub fn parse_ckpt(path: &Path, data: &[u8]) -> Result<Checkpoint> {
    let mut copy = mem::with_capacity(data.len(), || format!("parsing {}", path.display()))?;
    copy.extend_from_slice(data);
    parse_ckpt_bytes(path, Bytes::from(copy))
}

fn parse_ckpt_bytes(path: &Path, data: Bytes) -> Result<Checkpoint> {
    if data.is_empty() {
        return Err(Error::format(path, "empty file: no checkpoint entries"));
    }
    let (body, crc) = split_crc(path, data)?;
    let mut out = Checkpoint::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut pending: Option<Pending> = None;
    let mut pos = 0usize;
    let mut index = 0usize;
    while pos < body.len() {
        let (value, next) = next_value(path, &body, pos, index)?;
        index += 1;
        match value.value {
            Some(ValueKind::Tensor(t)) => {
                if let Some(p) = pending.as_mut() {
                    if p.tag == value.tag {
                        if p.dims != t.dims || p.dtype != t.tensor_type {
                            return Err(Error::format(
                                path,
                                format!(
                                    "tensor '{}': chunk at byte {pos} has dims {:?} {} but the first chunk has {:?} {}",
                                    value.tag, t.dims, t.tensor_type, p.dims, p.dtype
                                ),
                            ));
                        }
                        p.chunks.push(t.tensor_content);
                        pos = next;
                        continue;
                    }
                }
                if let Some(p) = pending.take() {
                    finish(path, p, &mut out)?;
                }
                note_tag(path, &mut seen, &value.tag, pos)?;
                pending = Some(Pending {
                    tag: value.tag,
                    dims: t.dims,
                    dtype: t.tensor_type,
                    chunks: vec![t.tensor_content],
                });
            }
            other => {
                if let Some(p) = pending.take() {
                    finish(path, p, &mut out)?;
                }
                let reason = match other {
                    Some(ValueKind::Maptensor(m)) => {
                        format!("map tensor ({} tensors)", m.tensor.len())
                    }
                    _ => "value without a tensor".to_string(),
                };
                // A map parameter may be written in several slices: list it once.
                if out.skipped.last().map(|s| s.name.as_str()) != Some(value.tag.as_str()) {
                    note_tag(path, &mut seen, &value.tag, pos)?;
                    out.skipped.push(SkippedEntry {
                        name: value.tag,
                        reason,
                    });
                }
            }
        }
        pos = next;
    }
    if let Some(p) = pending.take() {
        finish(path, p, &mut out)?;
    }
    if out.tensors.is_empty() && out.skipped.is_empty() {
        return Err(Error::format(path, "no checkpoint entries"));
    }
    out.crc = crc;
    Ok(out)
}

/// A tensor being assembled from its chunks (slices of the file's buffer, not copied yet).
struct Pending {
    tag: String,
    dims: Vec<i64>,
    dtype: String,
    chunks: Vec<Bytes>,
}

impl Pending {
    /// Total content bytes of the chunks, `None` on overflow.
    fn len(&self) -> Option<usize> {
        self.chunks
            .iter()
            .try_fold(0usize, |a, c| a.checked_add(c.len()))
    }
}

fn note_tag(path: &Path, seen: &mut HashMap<String, usize>, tag: &str, pos: usize) -> Result<()> {
    if let Some(first) = seen.insert(tag.to_string(), pos) {
        return Err(Error::format(
            path,
            format!("duplicate tag '{tag}': entries at bytes {first} and {pos}"),
        ));
    }
    Ok(())
}

/// Turns a (merged) tensor value into a [`RawTensor`], or a skipped entry.
fn finish(path: &Path, p: Pending, out: &mut Checkpoint) -> Result<()> {
    let have = p.len();
    let Some(dtype) = DType::from_mindspore_name(&p.dtype) else {
        let reason = if p.dtype == "str" {
            "string entry".to_string()
        } else {
            format!(
                "unsupported tensor_type '{}' ({} bytes)",
                p.dtype,
                have.map_or("too many".to_string(), |n| n.to_string())
            )
        };
        out.skipped.push(SkippedEntry {
            name: p.tag,
            reason,
        });
        return Ok(());
    };
    let mut shape = Vec::with_capacity(p.dims.len());
    for &d in &p.dims {
        match usize::try_from(d) {
            Ok(d) => shape.push(d),
            Err(_) => {
                return Err(Error::format(
                    path,
                    format!(
                        "tensor '{}': dimension {d} in dims {:?} is negative or too large",
                        p.tag, p.dims
                    ),
                ))
            }
        }
    }
    if shape.is_empty() || (shape == [0] && have != Some(0)) {
        shape.clear(); // scalar: MindSpore writes dims [0]
    }
    let want = mem::checked_product(&shape).and_then(|n| n.checked_mul(dtype.size()));
    if want.is_none() || want != have {
        return Err(Error::format(
            path,
            format!(
                "tensor '{}': {} of dims {:?} needs {} bytes, has {}",
                p.tag,
                p.dtype,
                p.dims,
                want.map_or("too many".to_string(), |w| w.to_string()),
                have.map_or("too many".to_string(), |w| w.to_string())
            ),
        ));
    }
    let len = want.unwrap_or(0);
    let mut bytes =
        mem::with_capacity(len, || format!("tensor '{}' of {}", p.tag, path.display()))?;
    for c in &p.chunks {
        bytes.extend_from_slice(c);
    }
    out.tensors.push((
        p.tag,
        RawTensor {
            dtype,
            shape,
            bytes,
        },
    ));
    Ok(())
}

/// Strips and verifies a trailing `crc_num` record. Returns the body and the recorded CRC.
fn split_crc(path: &Path, data: Bytes) -> Result<(Bytes, Option<u32>)> {
    let Some(body_len) = data.len().checked_sub(CRC_RECORD_LEN) else {
        return Ok((data, None));
    };
    if &data[body_len..body_len + CRC_MAGIC.len()] != CRC_MAGIC {
        return Ok((data, None));
    }
    let body = data.slice(..body_len);
    let recorded = data[body_len + CRC_MAGIC.len()..]
        .iter()
        .fold(0u128, |a, &b| (a << 8) | b as u128);
    let actual = crc32fast::hash(&body);
    if recorded != actual as u128 {
        return Err(Error::format(
            path,
            format!(
                "CRC mismatch: the crc_num record says {recorded:#x}, the content gives {actual:#010x} (file corrupt or modified)"
            ),
        ));
    }
    Ok((body, Some(actual)))
}

/// The protobuf varint at `pos`: its value and the position after it; `None` when it runs past
/// the end or over 10 bytes.
fn varint(b: &[u8], pos: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &x) in b.get(pos..)?.iter().take(10).enumerate() {
        v |= ((x & 0x7f) as u64) << (7 * i);
        if x < 0x80 {
            return Some((v, pos + i + 1));
        }
    }
    None
}

/// A varint length field at `pos` followed by that many bytes: the range of those bytes, `None`
/// when the length does not fit in what remains of `b` (never an overflowing addition).
fn length_delimited(b: &[u8], pos: usize) -> Option<(usize, usize)> {
    let (n, start) = varint(b, pos)?;
    let end = start.checked_add(usize::try_from(n).ok()?)?;
    (end <= b.len()).then_some((start, end))
}

/// Decodes the record `Checkpoint.value` starting at `pos`; returns it and the next position.
fn next_value(
    path: &Path,
    body: &Bytes,
    pos: usize,
    index: usize,
) -> Result<(proto::Value, usize)> {
    if body[pos..].starts_with(b"crc") {
        return Err(Error::format(
            path,
            format!("truncated or malformed crc_num record at byte {pos}"),
        ));
    }
    let Some((key, p)) = varint(body, pos) else {
        return Err(Error::format(
            path,
            format!("truncated: entry #{index} at byte {pos}"),
        ));
    };
    if key != 0x0a {
        return Err(Error::format(
            path,
            format!("corrupt: expected a Checkpoint value record (key 0x0a) at byte {pos}, found key {key:#x}"),
        ));
    }
    let Some((len, start)) = varint(body, p) else {
        return Err(Error::format(
            path,
            format!("truncated: entry #{index} at byte {pos}"),
        ));
    };
    let have = body.len() - start;
    let end = match usize::try_from(len) {
        Ok(n) if n <= have => start + n,
        _ => {
            return Err(Error::format(
                path,
                describe_truncation(&body[start..], len, index, pos),
            ))
        }
    };
    let value = proto::Value::decode(body.slice(start..end)).map_err(|e| {
        Error::format(
            path,
            format!("corrupt: entry #{index} at byte {pos} ({len} bytes) does not decode: {e}"),
        )
    })?;
    Ok((value, end))
}

/// Best-effort description of an entry cut short: its tag and the content bytes it declares vs
/// has. Walks the fields that are there; every length is checked against what remains.
fn describe_truncation(part: &[u8], declared: u64, index: usize, pos: usize) -> String {
    let generic = format!(
        "truncated: entry #{index} at byte {pos} declares {declared} bytes, only {} remain",
        part.len()
    );
    let mut tag = None;
    let mut p = 0;
    while p < part.len() {
        let Some((key, q)) = varint(part, p) else {
            break;
        };
        match key {
            0x0a => {
                let Some((s, e)) = length_delimited(part, q) else {
                    break;
                };
                tag = Some(String::from_utf8_lossy(&part[s..e]).into_owned());
                p = e;
            }
            0x12 => {
                // The tensor: walk dims and type to the content.
                let Some((_, mut r)) = varint(part, q) else {
                    break;
                };
                while r < part.len() {
                    let Some((k, s)) = varint(part, r) else { break };
                    match k {
                        0x08 => match varint(part, s) {
                            Some((_, e)) => r = e,
                            None => break,
                        },
                        0x0a | 0x12 => match length_delimited(part, s) {
                            Some((_, e)) => r = e,
                            None => break,
                        },
                        0x1a => {
                            let Some((n, e)) = varint(part, s) else { break };
                            let tag = tag.as_deref().unwrap_or("?");
                            return format!(
                                "truncated: tensor '{tag}' (entry #{index} at byte {pos}) declares {n} bytes, has {}",
                                part.len().saturating_sub(e)
                            );
                        }
                        _ => break,
                    }
                }
                break;
            }
            _ => break,
        }
    }
    match tag {
        Some(t) => format!("{generic} (tensor '{t}')"),
        None => generic,
    }
}

/// Streaming `.ckpt` writer: one record per tensor (per chunk), written through a
/// [`crate::fsutil::AtomicFile`] that [`CkptWriter::finish`] renames into place. Dropping it
/// unfinished removes the temporary file.
pub struct CkptWriter {
    path: PathBuf,
    out: Option<crate::fsutil::AtomicFile>,
    crc: Option<crc32fast::Hasher>,
    slice_bytes: usize,
}

impl CkptWriter {
    /// Starts writing `path` (through a temporary file); with `crc_check` a `crc_num` record is
    /// appended.
    /// Errors: [`Error::Io`] naming the temporary path.
    pub fn create(path: &Path, crc_check: bool) -> Result<CkptWriter> {
        Self::with_slice(path, crc_check, SLICE_BYTES)
    }

    pub(crate) fn with_slice(
        path: &Path,
        crc_check: bool,
        slice_bytes: usize,
    ) -> Result<CkptWriter> {
        Ok(CkptWriter {
            path: path.to_path_buf(),
            out: Some(crate::fsutil::AtomicFile::create(path)?),
            crc: crc_check.then(crc32fast::Hasher::new),
            slice_bytes: slice_bytes.max(1),
        })
    }

    /// Writes one tensor: `bytes` are little-endian C-order elements of `dtype`, `shape` the full
    /// shape (`[]` = scalar, written as dims `[0]` like MindSpore). Tensors larger than 512 MiB are
    /// split into several records with the same tag and full dims.
    /// Errors: [`Error::Shape`] naming the tensor if `bytes.len() != numel * dtype.size()`;
    /// [`Error::Io`] naming the temporary path.
    pub fn write(&mut self, name: &str, dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<()> {
        let want = mem::checked_product(shape).and_then(|n| n.checked_mul(dtype.size()));
        if want != Some(bytes.len()) {
            return Err(Error::Shape(format!(
                "tensor '{name}': {} bytes for {} of shape {shape:?} (needs {})",
                bytes.len(),
                dtype.mindspore_name(),
                want.map_or("more than fit in memory".to_string(), |w| w.to_string())
            )));
        }
        let dims: Vec<i64> = if shape.is_empty() {
            vec![0]
        } else {
            shape.iter().map(|&d| d as i64).collect()
        };
        let mut chunks: Vec<&[u8]> = bytes.chunks(self.slice_bytes).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let out = self.out.as_mut().expect("writer used after finish");
        for chunk in chunks {
            let header =
                proto::encode_record_header(name, &dims, dtype.mindspore_name(), chunk.len());
            if let Some(h) = self.crc.as_mut() {
                h.update(&header);
                h.update(chunk);
            }
            out.write_all(&header)
                .and_then(|_| out.write_all(chunk))
                .map_err(|e| Error::io(&self.path, e))?;
        }
        Ok(())
    }

    /// Appends the CRC record (if asked), flushes, syncs and renames the file into place.
    /// Errors: [`Error::Io`] naming the temporary or final path.
    pub fn finish(mut self) -> Result<()> {
        let mut out = self.out.take().expect("finish called twice");
        if let Some(h) = self.crc.take() {
            out.write_all(CRC_MAGIC)
                .and_then(|_| out.write_all(&(h.finalize() as u128).to_be_bytes()[6..]))
                .map_err(|e| Error::io(&self.path, e))?;
        }
        out.commit()
    }
}

/// Writes `entries` as a MindSpore `.ckpt` at `path`, in the given order, exactly as MindSpore's
/// `save_checkpoint(..., crc_check)` lays them out (see the module docs); atomic (temporary
/// file then rename). Errors as [`CkptWriter::write`] / [`CkptWriter::finish`].
pub fn write_ckpt<'a, I>(path: &Path, entries: I, crc_check: bool) -> Result<()>
where
    I: IntoIterator<Item = (&'a str, &'a RawTensor)>,
{
    let mut w = CkptWriter::create(path, crc_check)?;
    for (name, t) in entries {
        w.write(name, t.dtype, &t.shape, &t.bytes)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(dtype: DType, shape: &[usize], bytes: Vec<u8>) -> RawTensor {
        RawTensor {
            dtype,
            shape: shape.to_vec(),
            bytes,
        }
    }

    #[test]
    fn chunked_tensor_is_several_records_and_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.ckpt");
        let big = raw(DType::U8, &[5, 7], (0..35u8).collect());
        let small = raw(DType::I32, &[], 77i32.to_le_bytes().to_vec());
        let mut w = CkptWriter::with_slice(&path, true, 8).unwrap();
        w.write("big", big.dtype, &big.shape, &big.bytes).unwrap();
        w.write("s", small.dtype, &small.shape, &small.bytes)
            .unwrap();
        w.finish().unwrap();
        let data = std::fs::read(&path).unwrap();
        // 35 bytes in chunks of 8 -> 5 records tagged "big", each with the full dims.
        let mut pos = 0;
        let mut tags = Vec::new();
        while pos < data.len() - CRC_RECORD_LEN {
            let body = Bytes::copy_from_slice(&data[..data.len() - CRC_RECORD_LEN]);
            let (v, next) = next_value(&path, &body, pos, 0).unwrap();
            if let Some(ValueKind::Tensor(t)) = &v.value {
                tags.push((v.tag.clone(), t.dims.clone(), t.tensor_content.len()));
            }
            pos = next;
        }
        assert_eq!(
            tags,
            vec![
                ("big".to_string(), vec![5, 7], 8),
                ("big".to_string(), vec![5, 7], 8),
                ("big".to_string(), vec![5, 7], 8),
                ("big".to_string(), vec![5, 7], 8),
                ("big".to_string(), vec![5, 7], 3),
                ("s".to_string(), vec![0], 4),
            ]
        );
        let ck = read_ckpt(&path).unwrap();
        assert_eq!(
            ck.tensors,
            vec![("big".to_string(), big), ("s".to_string(), small)]
        );
        assert!(ck.crc.is_some());
        let leftovers = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn bad_byte_count_names_the_tag() {
        let mut rec = proto::encode_record_header("w", &[2, 2], "Float32", 12);
        rec.extend_from_slice(&[0u8; 12]);
        let err = parse_ckpt(Path::new("x.ckpt"), &rec)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.ckpt") && err.contains("'w'") && err.contains("needs 16 bytes, has 12"),
            "{err}"
        );
    }

    #[test]
    fn string_and_unknown_entries_are_skipped_not_fatal() {
        let mut data = proto::encode_record_header("name", &[0], "str", 8);
        data.extend_from_slice(&[b'a', 0, 0, 0, b'b', 0, 0, 0]);
        let mut r = proto::encode_record_header("x", &[2], "Int4", 1);
        r.push(0x21);
        data.extend_from_slice(&r);
        let mut r = proto::encode_record_header("y", &[0], "Float32", 4);
        r.extend_from_slice(&1.5f32.to_le_bytes());
        data.extend_from_slice(&r);
        let ck = parse_ckpt(Path::new("x.ckpt"), &data).unwrap();
        assert_eq!(ck.skipped.len(), 2);
        assert_eq!(ck.skipped[0].name, "name");
        assert_eq!(ck.skipped[1].name, "x");
        assert_eq!(ck.tensors.len(), 1);
        assert_eq!(ck.tensors[0].1.shape, Vec::<usize>::new());
        assert_eq!(ck.tensors[0].1.to_f32().unwrap().data, vec![1.5]);
    }

    #[test]
    fn duplicate_non_consecutive_tag_is_an_error() {
        let mut data = Vec::new();
        for tag in ["a", "b", "a"] {
            let mut r = proto::encode_record_header(tag, &[1], "UInt8", 1);
            r.push(1);
            data.extend_from_slice(&r);
        }
        let err = parse_ckpt(Path::new("d.ckpt"), &data)
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate tag 'a'"), "{err}");
    }
}
