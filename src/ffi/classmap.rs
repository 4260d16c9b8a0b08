//! Class maps (class names) and the top-k of a row of logits with softmax probabilities.
use super::args::{self, need};
use super::handle::{self, SenetClassMap};
use super::status::{guard, FfiError, SenetStatus};
use crate::data::read_class_map;
use crate::model::metrics::{softmax, topk};
use std::ffi::{c_char, CString};

/// Class names, index order, as C strings.
pub(crate) struct ClassMap {
    names: Vec<CString>,
}

/// One entry of a top-k (`senet_topk`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SenetClass {
    /// Class index (column of the logits).
    pub index: usize,
    /// Softmax probability over the whole row, in [0, 1].
    pub probability: f64,
    /// The class name from the class map, or NULL when no class map was given. Borrowed from
    /// the class map: valid until it is freed.
    pub name: *const c_char,
}

/// Reads a class map file and writes its handle to `*out_map`. Formats (as `senet predict
/// --class_map`): one class folder per line, or the TSV `index<TAB>folder<TAB>name` (e.g.
/// `imagenet_classes.tsv`), whose names are the third column.
///
/// Ownership: the caller owns the handle and frees it with `senet_classmap_free`. On failure
/// `*out_map` is set to NULL (when `out_map` is not NULL).
///
/// Thread-safety: safe from any thread; a class map is immutable, so one may be shared by any
/// number of threads.
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER, SENET_STATUS_INVALID_ARGUMENT (empty
/// path), SENET_STATUS_IO, SENET_STATUS_FORMAT (empty file, duplicates, bad TSV line),
/// SENET_STATUS_INTERNAL.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out_map` is NULL or points to writable memory for
/// one pointer.
#[no_mangle]
pub unsafe extern "C" fn senet_classmap_load(
    path: *const c_char,
    out_map: *mut *mut SenetClassMap,
) -> SenetStatus {
    guard(|| {
        // SAFETY: `out_map` is NULL or writable by the contract; a NULL is reported here.
        unsafe { args::write_out(out_map, std::ptr::null_mut(), "out_map") }?;
        // SAFETY: `path` is NULL or a NUL-terminated string by the contract.
        let path = unsafe { args::path(path, "path") }?;
        let (_, names) = read_class_map(&path)?;
        let names = names
            .into_iter()
            .map(|n| {
                CString::new(n).map_err(|_| {
                    FfiError::new(
                        SenetStatus::Format,
                        format!("{}: a class name contains a NUL byte", path.display()),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let handle = handle::register(ClassMap { names })?;
        // SAFETY: checked writable above.
        unsafe { args::write_out(out_map, handle, "out_map") }
    })
}

/// Writes the number of classes of `map` to `*out_len`.
///
/// Thread-safety: safe from any thread.
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER, SENET_STATUS_INVALID_HANDLE,
/// SENET_STATUS_INVALID_ARGUMENT (misaligned pointer), SENET_STATUS_INTERNAL.
///
/// # Safety
/// `out_len` is NULL or points to writable memory for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn senet_classmap_len(
    map: *const SenetClassMap,
    out_len: *mut usize,
) -> SenetStatus {
    guard(|| {
        let m = handle::get::<ClassMap>(map, "map")?;
        // SAFETY: `out_len` is NULL or writable by the contract.
        unsafe { args::write_out(out_len, m.names.len(), "out_len") }
    })
}

/// Writes a pointer to the name of class `index` to `*out_name` (UTF-8, NUL-terminated).
///
/// Ownership: the string belongs to `map` and stays valid until `senet_classmap_free(map)`.
///
/// Thread-safety: safe from any thread.
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER, SENET_STATUS_INVALID_HANDLE,
/// SENET_STATUS_INVALID_ARGUMENT (`index` out of range, misaligned pointer),
/// SENET_STATUS_INTERNAL.
///
/// # Safety
/// `out_name` is NULL or points to writable memory for one pointer.
#[no_mangle]
pub unsafe extern "C" fn senet_classmap_name(
    map: *const SenetClassMap,
    index: usize,
    out_name: *mut *const c_char,
) -> SenetStatus {
    guard(|| {
        let m = handle::get::<ClassMap>(map, "map")?;
        let name = m.names.get(index).ok_or_else(|| {
            FfiError::invalid(format!(
                "class index {index} is out of range ({} classes)",
                m.names.len()
            ))
        })?;
        // The CString's heap buffer lives as long as the map object (which the registry, and
        // so the handle, keeps alive).
        // SAFETY: `out_name` is NULL or writable by the contract.
        unsafe { args::write_out(out_name, name.as_ptr(), "out_name") }
    })
}

/// Frees `map`. NULL is a no-op (returns SENET_STATUS_OK). Names obtained from it become
/// invalid.
///
/// Thread-safety: safe from any thread; the handle must not be used afterwards (a later use is
/// detected and returns SENET_STATUS_INVALID_HANDLE).
///
/// Returns SENET_STATUS_OK, SENET_STATUS_INVALID_HANDLE (freed twice, foreign pointer),
/// SENET_STATUS_INTERNAL.
#[no_mangle]
pub extern "C" fn senet_classmap_free(map: *mut SenetClassMap) -> SenetStatus {
    guard(|| handle::release::<ClassMap>(map))
}

/// The `k` most likely classes of one row of logits, most likely first (ties: lower index
/// first), with their softmax probabilities over the row, and their names when `map` is not
/// NULL — what `senet predict` prints.
///
/// - `logits`: `num_classes` floats (one row of `senet_model_forward`'s output);
/// - `map`: NULL, or a class map of exactly `num_classes` names;
/// - `out`: the caller's array of `out_len` entries, of which the first `k` are written.
///
/// Ownership: `name` fields are borrowed from `map` (valid until it is freed).
///
/// Thread-safety: safe from any thread.
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER (`logits`, `out`),
/// SENET_STATUS_INVALID_HANDLE (`map`), SENET_STATUS_INVALID_ARGUMENT (`num_classes` 0, `k` 0 or
/// more than `num_classes`, a map of another length, misaligned pointers),
/// SENET_STATUS_BUFFER_TOO_SMALL (`out_len < k`), SENET_STATUS_INTERNAL.
///
/// # Safety
/// `logits` is NULL or points to `num_classes` readable floats; `out` is NULL or points to
/// `out_len` writable `SenetClass` entries.
#[no_mangle]
pub unsafe extern "C" fn senet_topk(
    logits: *const f32,
    num_classes: usize,
    k: usize,
    map: *const SenetClassMap,
    out: *mut SenetClass,
    out_len: usize,
) -> SenetStatus {
    guard(|| {
        // SAFETY: `logits` is NULL or `num_classes` readable floats by the contract.
        let row = unsafe { args::slice(logits, num_classes, "logits") }?;
        if num_classes == 0 {
            return Err(FfiError::invalid("num_classes must be at least 1"));
        }
        if k == 0 || k > num_classes {
            return Err(FfiError::invalid(format!(
                "k must be in 1..={num_classes}, got {k}"
            )));
        }
        // SAFETY: `out` is NULL or `out_len` writable entries by the contract.
        let out = unsafe { args::slice_mut(out, out_len, "out") }?;
        need("out", out_len, k)?;
        let names = if map.is_null() {
            None
        } else {
            let m = handle::get::<ClassMap>(map, "map")?;
            if m.names.len() != num_classes {
                return Err(FfiError::invalid(format!(
                    "the class map has {} names, the logits {num_classes} classes",
                    m.names.len()
                )));
            }
            Some(m)
        };
        let probs = softmax(row);
        for (slot, i) in out.iter_mut().zip(topk(row, k)) {
            *slot = SenetClass {
                index: i,
                probability: probs[i],
                name: names
                    .as_ref()
                    .map_or(std::ptr::null(), |m| m.names[i].as_ptr()),
            };
        }
        Ok(())
    })
}
