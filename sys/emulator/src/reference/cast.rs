//! Conversions between `f32` and IEEE half precision (`f16`, and `bf16`), as `aclnnCast` does,
//! plus helpers that round `f32` buffers through a half type to emulate half-precision compute.
//!
//! Conversions to half round to nearest, ties to even (via the `half` crate); overflow gives
//! `±inf`, NaN stays NaN, subnormals are kept. Half values are passed around as their raw bit
//! patterns (`u16`), the representation of an `ACL_FLOAT16` / `ACL_BF16` buffer.

use half::{bf16, f16};

/// `f32 -> f16` bit patterns, round to nearest even (`tensor.to(torch.float16)`,
/// `aclnnCast` to `ACL_FLOAT16`). Any shape; same length out.
pub fn to_f16_bits(x: &[f32]) -> Vec<u16> {
    x.iter().map(|&v| f16::from_f32(v).to_bits()).collect()
}

/// `f16` bit patterns `-> f32` (exact), as `tensor.to(torch.float32)` / `aclnnCast` from
/// `ACL_FLOAT16`. Any shape; same length out.
pub fn from_f16_bits(x: &[u16]) -> Vec<f32> {
    x.iter().map(|&b| f16::from_bits(b).to_f32()).collect()
}

/// Rounds every element to the nearest `f16` value (ties to even) in place, keeping it as
/// `f32`: the effect of storing an intermediate result in half precision.
pub fn round_through_f16(x: &mut [f32]) {
    for v in x {
        *v = f16::from_f32(*v).to_f32();
    }
}

/// `f32 -> bf16` bit patterns, round to nearest even (`tensor.to(torch.bfloat16)`, `aclnnCast`
/// to `ACL_BF16`). Any shape; same length out.
pub fn to_bf16_bits(x: &[f32]) -> Vec<u16> {
    x.iter().map(|&v| bf16::from_f32(v).to_bits()).collect()
}

/// `bf16` bit patterns `-> f32` (exact). Any shape; same length out.
pub fn from_bf16_bits(x: &[u16]) -> Vec<f32> {
    x.iter().map(|&b| bf16::from_bits(b).to_f32()).collect()
}

/// Rounds every element to the nearest `bf16` value (ties to even) in place, keeping it as
/// `f32`.
pub fn round_through_bf16(x: &mut [f32]) {
    for v in x {
        *v = bf16::from_f32(*v).to_f32();
    }
}

