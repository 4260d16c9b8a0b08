//! MindCV's eval transform (resize 256 bicubic, centre crop 224, ImageNet normalize, CHW), or
//! timm's, or one a [`SenetTransform`] describes (another recipe's size, crop, interpolation,
//! mean and std), of an image file or an in-memory encoded image into a caller buffer.
use super::args::{self, need};
use super::status::{guard, FfiError, FfiResult, SenetStatus};
use super::transform::SenetTransform;
use crate::data::{decode_named, EvalTransform, Preprocess};
use std::ffi::c_char;
use std::path::Path;

/// Whose eval transform `senet_preprocess_file_with` / `senet_preprocess_memory_with` apply.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenetPreprocess {
    /// MindCV's (what `senet_preprocess_file` applies): OpenCV bicubic resize of the short side
    /// to 256, centre crop 224 at floor offsets, normalize on the 0..255 scale.
    Mindcv = 0,
    /// timm's eval transform (`create_transform(is_training=False)` for senet's networks):
    /// Pillow's antialiased bicubic resize of the short side to 256, centre crop 224 at
    /// torchvision's offsets, ToTensor and ImageNet mean/std (`senet predict --preprocess timm`).
    Timm = 1,
}

/// The [`Preprocess`] of a `SenetPreprocess` value. Errors: INVALID_ARGUMENT for another value.
pub(super) fn preprocess_of(preprocess: i32) -> Result<Preprocess, FfiError> {
    match preprocess {
        p if p == SenetPreprocess::Mindcv as i32 => Ok(Preprocess::MindCv),
        p if p == SenetPreprocess::Timm as i32 => Ok(Preprocess::Timm),
        other => Err(FfiError::invalid(format!(
            "unknown preprocess {other} (SENET_PREPROCESS_MINDCV = 0, SENET_PREPROCESS_TIMM = 1)"
        ))),
    }
}

/// The 224x224 transform of a `SenetPreprocess` value and the floats it writes. Errors:
/// INVALID_ARGUMENT for another value.
fn transform(preprocess: i32) -> Result<(EvalTransform, usize), FfiError> {
    let t = EvalTransform::default().with_preprocess(preprocess_of(preprocess)?);
    Ok((t, SENET_IMAGE_VALUES))
}

/// The transform `t` describes (checked) and the floats it writes.
///
/// # Safety
/// `t` is NULL or points to a readable `SenetTransform`.
unsafe fn described(t: *const SenetTransform) -> Result<(EvalTransform, usize), FfiError> {
    // SAFETY: NULL or readable by this function's contract.
    let t = unsafe { args::read_in(t, "transform") }?;
    Ok((t.to_eval()?, t.values()))
}

/// Side in pixels of a preprocessed image (MindCV's `image_resize`).
pub const SENET_IMAGE_SIZE: usize = 224;
/// Floats of one preprocessed image: 3 * SENET_IMAGE_SIZE * SENET_IMAGE_SIZE.
pub const SENET_IMAGE_VALUES: usize = 150528;

/// Copies one transformed image of `n` floats to `out`.
///
/// # Safety
/// `out` is NULL or points to `out_len` writable floats.
unsafe fn write_image(values: Vec<f32>, out: *mut f32, out_len: usize, n: usize) -> FfiResult {
    need("out", out_len, n)?;
    // SAFETY: `out` is NULL or `out_len` (>= n) writable floats by this function's contract.
    let dst = unsafe { args::slice_mut(out, n, "out") }?;
    if values.len() != n {
        return Err(FfiError::new(
            SenetStatus::Internal,
            format!("transform produced {} values", values.len()),
        ));
    }
    dst.copy_from_slice(&values);
    Ok(())
}

