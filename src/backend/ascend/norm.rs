//! BatchNorm2d in training (batch statistics) and frozen (moving statistics) modes, forward and
//! backward, with `aclnnBatchNorm` / `aclnnBatchNormBackward` (cann.md §2.3),
//! always in fp32 (MindSpore O2 keeps BatchNorm in fp32: an fp16 input is cast up, the output
//! cast back to fp16), the fused ReLU with `aclnnInplaceRelu` and its backward with
//! `aclnnThresholdBackward`.
use super::buffer::{cast_into, out_view, read_as, temp, Arg, AscendBuffer};
use super::op::aclnn;
use super::tensor::{DType, ScalarValue};
use super::AscendBackend;
use crate::backend::{check_len, Activation, Shape4};
use crate::{Error, Result};

/// The BatchNorm epsilon the backward passes to aclnn (MindSpore `nn.BatchNorm2d`'s 1e-5); the
/// trait's backward takes `invstd`, which already includes the forward's epsilon, so this value
/// only matters to an implementation that recomputes it.
const BN_EPS: f64 = 1e-5;

fn values_per_channel(what: &str, xs: Shape4) -> Result<usize> {
    let m = xs.n * xs.h * xs.w;
    if xs.c == 0 || m < 2 {
        return Err(Error::Shape(format!(
            "{what}: input {xs:?} has {m} value(s) per channel, training BatchNorm needs >= 2"
        )));
    }
    Ok(m)
}

/// The statistics a BatchNorm forward normalises with.
enum BnStats<'a> {
    /// Training: batch statistics; the moving ones updated in place with `momentum`
    /// (MindSpore's convention), the batch mean and invstd saved for the backward.
    Batch {
        momentum: f32,
        moving_mean: &'a mut AscendBuffer,
        moving_var: &'a mut AscendBuffer,
        saved_mean: &'a mut AscendBuffer,
        saved_invstd: &'a mut AscendBuffer,
    },
    /// Frozen (MindSpore `use_batch_statistics=False`): the moving statistics, unchanged.
    Frozen {
        moving_mean: &'a AscendBuffer,
        moving_var: &'a AscendBuffer,
    },
}

impl BnStats<'_> {
    fn op(&self) -> &'static str {
        match self {
            BnStats::Batch { .. } => "batch_norm_train",
            BnStats::Frozen { .. } => "batch_norm_frozen",
        }
    }

    /// Every per-channel buffer holds at least `c` values.
    fn check(&self, c: usize) -> Result<()> {
        let what = self.op();
        let bufs: Vec<(&str, &AscendBuffer)> = match self {
            BnStats::Batch {
                moving_mean,
                moving_var,
                saved_mean,
                saved_invstd,
                ..
            } => vec![
                ("moving_mean", &**moving_mean),
                ("moving_var", &**moving_var),
                ("saved_mean", &**saved_mean),
                ("saved_invstd", &**saved_invstd),
            ],
            BnStats::Frozen {
                moving_mean,
                moving_var,
            } => vec![("moving_mean", *moving_mean), ("moving_var", *moving_var)],
        };
        for (name, b) in bufs {
            check_len(&format!("{what} {name}"), b, c)?;
        }
        Ok(())
    }
}

/// The statistics a BatchNorm backward differentiates through.
enum BnGradStats<'a> {
    /// Training: the forward's saved batch mean and invstd.
    Batch {
        saved_mean: &'a AscendBuffer,
        saved_invstd: &'a AscendBuffer,
    },
    /// Frozen: the moving statistics (constants) and the forward's epsilon.
    Frozen {
        moving_mean: &'a AscendBuffer,
        moving_var: &'a AscendBuffer,
        eps: f32,
    },
}

fn dims4(s: Shape4) -> [usize; 4] {
    [s.n, s.c, s.h, s.w]
}

/// [`Backend::batch_norm_train`](crate::backend::Backend::batch_norm_train): [`bn_forward`] on
/// [`BnStats::Batch`].
#[allow(clippy::too_many_arguments)]
pub(super) fn batch_norm_train(
    be: &AscendBackend,
    x: &AscendBuffer,
    xs: Shape4,
    gamma: &AscendBuffer,
    beta: &AscendBuffer,
    eps: f32,
    momentum: f32,
    moving_mean: &mut AscendBuffer,
    moving_var: &mut AscendBuffer,
    saved_mean: &mut AscendBuffer,
    saved_invstd: &mut AscendBuffer,
    act: Activation,
    y: &mut AscendBuffer,
) -> Result<()> {
    act_ok("batch_norm_train", act)?;
    let stats = BnStats::Batch {
        momentum,
        moving_mean,
        moving_var,
        saved_mean,
        saved_invstd,
    };
    bn_forward(be, x, xs, gamma, beta, eps, stats, act, y)
}

