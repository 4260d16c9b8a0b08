//! Pooling: the max pool through `aclnnMaxPool2dWithMask` (first-generation 910, A2, A3) or
//! `aclnnMaxPool2dWithIndices` (950; [`PoolOp`] says why), PyTorch's symmetric padding as it is
//! and MindSpore's 'same' with the padding mapping of [`super::geometry`]; the global average
//! pool through `aclnnMean` over (H, W).
//!
//! The max-pool backward needs the forward's argmax (indices or mask). The trait's backward
//! receives the forward's input `x`, so the backend recomputes the forward into temporaries to
//! get them, rather than caching them keyed by buffer address: it costs one extra pool (small
//! beside the convolutions) and keeps the backend stateless, with no stale entry possible when
//! a buffer is reused.
use senet_cann_sys::{aclIntArray, aclTensor};

use super::buffer::{out_view, read_as, temp, Arg, AscendBuffer};
use super::device::Ctx;
use super::geometry::{aclnn_same_pool_2d, mask_dims, AclnnPool};
use super::op::aclnn;
use super::runtime::Product;
use super::tensor::{DType, TensorDesc};
use super::AscendBackend;
use crate::backend::{check_len, MaxPool2dParams, PoolGeometry, PoolPadding, Shape4};
use crate::{Error, Result};

/// Which max-pool operator pair the backend uses (`aclnn-contract.md` Part A 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PoolOp {
    /// `aclnnMaxPool2dWithIndices` (+`Backward`) with INT32 indices: Ascend 950, where the
    /// mask pair is not supported (aclnnMaxPool2dWithMask.md:8) and the indices backward takes
    /// FLOAT16 too (aclnnMaxPool2dWithIndicesBackward.md:214-217).
    WithIndices,
    /// `aclnnMaxPool2dWithMask` (+`Backward`): first-generation 910 (which has no
    /// WithIndices), A2 and A3, whose WithIndices backward takes only FLOAT with INT32 indices
    /// (aclnnMaxPool2dWithIndicesBackward.md:221-224), so O2 could not train through it. The
    /// mask pair takes FLOAT and FLOAT16 in both directions there; torch_npu uses it on these
    /// SoCs too (MaxPool2dWithIndicesKernelNpuOpApi.cpp:130-143).
    WithMask,
}

impl PoolOp {
    /// The pair `product` is documented to support.
    pub(super) fn for_product(product: Product) -> PoolOp {
        if product == Product::Ascend950 {
            PoolOp::WithIndices
        } else {
            PoolOp::WithMask
        }
    }
}

/// Element type of `aclnnMaxPool2dWithIndices`' indices: INT32, the one both directions take on
/// every product that has the operator (the forward takes INT32/INT64,
/// aclnnMaxPool2dWithIndices.md:173-174; the backward INT32 only on A2/A3,
/// aclnnMaxPool2dWithIndicesBackward.md:221-224, INT32/INT64 on 950, :214-217).
const INDICES_DTYPE: DType = DType::I32;

struct PoolArgs {
    kernel: *mut aclIntArray,
    stride: *mut aclIntArray,
    padding: *mut aclIntArray,
    dilation: *mut aclIntArray,
    ceil_mode: bool,
    ys: Shape4,
}

/// The aclnn arguments of `pool` over `xs`, whose geometry `g` the caller checked. aclnn takes
/// PyTorch's symmetric padding (-inf, at most `kernel / 2`) and `ceilMode` as they are
/// (`aclnn-contract.md`, aclnnMaxPool2dWithIndices / aclnnMaxPool2dWithMask: the same output
/// formula as [`symmetric_pool_out`](crate::backend::symmetric_pool_out), so the output is
/// `g.ys`); MindSpore's 'same' is mapped to one such padding and mode
/// ([`aclnn_same_pool_2d`]), or refused when none gives exactly its windows.
fn pool_args(
    ctx: &mut Ctx,
    xs: Shape4,
    pool: MaxPool2dParams,
    g: PoolGeometry,
) -> Result<PoolArgs> {
    let (kernel, stride) = (pool.kernel, pool.stride);
    let (pad_h, pad_w, ceil_mode) = match pool.padding {
        PoolPadding::Symmetric { pad, ceil_mode } => (pad, pad, ceil_mode),
        PoolPadding::Same => {
            let (ph, pw): (AclnnPool, AclnnPool) = aclnn_same_pool_2d(xs.h, xs.w, kernel, stride)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "max_pool2d: MindSpore 'same' padding of kernel {kernel}, stride {stride}                          over {}x{} has no exact aclnn equivalent (symmetric padding + ceil mode)",
                        xs.h, xs.w
                    ))
                })?;
            (ph.pad, pw.pad, ph.ceil_mode)
        }
    };
    let (k, s) = (kernel as i64, stride as i64);
    Ok(PoolArgs {
        kernel: ctx.int_array(&[k, k])?,
        stride: ctx.int_array(&[s, s])?,
        padding: ctx.int_array(&[pad_h as i64, pad_w as i64])?,
        dilation: ctx.int_array(&[1, 1])?,
        ceil_mode,
        ys: g.ys,
    })
}

