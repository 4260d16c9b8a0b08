//! BatchNorm2d in training mode on the CPU: forward with batch statistics (and the moving-stat
//! update) or frozen (the moving statistics), and their backwards. One rayon task per channel; each channel's statistics are summed in
//! f64 plane by plane in image order, so results do not depend on the thread count.
//!
//! Forward (MindSpore `nn.BatchNorm2d` in training = PyTorch `batch_norm(training=True)`), per
//! channel over the `M = N*H*W` values: `mean = Σx/M`, `var = Σ(x-mean)²/M` (biased),
//! `invstd = 1/sqrt(var+eps)`, `y = (x-mean)*(gamma*invstd) + beta`;
//! `moving_mean = momentum*moving_mean + (1-momentum)*mean`,
//! `moving_variance = momentum*moving_variance + (1-momentum)*var*M/(M-1)` (unbiased).
//!
//! Backward, with `g = dy` (masked by `y > 0` when a ReLU was fused):
//! `dbeta = Σg`, `dgamma = Σ g*(x-mean)*invstd`,
//! `dx = gamma*invstd*(g - dbeta/M - (x-mean)*invstd*dgamma/M)`.
//!
//! Frozen BatchNorm (MindSpore `use_batch_statistics=False`) normalises with the moving
//! statistics instead, which are constants for the backward: `invstd = 1/sqrt(moving_var+eps)`,
//! `y = (x-moving_mean)*(gamma*invstd) + beta`; `dx = g*gamma*invstd`,
//! `dgamma = Σ g*(x-moving_mean)*invstd`, `dbeta = Σg`.
use rayon::prelude::*;

use super::kernels as k;
use super::CpuBackend;
use crate::backend::{
    Activation, BatchNormBackward, BatchNormForward, BatchNormGrads, BatchStats, MovingStats,
    SavedStats, Shape4,
};
use crate::{Error, Result};

/// Plane (n, c) (`H*W` values) of an NCHW buffer.
fn plane(x: &[f32], xs: Shape4, n: usize, c: usize) -> &[f32] {
    let hw = xs.h * xs.w;
    let at = (n * xs.c + c) * hw;
    &x[at..at + hw]
}

/// The planes of channel `c` of an NCHW buffer, in image order.
fn planes(x: &[f32], xs: Shape4, c: usize) -> impl Iterator<Item = &[f32]> {
    (0..xs.n).map(move |n| plane(x, xs, n, c))
}

/// Mutable planes of an NCHW buffer grouped by channel: `out[c][n]` is plane (n, c).
fn planes_by_channel(y: &mut [f32], xs: Shape4) -> Vec<Vec<&mut [f32]>> {
    let hw = xs.h * xs.w;
    let mut out: Vec<Vec<&mut [f32]>> = (0..xs.c).map(|_| Vec::with_capacity(xs.n)).collect();
    for (i, plane) in y[..xs.numel()].chunks_mut(hw).enumerate() {
        out[i % xs.c].push(plane);
    }
    out
}

