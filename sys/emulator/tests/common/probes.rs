//! One probe per class of contract rule: each makes one call the backend could make and returns
//! whether the emulator accepted it (and, where the values matter, what it computed), so the
//! per-product test files (`tests/product_*.rs`) state, product by product, what is refused and
//! what is accepted.
use std::ffi::c_void;
use std::ptr::null_mut;

use half::f16;
use senet_cann_emu::*;
use senet_cann_sys::*;

use super::*;

/// A refused call: its status and message; or the values an accepted one computed.
pub type Outcome = Result<Vec<f32>, (i32, String)>;

/// The status of an outcome (0 when accepted).
pub fn code(o: &Outcome) -> i32 {
    match o {
        Ok(_) => 0,
        Err((c, _)) => *c,
    }
}

/// Asserts `o` was refused with ACLNN_ERR_PARAM_INVALID and a message containing `needle`
/// and naming its contract source.
#[track_caller]
pub fn refused(o: &Outcome, needle: &str) {
    match o {
        Ok(v) => panic!("accepted (computed {v:?}); expected a refusal containing {needle:?}"),
        Err((c, m)) => {
            assert_eq!(*c, ACLNN_ERR_PARAM_INVALID, "{m}");
            assert!(m.contains(needle), "{m}");
            assert!(
                m.contains("[contract rule: ") && m.contains("source: "),
                "{m}"
            );
        }
    }
}

/// The values of an accepted call.
#[track_caller]
pub fn accepted(o: Outcome) -> Vec<f32> {
    o.unwrap_or_else(|(c, m)| panic!("refused with {c}: {m}"))
}

/// 1 + 2^-11 and 1 + 2^-12: FLOAT keeps both, HFLOAT32 (11 mantissa bits, ties to even) keeps the
/// first and rounds the second to 1, FLOAT16 (10 bits) rounds both to 1.
pub const PROBE: [f32; 2] = [1.0 + 1.0 / 2048.0, 1.0 + 1.0 / 4096.0];

/// A device tensor holding `v` as `dtype` (FLOAT, FLOAT16 or BF16), tagged `format`.
pub fn typed(v: &[f32], dims: &[i64], dtype: aclDataType, format: aclFormat) -> *mut aclTensor {
    let bytes: Vec<u8> = match dtype {
        aclDataType::ACL_FLOAT16 => v
            .iter()
            .flat_map(|x| f16::from_f32(*x).to_bits().to_le_bytes())
            .collect(),
        aclDataType::ACL_BF16 => v
            .iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_bits().to_le_bytes())
            .collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    };
    let p = malloc(bytes.len().max(4));
    let rc = aclrtMemcpy(
        p,
        bytes.len().max(4),
        bytes.as_ptr() as *const c_void,
        bytes.len(),
        aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_DEVICE,
    );
    assert_eq!(rc, 0, "{}", err());
    tensor_fmt(p, dims, dtype, format)
}

/// Reads a tensor's values as f32 after synchronising (FLOAT, FLOAT16, BF16).
pub fn values(t: *const aclTensor) -> Vec<f32> {
    let d = senet_cann_emu::objects::tensor(t, "probe").unwrap();
    assert_eq!(aclrtSynchronizeDevice(), 0, "{}", err());
    senet_cann_emu::view::read_f32(&d)
}

/// Plans with `plan` (which returns a status and fills workspace size and executor), runs the
/// executor with `launch` if accepted, and reads `out`.
pub fn outcome(
    plan: impl FnOnce(&mut u64, &mut *mut aclOpExecutor) -> aclnnStatus,
    launch: unsafe extern "C" fn(*mut c_void, u64, *mut aclOpExecutor, aclrtStream) -> aclnnStatus,
    out: *const aclTensor,
) -> Outcome {
    let (mut ws, mut ex) = (0u64, null_mut());
    let rc = plan(&mut ws, &mut ex);
    if rc != 0 {
        return Err((rc, err()));
    }
    run(ws, ex, launch);
    Ok(values(out))
}

