//! First-generation Ascend 910 (`SENET_EMU_SOC=Ascend910A`): MaxPool2dWithIndices is refused
//! and convolution computes in fp16.
mod common;

use std::ffi::CStr;
use std::ptr::null_mut;

use common::*;
use senet_cann_emu::*;
use senet_cann_sys::*;

#[test]
fn first_generation_910() {
    init_with(&[("SENET_EMU_SOC", "Ascend910A")]);
    let soc = unsafe { CStr::from_ptr(aclrtGetSocName()) };
    assert_eq!(soc.to_str().unwrap(), "Ascend910A");

    let (_, xt) = tensor_from(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    let (k, s, p, d) = (ints(&[2]), ints(&[2]), ints(&[0]), ints(&[1]));
    let (_, yt) = tensor_from(&[0.0], &[1, 1, 1, 1]);
    let ip = malloc(8);
    let it = tensor_of(ip, &[1, 1, 1, 1], aclDataType::ACL_INT64);
    let (mut ws, mut ex) = (0, null_mut());
    let rc = unsafe {
        aclnnMaxPool2dWithIndicesGetWorkspaceSize(xt, k, s, p, d, false, yt, it, &mut ws, &mut ex)
    };
    assert_eq!(rc, ACLNN_ERR_PARAM_INVALID);
    assert!(err().contains("not supported on Ascend910A"), "{}", err());
    // WithMask works.
    let mp = malloc(4 * 64);
    let mt = tensor_of(mp, &[1, 1, 4, 64], aclDataType::ACL_INT8);
    let rc = unsafe {
        aclnnMaxPool2dWithMaskGetWorkspaceSize(xt, k, s, p, d, false, yt, mt, &mut ws, &mut ex)
    };
    assert_eq!(rc, 0, "{}", err());
    run(ws, ex, aclnnMaxPool2dWithMask);

    // 1x1 convolution of 1 + 2^-12 by 1: fp32 would keep it, fp16 compute rounds it to 1.
    let v = 1.0 + 2f32.powi(-12);
    let (_, x) = tensor_from(&[v], &[1, 1, 1, 1]);
    let (_, w) = tensor_from(&[1.0], &[1, 1, 1, 1]);
    let (op, o) = tensor_from(&[0.0], &[1, 1, 1, 1]);
    let (st, pd, dl) = (ints(&[1, 1]), ints(&[0, 0]), ints(&[1, 1]));
    let rc = unsafe {
        aclnnConvolutionGetWorkspaceSize(
            x,
            w,
            null_mut(),
            st,
            pd,
            dl,
            false,
            null_mut(),
            1,
            o,
            0,
            &mut ws,
            &mut ex,
        )
    };
    assert_eq!(rc, 0, "{}", err());
    run(ws, ex, aclnnConvolution);
    assert_eq!(download(op, 1), vec![1.0]);
}
