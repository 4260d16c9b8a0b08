//! Stream capture under CANN 8.0 on an emulated A2 (`SENET_EMU_CANN_VERSION=8.0`): the API
//! first appears in CANN 8.1.RC1, so every call is refused with ACL_ERROR_RT_FEATURE_NOT_SUPPORT.
mod common;

use std::ptr::null_mut;

use common::*;
use senet_cann_emu::*;
use senet_cann_sys::*;

#[test]
fn cann_8_0_has_no_stream_capture() {
    let _serial = init_env(&[
        ("SENET_EMU_SOC", "Ascend910B1"),
        ("SENET_EMU_CANN_VERSION", "8.0"),
    ]);
    let mut s = null_mut();
    assert_eq!(unsafe { aclrtCreateStream(&mut s) }, 0, "{}", err());
    let mode = aclmdlRICaptureMode::ACL_MODEL_RI_CAPTURE_MODE_GLOBAL;
    assert_eq!(
        aclmdlRICaptureBegin(s, mode),
        ACL_ERROR_RT_FEATURE_NOT_SUPPORT
    );
    assert!(err().contains("CANN 8.0"), "{}", err());
    let mut ri: aclmdlRI = null_mut();
    assert_eq!(
        unsafe { aclmdlRICaptureEnd(s, &mut ri) },
        ACL_ERROR_RT_FEATURE_NOT_SUPPORT
    );
    assert_eq!(aclrtDestroyStream(s), 0, "{}", err());
}
