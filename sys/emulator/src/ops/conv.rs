//! `aclnnConvolution` and `aclnnConvolutionBackward` (2-D, not transposed), checked against the
//! contract of the emulated product (support, dtypes, formats, contiguity, cubeMathType and the
//! limits of [`crate::contract::rules`]) and computed with the cube's arithmetic
//! ([`super::cube::Precision`]): on a first-generation 910, for instance, FLOAT is computed as
//! FLOAT16 (operands and result rounded through it), on A2/A3 USE_HF32 rounds FLOAT operands to
//! HFLOAT32; products are summed in fp32.
use std::sync::Arc;

use senet_cann_sys::*;

use super::cube::Precision;
use super::{
    bad, begin, expect_rank, expect_shape, finish, float_dtype, launch_fn, nn, pair, refr,
    workspace_for, T,
};
use crate::api::Res;
use crate::contract::{self, rules, Arg, Role};
use crate::objects::{self, TensorDesc};
use crate::reference::conv as rc;
use crate::view;

/// Shapes and attributes of a 2-D convolution, checked.
#[derive(Debug, Clone, Copy)]
pub struct ConvGeom {
    /// Input `[n, cin, h, w]`.
    pub x: [usize; 4],
    /// Weight `[cout, cin/groups, kh, kw]`.
    pub w: [usize; 4],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding.
    pub pad: [usize; 2],
    /// Dilation.
    pub dil: [usize; 2],
    /// Groups.
    pub groups: usize,
    /// Output `[n, cout, oh, ow]`.
    pub out: [usize; 4],
}

