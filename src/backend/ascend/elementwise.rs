//! Element-wise ops composed from aclnn's in-place arithmetic (cann.md §2.3): the SE scale + add
//! plus ReLU and its backward, the ReLU / Sigmoid backwards, gradient accumulation, copies,
//! scaling and the squared norm.
//!
//! Where an aclnn op has no in-place form (`ThresholdBackward`, `SigmoidBackward`), the in-place
//! entry point writes a temporary that is copied back (`aclnnInplaceCopy`), so no op ever sees
//! the same memory as input and output; the `_into` entry points write the other buffer
//! directly.
use super::buffer::{out_view, read_as, temp, view, AscendBuffer};
use super::device::Ctx;
use super::op::aclnn;
use super::tensor::{DType, ScalarValue, TensorDesc};
use super::AscendBackend;
use crate::backend::{check_len, check_se_scale_add_relu, SeGrads, Shape4};
use crate::Result;
use senet_cann_sys::aclTensor;

/// Values per partial sum in [`sum_squares`].
pub const SUM_SQUARES_CHUNK: usize = 4096;

fn dims4(s: Shape4) -> [usize; 4] {
    [s.n, s.c, s.h, s.w]
}

/// [`Backend::se_scale_add_relu`](crate::backend::Backend::se_scale_add_relu): in `x`'s
/// dtype, `aclnnInplaceMul(x, gate as (N, C, 1, 1))` (broadcast), `aclnnInplaceAdd(x,
/// shortcut)`, `aclnnInplaceRelu(x)`.
pub(super) fn se_scale_add_relu(
    be: &AscendBackend,
    x: &mut AscendBuffer,
    xs: Shape4,
    gate: &AscendBuffer,
    shortcut: &AscendBuffer,
) -> Result<()> {
    check_se_scale_add_relu(xs, x, gate, shortcut)?;
    let d = x.dtype;
    let mut ctx = be.dev.enter()?;
    let xt = view(&mut ctx, x, &dims4(xs))?;
    let ga = read_as(&mut ctx, gate, &[xs.n, xs.c, 1, 1], d)?;
    let sa = read_as(&mut ctx, shortcut, &dims4(xs), d)?;
    aclnn!(
        ctx,
        aclnnInplaceMul,
        aclnnInplaceMulGetWorkspaceSize,
        xt,
        ga.t
    )?;
    add_relu(&mut ctx, xt, sa.t)
}

/// `y = relu(y + shortcut)` in place (`aclnnInplaceAdd`, `aclnnInplaceRelu`).
fn add_relu(ctx: &mut Ctx, y: *mut aclTensor, shortcut: *mut aclTensor) -> Result<()> {
    let one = ctx.scalar(ScalarValue::F32(1.0))?;
    aclnn!(
        ctx,
        aclnnInplaceAdd,
        aclnnInplaceAddGetWorkspaceSize,
        y,
        shortcut,
        one
    )?;
    aclnn!(ctx, aclnnInplaceRelu, aclnnInplaceReluGetWorkspaceSize, y)
}

/// [`Backend::se_scale_add_relu_into`](crate::backend::Backend::se_scale_add_relu_into): in
/// `x`'s dtype, `aclnnMul(x, gate as (N, C, 1, 1)) -> out` (broadcast), then
/// `aclnnInplaceAdd(out, shortcut)` and `aclnnInplaceRelu(out)`: the same roundings as the copy
/// and [`se_scale_add_relu`], one launch less.
pub(super) fn se_scale_add_relu_into(
    be: &AscendBackend,
    x: &AscendBuffer,
    xs: Shape4,
    gate: &AscendBuffer,
    shortcut: &AscendBuffer,
    out: &mut AscendBuffer,
) -> Result<()> {
    check_se_scale_add_relu(xs, x, gate, shortcut)?;
    check_len("se_scale_add_relu out", out, xs.numel())?;
    let d = x.dtype;
    let mut ctx = be.dev.enter()?;
    let xt = view(&mut ctx, x, &dims4(xs))?;
    let ga = read_as(&mut ctx, gate, &[xs.n, xs.c, 1, 1], d)?;
    let sa = read_as(&mut ctx, shortcut, &dims4(xs), d)?;
    let ot = out_view(&mut ctx, out, &dims4(xs), d)?;
    aclnn!(ctx, aclnnMul, aclnnMulGetWorkspaceSize, xt, ga.t, ot)?;
    out.dtype = d;
    add_relu(&mut ctx, ot, sa.t)
}

