//! Pooling: MaxPool2dWithIndices (+Backward), MaxPool2dWithMask (+Backward),
//! AdaptiveAvgPool2d (+Backward). NCHW, 4-D.
//!
//! Which pair a product takes, its dtypes (the WithIndices backward takes only FLOAT with INT32
//! indices on A2/A3) and formats come from the contract; so do the dilation-1 rules, FLOAT
//! computed as FLOAT16 by the WithMask pair on the first-generation 910, and the unsupported
//! NaN/-Inf inputs, for which the emulator writes NaN results (undefined on the device). The
//! WithMask `indices` tensor is INT8 of the documented shape
//! `[N, C, kh*kw, (ceil(Hout*Wout/16) + 1) * 32]`; the emulator's own encoding inside it is:
//! byte `[n, c, k, p]` is 1 when window element `k` (row-major in the kernel) was the maximum
//! of output position `p` (row-major in `Hout*Wout`), 0 otherwise.
use std::sync::Arc;

use senet_cann_sys::*;

use super::{
    bad, begin, expect_rank, expect_shape, finish, float_dtype, launch_fn, nn, pair, refr, T,
};
use crate::api::Res;
use crate::contract::{self, rules, Arg, Target};
use crate::objects::{self, TensorDesc};
use crate::reference::pool as rp;
use crate::view;

/// Checked max-pool attributes and shapes.
#[derive(Debug, Clone, Copy)]
struct Pool {
    x: [usize; 4],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
    ceil: bool,
    out: [usize; 2],
}

impl Pool {
    fn out_dims(&self) -> Vec<i64> {
        [self.x[0], self.x[1], self.out[0], self.out[1]]
            .iter()
            .map(|&d| d as i64)
            .collect()
    }

    fn mask_dims(&self) -> Vec<i64> {
        let hw = self.out[0] * self.out[1];
        [
            self.x[0],
            self.x[1],
            self.kernel[0] * self.kernel[1],
            (hw.div_ceil(16) + 1) * 32,
        ]
        .iter()
        .map(|&d| d as i64)
        .collect()
    }
}

fn dims4(t: &TensorDesc) -> [usize; 4] {
    [
        t.dims[0] as usize,
        t.dims[1] as usize,
        t.dims[2] as usize,
        t.dims[3] as usize,
    ]
}

#[allow(clippy::too_many_arguments)]
unsafe fn pool_attrs(
    x: &TensorDesc,
    kernel: *const aclIntArray,
    stride: *const aclIntArray,
    padding: *const aclIntArray,
    dilation: *const aclIntArray,
    ceil: bool,
) -> Res<Pool> {
    expect_rank("self", x, 4)?;
    let k = pair(
        &objects::int_array(kernel, "kernelSize")?,
        "kernelSize",
        1,
        None,
    )?;
    let s = pair(&objects::int_array(stride, "stride")?, "stride", 1, Some(k))?;
    let p = pair(&objects::int_array(padding, "padding")?, "padding", 0, None)?;
    let d = pair(
        &objects::int_array(dilation, "dilation")?,
        "dilation",
        1,
        None,
    )?;
    let xs = dims4(x);
    let oh = rp::pool_output_size(xs[2], k[0], s[0], p[0], d[0], ceil).map_err(bad)?;
    let ow = rp::pool_output_size(xs[3], k[1], s[1], p[1], d[1], ceil).map_err(bad)?;
    Ok(Pool {
        x: xs,
        kernel: k,
        stride: s,
        pad: p,
        dil: d,
        ceil,
        out: [oh, ow],
    })
}

/// The contract rules of one max-pool operator: dilation, NaN/-Inf inputs, FP16 compute.
struct PoolRules {
    dilation: &'static rules::Rule,
    nan: &'static rules::Rule,
    fp16: Option<&'static rules::Rule>,
}

