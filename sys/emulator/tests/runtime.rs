//! Runtime contract: memory registry, copies, streams, events.
mod common;

use std::ffi::c_void;
use std::ptr::null_mut;

use common::*;
use senet_cann_emu::*;
use senet_cann_sys::*;

const H2D: aclrtMemcpyKind = aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_DEVICE;
const D2H: aclrtMemcpyKind = aclrtMemcpyKind::ACL_MEMCPY_DEVICE_TO_HOST;
const D2D: aclrtMemcpyKind = aclrtMemcpyKind::ACL_MEMCPY_DEVICE_TO_DEVICE;

/// Initialises the emulator once and serialises the tests: they share its global state, and a
/// synchronous copy in one test runs every stream's queue, another test's included.
fn setup() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    init_with(&[("SENET_EMU_HBM_BYTES", "1048576")]);
    guard
}

#[test]
fn malloc_is_aligned_and_sized() {
    let _serial = setup();
    for size in [1usize, 31, 32, 33, 1000] {
        let p = malloc(size);
        assert_eq!(p as usize % 64, 0);
        if size >= 4 {
            assert!(
                download(p, 1)[0].is_nan(),
                "fresh device memory is poisoned"
            );
        }
        assert_eq!(aclrtFree(p), 0, "{}", err());
    }
    let mut p = null_mut();
    let policy = aclrtMemMallocPolicy::ACL_MEM_MALLOC_HUGE_FIRST;
    assert_eq!(
        unsafe { aclrtMalloc(&mut p, 0, policy) },
        ACL_ERROR_INVALID_PARAM
    );
    assert!(
        err().contains("aclrtMalloc") && err().contains("size is 0"),
        "{}",
        err()
    );
    // Past the 1 MiB budget of this process.
    assert_eq!(
        unsafe { aclrtMalloc(&mut p, 2 << 20, policy) },
        ACL_ERROR_RT_MEMORY_ALLOCATION
    );
    assert!(err().contains("out of device memory"), "{}", err());
    let (mut free, mut total) = (0usize, 0usize);
    assert_eq!(
        unsafe { aclrtGetMemInfo(aclrtMemAttr::ACL_HBM_MEM, &mut free, &mut total) },
        0
    );
    assert_eq!(total, 1 << 20);
    assert!(free <= total);
}

#[test]
fn free_checks_the_pointer() {
    let _serial = setup();
    let p = malloc(256);
    let mut host = [0u8; 16];
    assert_eq!(
        aclrtFree(host.as_mut_ptr() as *mut c_void),
        ACL_ERROR_INVALID_PARAM
    );
    assert!(
        err().contains("was not returned by aclrtMalloc"),
        "{}",
        err()
    );
    let mid = (p as usize + 64) as *mut c_void;
    assert_eq!(aclrtFree(mid), ACL_ERROR_INVALID_PARAM);
    assert!(
        err().contains("not the start of an allocation"),
        "{}",
        err()
    );
    assert_eq!(aclrtFree(null_mut()), ACL_ERROR_INVALID_PARAM);
    assert_eq!(aclrtFreeHost(p), ACL_ERROR_INVALID_PARAM);
    assert_eq!(aclrtFree(p), 0);
    assert_eq!(aclrtFree(p), ACL_ERROR_INVALID_PARAM, "double free");
    let mut h = null_mut();
    assert_eq!(unsafe { aclrtMallocHost(&mut h, 100) }, 0);
    assert_eq!(aclrtFree(h), ACL_ERROR_INVALID_PARAM);
    assert_eq!(aclrtFreeHost(h), 0);
}

