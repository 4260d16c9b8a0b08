//! The test control API: injected failures, call counts, live-resource counters. One test, as
//! the counters are process-wide.
mod common;

use std::ptr::null_mut;

use common::*;
use senet_cann_emu::*;
use senet_cann_sys::*;

#[test]
fn control_api() {
    let _serial = init();
    let name = c("aclrtMalloc");
    let before = unsafe { senetEmuCallCount(name.as_ptr()) };
    // Fail the second call from now.
    unsafe { senetEmuInjectFailure(name.as_ptr(), 1, ACL_ERROR_RT_MEMORY_ALLOCATION) };
    let a = malloc(10);
    let mut p = null_mut();
    let policy = aclrtMemMallocPolicy::ACL_MEM_MALLOC_HUGE_FIRST;
    assert_eq!(
        unsafe { aclrtMalloc(&mut p, 10, policy) },
        ACL_ERROR_RT_MEMORY_ALLOCATION
    );
    assert!(
        err().starts_with("aclrtMalloc: failure injected"),
        "{}",
        err()
    );
    let b = malloc(10);
    assert_eq!(unsafe { senetEmuCallCount(name.as_ptr()) }, before + 3);

    // Live allocations and bytes: align_up(10, 32) + 32 = 64 each.
    assert_eq!(senetEmuLiveAllocations(), 2);
    assert_eq!(senetEmuLiveBytes(), 128);
    assert_eq!(aclrtFree(a), 0);
    assert_eq!(senetEmuLiveAllocations(), 1);
    assert_eq!(senetEmuLiveBytes(), 64);

    // Live objects: tensors, scalars, arrays, executors.
    let objects = senetEmuLiveObjects();
    let t = tensor(b, &[2]);
    let s = scalar(1.0);
    let arr = ints(&[1]);
    let (mut ws, mut ex) = (0, null_mut());
    assert_eq!(
        unsafe { aclnnInplaceZeroGetWorkspaceSize(t, &mut ws, &mut ex) },
        0
    );
    assert_eq!(senetEmuLiveObjects(), objects + 4);
    run(ws, ex, aclnnInplaceZero);
    assert_eq!(
        senetEmuLiveObjects(),
        objects + 3,
        "launch consumed the executor"
    );
    assert_eq!(aclDestroyTensor(t), 0);
    assert_eq!(aclDestroyScalar(s), 0);
    assert_eq!(aclDestroyIntArray(arr), 0);
    assert_eq!(senetEmuLiveObjects(), objects);

    // aclnn phase 1 and 2 can fail on demand too; clearing drops pending injections.
    let op = c("aclnnInplaceZeroGetWorkspaceSize");
    unsafe { senetEmuInjectFailure(op.as_ptr(), 0, ACLNN_ERR_INNER) };
    let t = tensor(b, &[2]);
    assert_eq!(
        unsafe { aclnnInplaceZeroGetWorkspaceSize(t, &mut ws, &mut ex) },
        ACLNN_ERR_INNER
    );
    assert!(
        err().contains("aclnnInplaceZeroGetWorkspaceSize: failure injected"),
        "{}",
        err()
    );
    unsafe { senetEmuInjectFailure(op.as_ptr(), 0, ACLNN_ERR_INNER) };
    senetEmuClearFailures();
    assert_eq!(
        unsafe { aclnnInplaceZeroGetWorkspaceSize(t, &mut ws, &mut ex) },
        0
    );
    assert_eq!(aclDestroyAclOpExecutor(ex), 0);
    assert_eq!(aclDestroyTensor(t), 0);

    // A tensor list owns its tensors (aclDestroyTensorList.md: they need no separate
    // release): destroying it destroys them, and destroying one again is refused.
    let objects = senetEmuLiveObjects();
    let (t1, t2) = (tensor(b, &[1]), tensor(b, &[2]));
    let members = [t1 as *const aclTensor, t2 as *const aclTensor];
    let l = unsafe { aclCreateTensorList(members.as_ptr(), 2) };
    assert!(!l.is_null());
    assert_eq!(senetEmuLiveObjects(), objects + 3);
    assert_eq!(aclDestroyTensorList(l), 0);
    assert_eq!(senetEmuLiveObjects(), objects);
    assert_ne!(aclDestroyTensor(t1), 0, "a list member freed twice");
    assert_eq!(aclrtFree(b), 0);
    assert_eq!(senetEmuLiveAllocations(), 0);
}
