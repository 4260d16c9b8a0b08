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
use super::CpuBackend;
use crate::backend::MomentumParams;
use crate::Result;

/// See [`crate::backend::Backend::momentum_update`].
pub(super) fn momentum_update(
    be: &CpuBackend,
    p: MomentumParams,
    param: &mut [f32],
    grad: &[f32],
    moment: &mut [f32],
    len: usize,
) -> Result<()> {
    p.check(param, grad, moment, len)?;
    let step = k::MomentumStep {
        lr: p.lr,
        momentum: p.momentum,
        wd_scaled: p.scaled_weight_decay(),
        inv_scale: p.inverse_loss_scale(),
        need_scale: p.unscales(),
        nesterov: p.nesterov,
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
