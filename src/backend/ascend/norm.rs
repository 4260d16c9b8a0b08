//! BatchNorm2d in training (batch statistics) and frozen (moving statistics) modes, forward and
//! backward, with `aclnnBatchNorm` / `aclnnBatchNormBackward` (cann.md §2.3),
//! always in fp32 (MindSpore O2 keeps BatchNorm in fp32: an fp16 input is cast up, the output
//! cast back to fp16), the fused ReLU with `aclnnInplaceRelu` and its backward with
//! `aclnnThresholdBackward`.
//!
//! The saved statistics are aclnnBatchNorm's `saveMean` / `saveInvstd`, handed to
//! aclnnBatchNormBackward unchanged and never read otherwise: on 910/A2/A3 `saveInvstd` holds
//! the *biased batch variance* (aclnnBatchNorm.md:226-229, 233-234; on 950 1/sqrt(var+eps),
//! :237), whatever the parameter's name and aclnnBatchNormBackward.md:180 say
//! (`aclnn-contract.md` Part A 4, Part F). The trait's saved statistics are backend-defined for
//! that reason ([`SavedStats`]).
use super::buffer::{cast_into, out_view, read_as, temp, Arg, AscendBuffer};
use super::op::aclnn;
use super::tensor::{DType, ScalarValue};
use super::AscendBackend;
use crate::backend::{
    Activation, BatchNormBackward, BatchNormForward, BatchNormGrads, BatchStats, MovingStats,
    SavedStats, Shape4,
};
use crate::{Error, Result};

/// The epsilon the training-mode backward passes to aclnnBatchNormBackward. On 910/A2/A3 the
/// saved statistic is the batch variance without epsilon, and the backward computes
/// `1/sqrt(saveInvstd + eps)` from it (aclnnBatchNormBackward.md:32-44; the impl feeds it to
/// BNTrainingUpdateGrad as variance, aclnn_batch_norm_backward.cpp:443-469): this must be the
/// forward's epsilon. The trait's backward does not carry it, so it is MindSpore
/// `nn.BatchNorm2d`'s 1e-5, the only value senet's models use, and [`batch_norm_train`]
/// refuses another one (its statistics could not be differentiated correctly).
const BN_EPS: f32 = 1e-5;

