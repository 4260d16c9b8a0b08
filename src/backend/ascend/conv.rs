//! Convolution forward and its data / filter gradients with `aclnnConvolution` and
//! `aclnnConvolutionBackward` (cann.md §2.3), NCHW, symmetric zero padding, no dilation.
use super::buffer::{cast_into, out_view, read_as, temp, AscendBuffer};
use super::device::Ctx;
use super::op::aclnn;
use super::runtime::Product;
use super::tensor::DType;
use super::AscendBackend;
use crate::backend::{Activation, Conv2dForward, Conv2dParams, Conv2dShape, Shape4};
use crate::{Error, Result};
use senet_cann_sys::aclTensor;

fn dims4(s: Shape4) -> [usize; 4] {
    [s.n, s.c, s.h, s.w]
}

/// The stride / padding / dilation / output-padding arrays of a conv.
struct ConvArrays {
    stride: *mut senet_cann_sys::aclIntArray,
    padding: *mut senet_cann_sys::aclIntArray,
    dilation: *mut senet_cann_sys::aclIntArray,
    output_padding: *mut senet_cann_sys::aclIntArray,
}

fn conv_arrays(ctx: &mut Ctx, p: Conv2dParams) -> Result<ConvArrays> {
    let (s, pad) = (p.stride as i64, p.padding as i64);
    Ok(ConvArrays {
        stride: ctx.int_array(&[s, s])?,
        padding: ctx.int_array(&[pad, pad])?,
        dilation: ctx.int_array(&[1, 1])?,
        output_padding: ctx.int_array(&[0, 0])?,
    })
}

/// Applies `act` to `pre` (a tensor holding the pre-activation), writing `y`: in place for ReLU
/// when `pre` is `y` itself, `aclnnSigmoid(pre) -> y` for Sigmoid.
pub(super) fn activate(
    ctx: &mut Ctx,
    act: Activation,
    pre: *mut aclTensor,
    y: *mut aclTensor,
) -> Result<()> {
    match act {
        Activation::None => Ok(()),
        Activation::Relu => aclnn!(ctx, aclnnInplaceRelu, aclnnInplaceReluGetWorkspaceSize, y),
        Activation::Sigmoid => aclnn!(ctx, aclnnSigmoid, aclnnSigmoidGetWorkspaceSize, pre, y),
    }
}

/// [`Backend::conv2d`](crate::backend::Backend::conv2d): `aclnnConvolution` with the bias
/// tensor carrying the folded BatchNorm, then `aclnnInplaceRelu` (or `aclnnSigmoid` from a
/// temporary). Computes in the precision's dtype (fp16 in O2: x, w and bias cast first).
pub(super) fn conv2d(
    be: &AscendBackend,
    f: Conv2dForward<'_, AscendBuffer>,
    x: &AscendBuffer,
    y: &mut AscendBuffer,
) -> Result<Shape4> {
    let ys = f.check(x, y)?;
    let Conv2dShape { xs, w_shape, p } = f.shape;
    let (w, bias, act) = (f.w, f.bias, f.act);
    let cd = be.cd();
    let mut ctx = be.dev.enter()?;
    let xa = read_as(&mut ctx, x, &dims4(xs), cd)?;
    let wa = read_as(&mut ctx, w, &w_shape, cd)?;
    let ba = match bias {
        Some(b) => Some(read_as(&mut ctx, b, &[w_shape[0]], cd)?),
        None => None,
    };
    let yt = out_view(&mut ctx, y, &dims4(ys), cd)?;
    let pre = if act == Activation::Sigmoid {
        temp(&mut ctx, &dims4(ys), cd)?
    } else {
        super::buffer::Arg {
            t: yt,
            tmp: None,
            ptr: y.device_ptr(),
        }
    };
    let a = conv_arrays(&mut ctx, p)?;
    let bias_t = ba.as_ref().map_or(std::ptr::null_mut(), |b| b.t);
    aclnn!(
        ctx,
        aclnnConvolution,
        aclnnConvolutionGetWorkspaceSize,
        xa.t,
        wa.t,
        bias_t,
        a.stride,
        a.padding,
        a.dilation,
        false,
        a.output_padding,
        p.groups as i64,
        pre.t,
        be.conv_cube(cd)
    )
    .map_err(|e| be.first_gen_conv_hint(e))?;
    activate(&mut ctx, act, pre.t, yt)?;
    y.dtype = cd;
    Ok(ys)
}