fn pool_rules(op: &str) -> PoolRules {
    match op {
        "aclnnMaxPool2dWithIndices" => PoolRules {
            dilation: &rules::POOL_INDICES_DILATION,
            nan: &rules::POOL_INDICES_NAN,
            fp16: None,
        },
        "aclnnMaxPool2dWithIndicesBackward" => PoolRules {
            dilation: &rules::POOL_INDICES_BWD_DILATION,
            nan: &rules::POOL_INDICES_BWD_NAN,
            fp16: None,
        },
        "aclnnMaxPool2dWithMask" => PoolRules {
            dilation: &rules::POOL_MASK_DILATION,
            nan: &rules::POOL_MASK_NAN,
            fp16: Some(&rules::POOL_MASK_FP16),
        },
        _ => PoolRules {
            dilation: &rules::POOL_MASK_BWD_DILATION,
            nan: &rules::POOL_MASK_BWD_NAN,
            fp16: Some(&rules::POOL_MASK_BWD_FP16),
        },
    }
}

/// What the run of a max-pool operator must do beyond the plain math.
#[derive(Clone, Copy)]
struct Quirks {
    /// NaN/-Inf inputs are unsupported: the results are NaN.
    nan_undefined: bool,
    /// FLOAT is computed as FLOAT16.
    fp16: bool,
}

fn pool_quirks(op: &str, t: &Target, p: &Pool, dt: aclDataType) -> Res<Quirks> {
    let r = pool_rules(op);
    r.dilation
        .require(t, p.dil == [1, 1], || format!("dilation is {:?}", p.dil))?;
    Ok(Quirks {
        nan_undefined: r.nan.applies(t.product),
        fp16: dt == aclDataType::ACL_FLOAT && r.fp16.is_some_and(|f| f.applies(t.product)),
    })
}

/// Whether `v` holds a value the max-pool operators do not support (NaN or -Inf).
fn unsupported_values(v: &[f32]) -> bool {
    v.iter().any(|x| x.is_nan() || *x == f32::NEG_INFINITY)
}

/// Converts flat input-plane indices to the mask encoding of the module docs.
fn encode_mask(p: &Pool, idx: &[i64], mask_cols: usize) -> Vec<i64> {
    let [n, c, _, w] = p.x;
    let kk = p.kernel[0] * p.kernel[1];
    let hw = p.out[0] * p.out[1];
    let mut mask = vec![0i64; n * c * kk * mask_cols];
    for plane in 0..n * c {
        for o in 0..hw {
            let (oy, ox) = (o / p.out[1], o % p.out[1]);
            let i = idx[plane * hw + o] as usize;
            let (ih, iw) = (i / w, i % w);
            let ky = (ih + p.pad[0] - oy * p.stride[0]) / p.dil[0];
            let kx = (iw + p.pad[1] - ox * p.stride[1]) / p.dil[1];
            let k = ky * p.kernel[1] + kx;
            mask[(plane * kk + k) * mask_cols + o] = 1;
        }
    }
    mask
}

/// Converts the mask encoding back to flat input-plane indices.
fn decode_mask(p: &Pool, mask: &[i64], mask_cols: usize) -> Result<Vec<i64>, String> {
    let [n, c, _, w] = p.x;
    let kk = p.kernel[0] * p.kernel[1];
    let hw = p.out[0] * p.out[1];
    let mut idx = vec![0i64; n * c * hw];
    for plane in 0..n * c {
        for o in 0..hw {
            let k = (0..kk)
                .find(|&k| mask[(plane * kk + k) * mask_cols + o] != 0)
                .ok_or_else(|| {
                    format!("the mask marks no window element for output {o} of plane {plane} (not written by aclnnMaxPool2dWithMask?)")
                })?;
            let (oy, ox) = (o / p.out[1], o % p.out[1]);
            let (ky, kx) = (k / p.kernel[1], k % p.kernel[1]);
            let ih = (oy * p.stride[0] + ky * p.dil[0]) as i64 - p.pad[0] as i64;
            let iw = (ox * p.stride[1] + kx * p.dil[1]) as i64 - p.pad[1] as i64;
            if ih < 0 || iw < 0 || ih >= p.x[2] as i64 || iw >= w as i64 {
                return Err(format!(
                    "the mask marks a padding position for output {o} of plane {plane}"
                ));
            }
            idx[plane * hw + o] = ih * w as i64 + iw;
        }
    }
    Ok(idx)
}