/// The statistics a BatchNorm forward normalises with.
enum BnStats<'a> {
    /// Training: batch statistics; the moving ones updated in place (MindSpore's convention),
    /// the batch mean and aclnn's `saveInvstd` (the variance, see the module) saved for the
    /// backward.
    Batch(BatchStats<'a, AscendBuffer>),
    /// Frozen (MindSpore `use_batch_statistics=False`): the moving statistics, unchanged.
    Frozen(MovingStats<'a, AscendBuffer>),
}

/// The statistics a BatchNorm backward differentiates through.
enum BnGradStats<'a> {
    /// Training: the forward's saved batch mean and `saveInvstd`.
    Batch(SavedStats<'a, AscendBuffer>),
    /// Frozen: the moving statistics (constants) and the forward's epsilon.
    Frozen(MovingStats<'a, AscendBuffer>),
}

fn dims4(s: Shape4) -> [usize; 4] {
    [s.n, s.c, s.h, s.w]
}

/// [`Backend::batch_norm_train`](crate::backend::Backend::batch_norm_train): [`bn_forward`] on
/// [`BnStats::Batch`].
pub(super) fn batch_norm_train(
    be: &AscendBackend,
    bn: BatchNormForward<'_, AscendBuffer>,
    x: &AscendBuffer,
    stats: BatchStats<'_, AscendBuffer>,
    y: &mut AscendBuffer,
) -> Result<()> {
    bn.check_train(x, &stats, y)?;
    if stats.eps != BN_EPS {
        return Err(Error::Invalid(format!(
            "batch_norm_train on Ascend: eps {} is not {BN_EPS}, the one its backward uses \
             (aclnnBatchNormBackward recomputes 1/sqrt(var + eps) from the saved variance)",
            stats.eps
        )));
    }
    bn_forward(be, bn, x, BnStats::Batch(stats), y)
}

/// [`Backend::batch_norm_backward`](crate::backend::Backend::batch_norm_backward): [`bn_grad`] on
/// [`BnGradStats::Batch`].
pub(super) fn batch_norm_backward(
    be: &AscendBackend,
    bn: BatchNormBackward<'_, AscendBuffer>,
    saved: SavedStats<'_, AscendBuffer>,
    grads: BatchNormGrads<'_, AscendBuffer>,
) -> Result<()> {
    bn.check_batch(saved, &grads)?;
    bn_grad(be, bn, BnGradStats::Batch(saved), grads)
}

/// [`Backend::batch_norm_frozen`](crate::backend::Backend::batch_norm_frozen): [`bn_forward`] on
/// [`BnStats::Frozen`].
pub(super) fn batch_norm_frozen(
    be: &AscendBackend,
    bn: BatchNormForward<'_, AscendBuffer>,
    x: &AscendBuffer,
    moving: MovingStats<'_, AscendBuffer>,
    y: &mut AscendBuffer,
) -> Result<()> {
    bn.check_frozen(x, moving, y)?;
    bn_forward(be, bn, x, BnStats::Frozen(moving), y)
}

/// [`Backend::batch_norm_frozen_backward`](crate::backend::Backend::batch_norm_frozen_backward):
/// [`bn_grad`] on [`BnGradStats::Frozen`].
pub(super) fn batch_norm_frozen_backward(
    be: &AscendBackend,
    bn: BatchNormBackward<'_, AscendBuffer>,
    moving: MovingStats<'_, AscendBuffer>,
    grads: BatchNormGrads<'_, AscendBuffer>,
) -> Result<()> {
    bn.check_frozen(moving, &grads)?;
    bn_grad(be, bn, BnGradStats::Frozen(moving), grads)
}

/// [`Backend::batch_norm_train`](crate::backend::Backend::batch_norm_train) and
/// [`Backend::batch_norm_frozen`](crate::backend::Backend::batch_norm_frozen):
/// `aclnnBatchNorm`, with `training = true, momentum = 1 - momentum` (PyTorch's convention
/// for the running statistics; the running variance takes the unbiased batch variance, as
/// MindSpore does) for [`BnStats::Batch`], `training = false` on the moving statistics for
/// [`BnStats::Frozen`]; then `aclnnInplaceRelu` when `act` is ReLU. `x` and `y` are fp32, or
/// fp16 in O2 with the per-channel tensors fp32 (the contract's FLOAT16 activations with FLOAT
/// weight/statistics, `aclnn-contract.md` aclnnBatchNorm): the op computes in float32 and rounds
/// `y` once, and ReLU commutes with that rounding, so this equals MindSpore's
/// `keep_batchnorm_fp32` (fp32 BatchNorm, output cast to fp16) without its two casts.
fn bn_forward(
    be: &AscendBackend,
    bn: BatchNormForward<'_, AscendBuffer>,
    x: &AscendBuffer,
    stats: BnStats<'_>,
    y: &mut AscendBuffer,
) -> Result<()> {
    let (xs, gamma, beta, act) = (bn.xs, bn.gamma, bn.beta, bn.act);
    let c = xs.c;
    let f32 = DType::F32;
    let out_dtype = be.cd();
    let mut ctx = be.dev.enter()?;
    // The activations in the compute dtype (the per-channel tensors FLOAT): the op computes in
    // float32 and rounds its output once, as a FLOAT output cast to fp16 would be.
    let xa = read_as(&mut ctx, x, &dims4(xs), out_dtype)?;
    let ga = read_as(&mut ctx, gamma, &[c], f32)?;
    let ba = read_as(&mut ctx, beta, &[c], f32)?;
    let (training, momentum, eps, rm, rv, sm, si) = match &stats {
        BnStats::Batch(s) => {
            let rm = read_as(&mut ctx, s.moving_mean, &[c], f32)?;
            let rv = read_as(&mut ctx, s.moving_var, &[c], f32)?;
            // The running statistics are updated in place: they must be the buffers.
            if rm.tmp.is_some() || rv.tmp.is_some() {
                return Err(Error::Invalid(
                    "batch_norm_train: moving statistics must hold fp32".into(),
                ));
            }
            let sm = out_view(&mut ctx, s.saved_mean, &[c], f32)?;
            let si = out_view(&mut ctx, s.saved_invstd, &[c], f32)?;
            (true, 1.0 - s.momentum as f64, s.eps, rm, rv, sm, si)
        }
        BnStats::Frozen(m) => {
            let rm = read_as(&mut ctx, m.mean, &[c], f32)?;
            let rv = read_as(&mut ctx, m.var, &[c], f32)?;
            // Inference mode saves nothing useful; scratch outputs keep the call complete.
            let sm = temp(&mut ctx, &[c], f32)?;
            let si = temp(&mut ctx, &[c], f32)?;
            (false, 0.0, m.eps, rm, rv, sm.t, si.t)
        }
    };
    let yt = out_view(&mut ctx, y, &dims4(xs), out_dtype)?;
    aclnn!(
        ctx,
        aclnnBatchNorm,
        aclnnBatchNormGetWorkspaceSize,
        xa.t,
        ga.t,
        ba.t,
        rm.t,
        rv.t,
        training,
        momentum,
        eps as f64,
        yt,
        sm,
        si
    )?;
    if act == Activation::Relu {
        aclnn!(ctx, aclnnInplaceRelu, aclnnInplaceReluGetWorkspaceSize, yt)?;
    }
    y.dtype = out_dtype;
    if let BnStats::Batch(s) = stats {
        s.saved_mean.dtype = f32;
        s.saved_invstd.dtype = f32;
    }
    Ok(())
}

/// [`Backend::batch_norm_backward`](crate::backend::Backend::batch_norm_backward) and
/// [`Backend::batch_norm_frozen_backward`](crate::backend::Backend::batch_norm_frozen_backward):
/// the ReLU mask first when fused (`aclnnThresholdBackward(dy, y, 0)`: dy where y > 0), then
/// `aclnnBatchNormBackward(outputMask = {input, weight, bias})`: `training = true` with the
/// saved mean and `saveInvstd` ([`BnGradStats::Batch`]; running statistics NULL), or
/// `training = false` with the moving statistics and `eps` ([`BnGradStats::Frozen`]).
/// Everything in fp32; `dx` is cast to fp16 in O2.
fn bn_grad(
    be: &AscendBackend,
    bn: BatchNormBackward<'_, AscendBuffer>,
    stats: BnGradStats<'_>,
    grads: BatchNormGrads<'_, AscendBuffer>,
) -> Result<()> {
    let BatchNormBackward {
        xs,
        x,
        dy,
        y_relu,
        gamma,
    } = bn;
    let BatchNormGrads { dx, dgamma, dbeta } = grads;
    let c = xs.c;
    let (s0, s1) = match &stats {
        BnGradStats::Batch(s) => (s.mean, s.invstd),
        BnGradStats::Frozen(m) => (m.mean, m.var),
    };
    let f32 = DType::F32;
    let out_dtype = be.cd();
    let d = dims4(xs);
    let mut ctx = be.dev.enter()?;
    let xa = read_as(&mut ctx, x, &d, f32)?;
    let g = match y_relu {
        Some(y) => {
            // The mask only selects elements, so it runs in the dtype dy and y hold (fp16 in
            // O2) and only its result is cast up: the same values, one cast less.
            let dya = read_as(&mut ctx, dy, &d, out_dtype)?;
            let ya = read_as(&mut ctx, y, &d, out_dtype)?;
            let masked = temp(&mut ctx, &d, out_dtype)?;
            let zero = ctx.scalar(ScalarValue::F32(0.0))?;
            aclnn!(
                ctx,
                aclnnThresholdBackward,
                aclnnThresholdBackwardGetWorkspaceSize,
                dya.t,
                ya.t,
                zero,
                masked.t
            )?;
            if out_dtype == f32 {
                masked
            } else {
                let up = temp(&mut ctx, &d, f32)?;
                cast_into(&mut ctx, masked.t, f32, up.t)?;
                up
            }
        }
        None => read_as(&mut ctx, dy, &d, f32)?,
    };
    let ga = read_as(&mut ctx, gamma, &[c], f32)?;
    let a0 = read_as(&mut ctx, s0, &[c], f32)?;
    let a1 = read_as(&mut ctx, s1, &[c], f32)?;
    let null = std::ptr::null_mut();
    let (training, eps, rm, rv, sm, si) = match stats {
        BnGradStats::Batch(_) => (true, f64::from(BN_EPS), null, null, a0.t, a1.t),
        BnGradStats::Frozen(m) => (false, m.eps as f64, a0.t, a1.t, null, null),
    };
    let dxt = out_view(&mut ctx, dx, &d, out_dtype)?;
    let dx32 = if out_dtype == f32 {
        Arg {
            t: dxt,
            tmp: None,
            ptr: dx.device_ptr(),
        }
    } else {
        temp(&mut ctx, &d, f32)?
    };
    let dgt = out_view(&mut ctx, dgamma, &[c], f32)?;
    let dbt = out_view(&mut ctx, dbeta, &[c], f32)?;
    let mask = ctx.bool_array(&[true, true, true])?;
    aclnn!(
        ctx,
        aclnnBatchNormBackward,
        aclnnBatchNormBackwardGetWorkspaceSize,
        g.t,
        xa.t,
        ga.t,
        rm,
        rv,
        sm,
        si,
        training,
        eps,
        mask,
        dx32.t,
        dgt,
        dbt
    )?;
    if out_dtype != f32 {
        cast_into(&mut ctx, dx32.t, out_dtype, dxt)?;
    }
    dx.dtype = out_dtype;
    dgamma.dtype = f32;
    dbeta.dtype = f32;
    Ok(())
}
