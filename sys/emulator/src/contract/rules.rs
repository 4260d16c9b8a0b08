//! Contract facts the JSON tables do not encode as structured fields: shape limits, cross-argument
//! dtype rules, version differences, Part F contradictions resolved to the stricter reading, and
//! the runtime facts of Part D. Each rule carries the `src` of the contract fact it implements;
//! `tests/contract.rs` checks every one of them is still in `aclnn-contract.json`, so the rules
//! cannot drift from the contract.
use super::check::{refuse, Target};
use super::product::{CannVersion, Product};
use super::table::Entry;
use crate::api::Res;

use Product::{Atlas910, A2, A3};

/// A rule: which operator (or `runtime`), on which products, from which contract fact.
#[derive(Debug)]
pub struct Rule {
    /// Operator (contract name) or `runtime` for Part D facts.
    pub op: &'static str,
    /// Products it applies to.
    pub products: &'static [Product],
    /// The `src` of the contract fact.
    pub src: &'static str,
    /// What it says.
    pub text: &'static str,
}

const ALL_PRODUCTS: &[Product] = &Product::ALL;
const NOT_950: &[Product] = &[
    Atlas910,
    A2,
    A3,
    Product::Inference310P,
    Product::A2Inference310B,
];

impl Rule {
    /// Whether the rule applies on `p`.
    pub fn applies(&self, p: Product) -> bool {
        self.products.contains(&p)
    }

    /// Refuses the call (naming the rule) when the rule applies on the target and `ok` is false.
    pub fn require(&self, t: &Target, ok: bool, what: impl FnOnce() -> String) -> Res<()> {
        if ok || !self.applies(t.product) {
            Ok(())
        } else {
            Err(refuse(self.op, t, self.text, what(), self.src))
        }
    }
}

macro_rules! rule {
    ($name:ident, $op:literal, $products:expr, $src:expr, $text:literal) => {
        #[doc = $text]
        pub const $name: Rule = Rule {
            op: $op,
            products: $products,
            src: $src,
            text: $text,
        };
    };
}

