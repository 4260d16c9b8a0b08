//! Stream capture (`aclmdlRICapture*`) on the emulated Atlas A2 (the default `Ascend910B1`, CANN
//! 9.1): captured work is recorded, not run; a replay runs it on the buffers' current contents;
//! the calls the capture rules forbid fail with the documented codes and invalidate the
//! capture; instances hold their memory until destroyed (`src/capture.rs` cites the rules).
mod common;

use std::ffi::c_void;
use std::ptr::null_mut;

use common::*;
use senet_cann_emu::*;
use senet_cann_sys::*;

const H2D: aclrtMemcpyKind = aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_DEVICE;
const D2D: aclrtMemcpyKind = aclrtMemcpyKind::ACL_MEMCPY_DEVICE_TO_DEVICE;
const GLOBAL: aclmdlRICaptureMode = aclmdlRICaptureMode::ACL_MODEL_RI_CAPTURE_MODE_GLOBAL;
const RELAXED: aclmdlRICaptureMode = aclmdlRICaptureMode::ACL_MODEL_RI_CAPTURE_MODE_RELAXED;

fn stream() -> aclrtStream {
    let mut s = null_mut();
    assert_eq!(unsafe { aclrtCreateStream(&mut s) }, 0, "{}", err());
    s
}

fn status(s: aclrtStream) -> aclmdlRICaptureStatus {
    let (mut st, mut ri) = (
        aclmdlRICaptureStatus::ACL_MODEL_RI_CAPTURE_STATUS_NONE,
        null_mut(),
    );
    assert_eq!(
        unsafe { aclmdlRICaptureGetInfo(s, &mut st, &mut ri) },
        0,
        "{}",
        err()
    );
    st
}

/// Queues `x *= k` on `s` (aclnnInplaceMuls, no workspace in the emulator).
fn scale(x: *mut c_void, n: i64, k: f32, s: aclrtStream) -> aclnnStatus {
    let t = tensor(x, &[n]);
    let k = scalar(k);
    let (mut ws, mut ex) = (0u64, null_mut());
    assert_eq!(
        unsafe { aclnnInplaceMulsGetWorkspaceSize(t, k, &mut ws, &mut ex) },
        0,
        "{}",
        err()
    );
    assert_eq!(ws, 0);
    let rc = aclnnInplaceMuls(null_mut(), 0, ex, s);
    aclDestroyTensor(t);
    aclDestroyScalar(k);
    rc
}

#[test]
fn captured_work_replays_on_current_contents() {
    let _serial = init();
    let s = stream();
    let x = upload(&[1.0, 2.0]);
    let y = upload(&[0.0, 0.0]);
    assert_eq!(
        status(s),
        aclmdlRICaptureStatus::ACL_MODEL_RI_CAPTURE_STATUS_NONE
    );
    assert_eq!(aclmdlRICaptureBegin(s, GLOBAL), 0, "{}", err());
    assert_eq!(
        aclmdlRICaptureBegin(s, GLOBAL),
        ACL_ERROR_RT_STREAM_CAPTURED
    );
    assert_eq!(
        status(s),
        aclmdlRICaptureStatus::ACL_MODEL_RI_CAPTURE_STATUS_ACTIVE
    );
    // y = 3 * x, captured: two tasks.
    assert_eq!(scale(x, 2, 3.0, s), 0, "{}", err());
    assert_eq!(aclrtMemcpyAsync(y, 8, x, 8, D2D, s), 0, "{}", err());
    // aclrtMalloc is not among the documented unsafe calls.
    let spare = malloc(64);
    let mut ri: aclmdlRI = null_mut();
    assert_eq!(unsafe { aclmdlRICaptureEnd(s, &mut ri) }, 0, "{}", err());
    assert!(!ri.is_null());
    assert_eq!(
        unsafe { aclmdlRICaptureEnd(s, &mut ri) },
        ACL_ERROR_RT_STREAM_NOT_CAPTURED
    );
    // Nothing ran.
    assert_eq!(aclrtSynchronizeStream(s), 0, "{}", err());
    assert_eq!(download(x, 2), vec![1.0, 2.0]);
    assert_eq!(download(y, 2), vec![0.0, 0.0]);
    // Each replay runs both tasks on what x holds then.
    assert_eq!(aclmdlRIExecuteAsync(ri, s), 0, "{}", err());
    assert_eq!(aclrtSynchronizeStream(s), 0, "{}", err());
    assert_eq!(download(y, 2), vec![3.0, 6.0]);
    let new = [10f32, 20.0];
    assert_eq!(
        aclrtMemcpy(x, 8, new.as_ptr() as *const c_void, 8, H2D),
        0,
        "{}",
        err()
    );
    assert_eq!(aclmdlRIExecuteAsync(ri, s), 0, "{}", err());
    assert_eq!(aclmdlRIExecuteAsync(ri, s), 0, "{}", err());
    assert_eq!(aclrtSynchronizeStream(s), 0, "{}", err());
    assert_eq!(download(y, 2), vec![90.0, 180.0]);
    // The instance holds its memory until destroyed.
    assert_eq!(aclrtFree(x), ACL_ERROR_INVALID_PARAM);
    assert_eq!(aclmdlRIDestroy(ri), 0, "{}", err());
    assert_eq!(aclmdlRIDestroy(ri), ACL_ERROR_INVALID_PARAM);
    assert_eq!(aclmdlRIExecuteAsync(ri, s), ACL_ERROR_INVALID_PARAM);
    for p in [x, y, spare] {
        assert_eq!(aclrtFree(p), 0, "{}", err());
    }
    assert_eq!(aclrtDestroyStream(s), 0, "{}", err());
}