/// [`Backend::batch_norm_backward`](crate::backend::Backend::batch_norm_backward): [`bn_grad`] on
/// [`BnGradStats::Batch`].
#[allow(clippy::too_many_arguments)]
pub(super) fn batch_norm_backward(
    be: &AscendBackend,
    x: &AscendBuffer,
    xs: Shape4,
    dy: &AscendBuffer,
    y_relu: Option<&AscendBuffer>,
    gamma: &AscendBuffer,
    saved_mean: &AscendBuffer,
    saved_invstd: &AscendBuffer,
    dx: &mut AscendBuffer,
    dgamma: &mut AscendBuffer,
    dbeta: &mut AscendBuffer,
) -> Result<()> {
    let stats = BnGradStats::Batch {
        saved_mean,
        saved_invstd,
    };
    bn_grad(be, x, xs, dy, y_relu, gamma, stats, dx, dgamma, dbeta)
}

/// [`Backend::batch_norm_frozen`](crate::backend::Backend::batch_norm_frozen): [`bn_forward`] on
/// [`BnStats::Frozen`].
#[allow(clippy::too_many_arguments)]
pub(super) fn batch_norm_frozen(
    be: &AscendBackend,
    x: &AscendBuffer,
    xs: Shape4,
    gamma: &AscendBuffer,
    beta: &AscendBuffer,
    moving_mean: &AscendBuffer,
    moving_var: &AscendBuffer,
    eps: f32,
    act: Activation,
    y: &mut AscendBuffer,
) -> Result<()> {
    act_ok("batch_norm_frozen", act)?;
    let stats = BnStats::Frozen {
        moving_mean,
        moving_var,
    };
    bn_forward(be, x, xs, gamma, beta, eps, stats, act, y)
}

/// [`Backend::batch_norm_frozen_backward`](crate::backend::Backend::batch_norm_frozen_backward):
/// [`bn_grad`] on [`BnGradStats::Frozen`].
#[allow(clippy::too_many_arguments)]
pub(super) fn batch_norm_frozen_backward(
    be: &AscendBackend,
    x: &AscendBuffer,
    xs: Shape4,
    dy: &AscendBuffer,
    y_relu: Option<&AscendBuffer>,
    gamma: &AscendBuffer,
    moving_mean: &AscendBuffer,
    moving_var: &AscendBuffer,
    eps: f32,
    dx: &mut AscendBuffer,
    dgamma: &mut AscendBuffer,
    dbeta: &mut AscendBuffer,
) -> Result<()> {
    let stats = BnGradStats::Frozen {
        moving_mean,
        moving_var,
        eps,
    };
    bn_grad(be, x, xs, dy, y_relu, gamma, stats, dx, dgamma, dbeta)
}

fn act_ok(what: &str, act: Activation) -> Result<()> {
    if act == Activation::Sigmoid {
        return Err(Error::Invalid(format!(
            "{what}: only Activation::None or Relu can be fused"
        )));
    }
    Ok(())
}

/// [`Backend::batch_norm_train`](crate::backend::Backend::batch_norm_train) and
/// [`Backend::batch_norm_frozen`](crate::backend::Backend::batch_norm_frozen):
/// `aclnnBatchNorm`, with `training = true, momentum = 1 - momentum` (PyTorch's convention
/// for the running statistics; the running variance takes the unbiased batch variance, as
/// MindSpore does) for [`BnStats::Batch`], `training = false` on the moving statistics for
/// [`BnStats::Frozen`]; then `aclnnInplaceRelu` when `act` is ReLU. `y` is fp32, or fp16 in
/// O2.
#[allow(clippy::too_many_arguments)]
fn bn_forward(
    be: &AscendBackend,
    x: &AscendBuffer,
    xs: Shape4,
    gamma: &AscendBuffer,
    beta: &AscendBuffer,
    eps: f32,
    stats: BnStats<'_>,
    act: Activation,
    y: &mut AscendBuffer,
) -> Result<()> {
    let what = stats.op();
    if let BnStats::Batch { .. } = stats {
        values_per_channel(what, xs)?;
    }
    let c = xs.c;
    check_len(&format!("{what} x"), x, xs.numel())?;
    check_len(&format!("{what} y"), y, xs.numel())?;
    check_len(&format!("{what} gamma"), gamma, c)?;
    check_len(&format!("{what} beta"), beta, c)?;
    stats.check(c)?;
    let f32 = DType::F32;
    let out_dtype = be.cd();
    let mut ctx = be.dev.enter()?;
    let xa = read_as(&mut ctx, x, &dims4(xs), f32)?;
    let ga = read_as(&mut ctx, gamma, &[c], f32)?;
    let ba = read_as(&mut ctx, beta, &[c], f32)?;
    let (training, momentum, rm, rv, sm, si) = match &stats {
        BnStats::Batch {
            momentum,
            moving_mean,
            moving_var,
            saved_mean,
            saved_invstd,
        } => {
            let rm = read_as(&mut ctx, moving_mean, &[c], f32)?;
            let rv = read_as(&mut ctx, moving_var, &[c], f32)?;
            // The running statistics are updated in place: they must be the buffers.
            if rm.tmp.is_some() || rv.tmp.is_some() {
                return Err(Error::Invalid(
                    "batch_norm_train: moving statistics must hold fp32".into(),
                ));
            }
            let sm = out_view(&mut ctx, saved_mean, &[c], f32)?;
            let si = out_view(&mut ctx, saved_invstd, &[c], f32)?;
            (true, 1.0 - *momentum as f64, rm, rv, sm, si)
        }
        BnStats::Frozen {
            moving_mean,
            moving_var,
        } => {
            let rm = read_as(&mut ctx, moving_mean, &[c], f32)?;
            let rv = read_as(&mut ctx, moving_var, &[c], f32)?;
            // Inference mode saves nothing useful; scratch outputs keep the call complete.
            let sm = temp(&mut ctx, &[c], f32)?;
            let si = temp(&mut ctx, &[c], f32)?;
            (false, 0.0, rm, rv, sm.t, si.t)
        }
    };
    let yt = out_view(&mut ctx, y, &dims4(xs), out_dtype)?;
    let y32 = if out_dtype == f32 {
        Arg { t: yt, tmp: None }
    } else {
        temp(&mut ctx, &dims4(xs), f32)?
    };
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
        y32.t,
        sm,
        si
    )?;
    if act == Activation::Relu {
        aclnn!(
            ctx,
            aclnnInplaceRelu,
            aclnnInplaceReluGetWorkspaceSize,
            y32.t
        )?;
    }
    if out_dtype != f32 {
        cast_into(&mut ctx, y32.t, out_dtype, yt)?;
    }
    y.dtype = out_dtype;
    if let BnStats::Batch {
        saved_mean,
        saved_invstd,
        ..
    } = stats
    {
        saved_mean.dtype = f32;
        saved_invstd.dtype = f32;
    }
    Ok(())
}