/// Forward max pooling shared by both variants (`mask`: WithMask encoding).
#[allow(clippy::too_many_arguments)]
unsafe fn max_pool(
    op: &'static str,
    self_: *const aclTensor,
    kernelSize: *const aclIntArray,
    stride: *const aclIntArray,
    padding: *const aclIntArray,
    dilation: *const aclIntArray,
    ceilMode: bool,
    out: *mut aclTensor,
    indices: *mut aclTensor,
    mask: bool,
    ws: *mut u64,
    ex: *mut *mut aclOpExecutor,
) -> Res<()> {
    let x = objects::tensor(self_, "self")?;
    let y = objects::tensor(out, "out")?;
    let ind = objects::tensor(indices, "indices")?;
    let plan = contract::check(
        op,
        &[
            Arg::input("self", &x),
            Arg::output("out", &y),
            Arg::output("indices", &ind),
        ],
        &[],
        None,
    )?;
    let p = pool_attrs(&x, kernelSize, stride, padding, dilation, ceilMode)?;
    let dt = float_dtype(op, &[("self", &x), ("out", &y)])?;
    let q = pool_quirks(op, &plan.target, &p, dt)?;
    expect_shape(
        "out",
        &y,
        &p.out_dims(),
        "computed from self and the pooling attributes",
    )?;
    if mask {
        expect_shape(
            "indices",
            &ind,
            &p.mask_dims(),
            "[N, C, kh*kw, (ceil(Hout*Wout/16) + 1) * 32]",
        )?;
    } else {
        expect_shape("indices", &ind, &p.out_dims(), "the shape of out")?;
    }
    let tensors: Vec<T> = vec![x.clone(), y.clone(), ind.clone()];
    let run = Arc::new(move || {
        let mut xv = view::read_f32(&x);
        if q.fp16 {
            view::round_f16(&mut xv);
        }
        let (mut v, idx, _) = refr(rp::max_pool2d_with_indices(
            &xv, p.x, p.kernel, p.stride, p.pad, p.dil, p.ceil,
        ))?;
        if q.nan_undefined && unsupported_values(&xv) {
            v.fill(f32::NAN);
        }
        view::write_f32(&y, &v)?;
        if mask {
            view::write_i64(&ind, &encode_mask(&p, &idx, ind.dims[3] as usize))
        } else {
            view::write_i64(&ind, &idx)
        }
    });
    finish(ws, ex, op, 0, tensors, run)
}

/// Backward max pooling shared by both variants.
#[allow(clippy::too_many_arguments)]
unsafe fn max_pool_backward(
    op: &'static str,
    gradOutput: *const aclTensor,
    self_: *const aclTensor,
    indices: *const aclTensor,
    kernelSize: *const aclIntArray,
    stride: *const aclIntArray,
    padding: *const aclIntArray,
    dilation: *const aclIntArray,
    ceilMode: bool,
    gradInput: *mut aclTensor,
    mask: bool,
    ws: *mut u64,
    ex: *mut *mut aclOpExecutor,
) -> Res<()> {
    let g = objects::tensor(gradOutput, "gradOutput")?;
    let x = objects::tensor(self_, "self")?;
    let ind = objects::tensor(indices, "indices")?;
    let gi = objects::tensor(gradInput, "gradInput")?;
    let plan = contract::check(
        op,
        &[
            Arg::input("gradOutput", &g),
            Arg::input("self", &x),
            Arg::input("indices", &ind),
            Arg::output("gradInput", &gi),
        ],
        &[],
        None,
    )?;
    let p = pool_attrs(&x, kernelSize, stride, padding, dilation, ceilMode)?;
    let dt = float_dtype(op, &[("gradOutput", &g), ("self", &x), ("gradInput", &gi)])?;
    let q = pool_quirks(op, &plan.target, &p, dt)?;
    expect_shape(
        "gradOutput",
        &g,
        &p.out_dims(),
        "the forward output's shape",
    )?;
    expect_shape("gradInput", &gi, &x.dims, "the shape of self")?;
    let want_dims = if mask { p.mask_dims() } else { p.out_dims() };
    expect_shape("indices", &ind, &want_dims, "what the forward wrote")?;
    let tensors: Vec<T> = vec![g.clone(), x.clone(), ind.clone(), gi.clone()];
    let run = Arc::new(move || {
        let raw = view::read_i64(&ind);
        let idx = if mask {
            decode_mask(&p, &raw, ind.dims[3] as usize)?
        } else {
            raw
        };
        let mut gv = view::read_f32(&g);
        if q.fp16 {
            view::round_f16(&mut gv);
        }
        let mut v = refr(rp::max_pool2d_with_indices_backward(&gv, &idx, p.x, p.out))?;
        if q.fp16 {
            view::round_f16(&mut v);
        }
        if q.nan_undefined && (unsupported_values(&gv) || unsupported_values(&view::read_f32(&x))) {
            v.fill(f32::NAN);
        }
        view::write_f32(&gi, &v)
    });
    finish(ws, ex, op, 0, tensors, run)
}