/// A 1x1 convolution of the [`PROBE`] pixels (`[1, 1, 1, 2]`, weight 1, no bias) in `dtype`
/// with every tensor tagged `format`, `cube` as cubeMathType and symmetric `pad`.
pub fn conv(dtype: aclDataType, format: aclFormat, cube: i8, pad: i64) -> Outcome {
    let x = typed(&PROBE, &[1, 1, 1, 2], dtype, format);
    let w = typed(&[1.0], &[1, 1, 1, 1], dtype, format);
    let (h, wd) = (1 + 2 * pad, 2 + 2 * pad);
    let n = (h * wd) as usize;
    let y = typed(&vec![0.0; n], &[1, 1, h, wd], dtype, format);
    let (st, pd, dl) = (ints(&[1, 1]), ints(&[pad, pad]), ints(&[1, 1]));
    outcome(
        |ws, ex| unsafe {
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
                y,
                cube,
                ws,
                ex,
            )
        },
        aclnnConvolution,
        y,
    )
}

/// A strided `[rows, cols]`-shaped view over fresh device memory, non-contiguous (a column
/// stride of 2) when `strided`, tagged `format`.
fn out_view(dims: &[i64], dtype: aclDataType, format: aclFormat, strided: bool) -> *mut aclTensor {
    let n: i64 = dims.iter().product();
    let p = malloc((n as usize * 2 * 4).max(64));
    let mut st = strides(dims);
    if strided {
        for s in st.iter_mut() {
            *s *= 2;
        }
    }
    tensor_view(p, dims, &st, &[2 * n], dtype, format)
}

/// The weight gradient of a 1x1 convolution with 2 output channels (input the [`PROBE`] pixels,
/// gradOutput 1 everywhere, FLOAT, NCHW) into a `[2, 1, 1, 1]` gradWeight that is a
/// non-contiguous view when `strided`.
pub fn conv_backward(cube: i8, strided: bool) -> Outcome {
    let nchw = aclFormat::ACL_FORMAT_NCHW;
    let f = aclDataType::ACL_FLOAT;
    let x = typed(&PROBE, &[1, 1, 1, 2], f, nchw);
    let go = typed(&[1.0; 4], &[1, 2, 1, 2], f, nchw);
    let w = typed(&[1.0, 1.0], &[2, 1, 1, 1], f, nchw);
    let gw = out_view(&[2, 1, 1, 1], f, nchw, strided);
    let (st, pd, dl) = (ints(&[1, 1]), ints(&[0, 0]), ints(&[1, 1]));
    let mask = bools(&[false, true, false]);
    outcome(
        |ws, ex| unsafe {
            aclnnConvolutionBackwardGetWorkspaceSize(
                go,
                x,
                w,
                null_mut(),
                st,
                pd,
                dl,
                false,
                null_mut(),
                1,
                mask,
                cube,
                null_mut(),
                gw,
                null_mut(),
                ws,
                ex,
            )
        },
        aclnnConvolutionBackward,
        gw,
    )
}

/// `[PROBE] @ ones([2, 2])` (`[1, 2] @ [2, 2]`, both results the sum of the probe) in `dtype`
/// with `cube`; `out` is a non-contiguous `[1, 2]` view when `strided`.
pub fn mm(dtype: aclDataType, cube: i8, strided: bool) -> Outcome {
    let nd = aclFormat::ACL_FORMAT_ND;
    let a = typed(&PROBE, &[1, 2], dtype, nd);
    let b = typed(&[1.0; 4], &[2, 2], dtype, nd);
    let y = out_view(&[1, 2], dtype, nd, strided);
    outcome(
        |ws, ex| unsafe { aclnnMmGetWorkspaceSize(a, b, y, cube, ws, ex) },
        aclnnMm,
        y,
    )
}

