//! Dense layers (`nn.Dense`: y = x·wᵀ + b, w (out, in)) with `aclnnAddmm` on a stride-transposed
//! view of the weight, and the backward with `aclnnMm` and `aclnnReduceSum` (cann.md §2.3).
use super::buffer::{cast_into, out_view, read_as, temp, Arg, AscendBuffer};
use super::conv::activate;
use super::op::aclnn;
use super::tensor::{DType, ScalarValue, TensorDesc};
use super::AscendBackend;
use crate::backend::{Activation, LinearForward, LinearGrads, LinearShape};
use crate::Result;

/// [`Backend::linear`](crate::backend::Backend::linear): `aclnnAddmm(bias, x, wᵀ)` with
/// beta = alpha = 1 (the (out) bias broadcast over rows; wᵀ a (in, out) view of w with
/// strides (1, in)), then ReLU in place or Sigmoid from a temporary.
pub(super) fn linear(
    be: &AscendBackend,
    f: LinearForward<'_, AscendBuffer>,
    x: &AscendBuffer,
    y: &mut AscendBuffer,
) -> Result<()> {
    f.check(x, y)?;
    let LinearShape {
        n,
        in_features,
        out_features,
    } = f.shape;
    let (w, b, act) = (f.w, f.b, f.act);
    let cd = be.cd();
    let mut ctx = be.dev.enter()?;
    let xa = read_as(&mut ctx, x, &[n, in_features], cd)?;
    let wa = read_as(&mut ctx, w, &[out_features, in_features], cd)?;
    let wt = transposed(&mut ctx, &wa, out_features, in_features, cd)?;
    let ba = read_as(&mut ctx, b, &[out_features], cd)?;
    let yt = out_view(&mut ctx, y, &[n, out_features], cd)?;
    let pre = if act == Activation::Sigmoid {
        temp(&mut ctx, &[n, out_features], cd)?
    } else {
        Arg {
            t: yt,
            tmp: None,
            ptr: y.device_ptr(),
        }
    };
    let one = ctx.scalar(ScalarValue::F32(1.0))?;
    aclnn!(
        ctx,
        aclnnAddmm,
        aclnnAddmmGetWorkspaceSize,
        ba.t,
        xa.t,
        wt,
        one,
        one,
        pre.t,
        be.mm_cube(cd)
    )?;
    activate(&mut ctx, act, pre.t, yt)?;
    y.dtype = cd;
    Ok(())
}

/// [`Backend::linear_backward`](crate::backend::Backend::linear_backward):
/// `dx = dy·w` (`aclnnMm`), `dw = dyᵀ·x` (`aclnnMm` on a stride-transposed view of dy),
/// `db = Σ_rows dy` (`aclnnReduceSum` over dim 0, fp32 output). `dw` and `db` are fp32
/// (parameter gradients): in O2 the fp16 product is cast.
pub(super) fn linear_backward(
    be: &AscendBackend,
    shape: LinearShape,
    x: &AscendBuffer,
    w: &AscendBuffer,
    dy: &AscendBuffer,
    grads: LinearGrads<'_, AscendBuffer>,
) -> Result<()> {
    shape.check_backward(x, w, dy, &grads)?;
    let LinearShape {
        n,
        in_features,
        out_features,
    } = shape;
    let LinearGrads { dx, dw, db } = grads;
    let cd = be.cd();
    let cube = be.mm_cube(cd);
    let mut ctx = be.dev.enter()?;
    let dya = read_as(&mut ctx, dy, &[n, out_features], cd)?;
    if let Some(dx) = dx {
        let wa = read_as(&mut ctx, w, &[out_features, in_features], cd)?;
        let dxt = out_view(&mut ctx, dx, &[n, in_features], cd)?;
        aclnn!(
            ctx,
            aclnnMm,
            aclnnMmGetWorkspaceSize,
            dya.t,
            wa.t,
            dxt,
            cube
        )?;
        dx.dtype = cd;
    }
    // dyᵀ: (out, n) with strides (1, out) over dy's (n, out) storage.
    let dy_addr = dya.ptr;
    let dyt = ctx.tensor(&TensorDesc::view(
        dy_addr,
        cd,
        &[out_features, n],
        &[1, out_features],
        0,
        n * out_features,
    ))?;
    let xa = read_as(&mut ctx, x, &[n, in_features], cd)?;
    let dwt = out_view(&mut ctx, dw, &[out_features, in_features], DType::F32)?;
    if cd == DType::F32 {
        aclnn!(ctx, aclnnMm, aclnnMmGetWorkspaceSize, dyt, xa.t, dwt, cube)?;
    } else {
        let g = temp(&mut ctx, &[out_features, in_features], cd)?;
        aclnn!(ctx, aclnnMm, aclnnMmGetWorkspaceSize, dyt, xa.t, g.t, cube)?;
        cast_into(&mut ctx, g.t, DType::F32, dwt)?;
    }
    dw.dtype = DType::F32;
    let dbt = out_view(&mut ctx, db, &[out_features], DType::F32)?;
    let dim0 = ctx.int_array(&[0])?;
    aclnn!(
        ctx,
        aclnnReduceSum,
        aclnnReduceSumGetWorkspaceSize,
        dya.t,
        dim0,
        false,
        DType::F32.acl(),
        dbt
    )?;
    db.dtype = DType::F32;
    Ok(())
}

/// wᵀ as an (in, out) view with strides (1, in) of the (out, in) weight `wa` describes.
fn transposed(
    ctx: &mut super::device::Ctx,
    wa: &Arg,
    out_features: usize,
    in_features: usize,
    dtype: DType,
) -> Result<*mut senet_cann_sys::aclTensor> {
    let addr = wa.ptr;
    ctx.tensor(&TensorDesc::view(
        addr,
        dtype,
        &[in_features, out_features],
        &[1, in_features],
        0,
        out_features * in_features,
    ))
}