/// [`Backend::conv2d_backward_data`](crate::backend::Backend::conv2d_backward_data):
/// `aclnnConvolutionBackward` with outputMask {input}. The op's `input` argument is only read
/// for the weight gradient; here it gives the input's shape, so it is described over a
/// scratch block of that size (never read). `dx` takes the compute dtype.
pub(super) fn conv2d_backward_data(
    be: &AscendBackend,
    conv: Conv2dShape,
    w: &AscendBuffer,
    dy: &AscendBuffer,
    ys: Shape4,
    dx: &mut AscendBuffer,
) -> Result<()> {
    conv.check_backward_data(w, dy, ys, dx)?;
    let Conv2dShape { xs, w_shape, p } = conv;
    let cd = be.cd();
    let mut ctx = be.dev.enter()?;
    let dya = read_as(&mut ctx, dy, &dims4(ys), cd)?;
    let wa = read_as(&mut ctx, w, &w_shape, cd)?;
    let shape_only = temp(&mut ctx, &dims4(xs), cd)?;
    let dxt = out_view(&mut ctx, dx, &dims4(xs), cd)?;
    let t = GradTensors {
        dy: dya.t,
        x: shape_only.t,
        w: wa.t,
        dx: dxt,
        dw: std::ptr::null_mut(),
    };
    convolution_backward(be, &mut ctx, t, w_shape[0], p, cd)?;
    dx.dtype = cd;
    Ok(())
}

/// [`Backend::conv2d_backward_filter`](crate::backend::Backend::conv2d_backward_filter):
/// `aclnnConvolutionBackward` with outputMask {weight} (the `weight` argument only gives the
/// shape: a scratch block). The gradient is written straight into `dw` (fp32 mode, not
/// accumulating), cast from an fp16 temporary into `dw` (O2, not accumulating), or into a
/// temporary that is cast to fp32 and added (`aclnnInplaceAdd`) into `dw`. `dw` is always fp32 (a parameter gradient).
pub(super) fn conv2d_backward_filter(
    be: &AscendBackend,
    conv: Conv2dShape,
    x: &AscendBuffer,
    dy: &AscendBuffer,
    ys: Shape4,
    dw: &mut AscendBuffer,
    accumulate: bool,
) -> Result<()> {
    conv.check_backward_filter(x, dy, ys, dw)?;
    let Conv2dShape { xs, w_shape, p } = conv;
    if accumulate && dw.dtype != DType::F32 {
        return Err(Error::Invalid(format!(
            "conv2d_backward_filter: accumulating into a {:?} gradient",
            dw.dtype
        )));
    }
    let cd = be.cd();
    let mut ctx = be.dev.enter()?;
    let xa = read_as(&mut ctx, x, &dims4(xs), cd)?;
    let dya = read_as(&mut ctx, dy, &dims4(ys), cd)?;
    let shape_only = temp(&mut ctx, &w_shape, cd)?;
    let direct = cd == DType::F32 && !accumulate;
    let dwt = out_view(&mut ctx, dw, &w_shape, DType::F32)?;
    let out = if direct {
        super::buffer::Arg {
            t: dwt,
            tmp: None,
            ptr: dw.device_ptr(),
        }
    } else {
        temp(&mut ctx, &w_shape, cd)?
    };
    let t = GradTensors {
        dy: dya.t,
        x: xa.t,
        w: shape_only.t,
        dx: std::ptr::null_mut(),
        dw: out.t,
    };
    convolution_backward(be, &mut ctx, t, w_shape[0], p, cd)?;
    if cd != DType::F32 && !accumulate {
        // The cast up writes the gradient itself (no temporary, no copy).
        cast_into(&mut ctx, out.t, DType::F32, dwt)?;
    } else if !direct {
        let g32 = if cd == DType::F32 {
            out
        } else {
            let g = temp(&mut ctx, &w_shape, DType::F32)?;
            cast_into(&mut ctx, out.t, DType::F32, g.t)?;
            g
        };
        if accumulate {
            let one = ctx.scalar(super::tensor::ScalarValue::F32(1.0))?;
            aclnn!(
                ctx,
                aclnnInplaceAdd,
                aclnnInplaceAddGetWorkspaceSize,
                dwt,
                g32.t,
                one
            )?;
        } else {
            aclnn!(
                ctx,
                aclnnInplaceCopy,
                aclnnInplaceCopyGetWorkspaceSize,
                dwt,
                g32.t
            )?;
        }
    }
    dw.dtype = DType::F32;
    Ok(())
}