/// [`Backend::se_scale_add_relu_backward`](crate::backend::Backend::se_scale_add_relu_backward):
/// `dshortcut = ThresholdBackward(dout, out, 0)`, `dx = Mul(dshortcut, gate (N, C, 1, 1))`,
/// `dgate = ReduceSum(Mul(dshortcut, x), dims (2, 3))` (fp32 output; the CPU sums in f64).
pub(super) fn se_scale_add_relu_backward(
    be: &AscendBackend,
    x: &AscendBuffer,
    xs: Shape4,
    gate: &AscendBuffer,
    out: &AscendBuffer,
    dout: &AscendBuffer,
    grads: SeGrads<'_, AscendBuffer>,
) -> Result<()> {
    grads.check(xs, x, gate, out, dout)?;
    let SeGrads {
        dx,
        dgate,
        dshortcut,
    } = grads;
    let cd = be.cd();
    let d = dims4(xs);
    let mut ctx = be.dev.enter()?;
    let da = read_as(&mut ctx, dout, &d, cd)?;
    let oa = read_as(&mut ctx, out, &d, cd)?;
    let dst = out_view(&mut ctx, dshortcut, &d, cd)?;
    let zero = ctx.scalar(ScalarValue::F32(0.0))?;
    aclnn!(
        ctx,
        aclnnThresholdBackward,
        aclnnThresholdBackwardGetWorkspaceSize,
        da.t,
        oa.t,
        zero,
        dst
    )?;
    dshortcut.dtype = cd;
    let ga = read_as(&mut ctx, gate, &[xs.n, xs.c, 1, 1], cd)?;
    let dxt = out_view(&mut ctx, dx, &d, cd)?;
    aclnn!(ctx, aclnnMul, aclnnMulGetWorkspaceSize, dst, ga.t, dxt)?;
    dx.dtype = cd;
    let xa = read_as(&mut ctx, x, &d, cd)?;
    let prod = temp(&mut ctx, &d, cd)?;
    aclnn!(ctx, aclnnMul, aclnnMulGetWorkspaceSize, dst, xa.t, prod.t)?;
    let dgt = out_view(&mut ctx, dgate, &[xs.n, xs.c], DType::F32)?;
    let hw = ctx.int_array(&[2, 3])?;
    aclnn!(
        ctx,
        aclnnReduceSum,
        aclnnReduceSumGetWorkspaceSize,
        prod.t,
        hw,
        false,
        DType::F32.acl(),
        dgt
    )?;
    dgate.dtype = DType::F32;
    Ok(())
}

/// `aclnnThresholdBackward(dy, y, 0) -> out`: dy where y > 0.
fn threshold_backward(
    ctx: &mut Ctx,
    dy: *mut aclTensor,
    y: *mut aclTensor,
    out: *mut aclTensor,
) -> Result<()> {
    let zero = ctx.scalar(ScalarValue::F32(0.0))?;
    aclnn!(
        ctx,
        aclnnThresholdBackward,
        aclnnThresholdBackwardGetWorkspaceSize,
        dy,
        y,
        zero,
        out
    )
}

/// `aclnnSigmoidBackward(dy, s) -> out` (= dy*s*(1-s)).
fn sigmoid_grad(
    ctx: &mut Ctx,
    dy: *mut aclTensor,
    s: *mut aclTensor,
    out: *mut aclTensor,
) -> Result<()> {
    aclnn!(
        ctx,
        aclnnSigmoidBackward,
        aclnnSigmoidBackwardGetWorkspaceSize,
        dy,
        s,
        out
    )
}

/// [`Backend::relu_backward`](crate::backend::Backend::relu_backward):
/// `aclnnThresholdBackward(dy, y, 0)` into a temporary, copied back into `dy`.
pub(super) fn relu_backward(
    be: &AscendBackend,
    y: &AscendBuffer,
    dy: &mut AscendBuffer,
    len: usize,
) -> Result<()> {
    let names = ("relu_backward", ["y", "dy"]);
    grad(be, names, y, GradOut::InPlace(dy), len, threshold_backward)
}

/// [`Backend::sigmoid_backward`](crate::backend::Backend::sigmoid_backward):
/// `aclnnSigmoidBackward(dy, s)` (= dy*s*(1-s)) into a temporary, copied back into `dy`.
pub(super) fn sigmoid_backward(
    be: &AscendBackend,
    s: &AscendBuffer,
    dy: &mut AscendBuffer,
    len: usize,
) -> Result<()> {
    let names = ("sigmoid_backward", ["s", "dy"]);
    grad(be, names, s, GradOut::InPlace(dy), len, sigmoid_grad)
}

/// [`Backend::sigmoid_backward_into`](crate::backend::Backend::sigmoid_backward_into):
/// `aclnnSigmoidBackward(dy, s) -> dx`.
pub(super) fn sigmoid_backward_into(
    be: &AscendBackend,
    s: &AscendBuffer,
    dy: &AscendBuffer,
    dx: &mut AscendBuffer,
    len: usize,
) -> Result<()> {
    let names = ("sigmoid_backward", ["s", "dy"]);
    grad(be, names, s, GradOut::Into { dy, dx }, len, sigmoid_grad)
}