impl ConvGeom {
    /// Output dims as `i64`.
    pub fn out_dims(&self) -> Vec<i64> {
        self.out.iter().map(|&d| d as i64).collect()
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

/// Checks input and weight against each other and the attributes; computes the output shape.
pub fn geometry(
    x: &TensorDesc,
    w: &TensorDesc,
    stride: &[i64],
    padding: &[i64],
    dilation: &[i64],
    groups: i64,
) -> Res<ConvGeom> {
    expect_rank("input", x, 4).map_err(|f| {
        bad(format!(
            "{} (the emulator does 2-D convolution, NCHW)",
            f.msg
        ))
    })?;
    expect_rank("weight", w, 4)?;
    if groups < 1 {
        return Err(bad(format!("groups {groups} must be >= 1")));
    }
    let (xs, ws) = (dims4(x), dims4(w));
    let g = groups as usize;
    if xs[1] != ws[1] * g {
        return Err(bad(format!(
            "weight {:?} needs input channels {}*groups = {}, got input {:?} (groups {groups})",
            w.dims,
            ws[1],
            ws[1] * g,
            x.dims
        )));
    }
    if ws[0] % g != 0 {
        return Err(bad(format!(
            "groups {groups} does not divide the {} output channels of weight {:?}",
            ws[0], w.dims
        )));
    }
    // 2-D: stride and dilation have input.dim-2 = 2 entries, padding 2 or 4
    // (aclnnConvolution.md:138-158); the emulator takes symmetric padding, so 2.
    for (v, what) in [
        (stride, "stride"),
        (padding, "padding"),
        (dilation, "dilation"),
    ] {
        if v.len() != 2 {
            return Err(bad(format!(
                "{what} {v:?} must have 2 entries for a 2-D convolution (aclnnConvolution.md:138-158; the emulator takes 2-entry padding)"
            )));
        }
    }
    let stride = pair(stride, "stride", 1, None)?;
    let pad = pair(padding, "padding", 0, None)?;
    let dil = pair(dilation, "dilation", 1, None)?;
    let [oh, ow] =
        rc::conv2d_output_hw([xs[2], xs[3]], [ws[2], ws[3]], stride, pad, dil).map_err(bad)?;
    Ok(ConvGeom {
        x: xs,
        w: ws,
        stride,
        pad,
        dil,
        groups: g,
        out: [xs[0], ws[0], oh, ow],
    })
}

/// 4-D convolution tensors must carry format NCHW ([`rules::CONV_NCHW`]).
fn conv_nchw(t: &contract::Target, ts: &[(&str, &TensorDesc)]) -> Res<()> {
    for (name, v) in ts {
        rules::CONV_NCHW.require(
            t,
            v.dims.len() != 4 || v.format == aclFormat::ACL_FORMAT_NCHW,
            || {
                format!(
                    "{name} is 4-D with format {}",
                    contract::check::format_name(v.format).0
                )
            },
        )?;
    }
    Ok(())
}

/// Phase 1 of the forward convolution: `output = conv2d(input, weight) + bias`.
/// Checks the contract of the emulated product (support, dtypes, formats, ranks, cubeMathType,
/// 4-D tensors tagged NCHW, output and bias of the input's dtype, A2/A3 dimension and padding
/// limits), ranks, channel/group consistency, bias `[Cout]` and the output shape
/// `[N, Cout, Hout, Wout]`; `transposed` is not supported by the emulator. Workspace: the
/// output's bytes rounded up to 512.
#[no_mangle]
pub unsafe extern "C" fn aclnnConvolutionGetWorkspaceSize(
    input: *const aclTensor,
    weight: *const aclTensor,
    bias: *const aclTensor,
    stride: *const aclIntArray,
    padding: *const aclIntArray,
    dilation: *const aclIntArray,
    transposed: bool,
    outputPadding: *const aclIntArray,
    groups: i64,
    output: *mut aclTensor,
    cubeMathType: i8,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnConvolutionGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let x = objects::tensor(input, "input")?;
        let w = objects::tensor(weight, "weight")?;
        let b = objects::opt_tensor(bias, "bias")?;
        let y = objects::tensor(output, "output")?;
        let st = objects::int_array(stride, "stride")?;
        let pd = objects::int_array(padding, "padding")?;
        let dl = objects::int_array(dilation, "dilation")?;
        if !outputPadding.is_null() {
            objects::int_array(outputPadding, "outputPadding")?;
        }
        if transposed {
            return Err(bad(
                "transposed convolution is not supported by the emulator",
            ));
        }
        let dt = float_dtype("aclnnConvolution", &[("input", &x), ("weight", &w)])?;
        let plan = contract::check(
            "aclnnConvolution",
            &[
                Arg::input("input", &x),
                Arg::input("weight", &w),
                Arg::opt("bias", b.as_deref(), Role::In),
                Arg::output("output", &y),
            ],
            &[],
            Some((cubeMathType, dt)),
        )?;
        let t = &plan.target;
        let g = geometry(&x, &w, &st, &pd, &dl, groups)?;
        conv_nchw(t, &[("input", &x), ("weight", &w), ("output", &y)])?;
        rules::CONV_OUT_DTYPE.require(t, y.dtype == dt, || {
            format!(
                "output is {} but input and weight are {}",
                view::dtype_name(y.dtype),
                view::dtype_name(dt)
            )
        })?;
        if let Some(b) = &b {
            rules::CONV_BIAS_DTYPE.require(t, b.dtype == dt, || {
                format!(
                    "bias is {} but input and weight are {}",
                    view::dtype_name(b.dtype),
                    view::dtype_name(dt)
                )
            })?;
            expect_shape("bias", b, &[g.w[0] as i64], "one value per output channel")?;
        }
        let big = [&x, &w]
            .into_iter()
            .chain(&b)
            .flat_map(|v| v.dims.iter())
            .copied()
            .max();
        rules::CONV_DIM_LIMIT.require(t, big.is_none_or(|d| d <= 1_000_000), || {
            format!("a dimension of input/weight/bias is {}", big.unwrap_or(0))
        })?;
        rules::CONV_PADDING.require(t, g.pad.iter().all(|&p| p <= 255), || {
            format!("padding is {:?}", g.pad)
        })?;
        expect_shape(
            "output",
            &y,
            &g.out_dims(),
            "computed from input, weight, stride, padding and dilation",
        )?;
        let prec = Precision::of(plan.cube.unwrap_or(contract::CubeCell::Ok), dt);
        let mut tensors: Vec<T> = vec![x.clone(), w.clone(), y.clone()];
        tensors.extend(b.clone());
        let ws = workspace_for(y.view_bytes());
        let run = Arc::new(move || {
            let mut xv = view::read_f32(&x);
            let mut wv = view::read_f32(&w);
            prec.operands(&mut xv);
            prec.operands(&mut wv);
            let mut bv = b.as_ref().map(|b| view::read_f32(b));
            if let Some(bv) = bv.as_mut() {
                // A FLOAT op computed as FLOAT16 converts its bias too.
                prec.result(bv);
            }
            let (mut out, _) = refr(rc::conv2d(
                &xv,
                g.x,
                &wv,
                g.w,
                bv.as_deref(),
                g.stride,
                g.pad,
                g.dil,
                g.groups,
            ))?;
            prec.result(&mut out);
            view::write_f32(&y, &out)
        });
        finish(
            workspaceSize,
            executor,
            "aclnnConvolution",
            ws,
            tensors,
            run,
        )
    })
}
launch_fn!(aclnnConvolution);