fn dims4(s: Shape4) -> [usize; 4] {
    [s.n, s.c, s.h, s.w]
}

/// The forward pool into `out` (a tensor of `a.ys`), returning the argmax temporary.
fn pool_forward_into(
    be: &AscendBackend,
    ctx: &mut Ctx,
    x: *mut aclTensor,
    a: &PoolArgs,
    kernel: usize,
    out: *mut aclTensor,
) -> Result<Arg> {
    let ys = a.ys;
    match be.pool_op {
        PoolOp::WithIndices => {
            let idx = temp(ctx, &dims4(ys), INDICES_DTYPE)?;
            aclnn!(
                ctx,
                aclnnMaxPool2dWithIndices,
                aclnnMaxPool2dWithIndicesGetWorkspaceSize,
                x,
                a.kernel,
                a.stride,
                a.padding,
                a.dilation,
                a.ceil_mode,
                out,
                idx.t
            )?;
            Ok(idx)
        }
        PoolOp::WithMask => {
            let mask = temp(ctx, &mask_dims(ys.n, ys.c, kernel, ys.h, ys.w), DType::I8)?;
            aclnn!(
                ctx,
                aclnnMaxPool2dWithMask,
                aclnnMaxPool2dWithMaskGetWorkspaceSize,
                x,
                a.kernel,
                a.stride,
                a.padding,
                a.dilation,
                a.ceil_mode,
                out,
                mask.t
            )?;
            Ok(mask)
        }
    }
}

/// [`Backend::max_pool2d`](crate::backend::Backend::max_pool2d).
pub(super) fn max_pool2d(
    be: &AscendBackend,
    pool: MaxPool2dParams,
    x: &AscendBuffer,
    xs: Shape4,
    y: &mut AscendBuffer,
) -> Result<Shape4> {
    let g = pool.check_forward(x, xs, y)?;
    let mut ctx = be.dev.enter()?;
    let a = pool_args(&mut ctx, xs, pool, g)?;
    let cd = be.cd();
    let xa = read_as(&mut ctx, x, &dims4(xs), cd)?;
    let yt = out_view(&mut ctx, y, &dims4(a.ys), cd)?;
    let _argmax = pool_forward_into(be, &mut ctx, xa.t, &a, pool.kernel, yt)?;
    y.dtype = cd;
    Ok(a.ys)
}

/// [`Backend::max_pool2d_backward`](crate::backend::Backend::max_pool2d_backward):
/// recomputes the forward for its argmax, then `aclnnMaxPool2dWithIndicesBackward` /
/// `aclnnMaxPool2dWithMaskBackward` into `dx`.
pub(super) fn max_pool2d_backward(
    be: &AscendBackend,
    pool: MaxPool2dParams,
    x: &AscendBuffer,
    xs: Shape4,
    dy: &AscendBuffer,
    dx: &mut AscendBuffer,
) -> Result<()> {
    let g = pool.check_backward(x, xs, dy, dx)?;
    let mut ctx = be.dev.enter()?;
    let a = pool_args(&mut ctx, xs, pool, g)?;
    let cd = be.cd();
    let xa = read_as(&mut ctx, x, &dims4(xs), cd)?;
    let dya = read_as(&mut ctx, dy, &dims4(a.ys), cd)?;
    let out = temp(&mut ctx, &dims4(a.ys), cd)?;
    let argmax = pool_forward_into(be, &mut ctx, xa.t, &a, pool.kernel, out.t)?;
    let dxt = out_view(&mut ctx, dx, &dims4(xs), cd)?;
    match be.pool_op {
        PoolOp::WithIndices => aclnn!(
            ctx,
            aclnnMaxPool2dWithIndicesBackward,
            aclnnMaxPool2dWithIndicesBackwardGetWorkspaceSize,
            dya.t,
            xa.t,
            argmax.t,
            a.kernel,
            a.stride,
            a.padding,
            a.dilation,
            a.ceil_mode,
            dxt
        )?,
        PoolOp::WithMask => aclnn!(
            ctx,
            aclnnMaxPool2dWithMaskBackward,
            aclnnMaxPool2dWithMaskBackwardGetWorkspaceSize,
            dya.t,
            xa.t,
            argmax.t,
            a.kernel,
            a.stride,
            a.padding,
            a.dilation,
            a.ceil_mode,
            dxt
        )?,
    }
    dx.dtype = cd;
    Ok(())
}

