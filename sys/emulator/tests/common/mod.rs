//! Helpers shared by the emulator's integration tests: they call the exported C functions
//! directly through the rlib.
#![allow(dead_code)]

use std::ffi::{c_void, CStr, CString};
use std::ptr::null_mut;
use std::sync::Once;

use senet_cann_emu::*;
use senet_cann_sys::*;

pub mod a2a3;
pub mod probes;

static INIT: Once = Once::new();

/// `aclInit` once per test process (with `env` set first), then `aclrtSetDevice(0)` on the
/// calling thread.
pub fn init_with(env: &[(&str, &str)]) {
    INIT.call_once(|| {
        for (k, v) in env {
            std::env::set_var(k, v);
        }
        assert_eq!(unsafe { aclInit(std::ptr::null()) }, 0, "{}", err());
    });
    assert_eq!(aclrtSetDevice(0), 0, "{}", err());
}

/// [`init_with`] `env` and serialises the calling test with the others of its binary (hold the
/// guard for the whole test).
pub fn init_env(env: &[(&str, &str)]) -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    init_with(env);
    guard
}

/// [`init_with`] the default configuration; serialises the calling test with the others of its binary
/// (hold the guard for the whole test): they share the emulator's global state, including the
/// device's default stream, which a synchronise in one test would run for all.
pub fn init() -> std::sync::MutexGuard<'static, ()> {
    init_env(&[])
}

/// The calling thread's recent error text.
pub fn err() -> String {
    unsafe { CStr::from_ptr(aclGetRecentErrMsg()) }
        .to_string_lossy()
        .into_owned()
}

/// `aclrtMalloc` of `bytes`, asserting success.
pub fn malloc(bytes: usize) -> *mut c_void {
    let mut p = null_mut();
    let rc = unsafe {
        aclrtMalloc(
            &mut p,
            bytes,
            aclrtMemMallocPolicy::ACL_MEM_MALLOC_HUGE_FIRST,
        )
    };
    assert_eq!(rc, 0, "{}", err());
    p
}

/// Device copy of `data` (synchronous).
pub fn upload(data: &[f32]) -> *mut c_void {
    let bytes = std::mem::size_of_val(data).max(4);
    let p = malloc(bytes);
    let rc = aclrtMemcpy(
        p,
        bytes,
        data.as_ptr() as *const c_void,
        std::mem::size_of_val(data),
        aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_DEVICE,
    );
    assert_eq!(rc, 0, "{}", err());
    p
}

/// `n` floats from device memory, after synchronising the current device (`aclrtMemcpy` itself
/// does not wait for queued work).
pub fn download(p: *const c_void, n: usize) -> Vec<f32> {
    assert_eq!(aclrtSynchronizeDevice(), 0, "{}", err());
    let mut v = vec![0f32; n];
    let rc = aclrtMemcpy(
        v.as_mut_ptr() as *mut c_void,
        n * 4,
        p,
        n * 4,
        aclrtMemcpyKind::ACL_MEMCPY_DEVICE_TO_HOST,
    );
    assert_eq!(rc, 0, "{}", err());
    v
}

/// Row-major strides of `dims`.
pub fn strides(dims: &[i64]) -> Vec<i64> {
    let mut s = vec![1i64; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// The format a tensor of `rank` dims is tagged with by [`tensor_of`]: NCHW for 4-D and NCL for
/// 3-D (what convolution, pooling and batch norm require), ND otherwise.
pub fn format_for(rank: usize) -> aclFormat {
    match rank {
        4 => aclFormat::ACL_FORMAT_NCHW,
        3 => aclFormat::ACL_FORMAT_NCL,
        _ => aclFormat::ACL_FORMAT_ND,
    }
}

/// A view of `dims` with `strides` over a storage of shape `storage` at device memory `p`.
pub fn tensor_view(
    p: *mut c_void,
    dims: &[i64],
    strides: &[i64],
    storage: &[i64],
    dtype: aclDataType,
    format: aclFormat,
) -> *mut aclTensor {
    let t = unsafe {
        aclCreateTensor(
            dims.as_ptr(),
            dims.len() as u64,
            dtype,
            strides.as_ptr(),
            0,
            format,
            storage.as_ptr(),
            storage.len() as u64,
            p,
        )
    };
    assert!(!t.is_null(), "{}", err());
    t
}

/// A contiguous tensor of `dims`, `dtype` and `format` over device memory `p`.
pub fn tensor_fmt(
    p: *mut c_void,
    dims: &[i64],
    dtype: aclDataType,
    format: aclFormat,
) -> *mut aclTensor {
    tensor_view(p, dims, &strides(dims), dims, dtype, format)
}

/// A contiguous tensor of `dims` and `dtype` over device memory `p`, tagged [`format_for`] its
/// rank.
pub fn tensor_of(p: *mut c_void, dims: &[i64], dtype: aclDataType) -> *mut aclTensor {
    tensor_fmt(p, dims, dtype, format_for(dims.len()))
}

/// A contiguous FLOAT tensor of `dims` over `p`.
pub fn tensor(p: *mut c_void, dims: &[i64]) -> *mut aclTensor {
    tensor_of(p, dims, aclDataType::ACL_FLOAT)
}

/// A new device tensor holding `data` with shape `dims`: (memory, tensor).
pub fn tensor_from(data: &[f32], dims: &[i64]) -> (*mut c_void, *mut aclTensor) {
    let p = upload(data);
    (p, tensor(p, dims))
}

/// An int array.
pub fn ints(v: &[i64]) -> *mut aclIntArray {
    let a = unsafe { aclCreateIntArray(v.as_ptr(), v.len() as u64) };
    assert!(!a.is_null(), "{}", err());
    a
}

/// A bool array.
pub fn bools(v: &[bool]) -> *mut aclBoolArray {
    let a = unsafe { aclCreateBoolArray(v.as_ptr(), v.len() as u64) };
    assert!(!a.is_null(), "{}", err());
    a
}

/// A FLOAT scalar.
pub fn scalar(v: f32) -> *mut aclScalar {
    let mut v = v;
    let s = unsafe { aclCreateScalar(&mut v as *mut f32 as *mut c_void, aclDataType::ACL_FLOAT) };
    assert!(!s.is_null(), "{}", err());
    s
}

/// Launches a planned op (`launch(workspace, size, executor, stream)`) with a fresh workspace
/// of the planned size on the default stream, then synchronises; frees the workspace.
pub fn run(
    ws: u64,
    ex: *mut aclOpExecutor,
    launch: unsafe extern "C" fn(*mut c_void, u64, *mut aclOpExecutor, aclrtStream) -> aclnnStatus,
) {
    let w = if ws > 0 {
        malloc(ws as usize)
    } else {
        null_mut()
    };
    let rc = unsafe { launch(w, ws, ex, null_mut()) };
    assert_eq!(rc, 0, "{}", err());
    assert_eq!(aclrtSynchronizeStream(null_mut()), 0, "{}", err());
    if !w.is_null() {
        assert_eq!(aclrtFree(w), 0, "{}", err());
    }
}

/// A C string for the control API.
pub fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Asserts `a` and `b` agree within `tol`.
#[track_caller]
pub fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "lengths {a:?} vs {b:?}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol,
            "element {i}: {x} vs {y} (all: {a:?} vs {b:?})"
        );
    }
}