/// The tensors of one `aclnnConvolutionBackward`: `x` and `w` are read for the weight and the
/// input gradient respectively (otherwise they only give a shape); a null gradient is not asked
/// for.
struct GradTensors {
    dy: *mut aclTensor,
    x: *mut aclTensor,
    w: *mut aclTensor,
    dx: *mut aclTensor,
    dw: *mut aclTensor,
}

/// One `aclnnConvolutionBackward` (groups as a C `int` there, cann.md §2.3).
fn convolution_backward(
    be: &AscendBackend,
    ctx: &mut Ctx,
    t: GradTensors,
    cout: usize,
    p: Conv2dParams,
    cd: DType,
) -> Result<()> {
    let GradTensors { dy, x, w, dx, dw } = t;
    // outputMask {input, weight, bias}: the gradients asked for.
    let mask = [!dx.is_null(), !dw.is_null(), false];
    let a = conv_arrays(ctx, p)?;
    let bias_sizes = ctx.int_array(&[cout as i64])?;
    let mask = ctx.bool_array(&mask)?;
    aclnn!(
        ctx,
        aclnnConvolutionBackward,
        aclnnConvolutionBackwardGetWorkspaceSize,
        dy,
        x,
        w,
        bias_sizes,
        a.stride,
        a.padding,
        a.dilation,
        false,
        a.output_padding,
        p.groups as i32,
        mask,
        be.conv_cube(cd),
        dx,
        dw,
        std::ptr::null_mut()
    )
}

impl AscendBackend {
    /// `err` from `aclnnConvolution`, with the CANN release a first-generation 910 needs named
    /// when that is the likely cause: the forward convolution is documented on this product
    /// only up to CANN 8.0 (the CANN 8.0.0 page lists it; the current aclnnConvolution.md:23
    /// says 「Atlas 训练系列产品：不支持」; `aclnn-contract.md` Part A 3, Part F), and a newer
    /// CANN refuses it with ACLNN_ERR_PARAM_INVALID. senet does not refuse it itself: the
    /// vendor implementation may still accept the FLOAT16 convolution (Part A 3), and the
    /// installed CANN's version is not reliably readable (`aclrtGetVersion` is the ACL API
    /// version, not the release).
    pub(super) fn first_gen_conv_hint(&self, err: Error) -> Error {
        match err {
            Error::Device {
                call,
                code: code @ 161002,
                name,
                message,
            } if self.product == Product::Ascend910 => Error::Device {
                call,
                code,
                name,
                message: format!(
                    "{message} [{soc} is a first-generation Ascend 910: aclnnConvolution is \
                     documented for it only up to CANN 8.0 (later releases list it as \
                     unsupported, aclnnConvolution.md:23); install CANN 8.0 to run senet on \
                     this NPU]",
                    soc = self.soc
                ),
            },
            e => e,
        }
    }
}