/// 2x2/2 max pooling with flat indices of `idx_dtype` over a `[1, 1, 2, 2]` FLOAT input.
pub fn max_pool_indices(idx_dtype: aclDataType) -> Outcome {
    let nchw = aclFormat::ACL_FORMAT_NCHW;
    let x = typed(
        &[1.0, 4.0, 3.0, 2.0],
        &[1, 1, 2, 2],
        aclDataType::ACL_FLOAT,
        nchw,
    );
    let y = typed(&[0.0], &[1, 1, 1, 1], aclDataType::ACL_FLOAT, nchw);
    let i = tensor_fmt(malloc(8), &[1, 1, 1, 1], idx_dtype, nchw);
    let (k, s, p, d) = (ints(&[2, 2]), ints(&[2, 2]), ints(&[0, 0]), ints(&[1, 1]));
    outcome(
        |ws, ex| unsafe {
            aclnnMaxPool2dWithIndicesGetWorkspaceSize(x, k, s, p, d, false, y, i, ws, ex)
        },
        aclnnMaxPool2dWithIndices,
        y,
    )
}

/// The WithIndices backward in `dtype` with `idx_dtype` indices (index 1 = the maximum 4.0).
pub fn max_pool_indices_backward(dtype: aclDataType, idx_dtype: aclDataType) -> Outcome {
    let nchw = aclFormat::ACL_FORMAT_NCHW;
    let x = typed(&[1.0, 4.0, 3.0, 2.0], &[1, 1, 2, 2], dtype, nchw);
    let g = typed(&[5.0], &[1, 1, 1, 1], dtype, nchw);
    let ip = malloc(8);
    let one = 1i64.to_le_bytes();
    let bytes = if idx_dtype == aclDataType::ACL_INT64 {
        &one[..]
    } else {
        &one[..4]
    };
    let h2d = aclrtMemcpyKind::ACL_MEMCPY_HOST_TO_DEVICE;
    assert_eq!(
        aclrtMemcpy(ip, 8, bytes.as_ptr() as *const c_void, bytes.len(), h2d),
        0
    );
    let i = tensor_fmt(ip, &[1, 1, 1, 1], idx_dtype, nchw);
    let gi = typed(&[0.0; 4], &[1, 1, 2, 2], dtype, nchw);
    let (k, s, p, d) = (ints(&[2, 2]), ints(&[2, 2]), ints(&[0, 0]), ints(&[1, 1]));
    outcome(
        |ws, ex| unsafe {
            aclnnMaxPool2dWithIndicesBackwardGetWorkspaceSize(
                g, x, i, k, s, p, d, false, gi, ws, ex,
            )
        },
        aclnnMaxPool2dWithIndicesBackward,
        gi,
    )
}

/// MaxPool2dWithMask then its backward (gradOutput 5 at the maximum 4.0 + 2^-12), every tensor
/// tagged `bwd_format` in the backward; the backward's gradInput, or the first refusal.
pub fn max_pool_mask_round_trip(bwd_format: aclFormat) -> Outcome {
    let nchw = aclFormat::ACL_FORMAT_NCHW;
    let f = aclDataType::ACL_FLOAT;
    let xv = [1.0, 4.0 + 1.0 / 4096.0, 3.0, 2.0];
    let x = typed(&xv, &[1, 1, 2, 2], f, nchw);
    let y = typed(&[0.0], &[1, 1, 1, 1], f, nchw);
    let mp = malloc(4 * 64);
    let m = tensor_fmt(mp, &[1, 1, 4, 64], aclDataType::ACL_INT8, nchw);
    let (k, s, p, d) = (ints(&[2, 2]), ints(&[2, 2]), ints(&[0, 0]), ints(&[1, 1]));
    let fwd = outcome(
        |ws, ex| unsafe {
            aclnnMaxPool2dWithMaskGetWorkspaceSize(x, k, s, p, d, false, y, m, ws, ex)
        },
        aclnnMaxPool2dWithMask,
        y,
    )?;
    let xb = typed(&xv, &[1, 1, 2, 2], f, bwd_format);
    let mb = tensor_fmt(mp, &[1, 1, 4, 64], aclDataType::ACL_INT8, bwd_format);
    let g = typed(&[5.0 + 1.0 / 512.0], &[1, 1, 1, 1], f, bwd_format);
    let gi = typed(&[0.0; 4], &[1, 1, 2, 2], f, bwd_format);
    let mut v = outcome(
        |ws, ex| unsafe {
            aclnnMaxPool2dWithMaskBackwardGetWorkspaceSize(g, xb, mb, k, s, p, d, false, gi, ws, ex)
        },
        aclnnMaxPool2dWithMaskBackward,
        gi,
    )?;
    v.extend(fwd);
    Ok(v)
}