/// See [`crate::backend::Backend::batch_norm_train`].
pub(super) fn batch_norm_train(
    be: &CpuBackend,
    bn: BatchNormForward<'_, Vec<f32>>,
    x: &[f32],
    stats: BatchStats<'_, Vec<f32>>,
    y: &mut [f32],
) -> Result<()> {
    let m = bn.check_train(x, &stats, y)?;
    let relu = bn.act == Activation::Relu;
    let (xs, gamma, beta) = (bn.xs, bn.gamma, bn.beta);
    let BatchStats {
        eps,
        momentum,
        moving_mean,
        moving_var,
        saved_mean,
        saved_invstd,
    } = stats;
    let mut ys = planes_by_channel(y, xs);
    // Per channel: (mean, biased variance), both f64.
    let stats: Vec<(f64, f64)> = be.pool.install(|| {
        ys.par_iter_mut()
            .enumerate()
            .map(|(ci, yc)| {
                let sum: f64 = planes(x, xs, ci).map(k::sum_f64).sum();
                let mean = sum / m as f64;
                let ss: f64 = planes(x, xs, ci).map(|p| k::sum_sq_dev_f64(p, mean)).sum();
                let var = ss / m as f64;
                let invstd = 1.0 / (var + eps as f64).sqrt();
                let scale = (gamma[ci] as f64 * invstd) as f32;
                for (xp, yp) in planes(x, xs, ci).zip(yc.iter_mut()) {
                    k::bn_apply(xp, mean as f32, scale, beta[ci], relu, yp);
                }
                (mean, var)
            })
            .collect()
    });
    let mom = momentum as f64;
    let unbias = m as f64 / (m - 1) as f64;
    for (ci, &(mean, var)) in stats.iter().enumerate() {
        saved_mean[ci] = mean as f32;
        saved_invstd[ci] = (1.0 / (var + eps as f64).sqrt()) as f32;
        moving_mean[ci] = (mom * moving_mean[ci] as f64 + (1.0 - mom) * mean) as f32;
        moving_var[ci] = (mom * moving_var[ci] as f64 + (1.0 - mom) * var * unbias) as f32;
    }
    Ok(())
}

/// See [`crate::backend::Backend::batch_norm_backward`].
pub(super) fn batch_norm_backward(
    be: &CpuBackend,
    bn: BatchNormBackward<'_, Vec<f32>>,
    saved: SavedStats<'_, Vec<f32>>,
    grads: BatchNormGrads<'_, Vec<f32>>,
) -> Result<()> {
    let m = bn.check_batch(saved, &grads)?;
    let BatchNormBackward {
        xs,
        x,
        dy,
        y_relu,
        gamma,
    } = bn;
    let y_relu = y_relu.map(|v| v.as_slice());
    let (saved_mean, saved_invstd) = (saved.mean, saved.invstd);
    let BatchNormGrads { dx, dgamma, dbeta } = grads;
    let mut dxs = planes_by_channel(dx, xs);
    let inv_m = 1.0 / m as f64;
    // Per channel: (dgamma, dbeta).
    let grads: Vec<(f64, f64)> = be.pool.install(|| {
        dxs.par_iter_mut()
            .enumerate()
            .map(|(ci, dxc)| {
                let mean = saved_mean[ci];
                let invstd = saved_invstd[ci] as f64;
                let masks = |n: usize| y_relu.map(|yr| plane(yr, xs, n, ci));
                let mut sums = [0.0f64; 2];
                for (n, (xp, dyp)) in planes(x, xs, ci).zip(planes(dy, xs, ci)).enumerate() {
                    k::bn_bwd_reduce(xp, dyp, masks(n), mean, &mut sums);
                }
                let dbeta = sums[0];
                let dgamma = sums[1] * invstd;
                let a = gamma[ci] as f64 * invstd;
                let b = -a * invstd * dgamma * inv_m;
                let cc = -a * dbeta * inv_m;
                for (n, ((xp, dyp), dxp)) in planes(x, xs, ci)
                    .zip(planes(dy, xs, ci))
                    .zip(dxc.iter_mut())
                    .enumerate()
                {
                    let dx = k::BnDx {
                        mean,
                        a: a as f32,
                        b: b as f32,
                        c: cc as f32,
                    };
                    k::bn_bwd_dx(xp, dyp, masks(n), dx, dxp);
                }
                (dgamma, dbeta)
            })
            .collect()
    });
    for (ci, &(dg, db)) in grads.iter().enumerate() {
        dgamma[ci] = dg as f32;
        dbeta[ci] = db as f32;
    }
    Ok(())
}