/// Decodes the JPEG or PNG file at `path` (format from its content) and applies MindCV's eval
/// transform: resize the short side to 256 (bicubic), centre crop 224x224, normalize with the
/// ImageNet mean/std (0..255 scale), CHW. Writes SENET_IMAGE_VALUES floats, `[3][224][224]` RGB,
/// to `out` — one image of the NCHW batch `senet_model_forward` takes (image `i` of a batch
/// starts at `batch + i * SENET_IMAGE_VALUES`). Identical to `senet predict`'s preprocessing.
/// (= `senet_preprocess_file_with(path, SENET_PREPROCESS_MINDCV, out, out_len)`.)
///
/// Ownership: `out` stays the caller's (`out_len` floats); `path` is only read during the call.
///
/// Thread-safety: safe from any thread, concurrently.
///
/// Images of more than 178,956,970 pixels (PIL's decompression-bomb limit), or whose resize to a
/// short side of 256 would have more, are refused from their header (SENET_STATUS_FORMAT),
/// before anything is decoded.
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER, SENET_STATUS_INVALID_ARGUMENT (empty
/// path, misaligned `out`), SENET_STATUS_BUFFER_TOO_SMALL (`out_len < SENET_IMAGE_VALUES`),
/// SENET_STATUS_IO (missing, unreadable, or not a regular file: a FIFO is refused, never waited
/// on), SENET_STATUS_FORMAT (not a decodable JPEG/PNG, too many pixels),
/// SENET_STATUS_OUT_OF_MEMORY, SENET_STATUS_INTERNAL.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or points to `out_len` writable
/// floats.
#[no_mangle]
pub unsafe extern "C" fn senet_preprocess_file(
    path: *const c_char,
    out: *mut f32,
    out_len: usize,
) -> SenetStatus {
    // SAFETY: the same contract.
    unsafe { senet_preprocess_file_with(path, SenetPreprocess::Mindcv as i32, out, out_len) }
}

/// As `senet_preprocess_file`, with the transform chosen by `preprocess` (a `SenetPreprocess`
/// value): SENET_PREPROCESS_MINDCV, or SENET_PREPROCESS_TIMM for timm's eval transform (what
/// `senet predict --preprocess timm` applies; for timm weights).
///
/// Ownership: `out` stays the caller's (`out_len` floats); `path` is only read during the call.
///
/// Thread-safety: safe from any thread, concurrently.
///
/// Returns the statuses of `senet_preprocess_file`; SENET_STATUS_INVALID_ARGUMENT also for an
/// unknown `preprocess`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or points to `out_len` writable
/// floats.
#[no_mangle]
pub unsafe extern "C" fn senet_preprocess_file_with(
    path: *const c_char,
    preprocess: i32,
    out: *mut f32,
    out_len: usize,
) -> SenetStatus {
    // SAFETY: the same contract.
    guard(|| unsafe { file(path, transform(preprocess), out, out_len) })
}

/// The file at `path` through `t` (with the floats it writes) into `out`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or points to `out_len` writable
/// floats.
unsafe fn file(
    path: *const c_char,
    t: Result<(EvalTransform, usize), FfiError>,
    out: *mut f32,
    out_len: usize,
) -> FfiResult {
    // SAFETY: `path` is NULL or a NUL-terminated string by the contract.
    let path = unsafe { args::path(path, "path") }?;
    if out.is_null() {
        return Err(FfiError::new(SenetStatus::NullPointer, "out is NULL"));
    }
    let (t, n) = t?;
    need("out", out_len, n)?;
    let values = t.apply_path(&path)?;
    // SAFETY: `out` is `out_len` writable floats by the contract.
    unsafe { write_image(values, out, out_len, n) }
}

/// As `senet_preprocess_file`, for an encoded JPEG or PNG image held in memory: `data` holds
/// `data_len` bytes (the file's content).
///
/// Ownership: both buffers stay the caller's.
///
/// Thread-safety: safe from any thread, concurrently.
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER, SENET_STATUS_INVALID_ARGUMENT
/// (`data_len` 0, misaligned `out`), SENET_STATUS_BUFFER_TOO_SMALL, SENET_STATUS_FORMAT (not a
/// decodable JPEG/PNG, too many pixels), SENET_STATUS_OUT_OF_MEMORY, SENET_STATUS_INTERNAL.
///
/// # Safety
/// `data` is NULL or points to `data_len` readable bytes; `out` is NULL or points to `out_len`
/// writable floats, not overlapping `data`.
#[no_mangle]
pub unsafe extern "C" fn senet_preprocess_memory(
    data: *const u8,
    data_len: usize,
    out: *mut f32,
    out_len: usize,
) -> SenetStatus {
    // SAFETY: the same contract.
    unsafe {
        senet_preprocess_memory_with(data, data_len, SenetPreprocess::Mindcv as i32, out, out_len)
    }
}

/// As `senet_preprocess_memory`, with the transform chosen by `preprocess` (a
/// `SenetPreprocess` value, see `senet_preprocess_file_with`).
///
/// Ownership: both buffers stay the caller's.
///
/// Thread-safety: safe from any thread, concurrently.
///
/// Returns the statuses of `senet_preprocess_memory`; SENET_STATUS_INVALID_ARGUMENT also for an
/// unknown `preprocess`.
///
/// # Safety
/// `data` is NULL or points to `data_len` readable bytes; `out` is NULL or points to `out_len`
/// writable floats, not overlapping `data`.
#[no_mangle]
pub unsafe extern "C" fn senet_preprocess_memory_with(
    data: *const u8,
    data_len: usize,
    preprocess: i32,
    out: *mut f32,
    out_len: usize,
) -> SenetStatus {
    // SAFETY: the same contract.
    guard(|| unsafe { memory(data, data_len, transform(preprocess), out, out_len) })
}

/// The encoded image `data` through `t` (with the floats it writes) into `out`.
///
/// # Safety
/// `data` is NULL or points to `data_len` readable bytes; `out` is NULL or points to `out_len`
/// writable floats, not overlapping `data`.
unsafe fn memory(
    data: *const u8,
    data_len: usize,
    t: Result<(EvalTransform, usize), FfiError>,
    out: *mut f32,
    out_len: usize,
) -> FfiResult {
    // SAFETY: `data` is NULL or `data_len` readable bytes by the contract.
    let bytes = unsafe { args::slice(data, data_len, "data") }?;
    if bytes.is_empty() {
        return Err(FfiError::invalid("data is empty (data_len 0)"));
    }
    if out.is_null() {
        return Err(FfiError::new(SenetStatus::NullPointer, "out is NULL"));
    }
    let (t, n) = t?;
    need("out", out_len, n)?;
    if args::overlap(data, data_len, out, out_len) {
        return Err(FfiError::invalid("data and out overlap"));
    }
    let name = Path::new("in-memory image");
    let img = decode_named(bytes, name)?;
    let values = t.apply_named(&img, name)?;
    // SAFETY: `out` is `out_len` writable floats, not overlapping `data`, by the contract.
    unsafe { write_image(values, out, out_len, n) }
}

/// As `senet_preprocess_file`, with the transform `transform` describes (image size, crop
/// fraction, interpolation, MindCV's or timm's arithmetic, mean and std: a recipe's, see
/// `senet_transform_from_recipe`). Writes `3 * image_resize * image_resize` floats,
/// `[3][image_resize][image_resize]` RGB, to `out`: one image of the NCHW batch
/// `senet_model_forward` takes with height = width = `transform->image_resize`. With the
/// transform `senet_transform_default` gives, the same as `senet_preprocess_file`.
///
/// Ownership: all buffers stay the caller's; `path` and `transform` are only read during the
/// call.
///
/// Thread-safety: safe from any thread, concurrently.
///
/// Returns the statuses of `senet_preprocess_file`, with SENET_STATUS_BUFFER_TOO_SMALL when
/// `out_len < 3 * image_resize * image_resize`, and SENET_STATUS_INVALID_ARGUMENT also for a
/// transform out of range (image_resize 0 or above 16384, a resized short side above 16384
/// or rounding to 0, crop_pct not positive and finite, an unknown interpolation or preprocess,
/// a mean not finite, a std not positive and finite: the message names the field and value).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `transform` is NULL or points to a readable
/// `SenetTransform`; `out` is NULL or points to `out_len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn senet_preprocess_file_transform(
    path: *const c_char,
    transform: *const SenetTransform,
    out: *mut f32,
    out_len: usize,
) -> SenetStatus {
    // SAFETY: the same contract.
    guard(|| unsafe { file(path, described(transform), out, out_len) })
}

/// As `senet_preprocess_memory`, with the transform `transform` describes (see
/// `senet_preprocess_file_transform`).
///
/// Ownership: all buffers stay the caller's. Thread-safety: safe from any thread, concurrently.
///
/// Returns the statuses of `senet_preprocess_memory` and those `senet_preprocess_file_transform`
/// adds for the transform.
///
/// # Safety
/// `data` is NULL or points to `data_len` readable bytes; `transform` is NULL or points to a
/// readable `SenetTransform`; `out` is NULL or points to `out_len` writable floats, not
/// overlapping `data`.
#[no_mangle]
pub unsafe extern "C" fn senet_preprocess_memory_transform(
    data: *const u8,
    data_len: usize,
    transform: *const SenetTransform,
    out: *mut f32,
    out_len: usize,
) -> SenetStatus {
    // SAFETY: the same contract.
    guard(|| unsafe { memory(data, data_len, described(transform), out, out_len) })
}
