//! A first-generation Ascend 910 with CANN 8.0 (`SENET_EMU_CANN_VERSION=8.0`): the 8.0 docs list
//! aclnnConvolution for it (contract Part F 3), and the implementation computes it in FLOAT16.
mod common;

use common::probes::*;
use common::*;
use senet_cann_sys::*;

const F: aclDataType = aclDataType::ACL_FLOAT;
const NCHW: aclFormat = aclFormat::ACL_FORMAT_NCHW;

#[test]
fn convolution_exists_on_the_910_with_cann_8_0() {
    let _serial = init_env(&[
        ("SENET_EMU_SOC", "Ascend910ProB"),
        ("SENET_EMU_CANN_VERSION", "8.0"),
    ]);
    refused(
        &conv(F, NCHW, 0, 0),
        "cubeMathType 0 (KEEP_DTYPE) with FLOAT inputs",
    );
    refused(
        &conv(F, NCHW, 3, 0),
        "cubeMathType 3 (USE_HF32) with FLOAT inputs",
    );
    assert_eq!(accepted(conv(F, NCHW, 1, 0)), vec![1.0, 1.0], "FP16");
    assert_eq!(accepted(conv(F, NCHW, 2, 0)), vec![1.0, 1.0], "FP16");
    assert_eq!(
        accepted(conv(aclDataType::ACL_FLOAT16, NCHW, 0, 0)),
        vec![1.0, 1.0]
    );
    refused(
        &conv(F, aclFormat::ACL_FORMAT_ND, 1, 0),
        "input is 4-D with format ND",
    );
    // Everything else is as in the current release.
    refused(
        &max_pool_indices(aclDataType::ACL_INT64),
        "aclnnMaxPool2dWithIndices is not supported on this product",
    );
}