#[test]
fn memcpy_checks_bounds_and_sides() {
    let _serial = setup();
    let p = malloc(64);
    let src = [1f32; 32];
    let host = src.as_ptr() as *const c_void;
    // count > destMax
    assert_eq!(aclrtMemcpy(p, 16, host, 32, H2D), ACL_ERROR_INVALID_PARAM);
    assert!(err().contains("destMax"), "{}", err());
    // past the end of the allocation
    assert_eq!(aclrtMemcpy(p, 128, host, 128, H2D), ACL_ERROR_INVALID_PARAM);
    assert!(err().contains("past the end"), "{}", err());
    // a host pointer as the device side
    let mut other = [0f32; 32];
    let other_p = other.as_mut_ptr() as *mut c_void;
    assert_eq!(
        aclrtMemcpy(other_p, 64, host, 64, H2D),
        ACL_ERROR_INVALID_PARAM
    );
    assert!(
        err().contains("not inside any live device allocation"),
        "{}",
        err()
    );
    // a device pointer as the host side
    assert_eq!(aclrtMemcpy(p, 64, p, 64, H2D), ACL_ERROR_INVALID_PARAM);
    assert!(err().contains("is device memory"), "{}", err());
    // null
    assert_eq!(
        aclrtMemcpy(p, 64, std::ptr::null(), 4, H2D),
        ACL_ERROR_INVALID_PARAM
    );
    // D2D async needs 64-byte alignment
    let q = malloc(128);
    let q32 = (q as usize + 32) as *mut c_void;
    assert_eq!(
        aclrtMemcpyAsync(q32, 64, p, 64, D2D, null_mut()),
        ACL_ERROR_INVALID_PARAM
    );
    assert!(err().contains("64-byte aligned"), "{}", err());
    assert_eq!(aclrtMemcpy(p, 64, host, 64, H2D), 0, "{}", err());
    assert_eq!(aclrtMemcpy(q32, 64, p, 64, D2D), 0, "{}", err());
    assert_eq!(download(q32, 16), vec![1f32; 16]);
    // memset bounds
    assert_eq!(aclrtMemset(p, 64, 0, 65), ACL_ERROR_INVALID_PARAM);
    assert_eq!(aclrtMemset(p, 64, 0, 64), 0);
    assert_eq!(download(p, 16), vec![0f32; 16]);
    assert_eq!(aclrtFree(p), 0);
    assert_eq!(aclrtFree(q), 0);
}

#[test]
fn async_work_waits_for_synchronize() {
    let _serial = setup();
    let mut s = null_mut();
    assert_eq!(unsafe { aclrtCreateStream(&mut s) }, 0);
    let p = upload(&[1.0, 2.0]);
    let newer = [5f32, 6.0];
    assert_eq!(
        aclrtMemcpyAsync(p, 8, newer.as_ptr() as *const c_void, 8, H2D, s),
        0,
        "{}",
        err()
    );
    let mut out = [0f32; 2];
    let outp = out.as_mut_ptr() as *mut c_void;
    assert_eq!(aclrtMemcpyAsync(outp, 8, p, 8, D2H, s), 0);
    // Nothing ran yet: the host buffer still holds its old contents.
    assert_eq!(out, [0.0, 0.0]);
    // Memory that queued work uses cannot be freed.
    assert_eq!(aclrtFree(p), ACL_ERROR_INVALID_PARAM);
    assert!(err().contains("queued"), "{}", err());
    assert_eq!(aclrtSynchronizeStream(s), 0, "{}", err());
    assert_eq!(out, [5.0, 6.0]);
    // Memset async too.
    assert_eq!(aclrtMemsetAsync(p, 8, 0, 8, s), 0);
    assert_eq!(aclrtMemcpyAsync(outp, 8, p, 8, D2H, s), 0);
    assert_eq!(out, [5.0, 6.0]);
    assert_eq!(
        aclrtDestroyStream(s),
        0,
        "destroy runs pending work: {}",
        err()
    );
    assert_eq!(out, [0.0, 0.0]);
    assert_eq!(aclrtFree(p), 0, "{}", err());
    assert_eq!(
        aclrtSynchronizeStream(s),
        ACL_ERROR_INVALID_PARAM,
        "destroyed stream"
    );
}

