//! MindSpore's `nn.Momentum` (`ApplyMomentum`): CANN has no aclnn ApplyMomentum (contract
//! Part C), so on the first-generation 910 each step of MindSpore's order of operations is one
//! aclnn op on the whole tensor, and on A2/A3/950 a whole parameter group is one
//! `aclnnFusedSgd` (PyTorch's SGD, which is MindSpore's Momentum with dampening 0; contract
//! Part A 6 and Part C).
use super::buffer::{read_as, same_device, temp, view, Arg, AscendBuffer};
use super::device::Ctx;
use super::op::aclnn;
use super::tensor::{DType, ScalarValue, TensorDesc};
use super::AscendBackend;
use crate::backend::{MomentumParams, MomentumSlot};
use crate::{Error, Result};

/// [`Backend::momentum_update_group`](crate::backend::Backend::momentum_update_group): one
/// `aclnnFusedSgd` over the group where the product has it, with `weightDecay = wd`,
/// `momentum`, `lr`, `dampening = 0`, `nesterov`, `isFirstStep = false` (MindSpore's
/// accumulators start at zero, so its first step is `v = μ·0 + g`, which the non-first-step
/// formula gives), and the loss scale as `gradScaleOptional` (a device tensor of shape [1],
/// uploaded only when the scale changes). The op computes `g/s + wd·θ` where MindSpore
/// computes `(g + (wd·s)·θ)·(1/s)`, and `θ - lr·(g + μ·v)` for Nesterov where MindSpore
/// computes `θ - lr·g - (μ·lr)·v`: equal but for rounding. It overwrites each gradient with
/// `g/s`. Elsewhere, or when the fused op cannot take the settings (momentum 0: MindSpore still
/// keeps `moment = g`, which FusedSgd without buffers would not; a negative learning rate,
/// which it refuses), one [`momentum_update`] per parameter.
pub(super) fn momentum_update_group(
    be: &AscendBackend,
    p: MomentumParams,
    group: &mut [MomentumSlot<'_, AscendBuffer>],
) -> Result<()> {
    for s in group.iter() {
        p.check(&*s.param, &*s.grad, &*s.moment, s.len)?;
    }
    let f32 = DType::F32;
    let fused = be.fused_sgd
        && p.momentum > 0.0
        && p.lr >= 0.0
        && group
            .iter()
            .all(|s| s.param.dtype == f32 && s.grad.dtype == f32 && s.moment.dtype == f32);
    if !fused {
        for s in group.iter_mut() {
            momentum_update(be, p, s.param, s.grad, s.moment, s.len)?;
        }
        return Ok(());
    }
    // FusedSgd takes no empty tensors (aclnnFusedSgd.md:120); an empty parameter has nothing
    // to update.
    let live: Vec<&MomentumSlot<'_, AscendBuffer>> = group.iter().filter(|s| s.len > 0).collect();
    if live.is_empty() {
        return Ok(());
    }
    let mut ctx = be.dev.enter()?;
    let lists: [Vec<(&AscendBuffer, usize)>; 3] = [
        live.iter().map(|s| (&*s.param, s.len)).collect(),
        live.iter().map(|s| (&*s.grad, s.len)).collect(),
        live.iter().map(|s| (&*s.moment, s.len)).collect(),
    ];
    let params = fp32_list(&mut ctx, &lists[0])?;
    let grads = fp32_list(&mut ctx, &lists[1])?;
    let moments = fp32_list(&mut ctx, &lists[2])?;
    let scale = if p.unscales() {
        grad_scale(be, &mut ctx, p.loss_scale)?
    } else {
        std::ptr::null_mut()
    };
    aclnn!(
        ctx,
        aclnnFusedSgd,
        aclnnFusedSgdGetWorkspaceSize,
        params,
        grads,
        moments,
        scale,
        p.weight_decay,
        p.momentum,
        p.lr,
        0.0f32,
        p.nesterov,
        false,
        false
    )
}

/// An `aclTensorList` of the first `len` values of each buffer, as FLOAT vectors.
fn fp32_list(
    ctx: &mut Ctx,
    bufs: &[(&AscendBuffer, usize)],
) -> Result<*mut senet_cann_sys::aclTensorList> {
    let descs = bufs
        .iter()
        .map(|&(b, len)| {
            same_device(ctx, b)?;
            Ok(TensorDesc::contiguous(b.block().ptr(), DType::F32, &[len]))
        })
        .collect::<Result<Vec<_>>>()?;
    ctx.tensor_list(&descs)
}

/// The loss scale as a FLOAT tensor of shape [1] on the device, uploaded (one synchronising
/// copy) only when it differs from the last one.
fn grad_scale(
    be: &AscendBackend,
    ctx: &mut Ctx,
    scale: f32,
) -> Result<*mut senet_cann_sys::aclTensor> {
    let mut cached = be.grad_scale.lock().unwrap_or_else(|e| e.into_inner());
    let stale = !matches!(&*cached, Some((s, _)) if s.to_bits() == scale.to_bits());
    if stale {
        let block = match cached.take() {
            Some((_, b)) => b,
            None => ctx.alloc(4)?,
        };
        ctx.upload_bytes(&block, &scale.to_ne_bytes())?;
        *cached = Some((scale, block));
    }
    let (_, block) = cached.as_ref().expect("set above");
    ctx.tensor(&TensorDesc::contiguous(block.ptr(), DType::F32, &[1]))
}

/// [`Backend::momentum_update`](crate::backend::Backend::momentum_update) in MindSpore's order,
/// each step one aclnn op on the whole tensor:
/// `g = Add(grad, param, alpha = wd*ls)` (when `wd != 0`), `g *= 1/ls` (`InplaceMuls`, when
/// `ls != 1`), `moment *= momentum` (`InplaceMuls`), `moment += g` (`InplaceAdd`), then
/// `param += -lr * moment` (`InplaceAdd` with alpha), or with Nesterov `param += -lr * g`
/// and `param += -(momentum*lr) * moment`. All fp32.
pub(super) fn momentum_update(
    be: &AscendBackend,
    p: MomentumParams,
    param: &mut AscendBuffer,
    grad: &AscendBuffer,
    moment: &mut AscendBuffer,
    len: usize,
) -> Result<()> {
    p.check(param, grad, moment, len)?;
    let (lr, momentum, nesterov) = (p.lr, p.momentum, p.nesterov);
    if param.dtype != DType::F32 || moment.dtype != DType::F32 {
        return Err(Error::Invalid(
            "momentum_update: parameters and moments must hold fp32".into(),
        ));
    }
    if len == 0 {
        return Ok(());
    }
    let f32 = DType::F32;
    let wd_scaled = p.scaled_weight_decay();
    let inv_scale = p.inverse_loss_scale();
    let need_scale = p.unscales();
    let mut ctx = be.dev.enter()?;
    let pt = view(&mut ctx, param, &[len])?;
    let mt = view(&mut ctx, moment, &[len])?;
    let ga = read_as(&mut ctx, grad, &[len], f32)?;
    // g: the gradient itself when nothing modifies it, else a temporary.
    let g: Arg = if wd_scaled != 0.0 {
        let g = temp(&mut ctx, &[len], f32)?;
        let wd = ctx.scalar(ScalarValue::F32(wd_scaled))?;
        aclnn!(ctx, aclnnAdd, aclnnAddGetWorkspaceSize, ga.t, pt, wd, g.t)?;
        g
    } else if need_scale {
        let g = temp(&mut ctx, &[len], f32)?;
        aclnn!(
            ctx,
            aclnnInplaceCopy,
            aclnnInplaceCopyGetWorkspaceSize,
            g.t,
            ga.t
        )?;
        g
    } else {
        ga
    };
    if need_scale {
        let inv = ctx.scalar(ScalarValue::F32(inv_scale))?;
        aclnn!(
            ctx,
            aclnnInplaceMuls,
            aclnnInplaceMulsGetWorkspaceSize,
            g.t,
            inv
        )?;
    }
    let mu = ctx.scalar(ScalarValue::F32(momentum))?;
    aclnn!(
        ctx,
        aclnnInplaceMuls,
        aclnnInplaceMulsGetWorkspaceSize,
        mt,
        mu
    )?;
    let one = ctx.scalar(ScalarValue::F32(1.0))?;
    aclnn!(
        ctx,
        aclnnInplaceAdd,
        aclnnInplaceAddGetWorkspaceSize,
        mt,
        g.t,
        one
    )?;
    if nesterov {
        let a = ctx.scalar(ScalarValue::F32(-lr))?;
        aclnn!(
            ctx,
            aclnnInplaceAdd,
            aclnnInplaceAddGetWorkspaceSize,
            pt,
            g.t,
            a
        )?;
        let b = ctx.scalar(ScalarValue::F32(-(momentum * lr)))?;
        aclnn!(
            ctx,
            aclnnInplaceAdd,
            aclnnInplaceAddGetWorkspaceSize,
            pt,
            mt,
            b
        )
    } else {
        let a = ctx.scalar(ScalarValue::F32(-lr))?;
        aclnn!(
            ctx,
            aclnnInplaceAdd,
            aclnnInplaceAddGetWorkspaceSize,
            pt,
            mt,
            a
        )
    }
}
