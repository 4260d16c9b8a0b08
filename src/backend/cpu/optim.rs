//! MindSpore `nn.Momentum` on the CPU, in MindSpore's exact order of operations.
//!
//! With a loss scale `ls` (FixedLossScaleManager: the loss gradient is seeded with `sens = ls`,
//! so `grad` arrives multiplied by `ls`), MindSpore's `Optimizer`:
//! 1. pre-multiplies the weight decay by the loss scale when it builds the optimizer
//!    (`_preprocess_weight_decay`: `wd * ls`, formed in f64, stored as f32);
//! 2. `decay_weight`: `g = param * (wd*ls) + grad` (only for parameters that decay);
//! 3. `scale_grad` (only when `ls != 1`): `g = g * (1/ls)` (the reciprocal as f32);
//! 4. `ApplyMomentum`: `v = v * momentum + g`; `param -= lr * v`, or with Nesterov
//!    `param -= g * lr + v * momentum * lr`.
//!
//! So `g = grad/ls + wd*param` up to rounding, with the decay added *before* unscaling.
use rayon::prelude::*;

use super::elementwise::CHUNK;
use super::kernels as k;
use super::{check_len, CpuBackend};
use crate::{Error, Result};

/// See [`crate::backend::Backend::momentum_update`].
#[allow(clippy::too_many_arguments)]
pub(super) fn momentum_update(
    be: &CpuBackend,
    param: &mut [f32],
    grad: &[f32],
    moment: &mut [f32],
    len: usize,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    loss_scale: f32,
    nesterov: bool,
) -> Result<()> {
    check_len("momentum_update param", param, len)?;
    check_len("momentum_update grad", grad, len)?;
    check_len("momentum_update moment", moment, len)?;
    if !(loss_scale > 0.0 && loss_scale.is_finite()) {
        return Err(Error::Invalid(format!(
            "momentum_update: loss scale {loss_scale} must be > 0"
        )));
    }
    if weight_decay.is_nan() || weight_decay < 0.0 {
        return Err(Error::Invalid(format!(
            "momentum_update: weight decay {weight_decay} must be >= 0"
        )));
    }
    let step = k::MomentumStep {
        lr,
        momentum,
        wd_scaled: (weight_decay as f64 * loss_scale as f64) as f32,
        inv_scale: (1.0 / loss_scale as f64) as f32,
        need_scale: loss_scale != 1.0,
        nesterov,
    };
    be.pool.install(|| {
        param[..len]
            .par_chunks_mut(CHUNK)
            .zip(grad[..len].par_chunks(CHUNK))
            .zip(moment[..len].par_chunks_mut(CHUNK))
            .for_each(|((p, g), v)| k::momentum(p, g, v, step));
    });
    Ok(())
}