#[test]
fn events_order_streams() {
    let _serial = setup();
    let (mut a, mut b) = (null_mut(), null_mut());
    assert_eq!(unsafe { aclrtCreateStream(&mut a) }, 0);
    assert_eq!(unsafe { aclrtCreateStream(&mut b) }, 0);
    let (mut e0, mut e1) = (null_mut(), null_mut());
    assert_eq!(unsafe { aclrtCreateEvent(&mut e0) }, 0);
    assert_eq!(unsafe { aclrtCreateEvent(&mut e1) }, 0);
    let p = upload(&[0.0]);
    let src = [7f32];
    let mut out = [0f32];
    assert_eq!(aclrtRecordEvent(e0, a), 0);
    assert_eq!(
        aclrtMemcpyAsync(p, 4, src.as_ptr() as *const c_void, 4, H2D, a),
        0
    );
    assert_eq!(aclrtRecordEvent(e1, a), 0);
    let mut ms = 0f32;
    assert_eq!(
        unsafe { aclrtEventElapsedTime(&mut ms, e0, e1) },
        ACL_ERROR_INVALID_PARAM,
        "events not run yet"
    );
    // b waits for a's copy, then reads.
    assert_eq!(aclrtStreamWaitEvent(b, e1), 0);
    assert_eq!(
        aclrtMemcpyAsync(out.as_mut_ptr() as *mut c_void, 4, p, 4, D2H, b),
        0
    );
    assert_eq!(aclrtSynchronizeStream(b), 0, "{}", err());
    assert_eq!(out, [7.0]);
    assert_eq!(
        unsafe { aclrtEventElapsedTime(&mut ms, e0, e1) },
        0,
        "{}",
        err()
    );
    assert!(ms >= 0.0);
    assert_eq!(aclrtSynchronizeEvent(e1), 0);
    assert_eq!(aclrtDestroyEvent(e0), 0);
    assert_eq!(aclrtDestroyEvent(e0), ACL_ERROR_INVALID_PARAM);
    assert_eq!(aclrtDestroyEvent(e1), 0);
    assert_eq!(aclrtDestroyStream(a), 0);
    assert_eq!(aclrtDestroyStream(b), 0);
    assert_eq!(aclrtFree(p), 0);
}

/// Two streams touching one buffer: without an event between them the second call is refused
/// as a data race (on a device the streams run concurrently), even though the emulator would
/// have run the writer first; a wait on an event recorded after the writer, or a host
/// synchronise of the writer's stream, orders them. An event recorded before the writer does
/// not.
#[test]
fn a_missing_stream_wait_is_a_data_race() {
    let _serial = setup();
    let (mut a, mut b) = (null_mut(), null_mut());
    assert_eq!(unsafe { aclrtCreateStream(&mut a) }, 0);
    assert_eq!(unsafe { aclrtCreateStream(&mut b) }, 0);
    let (mut early, mut late) = (null_mut(), null_mut());
    assert_eq!(unsafe { aclrtCreateEvent(&mut early) }, 0);
    assert_eq!(unsafe { aclrtCreateEvent(&mut late) }, 0);
    let (p, q) = (upload(&[0.0]), upload(&[0.0]));
    let src = [3f32];
    let d2d = |dst, src, s| aclrtMemcpyAsync(dst, 4, src, 4, D2D, s);
    assert_eq!(aclrtRecordEvent(early, a), 0);
    assert_eq!(
        aclrtMemcpyAsync(p, 4, src.as_ptr() as *const c_void, 4, H2D, a),
        0
    );
    assert_eq!(aclrtRecordEvent(late, a), 0);
    // No wait at all.
    assert_eq!(d2d(q, p, b), ACL_ERROR_INVALID_PARAM);
    let msg = err();
    assert!(
        msg.contains("data race") && msg.contains("aclrtMemcpyAsync"),
        "{msg}"
    );
    // A wait for a record made before the write does not order it.
    assert_eq!(aclrtStreamWaitEvent(b, early), 0);
    assert_eq!(d2d(q, p, b), ACL_ERROR_INVALID_PARAM);
    // A wait for one made after it does.
    assert_eq!(aclrtStreamWaitEvent(b, late), 0);
    assert_eq!(d2d(q, p, b), 0, "{}", err());
    // Now b last used p: a must wait for b in turn, or the host must synchronise b.
    assert_eq!(d2d(p, q, a), ACL_ERROR_INVALID_PARAM);
    assert_eq!(aclrtSynchronizeStream(b), 0, "{}", err());
    assert_eq!(d2d(p, q, a), 0, "{}", err());
    assert_eq!(aclrtSynchronizeStream(a), 0, "{}", err());
    assert_eq!(download(p, 1), vec![3.0]);
    for e in [early, late] {
        assert_eq!(aclrtDestroyEvent(e), 0);
    }
    for s in [a, b] {
        assert_eq!(aclrtDestroyStream(s), 0);
    }
    assert_eq!(aclrtFree(p), 0);
    assert_eq!(aclrtFree(q), 0);
}

