//! Life cycle: calls before aclInit, aclInit twice, SENET_EMU_FAIL, aclFinalize. One test, so
//! the order is fixed within this process.
mod common;

use std::ffi::CStr;
use std::ptr::null_mut;

use common::err;
use senet_cann_emu::*;
use senet_cann_sys::*;

#[test]
fn life_cycle() {
    // Before aclInit.
    let mut count = 0u32;
    assert_eq!(
        unsafe { aclrtGetDeviceCount(&mut count) },
        ACL_ERROR_UNINITIALIZE
    );
    assert!(
        err().contains("aclrtGetDeviceCount") && err().contains("aclInit"),
        "{}",
        err()
    );
    assert_eq!(aclrtSetDevice(0), ACL_ERROR_UNINITIALIZE);
    let mut p = null_mut();
    assert_eq!(
        unsafe { aclrtMalloc(&mut p, 64, aclrtMemMallocPolicy::ACL_MEM_MALLOC_HUGE_FIRST) },
        ACL_ERROR_UNINITIALIZE
    );
    assert!(aclrtGetSocName().is_null());
    assert_eq!(aclFinalize(), ACL_ERROR_UNINITIALIZE);

    // Failures injected from the environment at aclInit.
    std::env::set_var("SENET_EMU_FAIL", "aclrtCreateStream:1:507000");
    std::env::set_var("SENET_EMU_DEVICES", "2");
    assert_eq!(
        unsafe { aclInit(std::ptr::null()) },
        ACL_SUCCESS,
        "{}",
        err()
    );
    assert_eq!(
        unsafe { aclInit(std::ptr::null()) },
        ACL_ERROR_REPEAT_INITIALIZE
    );
    assert!(err().contains("aclInit"), "{}", err());

    assert_eq!(unsafe { aclrtGetDeviceCount(&mut count) }, 0);
    assert_eq!(count, 2);
    let soc = unsafe { CStr::from_ptr(aclrtGetSocName()) };
    assert_eq!(soc.to_str().unwrap(), "Ascend910B1");
    let (mut a, mut b, mut c) = (0, 0, 0);
    assert_eq!(unsafe { aclrtGetVersion(&mut a, &mut b, &mut c) }, 0);
    assert_eq!((a, b, c), (1, 10, 0));

    // No current context yet on this thread.
    let mut s = null_mut();
    assert_eq!(
        unsafe { aclrtCreateStream(&mut s) },
        ACL_ERROR_RT_CONTEXT_NULL
    );
    assert_eq!(aclrtSetDevice(2), ACL_ERROR_RT_INVALID_DEVICEID);
    assert_eq!(aclrtSetDevice(1), 0, "{}", err());
    let mut d = -1;
    assert_eq!(unsafe { aclrtGetDevice(&mut d) }, 0);
    assert_eq!(d, 1);

    // SENET_EMU_FAIL=aclrtCreateStream:1:507000: the second call (the first was the one
    // without a context above) fails.
    assert_eq!(unsafe { aclrtCreateStream(&mut s) }, 507000);
    assert!(
        err().contains("aclrtCreateStream") && err().contains("injected"),
        "{}",
        err()
    );
    assert_eq!(unsafe { aclrtCreateStream(&mut s) }, 0, "{}", err());
    assert_eq!(aclrtDestroyStream(s), 0, "{}", err());

    // Contexts.
    let mut ctx = null_mut();
    assert_eq!(unsafe { aclrtCreateContext(&mut ctx, 0) }, 0);
    assert_eq!(unsafe { aclrtGetDevice(&mut d) }, 0);
    assert_eq!(d, 0);
    let mut cur = null_mut();
    assert_eq!(unsafe { aclrtGetCurrentContext(&mut cur) }, 0);
    assert_eq!(cur, ctx);
    assert_eq!(aclrtDestroyContext(ctx), 0, "{}", err());
    assert_eq!(unsafe { aclrtGetDevice(&mut d) }, ACL_ERROR_RT_CONTEXT_NULL);
    assert_eq!(aclrtSetCurrentContext(ctx), ACL_ERROR_INVALID_PARAM);
    assert_eq!(aclrtSetDevice(1), 0);

    // Finalize frees everything; later calls fail until a new aclInit.
    let _ = common::malloc(100);
    assert_eq!(senetEmuLiveAllocations(), 1);
    assert_eq!(aclrtResetDevice(1), 0, "{}", err());
    assert_eq!(aclrtResetDevice(1), 0, "{}", err());
    assert_eq!(aclrtResetDevice(1), ACL_ERROR_INVALID_PARAM);
    assert_eq!(aclFinalize(), 0, "{}", err());
    assert_eq!(senetEmuLiveAllocations(), 0);
    assert_eq!(aclFinalize(), ACL_ERROR_REPEAT_FINALIZE);
    assert_eq!(aclrtSetDevice(0), ACL_ERROR_UNINITIALIZE);
    assert!(err().contains("aclFinalize"), "{}", err());
    std::env::remove_var("SENET_EMU_FAIL");
    assert_eq!(unsafe { aclInit(std::ptr::null()) }, 0, "{}", err());
    assert_eq!(aclrtSetDevice(0), 0, "{}", err());
}