/// Rounds every element to HFLOAT32 in place (round to nearest, ties to even), keeping it as
/// `f32`: the cube's operand type for FLOAT inputs under cubeMathType USE_HF32 and, on A2/A3,
/// ALLOW_FP32_DOWN_PRECISION.
///
/// HF32 keeps FLOAT's 8-bit exponent (same range) and 11 mantissa bits ("HF32与float32支持相同的
/// 数值范围，但尾数位精度(11位)却接近FP16(10位)", CANN 8.0 ATC `--allow_hf32`,
/// https://hiascend.com/document/detail/zh/CANNCommunityEdition/800alpha003/devaids/devtools/atc/atlasatcparam_16_0077.html),
/// so the 12 low bits of FLOAT's 23-bit mantissa are rounded away; the conversion's default
/// round mode is to nearest, ties to even (`SetHF32` transMode 0, "就近舍入，距离相等时向偶数进位",
/// `cannmirror/asc-devkit:docs/api/context/SetHF32.md`). (A vendor test asset,
/// `hicann/ops-nn:conv/conv2d_v2/tests/assets/input.py`, truncates to 10 bits instead; the emulator
/// follows the documentation.) NaN and infinities are kept; a value that rounds past the largest
/// finite HF32 becomes infinity.
pub fn round_through_hf32(x: &mut [f32]) {
    for v in x {
        if !v.is_finite() {
            continue;
        }
        let b = v.to_bits();
        let lsb = (b >> 12) & 1;
        *v = f32::from_bits((b + 0x7ff + lsb) & !0xfff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf32_keeps_11_mantissa_bits() {
        let ulp = 2f32.powi(-11);
        let mut x = [
            1.0 + ulp,              // representable
            1.0 + ulp / 2.0,        // tie between 1 (even) and 1+ulp: -> 1
            1.0 + 1.5 * ulp,        // tie between 1+ulp and 1+2ulp (even): -> 1+2ulp
            1.0 + ulp / 2.0 + 1e-6, // above the tie: -> 1+ulp
            -3.0 * (1.0 + ulp / 4.0),
            f32::MAX,
            f32::NEG_INFINITY,
            1e-40, // subnormal, rounded on the same bit grid
        ];
        round_through_hf32(&mut x);
        assert_eq!(x[..4], [1.0 + ulp, 1.0, 1.0 + 2.0 * ulp, 1.0 + ulp]);
        assert_eq!(x[4], -3.0);
        assert_eq!(x[5], f32::INFINITY);
        assert_eq!(x[6], f32::NEG_INFINITY);
        assert_eq!(x[7].to_bits() & 0xfff, 0);
        let mut nan = [f32::NAN];
        round_through_hf32(&mut nan);
        assert!(nan[0].is_nan());
    }

    #[test]
    fn known_f16_bit_patterns() {
        let x = [1.0, -2.0, 0.5, 65504.0, 1e6, f32::INFINITY, 0.0, -0.0];
        assert_eq!(
            to_f16_bits(&x),
            vec![0x3c00, 0xc000, 0x3800, 0x7bff, 0x7c00, 0x7c00, 0x0000, 0x8000]
        );
        // Smallest subnormal 2^-24 and NaN.
        assert_eq!(to_f16_bits(&[2f32.powi(-24)]), vec![0x0001]);
        assert!(from_f16_bits(&to_f16_bits(&[f32::NAN]))[0].is_nan());
        assert_eq!(
            from_f16_bits(&[0x3c00, 0x0001, 0xfbff]),
            vec![1.0, 2f32.powi(-24), -65504.0]
        );
    }

    #[test]
    fn round_to_nearest_even() {
        // f16 has 10 mantissa bits: near 1 the spacing is 2^-10.
        let ulp = 2f32.powi(-10);
        let mut x = [
            1.0 + ulp / 2.0,        // tie between 1 (even) and 1+ulp: -> 1
            1.0 + 1.5 * ulp,        // tie between 1+ulp and 1+2ulp (even): -> 1+2ulp
            1.0 + ulp / 2.0 + 1e-6, // just above the tie: -> 1+ulp
            2048.0 + 1.0,           // spacing 2 at 2048: tie -> 2048 (even)
            2048.0 + 3.0,           // tie between 2050 and 2052 (even) -> 2052
        ];
        round_through_f16(&mut x);
        assert_eq!(x, [1.0, 1.0 + 2.0 * ulp, 1.0 + ulp, 2048.0, 2052.0]);
        // Round trip of every f16 value is exact.
        let bits: Vec<u16> = (0..=u16::MAX).filter(|b| (b & 0x7c00) != 0x7c00).collect();
        assert_eq!(to_f16_bits(&from_f16_bits(&bits)), bits);
    }

    #[test]
    fn bf16() {
        assert_eq!(to_bf16_bits(&[1.0, -2.0]), vec![0x3f80, 0xc000]);
        assert_eq!(from_bf16_bits(&[0x3f80, 0x4049]), vec![1.0, 3.140625]);
        let ulp = 2f32.powi(-7);
        let mut x = [1.0 + ulp / 2.0, 1.0 + 1.5 * ulp, f32::MAX];
        round_through_bf16(&mut x);
        assert_eq!(x[..2], [1.0, 1.0 + 2.0 * ulp]);
        assert_eq!(x[2], f32::INFINITY);
    }
}