rule!(
    CONV_910_CANN_8_0,
    "aclnnConvolution",
    &[Atlas910],
    "https://hiascend.com/document/detail/zh/canncommercial/800/apiref/aolapi/context/aclnnConvolution.md",
    "CANN 8.0 lists aclnnConvolution for the first-generation 910 (Part F 3; the current docs do not), computed in FP16 by the implementation"
);
rule!(
    CONV_NCHW,
    "aclnnConvolution",
    NOT_950,
    concat!(
        "hicann/ops-nn@e5c3fa9327ea:conv/convolution_forward/",
        "op_host/op_api/aclnn_convolution.cpp:1083-1106"
    ),
    "4-D input/weight/output must be created with format NCHW (ND is rejected except on 950)"
);
rule!(
    CONV_DIM_LIMIT,
    "aclnnConvolution",
    &[A2, A3],
    concat!(
        "hicann/ops-nn@e5c3fa9327ea:conv/convolution_forward/",
        "docs/aclnnConvolution.md:469"
    ),
    "every dimension of input/weight/bias is at most 1000000"
);
rule!(
    CONV_PADDING,
    "aclnnConvolution",
    &[A2, A3],
    concat!(
        "hicann/ops-nn@e5c3fa9327ea:conv/convolution_forward/",
        "docs/aclnnConvolution.md:408-426"
    ),
    "conv1d/conv2d (not transposed) padding is in [0, 255]"
);
rule!(
    CONV_BIAS_DTYPE,
    "aclnnConvolution",
    &[A2, A3],
    concat!(
        "hicann/ops-nn@e5c3fa9327ea:conv/convolution_forward/",
        "docs/aclnnConvolution.md:384-385"
    ),
    "bias has the dtype of input and weight"
);
rule!(
    CONV_OUT_DTYPE,
    "aclnnConvolution",
    ALL_PRODUCTS,
    concat!(
        "hicann/ops-nn@e5c3fa9327ea:conv/convolution_forward/",
        "docs/aclnnConvolution.md:198"
    ),
    "output has the promoted dtype of input and weight (the stricter reading of :198 against :269)"
);
rule!(
    CONV_BWD_LIMITS,
    "aclnnConvolutionBackward",
    &[A2, A3],
    concat!(
        "hicann/ops-nn@e5c3fa9327ea:conv/convolution_backward/docs/",
        "aclnnConvolutionBackward.md:526-560"
    ),
    "2-D, not transposed: weight H and W in [1, 255], padding in [0, 255], dilation in [1, 255]"
);
rule!(
    CONV_BWD_EMPTY,
    "aclnnConvolutionBackward",
    &[Atlas910],
    concat!(
        "hicann/ops-nn@e5c3fa9327ea:conv/convolution_backward/docs/",
        "aclnnConvolutionBackward.md:503,531"
    ),
    "gradOutput and weight must not be empty tensors"
);
rule!(
    POOL_INDICES_DILATION,
    "aclnnMaxPool2dWithIndices",
    &[A2, A3],
    "hicann/ops-nn@e5c3fa9327ea:pooling/max_pool3d_with_argmax_v2/docs/aclnnMaxPool2dWithIndices.md:202",
    "dilation is 1"
);
rule!(
    POOL_INDICES_BWD_DILATION,
    "aclnnMaxPool2dWithIndicesBackward",
    &[A2, A3],
    "hicann/ops-nn@e5c3fa9327ea:pooling/max_pool3d_grad_with_argmax/docs/aclnnMaxPool2dWithIndicesBackward.md:221-224",
    "dilation is (1, 1)"
);
rule!(
    POOL_MASK_DILATION,
    "aclnnMaxPool2dWithMask",
    ALL_PRODUCTS,
    "hicann/ops-nn@e5c3fa9327ea:pooling/max_pool3d_with_argmax_v2/docs/aclnnMaxPool2dWithMask.md:126-146",
    "dilation is 1"
);
rule!(
    POOL_MASK_BWD_DILATION,
    "aclnnMaxPool2dWithMaskBackward",
    ALL_PRODUCTS,
    "hicann/ops-nn@e5c3fa9327ea:pooling/max_pool3d_grad_with_argmax/docs/aclnnMaxPool2dWithMaskBackward.md:146",
    "dilation is 1"
);
rule!(
    POOL_INDICES_NAN,
    "aclnnMaxPool2dWithIndices",
    &[A2, A3],
    "hicann/ops-nn@e5c3fa9327ea:pooling/max_pool3d_with_argmax_v2/docs/aclnnMaxPool2dWithIndices.md:330",
    "input must not contain NaN or -Inf (unsupported: the emulator writes NaN results)"
);
rule!(
    POOL_INDICES_BWD_NAN,
    "aclnnMaxPool2dWithIndicesBackward",
    ALL_PRODUCTS,
    "hicann/ops-nn@e5c3fa9327ea:pooling/max_pool3d_grad_with_argmax/docs/aclnnMaxPool2dWithIndicesBackward.md:331",
    "inputs must not contain NaN or -Inf (unsupported: the emulator writes NaN results)"
);
rule!(
    POOL_MASK_NAN,
    "aclnnMaxPool2dWithMask",
    ALL_PRODUCTS,
    "hicann/ops-nn@e5c3fa9327ea:pooling/max_pool3d_with_argmax_v2/docs/aclnnMaxPool2dWithMask.md:335",
    "input must not contain NaN or -Inf (unsupported: the emulator writes NaN results)"
);
rule!(
    POOL_MASK_BWD_NAN,
    "aclnnMaxPool2dWithMaskBackward",
    ALL_PRODUCTS,
    "hicann/ops-nn@e5c3fa9327ea:pooling/max_pool3d_grad_with_argmax/docs/aclnnMaxPool2dWithMaskBackward.md:296-298",
    "inputs must not contain NaN or -Inf (unsupported: the emulator writes NaN results)"
);
rule!(
    POOL_MASK_FP16,
    "aclnnMaxPool2dWithMask",
    &[Atlas910],
    "hicann/ops-nn@e5c3fa9327ea:pooling/max_pool3d_with_argmax_v2/docs/aclnnMaxPool2dWithMask.md:338",
    "FLOAT input is computed as FLOAT16"
);
rule!(
    POOL_MASK_BWD_FP16,
    "aclnnMaxPool2dWithMaskBackward",
    &[Atlas910],
    "hicann/ops-nn@e5c3fa9327ea:pooling/max_pool3d_grad_with_argmax/docs/aclnnMaxPool2dWithMaskBackward.md:301",
    "FLOAT is computed as FLOAT16"
);
rule!(
    SIGMOID_BF16,
    "aclnnSigmoid",
    &[Atlas910, Product::Inference310P],
    "hicann/ops-nn@e5c3fa9327ea:activation/sigmoid/docs/aclnnSigmoid&aclnnInplaceSigmoid.md:105,281",
    "no BFLOAT16 (Part F 11: aclnnInplaceSigmoid and aclnnSigmoidBackward exclude it on this product; the stricter reading)"
);
rule!(
    BN_BWD_AUX_DTYPE_910,
    "aclnnBatchNormBackward",
    &[Atlas910],
    "hicann/ops-nn@e5c3fa9327ea:norm/batch_norm_grad_v3/docs/aclnnBatchNormBackward.md:271-274",
    "every auxiliary tensor has the dtype of gradOut"
);
rule!(
    BN_BWD_AUX_DTYPE,
    "aclnnBatchNormBackward",
    &[A2, A3],
    "hicann/ops-nn@e5c3fa9327ea:norm/batch_norm_grad_v3/docs/aclnnBatchNormBackward.md:278-280",
    "weight, running and saved statistics, gradWeight and gradBias have the dtype of gradOut"
);
rule!(
    BN_SAVE_VAR_910,
    "aclnnBatchNorm",
    &[Atlas910, Product::Inference310P],
    "hicann/ops-nn@e5c3fa9327ea:norm/batch_norm_v3/docs/aclnnBatchNorm.md:226-229",
    "saveInvstd holds the biased batch variance"
);
rule!(
    BN_SAVE_VAR,
    "aclnnBatchNorm",
    &[A2, A3],
    "hicann/ops-nn@e5c3fa9327ea:norm/batch_norm_v3/docs/aclnnBatchNorm.md:233-234",
    "saveInvstd holds the biased batch variance"
);
rule!(
    REDUCE_SUM_DTYPE,
    "aclnnReduceSum",
    ALL_PRODUCTS,
    "hicann/ops-math@c41933244c31:math/reduce_sum/docs/aclnnReduceSum.md:196",
    "dtype equals out's dtype"
);
rule!(
    CAST_SAME_FORMAT,
    "aclnnCast",
    ALL_PRODUCTS,
    "hicann/ops-math@c41933244c31:math/cast/docs/aclnnCast.md:166-169",
    "self and out have the same shape and format"
);
rule!(
    WORKSPACE_NULL,
    "runtime",
    ALL_PRODUCTS,
    "hicann/opbase@aa3cd74b7f6d:docs/zh/api/nnopbase/opdev/op_executor/CommonOpExecutorRun.md:29",
    "workspace may be NULL only when workspaceSize is 0"
);
rule!(
    EXECUTOR_ARGS_ALIVE,
    "runtime",
    ALL_PRODUCTS,
    "hicann/opbase@aa3cd74b7f6d:src/nnopbase/composite_op/aclnn_engine/op_executor.cpp:92-93,189-200,246-253,981-987",
    "the caller's aclTensor objects stay alive until phase 2 returns (for a repeatable executor until aclDestroyAclOpExecutor)"
);
rule!(
    STREAM_CONTEXT,
    "runtime",
    ALL_PRODUCTS,
    "mindspore-ai/graphengine@cd75e1497d16:910/inc/external/acl/error_codes/rt_error_codes.h:24",
    "a stream is used only while its context is current (ACL_ERROR_RT_STREAM_CONTEXT)"
);
rule!(
    MEMCPY_NO_SYNC,
    "runtime",
    ALL_PRODUCTS,
    "https://hiascend.com/document/detail/zh/canncommercial/700/inferapplicationdev/aclcppdevg/aclcppdevg_03_0102.html ; https://www.hiascend.com/document/detail/zh/CANNCommunityEdition/800alpha002/apiref/appdevgapi/aclcppdevg_03_0105.html",
    "aclrtMemcpy copies at once, without waiting for work queued on streams"
);