/// Where a gradient op's result goes: back into `dy`, or into another buffer.
enum GradOut<'a> {
    /// `dy = op(dy, a)`.
    InPlace(&'a mut AscendBuffer),
    /// `dx = op(dy, a)`.
    Into {
        dy: &'a AscendBuffer,
        dx: &'a mut AscendBuffer,
    },
}

/// `op(ctx, dy, a, out)` over `len` values in `dy`'s dtype for an aclnn backward op without an
/// in-place form: checks the buffers (named `op_name` and `names`, and `dx`), reads `a` in
/// `dy`'s dtype, then writes `dx` directly ([`GradOut::Into`], tagging it with that dtype) or a
/// temporary copied back into `dy` ([`GradOut::InPlace`]).
fn grad(
    be: &AscendBackend,
    (op_name, names): (&str, [&str; 2]),
    a: &AscendBuffer,
    out: GradOut<'_>,
    len: usize,
    op: impl FnOnce(&mut Ctx, *mut aclTensor, *mut aclTensor, *mut aclTensor) -> Result<()>,
) -> Result<()> {
    let dy: &AscendBuffer = match &out {
        GradOut::InPlace(dy) => dy,
        GradOut::Into { dy, .. } => dy,
    };
    check_len(&format!("{op_name} {}", names[0]), a, len)?;
    check_len(&format!("{op_name} {}", names[1]), dy, len)?;
    if let GradOut::Into { dx, .. } = &out {
        check_len(&format!("{op_name} dx"), &**dx, len)?;
    }
    if len == 0 {
        return Ok(());
    }
    let d = dy.dtype;
    let mut ctx = be.dev.enter()?;
    let at = read_as(&mut ctx, a, &[len], d)?;
    let dyt = view(&mut ctx, dy, &[len])?;
    match out {
        GradOut::Into { dx, .. } => {
            let dxt = out_view(&mut ctx, dx, &[len], d)?;
            op(&mut ctx, dyt, at.t, dxt)?;
            dx.dtype = d;
            Ok(())
        }
        GradOut::InPlace(_) => {
            let tmp = temp(&mut ctx, &[len], d)?;
            op(&mut ctx, dyt, at.t, tmp.t)?;
            aclnn!(
                ctx,
                aclnnInplaceCopy,
                aclnnInplaceCopyGetWorkspaceSize,
                dyt,
                tmp.t
            )
        }
    }
}

/// [`Backend::add_assign`](crate::backend::Backend::add_assign): `aclnnInplaceAdd(dst, src,
/// alpha = 1)` in `dst`'s dtype.
pub(super) fn add_assign(
    be: &AscendBackend,
    dst: &mut AscendBuffer,
    src: &AscendBuffer,
    len: usize,
) -> Result<()> {
    check_len("add_assign dst", dst, len)?;
    check_len("add_assign src", src, len)?;
    if len == 0 {
        return Ok(());
    }
    let mut ctx = be.dev.enter()?;
    let dt = view(&mut ctx, dst, &[len])?;
    let sa = read_as(&mut ctx, src, &[len], dst.dtype)?;
    let one = ctx.scalar(ScalarValue::F32(1.0))?;
    aclnn!(
        ctx,
        aclnnInplaceAdd,
        aclnnInplaceAddGetWorkspaceSize,
        dt,
        sa.t,
        one
    )
}

/// [`Backend::axpby`](crate::backend::Backend::axpby): `aclnnInplaceMuls(y, a)` then
/// `aclnnInplaceAdd(y, x, alpha = b)`.
pub(super) fn axpby(
    be: &AscendBackend,
    y: &mut AscendBuffer,
    x: &AscendBuffer,
    len: usize,
    a: f32,
    b: f32,
) -> Result<()> {
    check_len("axpby y", y, len)?;
    check_len("axpby x", x, len)?;
    if len == 0 {
        return Ok(());
    }
    let mut ctx = be.dev.enter()?;
    let yt = view(&mut ctx, y, &[len])?;
    let xa = read_as(&mut ctx, x, &[len], y.dtype)?;
    let av = ctx.scalar(ScalarValue::F32(a))?;
    aclnn!(
        ctx,
        aclnnInplaceMuls,
        aclnnInplaceMulsGetWorkspaceSize,
        yt,
        av
    )?;
    let bv = ctx.scalar(ScalarValue::F32(b))?;
    aclnn!(
        ctx,
        aclnnInplaceAdd,
        aclnnInplaceAddGetWorkspaceSize,
        yt,
        xa.t,
        bv
    )
}

