//! `senet preprocess`: the eval transform's output for image files, as one (N, 3, H, W) tensor.
use crate::data::{list_images, EvalTransform, Loader};
use crate::{Error, Result, Tensor};
use std::path::PathBuf;

/// Transforms every image under `paths` (files, or folders searched recursively; sorted) with
/// `transform` on `num_workers` threads. Returns the file list and the (N, 3, H, W) f32 tensor
/// in that order. Errors: a missing path, no image found, an image that cannot be decoded;
/// [`crate::Error::OutOfMemory`] when the whole tensor cannot be allocated.
pub fn run(
    paths: &[PathBuf],
    transform: &EvalTransform,
    num_workers: usize,
) -> Result<(Vec<PathBuf>, Tensor)> {
    let files = list_images(paths)?;
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "no .jpg/.jpeg/.png image found in {paths:?}"
        )));
    }
    let [c, h, w] = transform.output_shape();
    let n = files.len();
    let len = crate::mem::checked_product(&[n, c, h, w]).unwrap_or(usize::MAX);
    let mut data = crate::mem::with_capacity(len, || {
        format!("{n} preprocessed images of {c}x{h}x{w} floats")
    })?;
    let samples = files.iter().map(|p| (p.clone(), 0)).collect();
    for batch in Loader::new(samples, transform.clone(), 16, num_workers)? {
        data.extend_from_slice(&batch?.images.data);
    }
    let t = Tensor::from_vec(&[files.len(), c, h, w], data)?;
    Ok((files, t))
}