#[test]
fn forbidden_calls_invalidate_the_capture() {
    let _serial = init();
    let s = stream();
    let x = upload(&[1.0]);
    let one = [1f32];
    let host = one.as_ptr() as *const c_void;
    // A synchronise of the capturing stream: refused in every mode.
    assert_eq!(aclmdlRICaptureBegin(s, RELAXED), 0, "{}", err());
    assert_eq!(scale(x, 1, 2.0, s), 0, "{}", err());
    assert_eq!(
        aclrtSynchronizeStream(s),
        ACL_ERROR_RT_CAPTURE_MODE_NOT_SUPPORT
    );
    assert!(err().contains("invalidated"), "{}", err());
    assert_eq!(
        status(s),
        aclmdlRICaptureStatus::ACL_MODEL_RI_CAPTURE_STATUS_INVALIDATED
    );
    assert_ne!(scale(x, 1, 2.0, s), 0, "no more work into a failed capture");
    let mut ri: aclmdlRI = null_mut();
    assert_eq!(
        unsafe { aclmdlRICaptureEnd(s, &mut ri) },
        ACL_ERROR_RT_STREAM_CAPTURE_INVALIDATED
    );
    assert_eq!(
        status(s),
        aclmdlRICaptureStatus::ACL_MODEL_RI_CAPTURE_STATUS_NONE
    );
    // A blocking copy in GLOBAL mode: refused, unless the thread switched itself to RELAXED.
    assert_eq!(aclmdlRICaptureBegin(s, GLOBAL), 0, "{}", err());
    assert_eq!(
        aclrtMemcpy(x, 4, host, 4, H2D),
        ACL_ERROR_RT_CAPTURE_MODE_NOT_SUPPORT
    );
    assert_eq!(
        unsafe { aclmdlRICaptureEnd(s, &mut ri) },
        ACL_ERROR_RT_STREAM_CAPTURE_INVALIDATED
    );
    assert_eq!(aclmdlRICaptureBegin(s, GLOBAL), 0, "{}", err());
    let mut mode = RELAXED;
    assert_eq!(unsafe { aclmdlRICaptureThreadExchangeMode(&mut mode) }, 0);
    assert_eq!(mode, GLOBAL, "the default thread mode");
    assert_eq!(aclrtMemcpy(x, 4, host, 4, H2D), 0, "{}", err());
    assert_eq!(aclrtMemset(x, 4, 0, 4), 0, "{}", err());
    assert_eq!(unsafe { aclmdlRICaptureThreadExchangeMode(&mut mode) }, 0);
    assert_eq!(mode, RELAXED);
    // An async copy from unpinned host memory is unsafe; from aclrtMallocHost memory it is not.
    assert_eq!(
        aclrtMemcpyAsync(x, 4, host, 4, H2D, s),
        ACL_ERROR_RT_CAPTURE_MODE_NOT_SUPPORT
    );
    assert_eq!(
        unsafe { aclmdlRICaptureEnd(s, &mut ri) },
        ACL_ERROR_RT_STREAM_CAPTURE_INVALIDATED
    );
    assert_eq!(aclmdlRICaptureBegin(s, GLOBAL), 0, "{}", err());
    let mut pinned = null_mut();
    assert_eq!(unsafe { aclrtMallocHost(&mut pinned, 4) }, 0);
    assert_eq!(aclrtMemcpyAsync(x, 4, pinned, 4, H2D, s), 0, "{}", err());
    assert_eq!(
        aclrtSynchronizeDevice(),
        ACL_ERROR_RT_CAPTURE_MODE_NOT_SUPPORT
    );
    assert_eq!(
        unsafe { aclmdlRICaptureEnd(s, &mut ri) },
        ACL_ERROR_RT_STREAM_CAPTURE_INVALIDATED
    );
    // The default stream cannot be captured.
    assert_eq!(
        aclmdlRICaptureBegin(null_mut(), GLOBAL),
        ACL_ERROR_INVALID_PARAM
    );
    // Nothing captured ran, and the failed captures released the memory.
    assert_eq!(download(x, 1), vec![0.0]);
    assert_eq!(aclrtFreeHost(pinned), 0, "{}", err());
    assert_eq!(aclrtFree(x), 0, "{}", err());
    assert_eq!(aclrtDestroyStream(s), 0, "{}", err());
}