/// Phase 1 of max pooling with INT32/INT64 indices (flat positions in each input plane), where
/// the contract supports it (not on the first-generation 910).
#[no_mangle]
pub unsafe extern "C" fn aclnnMaxPool2dWithIndicesGetWorkspaceSize(
    self_: *const aclTensor,
    kernelSize: *const aclIntArray,
    stride: *const aclIntArray,
    padding: *const aclIntArray,
    dilation: *const aclIntArray,
    ceilMode: bool,
    out: *mut aclTensor,
    indices: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnMaxPool2dWithIndicesGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        max_pool(
            "aclnnMaxPool2dWithIndices",
            self_,
            kernelSize,
            stride,
            padding,
            dilation,
            ceilMode,
            out,
            indices,
            false,
            workspaceSize,
            executor,
        )
    })
}
launch_fn!(aclnnMaxPool2dWithIndices);

/// Phase 1 of the max-pooling backward with flat indices, where the contract supports it (A2/A3:
/// FLOAT with INT32 indices only).
#[no_mangle]
pub unsafe extern "C" fn aclnnMaxPool2dWithIndicesBackwardGetWorkspaceSize(
    gradOutput: *const aclTensor,
    self_: *const aclTensor,
    indices: *const aclTensor,
    kernelSize: *const aclIntArray,
    stride: *const aclIntArray,
    padding: *const aclIntArray,
    dilation: *const aclIntArray,
    ceilMode: bool,
    gradInput: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnMaxPool2dWithIndicesBackwardGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        max_pool_backward(
            "aclnnMaxPool2dWithIndicesBackward",
            gradOutput,
            self_,
            indices,
            kernelSize,
            stride,
            padding,
            dilation,
            ceilMode,
            gradInput,
            false,
            workspaceSize,
            executor,
        )
    })
}
launch_fn!(aclnnMaxPool2dWithIndicesBackward);

/// Phase 1 of max pooling with the INT8 mask (see the module docs for its encoding).
#[no_mangle]
pub unsafe extern "C" fn aclnnMaxPool2dWithMaskGetWorkspaceSize(
    self_: *const aclTensor,
    kernelSize: *const aclIntArray,
    stride: *const aclIntArray,
    padding: *const aclIntArray,
    dilation: *const aclIntArray,
    ceilMode: bool,
    out: *mut aclTensor,
    indices: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnMaxPool2dWithMaskGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        max_pool(
            "aclnnMaxPool2dWithMask",
            self_,
            kernelSize,
            stride,
            padding,
            dilation,
            ceilMode,
            out,
            indices,
            true,
            workspaceSize,
            executor,
        )
    })
}
launch_fn!(aclnnMaxPool2dWithMask);

/// Phase 1 of the max-pooling backward from the INT8 mask.
#[no_mangle]
pub unsafe extern "C" fn aclnnMaxPool2dWithMaskBackwardGetWorkspaceSize(
    gradOutput: *const aclTensor,
    self_: *const aclTensor,
    indices: *const aclTensor,
    kernelSize: *const aclIntArray,
    stride: *const aclIntArray,
    padding: *const aclIntArray,
    dilation: *const aclIntArray,
    ceilMode: bool,
    gradInput: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnMaxPool2dWithMaskBackwardGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        max_pool_backward(
            "aclnnMaxPool2dWithMaskBackward",
            gradOutput,
            self_,
            indices,
            kernelSize,
            stride,
            padding,
            dilation,
            ceilMode,
            gradInput,
            true,
            workspaceSize,
            executor,
        )
    })
}
launch_fn!(aclnnMaxPool2dWithMaskBackward);

