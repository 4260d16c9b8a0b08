//! The `cubeMathType` of FLOAT cube work (convolutions, matrix products): torch_npu's switches
//! ([`CubeMath`]), its mapping per product line, and the cells the vendor documents as errors
//! (`shared/reference/aclnn-contract.md` Parts A, B, E).
use super::runtime::Product;
use super::tensor::DType;
use super::{AscendBackend, Precision};
use crate::{Error, Result};

/// The float32 cube switches, named after torch_npu's (`torch.npu.conv.allow_hf32`, default
/// True; `torch.npu.matmul.allow_hf32`, default False: torch_npu's `torch_npu/npu/backends.py`
/// getters and `EnvVariables.cpp:328,345`, `aclnn-contract.md` Part E). They choose the
/// `cubeMathType` of FLOAT convolutions (`aclnnConvolution`, `aclnnConvolutionBackward`) and
/// FLOAT matrix products (`aclnnMm`, `aclnnAddmm`) as torch_npu does, `map[(allow_hf32 << 1) |
/// cube_lacks_fp32]` (Part E; [`Precision::Fp32`] says what each computes):
///
/// | switch | A2 / A3 / 950 | first-generation 910 |
/// |---|---|---|
/// | on | USE_HF32 (3): HFLOAT32 | ALLOW_FP32_DOWN_PRECISION (1): FLOAT16 |
/// | off | KEEP_DTYPE (0): FLOAT | USE_FP16 (2): FLOAT16 |
///
/// They apply to [`Precision::Fp32`] only (O2 computes FLOAT16, where every mode is plain
/// FLOAT16). A mode the contract documents as unsupported on the device's product is refused
/// when the backend is created ([`AscendBackend::with_cube_math`]), never replaced: today that
/// is `conv_allow_hf32 = false` on A2/A3 (KEEP_DTYPE + FLOAT, aclnnConvolution.md:436).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CubeMath {
    /// HFLOAT32 for float32 convolutions (default true, torch_npu's `conv.allow_hf32`).
    pub conv_allow_hf32: bool,
    /// HFLOAT32 for float32 matrix products (default false, torch_npu's `matmul.allow_hf32`).
    pub matmul_allow_hf32: bool,
}

impl Default for CubeMath {
    fn default() -> CubeMath {
        CubeMath {
            conv_allow_hf32: true,
            matmul_allow_hf32: false,
        }
    }
}

/// `cubeMathType` values (aclnnConvolution.md:205-213).
const KEEP_DTYPE: i8 = 0;
const ALLOW_FP32_DOWN_PRECISION: i8 = 1;
const USE_FP16: i8 = 2;
const USE_HF32: i8 = 3;

/// The name of a `cubeMathType` value, for messages.
fn cube_name(mode: i8) -> &'static str {
    match mode {
        KEEP_DTYPE => "KEEP_DTYPE (0)",
        ALLOW_FP32_DOWN_PRECISION => "ALLOW_FP32_DOWN_PRECISION (1)",
        USE_FP16 => "USE_FP16 (2)",
        _ => "USE_HF32 (3)",
    }
}

/// torch_npu's `cubeMathType` for a FLOAT cube op given its `allow_hf32` switch on `product`
/// (`CalcuOpUtil.cpp:416-451`, `aclnn-contract.md` Part E): the first-generation 910 (no FP32
/// in the cube) takes the "allow FP32 to FP16" half of the table.
fn fp32_cube(product: Product, allow_hf32: bool) -> i8 {
    match (product == Product::Ascend910, allow_hf32) {
        (false, false) => KEEP_DTYPE,
        (true, false) => USE_FP16,
        (false, true) => USE_HF32,
        (true, true) => ALLOW_FP32_DOWN_PRECISION,
    }
}

/// The FLOAT `cubeMathType` cells `aclnn-contract.md` Part B marks `error`, per operator and
/// product, with the vendor doc lines that say so. Products not listed accept every mode the
/// backend can produce (950's KEEP_DTYPE forward cell is "doc silent", read as accepted).
const FLOAT_CUBE_ERRORS: &[(&str, Product, &[i8], &str)] = &[
    (
        "aclnnConvolution",
        Product::A2,
        &[KEEP_DTYPE],
        "aclnnConvolution.md:436-439 (Part A 1, Part F 5)",
    ),
    (
        "aclnnConvolution",
        Product::A3,
        &[KEEP_DTYPE],
        "aclnnConvolution.md:436-439 (Part A 1, Part F 5)",
    ),
    (
        "aclnnConvolution",
        Product::Ascend910,
        &[KEEP_DTYPE, USE_HF32],
        "aclnnConvolution legacy 910 row (Part A 3)",
    ),
    (
        "aclnnConvolutionBackward",
        Product::Ascend910,
        &[KEEP_DTYPE, USE_HF32],
        "aclnnConvolutionBackward.md:586-589 (Part A 3)",
    ),
    (
        "aclnnMm/aclnnAddmm",
        Product::Ascend910,
        &[KEEP_DTYPE, USE_HF32],
        "aclnnMm.md:150-155, aclnnAddmm&aclnnInplaceAddmm.md:219-223 (Part A 3)",
    ),
];

