//! The contract on an emulated first-generation Ascend 910 (`SENET_EMU_SOC=Ascend910A`, CANN
//! 9.1, the newest release the contract covers): the cube has no FP32, the forward convolution,
//! MaxPool2dWithIndices and FusedSgd are not supported, FLOAT pooling through the mask pair is
//! computed as FLOAT16.
mod common;

use std::ffi::CStr;

use common::probes::*;
use common::*;
use senet_cann_emu::*;
use senet_cann_sys::*;

const F: aclDataType = aclDataType::ACL_FLOAT;
const NCHW: aclFormat = aclFormat::ACL_FORMAT_NCHW;

#[test]
fn first_generation_910_follows_the_contract() {
    let _serial = init_env(&[("SENET_EMU_SOC", "Ascend910A")]);
    let soc = unsafe { CStr::from_ptr(aclrtGetSocName()) };
    assert_eq!(soc.to_str().unwrap(), "Ascend910A");
    // Not supported in the current docs (aclnnConvolution.md:23); CANN 8.0 had it
    // (tests/product_910_cann80.rs).
    refused(
        &conv(F, NCHW, 1, 0),
        "aclnnConvolution is not supported on this product",
    );
    // The backward is supported, FLOAT computed as FLOAT16 (1, 2) or refused (0, 3).
    refused(
        &conv_backward(0, false),
        "cubeMathType 0 (KEEP_DTYPE) with FLOAT inputs",
    );
    refused(
        &conv_backward(3, false),
        "cubeMathType 3 (USE_HF32) with FLOAT inputs",
    );
    assert_eq!(
        accepted(conv_backward(1, false)),
        vec![2.0; 2],
        "FP16 operands"
    );
    refused(
        &conv_backward(1, true),
        "gradWeight is a non-contiguous view",
    );
    // Mm likewise (aclnnMm.md:150-155).
    refused(
        &mm(F, 0, false),
        "cubeMathType 0 (KEEP_DTYPE) with FLOAT inputs",
    );
    refused(&mm(F, 3, false), "cubeMathType 3");
    refused(&mm(F, 4, false), "cubeMathType 4");
    assert_eq!(accepted(mm(F, 1, false)), vec![2.0; 2]);
    assert_eq!(accepted(mm(F, 2, false)), vec![2.0; 2]);
    assert_eq!(
        accepted(mm(aclDataType::ACL_FLOAT16, 0, false)),
        vec![2.0; 2]
    );
    // MaxPool2dWithIndices is not supported; the mask pair is, FLOAT computed as FLOAT16
    // (aclnnMaxPool2dWithMask.md:338, aclnnMaxPool2dWithMaskBackward.md:301): the maximum
    // 4 + 2^-12 and the gradient 5 + 2^-9 come out rounded to FLOAT16.
    refused(
        &max_pool_indices(aclDataType::ACL_INT64),
        "aclnnMaxPool2dWithIndices is not supported on this product",
    );
    refused(
        &max_pool_indices_backward(F, aclDataType::ACL_INT32),
        "aclnnMaxPool2dWithIndicesBackward is not supported on this product",
    );
    assert_eq!(
        accepted(max_pool_mask_round_trip(NCHW)),
        vec![0.0, 5.0, 0.0, 0.0, 4.0]
    );
    refused(
        &max_pool_mask_round_trip(aclFormat::ACL_FORMAT_ND),
        "format ND",
    );
    // BatchNorm's saveInvstd holds the biased variance (aclnnBatchNorm.md:226-229).
    assert_eq!(accepted(batch_norm_save_invstd()), vec![5.0]);
    refused(&add(true), "overlaps input");
    // Part F 11, the stricter reading: no BFLOAT16 Sigmoid on this product.
    refused(&sigmoid_bf16(), "self is BFLOAT16");
    // No FusedSgd (aclnnFusedSgd.md:21).
    refused(
        &fused_sgd(),
        "aclnnFusedSgd is not supported on this product",
    );
    // No foreach operators ("### aclnnForeach*" table: ❌ on the 910 for every row).
    refused(
        &foreach_add_list(),
        "aclnnForeachAddList is not supported on this product",
    );
    refused(
        &foreach_add_list_v2(),
        "aclnnForeachAddListV2 is not supported on this product",
    );
    refused(
        &foreach_mul_scalar_v2(F, 0.5, F),
        "aclnnForeachMulScalarV2 is not supported on this product",
    );
}

/// Stream capture is marked ☓ for the first-generation 910 in every CANN version's product
/// table (docs/npu-performance.md §6.1): refused with ACL_ERROR_RT_FEATURE_NOT_SUPPORT.
#[test]
fn first_generation_910_has_no_stream_capture() {
    let _serial = init_env(&[("SENET_EMU_SOC", "Ascend910A")]);
    let mut s = std::ptr::null_mut();
    assert_eq!(unsafe { aclrtCreateStream(&mut s) }, 0, "{}", err());
    let mode = aclmdlRICaptureMode::ACL_MODEL_RI_CAPTURE_MODE_GLOBAL;
    assert_eq!(
        aclmdlRICaptureBegin(s, mode),
        ACL_ERROR_RT_FEATURE_NOT_SUPPORT
    );
    assert!(err().contains("Ascend910A"), "{}", err());
    assert_eq!(aclrtDestroyStream(s), 0, "{}", err());
}