/// Phase 1 of adaptive average pooling of a 4-D self to `outputSize` `[oh, ow]`.
#[no_mangle]
pub unsafe extern "C" fn aclnnAdaptiveAvgPool2dGetWorkspaceSize(
    self_: *const aclTensor,
    outputSize: *const aclIntArray,
    out: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnAdaptiveAvgPool2dGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let x = objects::tensor(self_, "self")?;
        let os = objects::int_array(outputSize, "outputSize")?;
        let y = objects::tensor(out, "out")?;
        contract::check(
            "aclnnAdaptiveAvgPool2d",
            &[Arg::input("self", &x), Arg::output("out", &y)],
            &[],
            None,
        )?;
        expect_rank("self", &x, 4)?;
        if os.len() != 2 {
            return Err(bad(format!(
                "outputSize {os:?} must have exactly 2 entries (aclnnAdaptiveAvgPool2d.md:90)"
            )));
        }
        let o = pair(&os, "outputSize", 1, None)?;
        float_dtype("aclnnAdaptiveAvgPool2d", &[("self", &x), ("out", &y)])?;
        let xs = dims4(&x);
        expect_shape(
            "out",
            &y,
            &[x.dims[0], x.dims[1], o[0] as i64, o[1] as i64],
            "[N, C] of self and outputSize",
        )?;
        let tensors: Vec<T> = vec![x.clone(), y.clone()];
        let run = Arc::new(move || {
            let v = refr(rp::adaptive_avg_pool2d(&view::read_f32(&x), xs, o))?;
            view::write_f32(&y, &v)
        });
        finish(
            workspaceSize,
            executor,
            "aclnnAdaptiveAvgPool2d",
            0,
            tensors,
            run,
        )
    })
}
launch_fn!(aclnnAdaptiveAvgPool2d);

/// Phase 1 of the adaptive-average-pooling backward: `out` (shaped like self) from gradOutput
/// `[N, C, oh, ow]`.
#[no_mangle]
pub unsafe extern "C" fn aclnnAdaptiveAvgPool2dBackwardGetWorkspaceSize(
    gradOutput: *const aclTensor,
    self_: *const aclTensor,
    out: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnAdaptiveAvgPool2dBackwardGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let g = objects::tensor(gradOutput, "gradOutput")?;
        let x = objects::tensor(self_, "self")?;
        let y = objects::tensor(out, "out")?;
        contract::check(
            "aclnnAdaptiveAvgPool2dBackward",
            &[
                Arg::input("gradOutput", &g),
                Arg::input("self", &x),
                Arg::output("out", &y),
            ],
            &[],
            None,
        )?;
        expect_rank("self", &x, 4)?;
        expect_rank("gradOutput", &g, 4)?;
        float_dtype(
            "aclnnAdaptiveAvgPool2dBackward",
            &[("gradOutput", &g), ("self", &x), ("out", &y)],
        )?;
        if g.dims[..2] != x.dims[..2] || g.dims[2] < 1 || g.dims[3] < 1 {
            return Err(bad(format!(
                "gradOutput {:?} must be [N, C, oh, ow] with [N, C] of self {:?}",
                g.dims, x.dims
            )));
        }
        expect_shape("out", &y, &x.dims, "the shape of self")?;
        let xs = dims4(&x);
        let o = [g.dims[2] as usize, g.dims[3] as usize];
        let tensors: Vec<T> = vec![g.clone(), x.clone(), y.clone()];
        let run = Arc::new(move || {
            let v = refr(rp::adaptive_avg_pool2d_backward(&view::read_f32(&g), xs, o))?;
            view::write_f32(&y, &v)
        });
        finish(
            workspaceSize,
            executor,
            "aclnnAdaptiveAvgPool2dBackward",
            0,
            tensors,
            run,
        )
    })
}
launch_fn!(aclnnAdaptiveAvgPool2dBackward);
