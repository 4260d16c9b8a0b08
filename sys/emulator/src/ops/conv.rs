//! `aclnnConvolution` and `aclnnConvolutionBackward` (2-D, not transposed).
//!
//! On a first-generation Ascend 910 (`SENET_EMU_SOC=Ascend910A` and the like) the forward
//! computes in fp16 whatever the tensors' dtype, as the real op does there: inputs, weight,
//! bias and the result are rounded through FLOAT16.
use std::sync::Arc;

use senet_cann_sys::*;

use super::{
    bad, begin, check_cube, expect_rank, expect_shape, finish, float_dtype, launch_fn, nn, pair,
    refr, workspace_for, T,
};
use crate::api::Res;
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

/// Phase 1 of the forward convolution: `output = conv2d(input, weight) + bias`.
/// Checks ranks, channel/group consistency, a shared FLOAT/FLOAT16 dtype, bias `[Cout]`, the
/// output shape `[N, Cout, Hout, Wout]`, cubeMathType 0..=3; `transposed` is not supported.
/// Workspace: the output's bytes rounded up to 512.
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
        check_cube(cubeMathType)?;
        if transposed {
            return Err(bad(
                "transposed convolution is not supported by the emulator",
            ));
        }
        let g = geometry(&x, &w, &st, &pd, &dl, groups)?;
        let mut dts = vec![("input", &*x), ("weight", &*w), ("output", &*y)];
        if let Some(b) = &b {
            dts.push(("bias", b));
            expect_shape("bias", b, &[g.w[0] as i64], "one value per output channel")?;
        }
        float_dtype("aclnnConvolution", &dts)?;
        expect_shape(
            "output",
            &y,
            &g.out_dims(),
            "computed from input, weight, stride, padding and dilation",
        )?;
        let fp16 = crate::state::first_gen_910();
        let mut tensors: Vec<T> = vec![x.clone(), w.clone(), y.clone()];
        tensors.extend(b.clone());
        let ws = workspace_for(y.view_bytes());
        let run = Arc::new(move || {
            let mut xv = view::read_f32(&x);
            let mut wv = view::read_f32(&w);
            let mut bv = b.as_ref().map(|b| view::read_f32(b));
            if fp16 {
                view::round_f16(&mut xv);
                view::round_f16(&mut wv);
                if let Some(bv) = bv.as_mut() {
                    view::round_f16(bv);
                }
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
            if fp16 {
                view::round_f16(&mut out);
            }
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
        if !outputPadding.is_null() {
            objects::int_array(outputPadding, "outputPadding")?;
        }
        let mask = objects::bool_array(outputMask, "outputMask")?;
        let mask: [bool; 3] = mask.as_slice().try_into().map_err(|_| {
            bad(format!(
                "outputMask has {} entries; 3 are required",
                mask.len()
            ))
        })?;
        check_cube(cubeMathType)?;
        if transposed {
            return Err(bad(
                "transposed convolution is not supported by the emulator",
            ));
        }
        let g = geometry(&x, &w, &st, &pd, &dl, i64::from(groups))?;
        expect_shape(
            "gradOutput",
            &go,
            &g.out_dims(),
            "the forward output's shape",
        )?;
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
        let cout = g.w[0] as i64;
        if mask[2] && !biasSizes.is_null() {
            let bs = objects::int_array(biasSizes, "biasSizes")?;
            if bs != [cout] {
                return Err(bad(format!(
                    "biasSizes {bs:?} must be [{cout}] (the output channels)"
                )));
            }
        }
        let mut dts = vec![("gradOutput", &*go), ("input", &*x), ("weight", &*w)];
        let mut largest = 0;
        if let Some(t) = &gi {
            expect_shape("gradInput", t, &x.dims, "the input's shape")?;
            dts.push(("gradInput", t));
            largest = largest.max(t.view_bytes());
        }
        if let Some(t) = &gw {
            expect_shape("gradWeight", t, &w.dims, "the weight's shape")?;
            dts.push(("gradWeight", t));
            largest = largest.max(t.view_bytes());
        }
        if let Some(t) = &gb {
            expect_shape("gradBias", t, &[cout], "one value per output channel")?;
            dts.push(("gradBias", t));
            largest = largest.max(t.view_bytes());
        }
        float_dtype("aclnnConvolutionBackward", &dts)?;
        let mut tensors: Vec<T> = vec![go.clone(), x.clone(), w.clone()];
        tensors.extend(gi.iter().chain(&gw).chain(&gb).cloned());
        let ws = workspace_for(largest);
        let run = Arc::new(move || {
            let gov = view::read_f32(&go);
            let xv = view::read_f32(&x);
            let wv = view::read_f32(&w);
            let (dx, dw, db) = refr(rc::conv2d_backward(
                &gov, &xv, g.x, &wv, g.w, g.stride, g.pad, g.dil, g.groups, mask,
            ))?;
            for (t, v) in [(&gi, dx), (&gw, dw), (&gb, db)] {
                if let (Some(t), Some(v)) = (t, v) {
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