#[test]
fn other_threads_need_a_context() {
    let _serial = setup();
    let h = std::thread::spawn(|| {
        let mut s = null_mut();
        let rc = unsafe { aclrtCreateStream(&mut s) };
        (rc, err())
    });
    let (rc, msg) = h.join().unwrap();
    assert_eq!(rc, ACL_ERROR_RT_CONTEXT_NULL);
    assert!(msg.contains("no current context"), "{msg}");
}

#[test]
fn synchronous_copies_do_not_wait_for_queued_work() {
    let _serial = setup();
    // "本接口会立刻进行内存复制，函数内部不会进行隐式的device同步或流同步" (contract Part D).
    let p = upload(&[1.0, 2.0]);
    let newer = [5f32, 6.0];
    let h2d = newer.as_ptr() as *const c_void;
    assert_eq!(aclrtMemcpyAsync(p, 8, h2d, 8, H2D, null_mut()), 0);
    let mut out = [0f32; 2];
    let outp = out.as_mut_ptr() as *mut c_void;
    // The blocking copy races the queued one and sees the old contents, every time.
    assert_eq!(aclrtMemcpy(outp, 8, p, 8, D2H), 0, "{}", err());
    assert_eq!(out, [1.0, 2.0]);
    // A blocking memset does not wait either: the queued copy, run later, overwrites it.
    assert_eq!(aclrtMemset(p, 8, 0, 8), 0, "{}", err());
    assert_eq!(aclrtMemcpy(outp, 8, p, 8, D2H), 0);
    assert_eq!(out, [0.0, 0.0]);
    assert_eq!(aclrtSynchronizeStream(null_mut()), 0, "{}", err());
    assert_eq!(aclrtMemcpy(outp, 8, p, 8, D2H), 0);
    assert_eq!(out, [5.0, 6.0]);
    assert_eq!(aclrtFree(p), 0, "{}", err());
}

#[test]
fn streams_belong_to_the_current_context() {
    let _serial = setup();
    let mut s = null_mut();
    assert_eq!(unsafe { aclrtCreateStream(&mut s) }, 0);
    let mut dflt = null_mut();
    assert_eq!(unsafe { aclrtGetCurrentContext(&mut dflt) }, 0);
    // A second context on the same device: the stream of the first is not usable there.
    let mut other = null_mut();
    assert_eq!(unsafe { aclrtCreateContext(&mut other, 0) }, 0);
    assert_eq!(aclrtSynchronizeStream(s), ACL_ERROR_RT_STREAM_CONTEXT);
    assert!(
        err().contains("rt_error_codes.h:24") && err().contains("current context"),
        "{}",
        err()
    );
    let p = upload(&[1.0]);
    let mut out = [0f32];
    let outp = out.as_mut_ptr() as *mut c_void;
    assert_eq!(
        aclrtMemcpyAsync(outp, 4, p, 4, D2H, s),
        ACL_ERROR_RT_STREAM_CONTEXT
    );
    assert_eq!(aclrtSetCurrentContext(dflt), 0);
    assert_eq!(aclrtSynchronizeStream(s), 0, "{}", err());
    assert_eq!(aclrtDestroyStream(s), 0);
    assert_eq!(aclrtDestroyContext(other), 0);
    assert_eq!(aclrtSetCurrentContext(dflt), 0);
    assert_eq!(aclrtFree(p), 0);
}

#[test]
fn recycled_device_blocks_are_poisoned_again() {
    let _serial = setup();
    for _ in 0..3 {
        let p = upload(&[1.0; 64]);
        assert_eq!(download(p, 64), vec![1.0; 64]);
        assert_eq!(aclrtFree(p), 0);
        // The same size again (the host allocator typically hands back the same block).
        let q = malloc(256);
        assert!(download(q, 64).iter().all(|v| v.is_nan()), "stale values");
        assert_eq!(aclrtFree(q), 0);
    }
}