/// [`Backend::scale`](crate::backend::Backend::scale): `aclnnInplaceMuls(x, factor)`.
pub(super) fn scale(
    be: &AscendBackend,
    x: &mut AscendBuffer,
    len: usize,
    factor: f32,
) -> Result<()> {
    check_len("scale", x, len)?;
    if len == 0 {
        return Ok(());
    }
    let mut ctx = be.dev.enter()?;
    let xt = view(&mut ctx, x, &[len])?;
    let f = ctx.scalar(ScalarValue::F32(factor))?;
    aclnn!(
        ctx,
        aclnnInplaceMuls,
        aclnnInplaceMulsGetWorkspaceSize,
        xt,
        f
    )
}

/// [`Backend::copy`](crate::backend::Backend::copy): `aclnnInplaceCopy(dst, src)`; `dst`
/// takes `src`'s dtype.
pub(super) fn copy(
    be: &AscendBackend,
    src: &AscendBuffer,
    dst: &mut AscendBuffer,
    len: usize,
) -> Result<()> {
    check_len("copy source", src, len)?;
    check_len("copy destination", dst, len)?;
    if len == 0 {
        return Ok(());
    }
    let mut ctx = be.dev.enter()?;
    let st = view(&mut ctx, src, &[len])?;
    let dt = out_view(&mut ctx, dst, &[len], src.dtype)?;
    aclnn!(
        ctx,
        aclnnInplaceCopy,
        aclnnInplaceCopyGetWorkspaceSize,
        dt,
        st
    )?;
    dst.dtype = src.dtype;
    Ok(())
}

/// [`Backend::sum_squares`](crate::backend::Backend::sum_squares): `aclnnMul(x, x)` in fp32,
/// then `aclnnReduceSum` of chunks of [`SUM_SQUARES_CHUNK`] values (a (chunks, 4096) view,
/// plus the tail) into fp32 partial sums, downloaded and added in f64 on the host in chunk
/// order. Precision: each partial is an fp32 sum of at most 4096 squares (relative error at
/// most about 4096 * 2^-24 ≈ 2.4e-4 in the worst case, typically ~sqrt(4096) * 2^-24 ≈
/// 4e-6), the rest is exact to f64 rounding; the CPU backend sums every square in f64.
/// Range: a value above ~1.8e19 in magnitude (or a partial sum above f32's 3.4e38) gives
/// +inf here where the CPU stays finite, so the loss-scale overflow check
/// (`TrainNet::gradients_finite`) calls such a step an overflow on Ascend, as MindSpore's
/// fp32 overflow status would; with any realistic loss scale gradients stay far below.
pub(super) fn sum_squares(be: &AscendBackend, x: &AscendBuffer, len: usize) -> Result<f64> {
    check_len("sum_squares", x, len)?;
    if len == 0 {
        return Ok(0.0);
    }
    let f32 = DType::F32;
    let mut ctx = be.dev.enter()?;
    let xa = read_as(&mut ctx, x, &[len], f32)?;
    let sq = temp(&mut ctx, &[len], f32)?;
    aclnn!(ctx, aclnnMul, aclnnMulGetWorkspaceSize, xa.t, xa.t, sq.t)?;
    let (q, r) = (len / SUM_SQUARES_CHUNK, len % SUM_SQUARES_CHUNK);
    let parts = q + usize::from(r > 0);
    let partial = ctx.alloc(parts * 4)?;
    let sq_ptr = sq.tmp.as_ref().expect("temporary").ptr();
    let dim1 = ctx.int_array(&[1])?;
    let reduce = |ctx: &mut super::device::Ctx, rows: usize, cols: usize, at: usize| {
        let src = ctx.tensor(&TensorDesc::view(
            sq_ptr,
            f32,
            &[rows, cols],
            &[cols, 1],
            at * SUM_SQUARES_CHUNK,
            len,
        ))?;
        let dst = ctx.tensor(&TensorDesc::view(
            partial.ptr(),
            f32,
            &[rows],
            &[1],
            at,
            parts,
        ))?;
        aclnn!(
            ctx,
            aclnnReduceSum,
            aclnnReduceSumGetWorkspaceSize,
            src,
            dim1,
            false,
            f32.acl(),
            dst
        )
    };
    if q > 0 {
        reduce(&mut ctx, q, SUM_SQUARES_CHUNK, 0)?;
    }
    if r > 0 {
        reduce(&mut ctx, 1, r, q)?;
    }
    let mut host = vec![0f32; parts];
    // SAFETY: f32 is plain data; the slice covers the vector exactly.
    let bytes = unsafe { std::slice::from_raw_parts_mut(host.as_mut_ptr() as *mut u8, parts * 4) };
    ctx.download_bytes(&partial, bytes)?;
    Ok(host.iter().map(|&v| v as f64).sum())
}