/// Phase 1 of the convolution backward: gradients of input, weight and bias as `outputMask`
/// `{input, weight, bias}` selects (each selected output must be non-null, shaped like input,
/// weight and `[Cout]`; `biasSizes`, when given, must be `[Cout]`). Workspace: the largest
/// gradient's bytes rounded up to 512.
#[no_mangle]
pub unsafe extern "C" fn aclnnConvolutionBackwardGetWorkspaceSize(
    gradOutput: *const aclTensor,
    input: *const aclTensor,
    weight: *const aclTensor,
    biasSizes: *const aclIntArray,
    stride: *const aclIntArray,
    padding: *const aclIntArray,
    dilation: *const aclIntArray,
    transposed: bool,
    outputPadding: *const aclIntArray,
    groups: std::os::raw::c_int,
    outputMask: *const aclBoolArray,
    cubeMathType: i8,
    gradInput: *mut aclTensor,
    gradWeight: *mut aclTensor,
    gradBias: *mut aclTensor,
    workspaceSize: *mut u64,
    executor: *mut *mut aclOpExecutor,
) -> aclnnStatus {
    nn("aclnnConvolutionBackwardGetWorkspaceSize", || {
        begin(workspaceSize, executor)?;
        let go = objects::tensor(gradOutput, "gradOutput")?;
        let x = objects::tensor(input, "input")?;
        let w = objects::tensor(weight, "weight")?;
        let st = objects::int_array(stride, "stride")?;
        let pd = objects::int_array(padding, "padding")?;
        let dl = objects::int_array(dilation, "dilation")?;
        let mask = objects::bool_array(outputMask, "outputMask")?;
        let mask: [bool; 3] = mask.as_slice().try_into().map_err(|_| {
            bad(format!(
                "outputMask has {} entries; 3 are required",
                mask.len()
            ))
        })?;
        if transposed {
            return Err(bad(
                "transposed convolution is not supported by the emulator",
            ));
        }
        if !outputPadding.is_null() {
            let op = objects::int_array(outputPadding, "outputPadding")?;
            if op.iter().any(|&v| v != 0) {
                return Err(bad(format!(
                    "outputPadding {op:?} must be all 0 when transposed is false (aclnnConvolutionBackward.md:241)"
                )));
            }
        }
        let out = |p: *mut aclTensor, on: bool, what: &str| -> Res<Option<T>> {
            if on {
                objects::tensor(p, what).map(Some)
            } else {
                objects::opt_tensor(p, what).map(|_| None)
            }
        };
        let gi = out(gradInput, mask[0], "gradInput")?;
        let gw = out(gradWeight, mask[1], "gradWeight")?;
        let gb = out(gradBias, mask[2], "gradBias")?;
        let mut dts = vec![("gradOutput", &*go), ("input", &*x), ("weight", &*w)];
        dts.extend(gi.as_deref().map(|t| ("gradInput", t)));
        dts.extend(gw.as_deref().map(|t| ("gradWeight", t)));
        dts.extend(gb.as_deref().map(|t| ("gradBias", t)));
        let dt = float_dtype("aclnnConvolutionBackward", &dts)?;
        let plan = contract::check(
            "aclnnConvolutionBackward",
            &[
                Arg::input("gradOutput", &go),
                Arg::input("input", &x),
                Arg::input("weight", &w),
                Arg::opt("gradInput", gi.as_deref(), Role::Out),
                Arg::opt("gradWeight", gw.as_deref(), Role::Out),
                Arg::opt("gradBias", gb.as_deref(), Role::Out),
            ],
            &[],
            Some((cubeMathType, dt)),
        )?;
        let t = &plan.target;
        let g = geometry(&x, &w, &st, &pd, &dl, i64::from(groups))?;
        let ok = g.w[2..].iter().all(|k| (1..=255).contains(k))
            && g.pad.iter().all(|&p| p <= 255)
            && g.dil.iter().all(|&d| d <= 255);
        rules::CONV_BWD_LIMITS.require(t, ok, || {
            format!(
                "weight {:?}, padding {:?}, dilation {:?}",
                w.dims, g.pad, g.dil
            )
        })?;
        rules::CONV_BWD_EMPTY.require(t, go.numel() > 0 && w.numel() > 0, || {
            format!("gradOutput {:?} / weight {:?} is empty", go.dims, w.dims)
        })?;
        expect_shape(
            "gradOutput",
            &go,
            &g.out_dims(),
            "the forward output's shape",
        )?;
        let cout = g.w[0] as i64;
        if mask[2] && !biasSizes.is_null() {
            let bs = objects::int_array(biasSizes, "biasSizes")?;
            if bs != [cout] {
                return Err(bad(format!(
                    "biasSizes {bs:?} must be [{cout}] (the output channels)"
                )));
            }
        }
        let mut largest = 0;
        if let Some(t) = &gi {
            expect_shape("gradInput", t, &x.dims, "the input's shape")?;
            largest = largest.max(t.view_bytes());
        }
        if let Some(t) = &gw {
            expect_shape("gradWeight", t, &w.dims, "the weight's shape")?;
            largest = largest.max(t.view_bytes());
        }
        if let Some(t) = &gb {
            expect_shape("gradBias", t, &[cout], "one value per output channel")?;
            largest = largest.max(t.view_bytes());
        }
        let prec = Precision::of(plan.cube.unwrap_or(contract::CubeCell::Ok), dt);
        let mut tensors: Vec<T> = vec![go.clone(), x.clone(), w.clone()];
        tensors.extend(gi.iter().chain(&gw).chain(&gb).cloned());
        let ws = workspace_for(largest);
        let run = Arc::new(move || {
            let mut gov = view::read_f32(&go);
            let mut xv = view::read_f32(&x);
            let mut wv = view::read_f32(&w);
            for v in [&mut gov, &mut xv, &mut wv] {
                prec.operands(v);
            }
            let (dx, dw, db) = refr(rc::conv2d_backward(
                &gov, &xv, g.x, &wv, g.w, g.stride, g.pad, g.dil, g.groups, mask,
            ))?;
            for (t, v) in [(&gi, dx), (&gw, dw), (&gb, db)] {
                if let (Some(t), Some(mut v)) = (t, v) {
                    prec.result(&mut v);
                    view::write_f32(t, &v)?;
                }
            }
            Ok(())
        });
        finish(
            workspaceSize,
            executor,
            "aclnnConvolutionBackward",
            ws,
            tensors,
            run,
        )
    })
}
launch_fn!(aclnnConvolutionBackward);