/// [`Backend::global_avg_pool`](crate::backend::Backend::global_avg_pool): `aclnnMean` over
/// dims (2, 3) without keepdim, in the input's dtype.
pub(super) fn global_avg_pool(
    be: &AscendBackend,
    x: &AscendBuffer,
    xs: Shape4,
    y: &mut AscendBuffer,
) -> Result<()> {
    check_len("global_avg_pool input", x, xs.numel())?;
    check_len("global_avg_pool output", y, xs.n * xs.c)?;
    let cd = be.cd();
    let mut ctx = be.dev.enter()?;
    let xa = read_as(&mut ctx, x, &dims4(xs), cd)?;
    let yt = out_view(&mut ctx, y, &[xs.n, xs.c], cd)?;
    let dims = ctx.int_array(&[2, 3])?;
    aclnn!(
        ctx,
        aclnnMean,
        aclnnMeanGetWorkspaceSize,
        xa.t,
        dims,
        false,
        cd.acl(),
        yt
    )?;
    y.dtype = cd;
    Ok(())
}

/// [`Backend::global_avg_pool_backward`](crate::backend::Backend::global_avg_pool_backward):
/// `dx = dy[n, c] / (H*W)` over (H, W), one `aclnnAdaptiveAvgPool2dBackward` (output 1x1: each
/// input element gets its one window's gradient divided by the window size,
/// aclnnAdaptiveAvgPool2dBackward.md; with one contribution per element its documented
/// non-determinism (`:220`) has nothing to reorder). It replaced a broadcast copy and a
/// multiplication by `1/(H*W)`: the same values where `H*W` is a power of two (the product by
/// the exact reciprocal is the quotient), at most one rounding of the output dtype apart
/// elsewhere. The op's `self` only gives it the input's shape: `dy`'s own data viewed as
/// `[N, C, H, W]` with zero strides over (H, W) (a legal non-contiguous view, contract Part D:
/// strides are non-negative; non-contiguous inputs are accepted, Part B), so no buffer of the
/// input's size is needed.
pub(super) fn global_avg_pool_backward(
    be: &AscendBackend,
    dy: &AscendBuffer,
    xs: Shape4,
    dx: &mut AscendBuffer,
) -> Result<()> {
    check_len("global_avg_pool_backward dy", dy, xs.n * xs.c)?;
    check_len("global_avg_pool_backward dx", dx, xs.numel())?;
    let hw = xs.h * xs.w;
    if hw == 0 || xs.numel() == 0 {
        return Ok(());
    }
    let cd = be.cd();
    let mut ctx = be.dev.enter()?;
    let dya = read_as(&mut ctx, dy, &[xs.n, xs.c, 1, 1], cd)?;
    let shape = TensorDesc::view(dya.ptr, cd, &dims4(xs), &[xs.c, 1, 0, 0], 0, xs.n * xs.c);
    let self_shape = ctx.tensor(&shape)?;
    let dxt = out_view(&mut ctx, dx, &dims4(xs), cd)?;
    aclnn!(
        ctx,
        aclnnAdaptiveAvgPool2dBackward,
        aclnnAdaptiveAvgPool2dBackwardGetWorkspaceSize,
        dya.t,
        self_shape,
        dxt
    )?;
    dx.dtype = cd;
    Ok(())
}
