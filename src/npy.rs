//! `.npy` files of f32 arrays (C order), written atomically (temporary name, then rename).
use crate::{Error, Result, Tensor};
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

/// Reads an f32 (or f64, converted) C-order `.npy` file. Errors name the path.
pub fn read_f32(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| Error::format(path, e.to_string()))?;
    from_npy(path, npy)
}

/// Converts an opened npy array (from a file or an `.npz` member) to an f32 tensor.
pub fn from_npy<R: std::io::Read>(path: &Path, npy: npyz::NpyFile<R>) -> Result<Tensor> {
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if npy.order() != npyz::Order::C {
        return Err(Error::format(
            path,
            "Fortran-order arrays are not supported",
        ));
    }
    let err = |e: std::io::Error| Error::format(path, e.to_string());
    let data: Vec<f32> = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
            npy.into_vec::<f32>().map_err(err)?
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 8 => {
            npy.into_vec::<f64>()
                .map_err(err)?
                .into_iter()
                .map(|v| v as f32)
                .collect()
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