/// Ok if `ops` accept `mode` with FLOAT inputs on `product` per [`FLOAT_CUBE_ERRORS`].
/// `switch` is the [`CubeMath`] field that chose `mode`, `default` its default.
/// Errors: [`Error::Invalid`] naming the SoC, its product line, the operator, the mode, the
/// switch and the contract section.
fn check_fp32_cube(
    soc: &str,
    product: Product,
    ops: &[&str],
    mode: i8,
    (switch, default): (&str, bool),
) -> Result<()> {
    for &(op, p, modes, src) in FLOAT_CUBE_ERRORS {
        if p == product && modes.contains(&mode) && ops.contains(&op) {
            return Err(Error::Invalid(format!(
                "{switch} = {set} asks {op} for cubeMathType {mode} with FLOAT inputs, which \
                 {soc} (product line {product:?}) does not support \
                 (shared/reference/aclnn-contract.md, Part B {op} cubeMathType table; {src}). \
                 Keep the default ({switch} = {default}), or compute in float16 with amp_level O2",
                set = !default,
                mode = cube_name(mode),
            )));
        }
    }
    Ok(())
}

/// The FLOAT `cubeMathType`s (convolutions, matrix products) `math` gives on `product`, checked
/// against [`FLOAT_CUBE_ERRORS`] when the backend computes in `precision` float32.
/// Errors: those of [`check_fp32_cube`].
pub(super) fn fp32_cubes(
    soc: &str,
    product: Product,
    precision: Precision,
    math: CubeMath,
) -> Result<(i8, i8)> {
    let conv_fp32_cube = fp32_cube(product, math.conv_allow_hf32);
    let mm_fp32_cube = fp32_cube(product, math.matmul_allow_hf32);
    if precision == Precision::Fp32 {
        let conv_ops = ["aclnnConvolution", "aclnnConvolutionBackward"];
        let conv_switch = ("conv_allow_hf32", CubeMath::default().conv_allow_hf32);
        check_fp32_cube(soc, product, &conv_ops, conv_fp32_cube, conv_switch)?;
        let mm_ops = ["aclnnMm/aclnnAddmm"];
        let mm_switch = ("matmul_allow_hf32", CubeMath::default().matmul_allow_hf32);
        check_fp32_cube(soc, product, &mm_ops, mm_fp32_cube, mm_switch)?;
    }
    Ok((conv_fp32_cube, mm_fp32_cube))
}

impl AscendBackend {
    /// `cubeMathType` for a convolution (either direction) computing in `dtype`: the
    /// [`CubeMath`] choice for FLOAT ([`Precision::Fp32`] says why), KEEP_DTYPE otherwise.
    pub(super) fn conv_cube(&self, dtype: DType) -> i8 {
        match dtype {
            DType::F32 => self.conv_fp32_cube,
            _ => KEEP_DTYPE,
        }
    }

    /// `cubeMathType` for a matrix product (`aclnnMm`, `aclnnAddmm`) computing in `dtype`.
    pub(super) fn mm_cube(&self, dtype: DType) -> i8 {
        match dtype {
            DType::F32 => self.mm_fp32_cube,
            _ => KEEP_DTYPE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp32_cube_follows_torch_npus_table() {
        // CalcuOpUtil.cpp:416-451 (aclnn-contract.md Part E): (allow_hf32 << 1) | no_fp32_cube.
        for p in [Product::A2, Product::A3, Product::Ascend950] {
            assert_eq!(fp32_cube(p, true), USE_HF32);
            assert_eq!(fp32_cube(p, false), KEEP_DTYPE);
        }
        assert_eq!(
            fp32_cube(Product::Ascend910, true),
            ALLOW_FP32_DOWN_PRECISION
        );
        assert_eq!(fp32_cube(Product::Ascend910, false), USE_FP16);
    }

    #[test]
    fn only_the_documented_float_cube_errors_are_refused() {
        let conv = ["aclnnConvolution", "aclnnConvolutionBackward"];
        let mm = ["aclnnMm/aclnnAddmm"];
        let sw = ("conv_allow_hf32", true);
        for p in [Product::A2, Product::A3] {
            let err = check_fp32_cube("Ascend910B1", p, &conv, KEEP_DTYPE, sw).unwrap_err();
            let text = err.to_string();
            for part in [
                "conv_allow_hf32 = false",
                "aclnnConvolution for cubeMathType KEEP_DTYPE (0)",
                "Ascend910B1",
                "aclnnConvolution.md:436-439",
            ] {
                assert!(text.contains(part), "{part} not in {text}");
            }
            // The backward alone, and the matrix products, accept FLOAT + KEEP_DTYPE there.
            check_fp32_cube("x", p, &conv[1..], KEEP_DTYPE, sw).unwrap();
            check_fp32_cube("x", p, &mm, KEEP_DTYPE, sw).unwrap();
            check_fp32_cube("x", p, &conv, USE_HF32, sw).unwrap();
            check_fp32_cube("x", p, &mm, USE_HF32, sw).unwrap();
        }
        check_fp32_cube("x", Product::Ascend950, &conv, KEEP_DTYPE, sw).unwrap();
        // The 910's error cells (KEEP_DTYPE, USE_HF32) are never what its switches produce.
        for allow in [true, false] {
            let mode = fp32_cube(Product::Ascend910, allow);
            check_fp32_cube("x", Product::Ascend910, &conv, mode, sw).unwrap();
            check_fp32_cube("x", Product::Ascend910, &mm, mode, sw).unwrap();
            for bad in [KEEP_DTYPE, USE_HF32] {
                assert!(check_fp32_cube("x", Product::Ascend910, &mm, bad, sw).is_err());
            }
        }
    }
}