/// Training batch norm of `[1, 3, 5, 7]` (`[2, 1, 2]`, NCL, FLOAT): the saveInvstd it writes.
pub fn batch_norm_save_invstd() -> Outcome {
    let ncl = aclFormat::ACL_FORMAT_NCL;
    let nd = aclFormat::ACL_FORMAT_ND;
    let f = aclDataType::ACL_FLOAT;
    let x = typed(&[1.0, 3.0, 5.0, 7.0], &[2, 1, 2], f, ncl);
    let y = typed(&[0.0; 4], &[2, 1, 2], f, ncl);
    let sm = typed(&[0.0], &[1], f, nd);
    let si = typed(&[0.0], &[1], f, nd);
    outcome(
        |ws, ex| unsafe {
            aclnnBatchNormGetWorkspaceSize(
                x,
                null_mut(),
                null_mut(),
                null_mut(),
                null_mut(),
                true,
                0.1,
                1e-5,
                y,
                sm,
                si,
                ws,
                ex,
            )
        },
        aclnnBatchNorm,
        si,
    )
}

/// `aclnnAdd(x, x, 1, out)` with `out` = `x` itself when `alias` (a non-inplace op writing its
/// input), else a separate tensor.
pub fn add(alias: bool) -> Outcome {
    let nd = aclFormat::ACL_FORMAT_ND;
    let f = aclDataType::ACL_FLOAT;
    let x = typed(&[1.0, 2.0], &[2], f, nd);
    let o = typed(&[3.0, 4.0], &[2], f, nd);
    let y = if alias {
        x
    } else {
        typed(&[0.0; 2], &[2], f, nd)
    };
    let one = scalar(1.0);
    outcome(
        |ws, ex| unsafe { aclnnAddGetWorkspaceSize(x, o, one, y, ws, ex) },
        aclnnAdd,
        y,
    )
}

/// `aclnnInplaceAdd(x += y)`.
pub fn inplace_add() -> Outcome {
    let nd = aclFormat::ACL_FORMAT_ND;
    let f = aclDataType::ACL_FLOAT;
    let x = typed(&[1.0, 2.0], &[2], f, nd);
    let o = typed(&[3.0, 4.0], &[2], f, nd);
    let one = scalar(1.0);
    outcome(
        |ws, ex| unsafe { aclnnInplaceAddGetWorkspaceSize(x, o, one, ws, ex) },
        aclnnInplaceAdd,
        x,
    )
}

/// `aclnnSigmoid` of a BF16 tensor.
pub fn sigmoid_bf16() -> Outcome {
    let nd = aclFormat::ACL_FORMAT_ND;
    let x = typed(&[0.0], &[1], aclDataType::ACL_BF16, nd);
    let y = typed(&[1.0], &[1], aclDataType::ACL_BF16, nd);
    outcome(
        |ws, ex| unsafe { aclnnSigmoidGetWorkspaceSize(x, y, ws, ex) },
        aclnnSigmoid,
        y,
    )
}

fn list(ts: &[*mut aclTensor]) -> *mut aclTensorList {
    let l = unsafe { aclCreateTensorList(ts.as_ptr() as *const *const aclTensor, ts.len() as u64) };
    assert!(!l.is_null(), "{}", err());
    l
}

/// One `aclnnFusedSgd` step (momentum 0.9, weight decay 0.1, lr 0.5, gradient scale 2, not the
/// first step) of parameter `[1, 2]`, gradient `[4, -2]`, buffer `[1, 1]`: the new parameter,
/// gradient and buffer, concatenated.
pub fn fused_sgd() -> Outcome {
    let nd = aclFormat::ACL_FORMAT_ND;
    let f = aclDataType::ACL_FLOAT;
    let p = typed(&[1.0, 2.0], &[2], f, nd);
    let g = typed(&[4.0, -2.0], &[2], f, nd);
    let b = typed(&[1.0, 1.0], &[2], f, nd);
    let s = typed(&[2.0], &[1], f, nd);
    let (pl, gl, bl) = (list(&[p]), list(&[g]), list(&[b]));
    let mut v = outcome(
        |ws, ex| unsafe {
            aclnnFusedSgdGetWorkspaceSize(
                pl, gl, bl, s, 0.1, 0.9, 0.5, 0.0, false, false, false, ws, ex,
            )
        },
        aclnnFusedSgd,
        p,
    )?;
    v.extend(values(g));
    v.extend(values(b));
    Ok(v)
}

