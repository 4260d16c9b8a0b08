//! What the C-ABI transform tests (`tests/ffi_transform.rs`, `tests/ffi_transform_hostile.rs`)
//! share: the sample photo, the library's last error, a transform from a recipe or the
//! defaults, a photo through both preprocess entry points, and one forward by the C ABI.
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use senet::ffi::model::{
    senet_model_create, senet_model_forward, senet_model_free, senet_model_load,
    senet_model_set_threads,
};
use senet::ffi::preprocess::{senet_preprocess_file_transform, senet_preprocess_memory_transform};
use senet::ffi::status::senet_last_error;
use senet::ffi::transform::{senet_transform_default, senet_transform_from_recipe};
use senet::ffi::{SenetModel, SenetStatus, SenetTransform};

pub const CLASSES: usize = 10;

pub fn photo() -> PathBuf {
    super::sample_dir().join("val/n01440764/n01440764_tench.JPEG")
}

pub fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated string valid until the next call.
    unsafe { CStr::from_ptr(senet_last_error()) }
        .to_string_lossy()
        .into_owned()
}

pub fn from_recipe(path: &Path) -> (SenetStatus, SenetTransform) {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    let mut t = default_transform();
    // SAFETY: a NUL-terminated path and a writable struct.
    let st = unsafe { senet_transform_from_recipe(c.as_ptr(), &mut t) };
    (st, t)
}

pub fn default_transform() -> SenetTransform {
    let mut t = std::mem::MaybeUninit::<SenetTransform>::uninit();
    // SAFETY: a writable slot; OK means it was written.
    unsafe {
        assert_eq!(senet_transform_default(t.as_mut_ptr()), SenetStatus::Ok);
        t.assume_init()
    }
}

/// `photo()` through `t` by the file and the memory entry points (asserted equal), with `extra`
/// floats of room in the output buffer: (status, values, message).
pub fn preprocess(t: &SenetTransform, out_len: usize) -> (SenetStatus, Vec<f32>, String) {
    let path = CString::new(photo().to_str().unwrap()).unwrap();
    let bytes = std::fs::read(photo()).unwrap();
    let mut a = vec![f32::NAN; out_len];
    let mut b = vec![f32::NAN; out_len];
    // SAFETY: NUL-terminated path, a readable transform, buffers of the lengths passed.
    let sa = unsafe { senet_preprocess_file_transform(path.as_ptr(), t, a.as_mut_ptr(), out_len) };
    let msg = last_error();
    // SAFETY: as above; `bytes` and `b` do not overlap.
    let sb = unsafe {
        senet_preprocess_memory_transform(bytes.as_ptr(), bytes.len(), t, b.as_mut_ptr(), out_len)
    };
    assert_eq!(sa, sb, "{msg} / {}", last_error());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    (sa, a, msg)
}

/// A seresnet18 of [`CLASSES`] classes by the C ABI, on one thread, with `ckpt` loaded; the
/// caller frees it with `senet_model_free`.
pub fn c_model(ckpt: &Path) -> *mut SenetModel {
    let name = CString::new("seresnet18").unwrap();
    let path = CString::new(ckpt.to_str().unwrap()).unwrap();
    let mut model: *mut SenetModel = std::ptr::null_mut();
    // SAFETY: NUL-terminated strings and a pointer slot.
    unsafe {
        assert_eq!(
            senet_model_create(name.as_ptr(), CLASSES, &mut model),
            SenetStatus::Ok
        );
        assert_eq!(senet_model_set_threads(model, 1), SenetStatus::Ok);
        assert_eq!(senet_model_load(model, path.as_ptr()), SenetStatus::Ok);
    }
    model
}

/// The logits of one image of `side x side` through `ckpt` by the C ABI (one thread).
pub fn c_forward(ckpt: &Path, x: &[f32], side: usize) -> Vec<f32> {
    let model = c_model(ckpt);
    let mut logits = vec![0f32; CLASSES];
    // SAFETY: a live model, buffers of the lengths passed.
    unsafe {
        let st = senet_model_forward(
            model,
            x.as_ptr(),
            x.len(),
            1,
            side,
            side,
            logits.as_mut_ptr(),
            logits.len(),
        );
        assert_eq!(st, SenetStatus::Ok, "{}", last_error());
        assert_eq!(senet_model_free(model), SenetStatus::Ok);
    }
    logits
}
