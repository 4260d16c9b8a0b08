//! What the contract says the A2 (910B) and A3 (910_93) product lines do with each probe: they
//! share their contract rows for every operator senet calls (`aclnn-contract.md` Part B).
use senet_cann_sys::*;

use super::probes::*;

const F: aclDataType = aclDataType::ACL_FLOAT;
const NCHW: aclFormat = aclFormat::ACL_FORMAT_NCHW;

/// Asserts every A2/A3 expectation.
pub fn assert_a2_a3() {
    let [p0, p1] = PROBE;
    // Convolution forward: FLOAT with KEEP_DTYPE is unsupported (aclnnConvolution.md:436);
    // ALLOW_FP32_DOWN_PRECISION and USE_HF32 compute FLOAT as HFLOAT32, USE_FP16 as FLOAT16.
    refused(
        &conv(F, NCHW, 0, 0),
        "cubeMathType 0 (KEEP_DTYPE) with FLOAT inputs",
    );
    assert_eq!(accepted(conv(F, NCHW, 3, 0)), vec![p0, 1.0], "HF32");
    assert_eq!(accepted(conv(F, NCHW, 1, 0)), vec![p0, 1.0], "HF32");
    assert_eq!(accepted(conv(F, NCHW, 2, 0)), vec![1.0, 1.0], "FP16");
    assert_eq!(
        accepted(conv(aclDataType::ACL_FLOAT16, NCHW, 0, 0)),
        vec![1.0, 1.0]
    );
    refused(
        &conv(aclDataType::ACL_BF16, NCHW, 2, 0),
        "cubeMathType 2 (USE_FP16) with BFLOAT16",
    );
    // 4-D convolution tensors must be NCHW; padding at most 255.
    refused(
        &conv(F, aclFormat::ACL_FORMAT_ND, 3, 0),
        "created with format ND",
    );
    refused(&conv(F, NCHW, 3, 256), "padding is [256, 256]");
    // Convolution backward: KEEP_DTYPE is true FP32 here (aclnnConvolutionBackward.md:579);
    // the gradients must be contiguous.
    let exact = p0 + p1;
    assert_eq!(accepted(conv_backward(0, false)), vec![exact; 2]);
    assert_eq!(accepted(conv_backward(3, false)), vec![p0 + 1.0; 2]);
    refused(
        &conv_backward(0, true),
        "gradWeight is a non-contiguous view",
    );
    // Mm: KEEP_DTYPE is FP32, 1 and 3 are HF32; FLOAT16 with USE_HF32 is unsupported; out must
    // be contiguous (its non-contiguous support is not stated).
    assert_eq!(accepted(mm(F, 0, false)), vec![exact; 2]);
    assert_eq!(accepted(mm(F, 1, false)), vec![p0 + 1.0; 2]);
    refused(&mm(F, 0, true), "out is a non-contiguous view");
    refused(
        &mm(aclDataType::ACL_FLOAT16, 3, false),
        "cubeMathType 3 (USE_HF32) with FLOAT16",
    );
    // MaxPool2dWithIndices: the forward takes INT64 and INT32 indices, the backward only FLOAT
    // with INT32 indices (aclnnMaxPool2dWithIndicesBackward.md:221-224).
    assert_eq!(
        accepted(max_pool_indices(aclDataType::ACL_INT64)),
        vec![4.0]
    );
    assert_eq!(
        accepted(max_pool_indices(aclDataType::ACL_INT32)),
        vec![4.0]
    );
    assert_eq!(
        accepted(max_pool_indices_backward(F, aclDataType::ACL_INT32)),
        vec![0.0, 5.0, 0.0, 0.0]
    );
    refused(
        &max_pool_indices_backward(aclDataType::ACL_FLOAT16, aclDataType::ACL_INT32),
        "gradOutput is FLOAT16; this product accepts FLOAT",
    );
    refused(
        &max_pool_indices_backward(F, aclDataType::ACL_INT64),
        "indices is INT64; this product accepts INT32",
    );
    // MaxPool2dWithMask: FLOAT computed in FLOAT; the backward takes only NCHW.
    let g = 5.0 + 1.0 / 512.0;
    assert_eq!(
        accepted(max_pool_mask_round_trip(NCHW)),
        vec![0.0, g, 0.0, 0.0, 4.0 + 1.0 / 4096.0]
    );
    refused(
        &max_pool_mask_round_trip(aclFormat::ACL_FORMAT_ND),
        "created with format ND; this product accepts NCHW",
    );
    // BatchNorm's saveInvstd holds the biased variance (aclnnBatchNorm.md:233-234).
    assert_eq!(accepted(batch_norm_save_invstd()), vec![5.0]);
    // An output aliasing an input of a non-inplace operator; the in-place variant.
    refused(&add(true), "output out overlaps input self");
    assert_eq!(accepted(add(false)), vec![4.0, 6.0]);
    assert_eq!(accepted(inplace_add()), vec![4.0, 6.0]);
    assert_eq!(accepted(sigmoid_bf16()), vec![0.5]);
    // FusedSgd exists here: scale 2, weight decay 0.1, momentum 0.9, lr 0.5 on p [1, 2],
    // g [4, -2], v [1, 1]: g/2 = [2, -1], + 0.1 p = [2.1, -0.8], v = 0.9 + g = [3, 0.1],
    // p - 0.5 v = [-0.5, 1.95]; the gradient keeps the unscaled [2, -1].
    let v = accepted(fused_sgd());
    super::close(&v, &[-0.5, 1.95, 2.0, -1.0, 3.0, 0.1], 1e-6);
    // The foreach lists senet's device-lr Momentum uses are supported (aclnn-contract.md
    // "### aclnnForeach*" rows): 1 + (-0.5)*4, 2 + (-0.5)*(-2), 3 + (-0.5)*8.
    assert_eq!(accepted(foreach_add_list()), vec![-1.0, 3.0, -1.0]);
    assert_eq!(accepted(foreach_add_list_v2()), vec![2.0, 0.0]);
    assert_eq!(accepted(foreach_mul_scalar_v2(F, 0.5, F)), vec![0.5, -1.0]);
    // A2/A3 note below the parameter tables: a FLOAT16 list takes a FLOAT16 or DOUBLE scalar,
    // not a FLOAT one (the 950 accepts FLOAT too).
    let h = aclDataType::ACL_FLOAT16;
    assert_eq!(accepted(foreach_mul_scalar_v2(h, 0.5, h)), vec![0.5, -1.0]);
    refused(
        &foreach_mul_scalar_v2(h, 0.5, F),
        "scalar is FLOAT with FLOAT16 lists",
    );
    // The 50-tensor limit of AddListV2 is the 950's only.
    assert_eq!(accepted(foreach_add_list_v2_of(51)), vec![3.0]);
}
