//! `.npy` files of f32 arrays (C order), written atomically (temporary name, then rename), read
//! without trusting their header: the declared shape is checked (checked arithmetic, against
//! the bytes the file holds) before the `npyz` crate sees it, and the data is read into a
//! fallible allocation.
use crate::{mem, Error, Result, Tensor};
use npyz::WriterBuilder;
use std::path::Path;

/// Writes `t` as a little-endian f32 `.npy` of shape `t.shape`, atomically
/// ([`crate::fsutil::AtomicFile`]). Errors name the path.
pub fn write_f32(path: &Path, t: &Tensor) -> Result<()> {
    let mut file = crate::fsutil::AtomicFile::create(path)?;
    let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
    let write = |file: &mut crate::fsutil::AtomicFile| -> std::io::Result<()> {
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(file)
            .begin_nd()?;
        w.extend(t.data.iter().copied())?;
        w.finish()
    };
    write(&mut file).map_err(|e| Error::io(path, e))?;
    file.commit()
}

/// Reads an f32 (or f64, converted) C-order `.npy` file ([`crate::fsutil::read_file`]: regular
/// files only). Errors name the path: [`Error::Io`]; [`Error::Format`] for a malformed header,
/// a shape whose element count overflows, a data size other than the shape's, another dtype or
/// Fortran order; [`Error::OutOfMemory`].
pub fn read_f32(path: &Path) -> Result<Tensor> {
    let bytes = crate::fsutil::read_file(path)?;
    let (shape, data_start) = declared_shape(path, &bytes)?;
    let count = mem::checked_product(&shape)
        .filter(|n| n.checked_mul(16).is_some())
        .ok_or_else(|| Error::format(path, format!("shape {shape:?} has too many elements")))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| Error::format(path, e.to_string()))?;
    if let Some(item) = npy.dtype().num_bytes() {
        let have = bytes.len() - data_start;
        if count.checked_mul(item) != Some(have) {
            return Err(Error::format(
                path,
                format!(
                    "shape {shape:?} of {}-byte items needs {} data bytes, the file has {have}",
                    item,
                    count.saturating_mul(item)
                ),
            ));
        }
    }
    from_npy(path, npy)
}

/// The shape in the header of the `.npy` bytes `b` (format versions 1-3: magic, version, header
/// length, a Python dict literal holding `'shape': (d0, d1, ...)`) and where the data starts.
/// Errors: [`Error::Format`] naming `path` for a missing magic, a header longer than the file,
/// or no readable shape.
fn declared_shape(path: &Path, b: &[u8]) -> Result<(Vec<usize>, usize)> {
    let bad = |msg: &str| Error::format(path, format!("not a .npy file: {msg}"));
    if !b.starts_with(b"\x93NUMPY") || b.len() < 10 {
        return Err(bad("no \\x93NUMPY magic"));
    }
    let (len, start): (usize, usize) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= b.len())
        .ok_or_else(|| {
            bad(&format!(
                "header of {len} bytes runs past the end of the file"
            ))
        })?;
    let header = String::from_utf8_lossy(&b[start..end]);
    let key = ["'shape'", "\"shape\""]
        .iter()
        .find_map(|k| header.find(k).map(|i| i + k.len()))
        .ok_or_else(|| bad("the header has no 'shape'"))?;
    let rest = header[key..].trim_start();
    let tuple = rest
        .strip_prefix(':')
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split_once(')'))
        .map(|(t, _)| t)
        .ok_or_else(|| bad("the header's 'shape' is not a tuple"))?;
    let shape = tuple
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad(&format!("shape ({tuple}) is not a tuple of sizes")))?;
    Ok((shape, end))
}

/// Converts an opened npy array (from a file or an `.npz` member) to an f32 tensor. The data is
/// read into a buffer that grows (fallibly) with what the reader actually delivers, never sized
/// by the header alone. Errors name `path`: [`Error::Format`] for another dtype, Fortran order,
/// a shape whose element count overflows, or data shorter than the shape;
/// [`Error::OutOfMemory`].
pub fn from_npy<R: std::io::Read>(path: &Path, npy: npyz::NpyFile<R>) -> Result<Tensor> {
    let shape = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>()
        .filter(|s| mem::checked_product(s).is_some())
        .ok_or_else(|| {
            Error::format(
                path,
                format!("shape {:?} has too many elements", npy.shape()),
            )
        })?;
    if npy.order() != npyz::Order::C {
        return Err(Error::format(
            path,
            "Fortran-order arrays are not supported",
        ));
    }
    let count = mem::checked_product(&shape).unwrap_or(0);
    let data: Vec<f32> = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
            collect(
                path,
                count,
                npy.data::<f32>()
                    .map_err(|e| Error::format(path, e.to_string()))?,
                |v| v,
            )?
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 8 => {
            collect(
                path,
                count,
                npy.data::<f64>()
                    .map_err(|e| Error::format(path, e.to_string()))?,
                |v| v as f32,
            )?
        }
        other => {
            return Err(Error::format(
                path,
                format!(
                    "expected a float32 or float64 array, found dtype {}",
                    other.descr()
                ),
            ))
        }
    };
    Tensor::from_vec(&shape, data)
}

/// Reads `count` values from `values` into a buffer grown in steps of at most 1 Mi values
/// (fallible), converting each with `conv`.
fn collect<T>(
    path: &Path,
    count: usize,
    values: impl Iterator<Item = std::io::Result<T>>,
    conv: impl Fn(T) -> f32,
) -> Result<Vec<f32>> {
    const STEP: usize = 1 << 20;
    let mut out: Vec<f32> = Vec::new();
    for v in values.take(count) {
        if out.len() == out.capacity() {
            let step = STEP.min(count - out.len());
            mem::reserve(&mut out, step, || format!("the data of {}", path.display()))?;
        }
        out.push(conv(v.map_err(|e| Error::format(path, e.to_string()))?));
    }
    if out.len() != count {
        return Err(Error::format(
            path,
            format!("truncated: {} of {count} values", out.len()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 `.npy` header with `dict` padded as numpy pads it, then `data`.
    fn npy(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut h = dict.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn hostile_shapes_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let cases = [
            // product overflows u64 (npyz alone would overflow computing it)
            (
                "(4294967296, 4294967296, 16)",
                &[0u8; 8][..],
                "too many elements",
            ),
            // a huge but representable count with 8 bytes of data
            (
                "(1099511627776,)",
                &[0u8; 8][..],
                "needs 4398046511104 data bytes",
            ),
            ("(3,)", &[0u8; 8][..], "needs 12 data bytes, the file has 8"),
            ("(a, 2)", &[0u8; 8][..], "not a tuple of sizes"),
        ];
        for (shape, data, want) in cases {
            let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
            std::fs::write(&p, npy(&dict, data)).unwrap();
            let e = read_f32(&p).unwrap_err().to_string();
            assert!(e.contains("x.npy") && e.contains(want), "{shape}: {e}");
        }
        let mut b = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            &[0; 8],
        );
        b[8] = 0xff; // header length past the end
        std::fs::write(&p, &b).unwrap();
        let e = read_f32(&p).unwrap_err().to_string();
        assert!(e.contains("runs past the end"), "{e}");
        let ok = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            &[0, 0, 128, 63, 0, 0, 0, 64],
        );
        std::fs::write(&p, ok).unwrap();
        assert_eq!(read_f32(&p).unwrap().data, vec![1.0, 2.0]);
    }
}
