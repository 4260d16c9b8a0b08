//! MindSpore's `nn.Momentum` (`ApplyMomentum`): CANN has no aclnn ApplyMomentum (contract
//! Part C), so on the first-generation 910 each step of MindSpore's order of operations is one
//! aclnn op on the whole tensor, and on A2/A3/950 a whole parameter group is one
//! `aclnnFusedSgd` (PyTorch's SGD, which is MindSpore's Momentum with dampening 0; contract
//! Part A 6 and Part C).
//!
//! **Device-lr mode** (for a captured step, issue 14 item 6; docs/npu-performance.md §6.4
//! point 4): a captured graph replays its launches with the arguments they were planned with,
//! so FusedSgd's `float lr` would freeze the learning rate of the capture step. In this mode
//! ([`set_device_lr`]) the group update reads `-lr` (and `-μ·lr` for Nesterov) from a device
//! block the backend owns, refreshed before each step by [`stage_lr`] with an asynchronous copy
//! queued on the stream; the update is MindSpore's order of operations on whole groups with
//! `aclnnForeach*` lists ([`momentum_update_group_device_lr`]). Eager steps keep FusedSgd.
use std::sync::MutexGuard;

use super::buffer::{read_as, same_device, temp, view, Arg, AscendBuffer};
use super::device::Ctx;
use super::memory::Block;
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
    if let Some(lr) = be.device_lr_state().enabled_block() {
        return momentum_update_group_device_lr(be, p, group, lr);
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
    let [params, grads, moments] = group_lists(&mut ctx, &live)?;
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

/// The parameters, gradients and moments of `slots` as three FLOAT `aclTensorList`s.
fn group_lists(
    ctx: &mut Ctx,
    slots: &[&MomentumSlot<'_, AscendBuffer>],
) -> Result<[*mut senet_cann_sys::aclTensorList; 3]> {
    let params: Vec<_> = slots.iter().map(|s| (&*s.param, s.len)).collect();
    let grads: Vec<_> = slots.iter().map(|s| (&*s.grad, s.len)).collect();
    let moments: Vec<_> = slots.iter().map(|s| (&*s.moment, s.len)).collect();
    Ok([
        fp32_list(ctx, &params)?,
        fp32_list(ctx, &grads)?,
        fp32_list(ctx, &moments)?,
    ])
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

/// The learning rate in device memory (device-lr mode, module docs): whether the mode is on,
/// its block, and the (lr, momentum) the last [`stage_lr`] queued.
#[derive(Default)]
pub(super) struct DeviceLr {
    enabled: bool,
    block: Option<Block>,
    staged: Option<(f32, f32)>,
}

/// Where `-lr` and `-(momentum·lr)` sit in the device block: two FLOAT values 32 bytes apart,
/// since an aclTensor's address must be 32-byte aligned (aclCreateTensor.md:17-35, contract
/// Part D) and a block starts 64-byte aligned (aclrtMalloc, Part D).
const LR_OFFSET: usize = 0;
const MU_LR_OFFSET: usize = 32;
const LR_BLOCK_BYTES: usize = 64;

/// The most tensors of one list per foreach launch: torch_npu chunks in-place foreach lists to
/// 48 tensors (contract Part E, `ForeachMulScalarKernelOpApi.cpp:61,70,94-99`; senet passes
/// `out = x1`, the in-place form), under the docs' 50 of MulScalarV2's `out` and of the 950's
/// AddListV2.
const FOREACH_CHUNK: usize = 48;

/// The device block's address and the staged (lr, momentum), when device-lr mode is on.
type LrSource = (*mut std::ffi::c_void, Option<(f32, f32)>);

impl DeviceLr {
    /// The device block when the mode is on (with the staged (lr, momentum)).
    fn enabled_block(&self) -> Option<LrSource> {
        match (self.enabled, &self.block) {
            (true, Some(b)) => Some((b.ptr(), self.staged)),
            _ => None,
        }
    }
}

impl AscendBackend {
    fn device_lr_state(&self) -> MutexGuard<'_, DeviceLr> {
        self.device_lr.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// [`Backend::set_device_lr`](crate::backend::Backend::set_device_lr): turns device-lr mode on
/// (allocating the 64-byte learning-rate block the first time: turn it on before the first
/// step, so that the block does not come out of the cache later and make a step allocate) or
/// off (FusedSgd again; the block is kept). Errors: on a product without the foreach operators
/// (the first-generation 910: `aclnn-contract.md` "### aclnnForeach*", ❌ in every row),
/// [`Error::Invalid`] naming the SoC and the section.
pub(super) fn set_device_lr(be: &AscendBackend, enabled: bool) -> Result<()> {
    if enabled && !be.foreach {
        return Err(Error::Invalid(format!(
            "the learning rate in device memory needs aclnnForeachAddList, aclnnForeachAddListV2 \
             and aclnnForeachMulScalarV2, which {} (product line {:?}) does not have \
             (shared/reference/aclnn-contract.md, \"### aclnnForeach*\": not supported on the \
             first-generation 910 in any row); a captured step cannot run here, use eager steps",
            be.soc, be.product
        )));
    }
    let mut st = be.device_lr_state();
    if enabled && st.block.is_none() {
        st.block = Some(be.dev.enter()?.alloc(LR_BLOCK_BYTES)?);
    }
    st.enabled = enabled;
    st.staged = None;
    Ok(())
}

/// [`Backend::stage_lr`](crate::backend::Backend::stage_lr): queues on the stream, without
/// waiting, the copy of `-lr` and `-(momentum·lr)` (computed in f32 as the per-parameter path
/// computes them) into the device block, so that every update queued after it (a replayed graph
/// included) reads these values and every one queued before reads the old ones. No synchronise,
/// no `aclrtMemcpy`: the values go through the pinned staging buffers of
/// [`Ctx::upload_async`], the mechanism the step's image upload uses.
///
/// Why a staging slot is never rewritten before its copy ran: `upload_async` records, for the
/// slot it fills, the number of synchronises done so far (`queued_at`), and hands a slot out
/// again only once a later synchronise has returned (`queued_at < syncs`): that synchronise
/// drained the stream, so the `aclrtMemcpyAsync` reading the slot has run. When all the slots
/// are in flight it synchronises first. A trainer that synchronises once per step (the loss
/// read) therefore never waits here; one that stages the learning rate of several steps with no
/// synchronise in between waits once every `MAX_STAGING` (4) uploads, images included.
///
/// Errors: device-lr mode is off ([`Error::Invalid`]); a device failure.
pub(super) fn stage_lr(be: &AscendBackend, lr: f32, momentum: f32) -> Result<()> {
    let mut st = be.device_lr_state();
    let Some(block) = st.block.as_ref().filter(|_| st.enabled) else {
        return Err(Error::Invalid(
            "stage_lr: the learning rate lives in device memory only after set_device_lr(true)"
                .into(),
        ));
    };
    let mut host = [0u8; LR_BLOCK_BYTES];
    host[LR_OFFSET..LR_OFFSET + 4].copy_from_slice(&(-lr).to_ne_bytes());
    host[MU_LR_OFFSET..MU_LR_OFFSET + 4].copy_from_slice(&(-(momentum * lr)).to_ne_bytes());
    be.dev.enter()?.upload_async(block, &host)?;
    st.staged = Some((lr, momentum));
    Ok(())
}

/// The group update in device-lr mode: MindSpore's order of operations (as
/// [`momentum_update`]), each step one foreach launch per chunk of [`FOREACH_CHUNK`] parameters,
/// every list in place (`out = x1`):
/// `g = grad + (wd·s)·θ` (`aclnnForeachAddListV2`, when `wd != 0`), `g *= 1/s`
/// (`aclnnForeachMulScalarV2`, when `s != 1`), `v *= μ` (`MulScalarV2`), `v += g`
/// (`AddListV2`, alpha 1), `θ += (-lr)·v` (`aclnnForeachAddList`, alpha the device `-lr`), or
/// for Nesterov `θ += (-lr)·g` and `θ += (-μ·lr)·v`. The same f32 operations in the same order
/// as the per-parameter path, so the same values bit for bit on the emulator. `g` is written
/// into the gradient (it then holds `grad/s + wd·θ`). `p.lr` and `p.momentum` must be what
/// [`stage_lr`] queued: checked, since the launches read the device values.
fn momentum_update_group_device_lr(
    be: &AscendBackend,
    p: MomentumParams,
    group: &mut [MomentumSlot<'_, AscendBuffer>],
    (lr_block, staged): LrSource,
) -> Result<()> {
    let bits = |(a, b): (f32, f32)| (a.to_bits(), b.to_bits());
    if staged.map(bits) != Some(bits((p.lr, p.momentum))) {
        return Err(Error::Invalid(format!(
            "momentum_update_group with the learning rate in device memory: the update is for \
             lr {} and momentum {} but the device holds {}; call stage_lr(lr, momentum) before \
             the update",
            p.lr,
            p.momentum,
            match staged {
                Some((lr, mu)) => format!("lr {lr} and momentum {mu}"),
                None => "nothing staged since the mode was turned on".into(),
            }
        )));
    }
    let f32 = DType::F32;
    if let Some(s) = group
        .iter()
        .find(|s| s.param.dtype != f32 || s.grad.dtype != f32 || s.moment.dtype != f32)
    {
        return Err(Error::Invalid(format!(
            "momentum_update_group with the learning rate in device memory takes fp32 \
             parameters, gradients and moments; got {:?}, {:?}, {:?}",
            s.param.dtype, s.grad.dtype, s.moment.dtype
        )));
    }
    // AddListV2 takes no empty tensors (aclnnForeachAddListV2.md, x1 row: 不支持空Tensor); an
    // empty parameter has nothing to update.
    let live: Vec<&MomentumSlot<'_, AscendBuffer>> = group.iter().filter(|s| s.len > 0).collect();
    let mut ctx = be.dev.enter()?;
    let at = |offset: usize| (lr_block as *mut u8).wrapping_add(offset) as *mut std::ffi::c_void;
    let neg_lr = ctx.tensor(&TensorDesc::contiguous(at(LR_OFFSET), f32, &[1]))?;
    let neg_mu_lr = ctx.tensor(&TensorDesc::contiguous(at(MU_LR_OFFSET), f32, &[1]))?;
    let wd_scaled = p.scaled_weight_decay();
    for chunk in live.chunks(FOREACH_CHUNK) {
        let [params, grads, moments] = group_lists(&mut ctx, chunk)?;
        if wd_scaled != 0.0 {
            let wd = ctx.scalar(ScalarValue::F32(wd_scaled))?;
            foreach_add(&mut ctx, grads, params, wd)?;
        }
        if p.unscales() {
            let inv = ctx.scalar(ScalarValue::F32(p.inverse_loss_scale()))?;
            foreach_mul(&mut ctx, grads, inv)?;
        }
        let mu = ctx.scalar(ScalarValue::F32(p.momentum))?;
        foreach_mul(&mut ctx, moments, mu)?;
        let one = ctx.scalar(ScalarValue::F32(1.0))?;
        foreach_add(&mut ctx, moments, grads, one)?;
        if p.nesterov {
            foreach_add_device(&mut ctx, params, grads, neg_lr)?;
            foreach_add_device(&mut ctx, params, moments, neg_mu_lr)?;
        } else {
            foreach_add_device(&mut ctx, params, moments, neg_lr)?;
        }
    }
    Ok(())
}

type List = *mut senet_cann_sys::aclTensorList;

/// `x1_i += alpha·x2_i` (`aclnnForeachAddListV2`, out = x1).
fn foreach_add(
    ctx: &mut Ctx,
    x1: List,
    x2: List,
    alpha: *mut senet_cann_sys::aclScalar,
) -> Result<()> {
    aclnn!(
        ctx,
        aclnnForeachAddListV2,
        aclnnForeachAddListV2GetWorkspaceSize,
        x1,
        x2,
        alpha,
        x1
    )
}

/// `x_i *= s` (`aclnnForeachMulScalarV2`, out = x).
fn foreach_mul(ctx: &mut Ctx, x: List, s: *mut senet_cann_sys::aclScalar) -> Result<()> {
    aclnn!(
        ctx,
        aclnnForeachMulScalarV2,
        aclnnForeachMulScalarV2GetWorkspaceSize,
        x,
        s,
        x
    )
}

/// `x1_i += alpha·x2_i` with alpha a 1-element device tensor (`aclnnForeachAddList`, out = x1).
fn foreach_add_device(
    ctx: &mut Ctx,
    x1: List,
    x2: List,
    alpha: *mut senet_cann_sys::aclTensor,
) -> Result<()> {
    aclnn!(
        ctx,
        aclnnForeachAddList,
        aclnnForeachAddListGetWorkspaceSize,
        x1,
        x2,
        alpha,
        x1
    )
}