/// The source of the no-aliasing rule for non-inplace operators (contract Part D).
pub const INPLACE_SRC: &str = "hicann/opbase@aa3cd74b7f6d:docs/README.md:99-101";

/// Every rule, for the drift test.
pub const ALL: &[&Rule] = &[
    &CONV_910_CANN_8_0,
    &CONV_NCHW,
    &CONV_DIM_LIMIT,
    &CONV_PADDING,
    &CONV_BIAS_DTYPE,
    &CONV_OUT_DTYPE,
    &CONV_BWD_LIMITS,
    &CONV_BWD_EMPTY,
    &POOL_INDICES_DILATION,
    &POOL_INDICES_BWD_DILATION,
    &POOL_MASK_DILATION,
    &POOL_MASK_BWD_DILATION,
    &POOL_INDICES_NAN,
    &POOL_INDICES_BWD_NAN,
    &POOL_MASK_NAN,
    &POOL_MASK_BWD_NAN,
    &POOL_MASK_FP16,
    &POOL_MASK_BWD_FP16,
    &SIGMOID_BF16,
    &BN_BWD_AUX_DTYPE_910,
    &BN_BWD_AUX_DTYPE,
    &BN_SAVE_VAR_910,
    &BN_SAVE_VAR,
    &REDUCE_SUM_DTYPE,
    &CAST_SAME_FORMAT,
    &WORKSPACE_NULL,
    &EXECUTOR_ARGS_ALIVE,
    &STREAM_CONTEXT,
    &MEMCPY_NO_SYNC,
];

/// Whether `op` is supported on the target, and the source that says so: the table's row, except
/// where the target's CANN release documents otherwise ([`CONV_910_CANN_8_0`]).
pub fn support<'a>(op: &str, e: &'a Entry, t: &Target) -> (bool, &'a str) {
    if op == CONV_910_CANN_8_0.op
        && CONV_910_CANN_8_0.applies(t.product)
        && t.version == CannVersion::V8_0
    {
        return (true, CONV_910_CANN_8_0.src);
    }
    (e.supported, &e.support_src)
}