/// The per-channel `invstd = 1/sqrt(moving_var+eps)` of a frozen BatchNorm in f64 (the buffers
/// checked by the caller). Errors ([`Error::Invalid`]): a channel whose `moving_var + eps` is not
/// positive.
fn frozen_invstd(what: &str, c: usize, moving: MovingStats<'_, Vec<f32>>) -> Result<Vec<f64>> {
    let eps = moving.eps;
    moving.var[..c]
        .iter()
        .enumerate()
        .map(|(c, &v)| {
            let d = v as f64 + eps as f64;
            if d > 0.0 {
                Ok(1.0 / d.sqrt())
            } else {
                Err(Error::Invalid(format!(
                    "{what}: channel {c} has moving_variance {v} + eps {eps} <= 0"
                )))
            }
        })
        .collect()
}

/// See [`crate::backend::Backend::batch_norm_frozen`].
pub(super) fn batch_norm_frozen(
    be: &CpuBackend,
    bn: BatchNormForward<'_, Vec<f32>>,
    x: &[f32],
    moving: MovingStats<'_, Vec<f32>>,
    y: &mut [f32],
) -> Result<()> {
    bn.check_frozen(x, moving, y)?;
    let invstd = frozen_invstd("batch_norm_frozen", bn.xs.c, moving)?;
    let relu = bn.act == Activation::Relu;
    let (xs, gamma, beta, moving_mean) = (bn.xs, bn.gamma, bn.beta, moving.mean);
    let mut ys = planes_by_channel(y, xs);
    be.pool.install(|| {
        ys.par_iter_mut().enumerate().for_each(|(ci, yc)| {
            let scale = (gamma[ci] as f64 * invstd[ci]) as f32;
            for (xp, yp) in planes(x, xs, ci).zip(yc.iter_mut()) {
                k::bn_apply(xp, moving_mean[ci], scale, beta[ci], relu, yp);
            }
        })
    });
    Ok(())
}

/// See [`crate::backend::Backend::batch_norm_frozen_backward`].
pub(super) fn batch_norm_frozen_backward(
    be: &CpuBackend,
    bn: BatchNormBackward<'_, Vec<f32>>,
    moving: MovingStats<'_, Vec<f32>>,
    grads: BatchNormGrads<'_, Vec<f32>>,
) -> Result<()> {
    bn.check_frozen(moving, &grads)?;
    let invstd = frozen_invstd("batch_norm_frozen_backward", bn.xs.c, moving)?;
    let BatchNormBackward {
        xs,
        x,
        dy,
        y_relu,
        gamma,
    } = bn;
    let y_relu = y_relu.map(|v| v.as_slice());
    let moving_mean = moving.mean;
    let BatchNormGrads { dx, dgamma, dbeta } = grads;
    let mut dxs = planes_by_channel(dx, xs);
    // Per channel: (dgamma, dbeta).
    let grads: Vec<(f64, f64)> = be.pool.install(|| {
        dxs.par_iter_mut()
            .enumerate()
            .map(|(ci, dxc)| {
                let mean = moving_mean[ci];
                let masks = |n: usize| y_relu.map(|yr| plane(yr, xs, n, ci));
                let mut sums = [0.0f64; 2];
                for (n, (xp, dyp)) in planes(x, xs, ci).zip(planes(dy, xs, ci)).enumerate() {
                    k::bn_bwd_reduce(xp, dyp, masks(n), mean, &mut sums);
                }
                let a = (gamma[ci] as f64 * invstd[ci]) as f32;
                for (n, ((xp, dyp), dxp)) in planes(x, xs, ci)
                    .zip(planes(dy, xs, ci))
                    .zip(dxc.iter_mut())
                    .enumerate()
                {
                    let dx = k::BnDx {
                        mean,
                        a,
                        b: 0.0,
                        c: 0.0,
                    };
                    k::bn_bwd_dx(xp, dyp, masks(n), dx, dxp);
                }
                (sums[1] * invstd[ci], sums[0])
            })
            .collect()
    });
    for (ci, &(dg, db)) in grads.iter().enumerate() {
        dgamma[ci] = dg as f32;
        dbeta[ci] = db as f32;
    }
    Ok(())
}