/// [`Backend::batch_norm_backward`](crate::backend::Backend::batch_norm_backward) and
/// [`Backend::batch_norm_frozen_backward`](crate::backend::Backend::batch_norm_frozen_backward):
/// the ReLU mask first when fused (`aclnnThresholdBackward(dy, y, 0)`: dy where y > 0), then
/// `aclnnBatchNormBackward(outputMask = {input, weight, bias})`: `training = true` with the
/// saved mean and invstd ([`BnGradStats::Batch`]; running statistics NULL), or
/// `training = false` with the moving statistics and `eps` ([`BnGradStats::Frozen`]).
/// Everything in fp32; `dx` is cast to fp16 in O2.
#[allow(clippy::too_many_arguments)]
fn bn_grad(
    be: &AscendBackend,
    x: &AscendBuffer,
    xs: Shape4,
    dy: &AscendBuffer,
    y_relu: Option<&AscendBuffer>,
    gamma: &AscendBuffer,
    stats: BnGradStats<'_>,
    dx: &mut AscendBuffer,
    dgamma: &mut AscendBuffer,
    dbeta: &mut AscendBuffer,
) -> Result<()> {
    let what = match stats {
        BnGradStats::Batch { .. } => "batch_norm_backward",
        BnGradStats::Frozen { .. } => "batch_norm_frozen_backward",
    };
    if let BnGradStats::Batch { .. } = stats {
        values_per_channel(what, xs)?;
    }
    let c = xs.c;
    let len = xs.numel();
    check_len(&format!("{what} x"), x, len)?;
    check_len(&format!("{what} dy"), dy, len)?;
    check_len(&format!("{what} dx"), dx, len)?;
    if let Some(y) = y_relu {
        check_len(&format!("{what} y"), y, len)?;
    }
    let (s0, s1) = match stats {
        BnGradStats::Batch {
            saved_mean,
            saved_invstd,
        } => (saved_mean, saved_invstd),
        BnGradStats::Frozen {
            moving_mean,
            moving_var,
            ..
        } => (moving_mean, moving_var),
    };
    for (name, b) in [
        ("gamma", gamma),
        ("statistics", s0),
        ("statistics", s1),
        ("dgamma", &*dgamma),
        ("dbeta", &*dbeta),
    ] {
        check_len(&format!("{what} {name}"), b, c)?;
    }
    let f32 = DType::F32;
    let out_dtype = be.cd();
    let d = dims4(xs);
    let mut ctx = be.dev.enter()?;
    let xa = read_as(&mut ctx, x, &d, f32)?;
    let dya = read_as(&mut ctx, dy, &d, f32)?;
    let g = match y_relu {
        Some(y) => {
            let ya = read_as(&mut ctx, y, &d, f32)?;
            let masked = temp(&mut ctx, &d, f32)?;
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
            masked
        }
        None => dya,
    };
    let ga = read_as(&mut ctx, gamma, &[c], f32)?;
    let a0 = read_as(&mut ctx, s0, &[c], f32)?;
    let a1 = read_as(&mut ctx, s1, &[c], f32)?;
    let null = std::ptr::null_mut();
    let (training, eps, rm, rv, sm, si) = match stats {
        BnGradStats::Batch { .. } => (true, BN_EPS, null, null, a0.t, a1.t),
        BnGradStats::Frozen { eps, .. } => (false, eps as f64, a0.t, a1.t, null, null),
    };
    let dxt = out_view(&mut ctx, dx, &d, out_dtype)?;
    let dx32 = if out_dtype == f32 {
        Arg { t: dxt, tmp: None }
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
