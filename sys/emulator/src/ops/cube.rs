//! The cube's arithmetic for a call, from the contract's cubeMathType cell and the inputs' dtype:
//! the precision the operands are rounded to before the products (which are then exact in fp32
//! for fp16, bf16 and hf32 operands) and whether the result is rounded through FLOAT16. The sums
//! themselves are fp32 ([`crate::reference`]).
use senet_cann_sys::aclDataType;

use crate::contract::CubeCell;
use crate::reference::cast;

/// The precision of a cube computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// FLOAT operands, fp32 products and sums (KEEP_DTYPE where the cube has FP32).
    Fp32,
    /// FLOAT operands rounded to HFLOAT32 (cell `hf32`).
    Hf32,
    /// FLOAT16 operands: FLOAT16 tensors, or FLOAT inputs the contract converts to FLOAT16 (cell
    /// `fp16`, e.g. every FLOAT cube call on the first-generation 910), whose result is then
    /// rounded through FLOAT16 too (the op computes in FLOAT16 and casts back).
    Fp16 {
        /// Whether the tensors are FLOAT (converted on the way in and out).
        converted: bool,
    },
    /// BFLOAT16 operands.
    Bf16,
}

impl Precision {
    /// The precision of a call whose (promoted) input dtype is `dt` and whose cubeMathType cell
    /// is `cell`.
    pub fn of(cell: CubeCell, dt: aclDataType) -> Precision {
        match (cell, dt) {
            (_, aclDataType::ACL_FLOAT16) => Precision::Fp16 { converted: false },
            (_, aclDataType::ACL_BF16) => Precision::Bf16,
            (CubeCell::Fp16, _) => Precision::Fp16 { converted: true },
            (CubeCell::Hf32, _) => Precision::Hf32,
            _ => Precision::Fp32,
        }
    }

    /// Rounds operands (read from the tensors as `f32`) to the compute precision.
    pub fn operands(self, v: &mut [f32]) {
        match self {
            Precision::Fp32 => {}
            Precision::Hf32 => cast::round_through_hf32(v),
            Precision::Fp16 { .. } => cast::round_through_f16(v),
            Precision::Bf16 => cast::round_through_bf16(v),
        }
    }

    /// Rounds a result the op computes in a narrower type than its FLOAT output.
    pub fn result(self, v: &mut [f32]) {
        if self == (Precision::Fp16 { converted: true }) {
            cast::round_through_f16(v);
        }
    }
}