/// One `aclnnForeachAddList` (alpha a FLOAT device tensor of [-0.5]) over the FLOAT lists
/// x1 = [[1, 2], [3]], x2 = [[4, -2], [8]], in place (out = x1): the two results concatenated.
pub fn foreach_add_list() -> Outcome {
    let nd = aclFormat::ACL_FORMAT_ND;
    let f = aclDataType::ACL_FLOAT;
    let (a0, a1) = (typed(&[1.0, 2.0], &[2], f, nd), typed(&[3.0], &[1], f, nd));
    let (b0, b1) = (typed(&[4.0, -2.0], &[2], f, nd), typed(&[8.0], &[1], f, nd));
    let alpha = typed(&[-0.5], &[1], f, nd);
    let (x1, x2) = (list(&[a0, a1]), list(&[b0, b1]));
    let mut v = outcome(
        |ws, ex| unsafe { aclnnForeachAddListGetWorkspaceSize(x1, x2, alpha, x1, ws, ex) },
        aclnnForeachAddList,
        a0,
    )?;
    v.extend(values(a1));
    Ok(v)
}

/// One `aclnnForeachAddListV2` (FLOAT aclScalar alpha 0.25) of x1 = [[1, 2]], x2 = [[4, -8]]
/// in place (out = x1).
pub fn foreach_add_list_v2() -> Outcome {
    let nd = aclFormat::ACL_FORMAT_ND;
    let f = aclDataType::ACL_FLOAT;
    let (a, b) = (
        typed(&[1.0, 2.0], &[2], f, nd),
        typed(&[4.0, -8.0], &[2], f, nd),
    );
    let (x1, x2) = (list(&[a]), list(&[b]));
    outcome(
        |ws, ex| unsafe { aclnnForeachAddListV2GetWorkspaceSize(x1, x2, scalar(0.25), x1, ws, ex) },
        aclnnForeachAddListV2,
        a,
    )
}

/// One `aclnnForeachMulScalarV2` (scalar `s` of `dtype`, a FLOAT or FLOAT16 aclScalar) of the
/// `list_dtype` list [[1, -2]] in place (out = x).
pub fn foreach_mul_scalar_v2(list_dtype: aclDataType, s: f32, dtype: aclDataType) -> Outcome {
    let a = typed(&[1.0, -2.0], &[2], list_dtype, aclFormat::ACL_FORMAT_ND);
    let x = list(&[a]);
    let sc = match dtype {
        aclDataType::ACL_FLOAT16 => {
            let mut h = f16::from_f32(s).to_bits();
            unsafe { aclCreateScalar(&mut h as *mut u16 as *mut c_void, dtype) }
        }
        _ => scalar(s),
    };
    assert!(!sc.is_null(), "{}", err());
    outcome(
        |ws, ex| unsafe { aclnnForeachMulScalarV2GetWorkspaceSize(x, sc, x, ws, ex) },
        aclnnForeachMulScalarV2,
        a,
    )
}

/// `aclnnForeachAddListV2` planned (not run) over `n` one-element FLOAT tensors per list.
pub fn foreach_add_list_v2_of(n: usize) -> Outcome {
    let nd = aclFormat::ACL_FORMAT_ND;
    let f = aclDataType::ACL_FLOAT;
    let xs: Vec<_> = (0..n).map(|_| typed(&[1.0], &[1], f, nd)).collect();
    let ys: Vec<_> = (0..n).map(|_| typed(&[2.0], &[1], f, nd)).collect();
    let (x1, x2) = (list(&xs), list(&ys));
    outcome(
        |ws, ex| unsafe { aclnnForeachAddListV2GetWorkspaceSize(x1, x2, scalar(1.0), x1, ws, ex) },
        aclnnForeachAddListV2,
        xs[n - 1],
    )
}
