//! Batch normalisation and its backward, mirroring `aten::native_batch_norm` and
//! `aten::native_batch_norm_backward` (`aclnnBatchNorm`, `aclnnBatchNormBackward`).
//!
//! The input has any rank `>= 2` and is viewed as `(n, c, rest)` where `rest` is the product of
//! the dimensions after the channel dimension (`h*w` for NCHW): element `(b, ch, r)` sits at
//! `(b*c + ch)*rest + r`. Statistics are per channel over `M = n*rest` values, computed in `f64`
//! (two passes: mean, then the mean of squared deviations).

use super::{check_len, check_shape, RefResult};

/// `(n, c, rest)` view of a batch-norm input shape.
fn ncr(shape: &[usize]) -> RefResult<(usize, usize, usize)> {
    if shape.len() < 2 {
        return Err(format!(
            "batch_norm: input must have rank >= 2 (n, c, ...), got shape {shape:?}"
        ));
    }
    let rest = super::numel(&shape[2..])?;
    Ok((shape[0], shape[1], rest))
}

fn check_opt(name: &str, v: Option<&[f32]>, c: usize) -> RefResult<()> {
    match v {
        Some(v) => check_len(name, v.len(), c),
        None => Ok(()),
    }
}

/// The `n` contiguous runs (one per batch element) holding channel `ch`.
fn channel_values<'a>(
    x: &'a [f32],
    (n, c, rest): (usize, usize, usize),
    ch: usize,
) -> impl Iterator<Item = &'a [f32]> + 'a {
    (0..n).map(move |b| &x[(b * c + ch) * rest..][..rest])
}

/// Per-channel batch mean and biased variance (`Σ (x - mean)² / M`) of an input of shape `shape`
/// (rank `>= 2`, viewed as `(n, c, rest)`, `M = n*rest`), in `f64`, two passes. The biased
/// variance is what `aclnnBatchNorm`'s `saveInvstd` holds on 910/A2/A3 (contract Part A 4).
pub fn batch_stats(x: &[f32], shape: &[usize]) -> RefResult<(Vec<f64>, Vec<f64>)> {
    check_shape("batch_stats input", x.len(), shape)?;
    let dims = ncr(shape)?;
    let (n, c, rest) = dims;
    let m = (n * rest) as f64;
    let mut mean = vec![0f64; c];
    let mut var = vec![0f64; c];
    for ch in 0..c {
        let sum: f64 = channel_values(x, dims, ch).map(super::sum_f64).sum();
        let mu = sum / m;
        let mut sq = 0f64;
        for row in channel_values(x, dims, ch) {
            for v in row {
                let d = f64::from(*v) - mu;
                sq += d * d;
            }
        }
        mean[ch] = mu;
        var[ch] = sq / m;
    }
    Ok((mean, var))
}

/// Batch normalisation forward, mirroring `torch.ops.aten.native_batch_norm(x, weight, bias,
/// running_mean, running_var, training, momentum, eps)` (`aclnnBatchNorm`).
///
/// * `x`: shape `shape` of rank `>= 2`, viewed as `(n, c, rest)`.
/// * `weight` (gamma) and `bias` (beta): `[c]`; `None` means all ones / all zeros.
/// * `running_mean`, `running_var`: `[c]`, updated in place in training mode (if given) as
///   `running = (1 - momentum)*running + momentum*batch_stat`, where the batch statistic for the
///   variance is the UNBIASED variance (`M/(M-1)` times the biased one, `M = n*rest`).
/// * `training`: normalise with the batch mean and the biased batch variance; otherwise with the
///   running statistics (which are then required and are not modified).
///
/// Returns `(y, save_mean, save_invstd)`: `y = (x - mean) * invstd * gamma + beta` with the shape
/// of `x`. In training mode `save_mean` is the batch mean `[c]` and `save_invstd` is
/// `1/sqrt(biased_var + eps)` `[c]`; in evaluation mode both are empty vectors (as ATen's CPU
/// kernel returns empty tensors).
///
/// Errors: inconsistent lengths, missing running statistics in evaluation mode, or training with
/// fewer than 2 values per channel (`M < 2`, as `torch.nn.functional.batch_norm` refuses).
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn batch_norm(
    x: &[f32],
    shape: &[usize],
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
    running_mean: Option<&mut [f32]>,
    running_var: Option<&mut [f32]>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> RefResult<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    check_shape("batch_norm input", x.len(), shape)?;
    let dims = ncr(shape)?;
    let (n, c, rest) = dims;
    check_opt("batch_norm weight", weight, c)?;
    check_opt("batch_norm bias", bias, c)?;
    check_opt("batch_norm running_mean", running_mean.as_deref(), c)?;
    check_opt("batch_norm running_var", running_var.as_deref(), c)?;
    let m = n * rest;

    // Per-channel mean and inverse standard deviation used to normalise.
    let mut mean = vec![0f64; c];
    let mut invstd = vec![0f64; c];
    let mut save_mean = Vec::new();
    let mut save_invstd = Vec::new();
    if training {
        if m < 2 {
            return Err(format!(
                "batch_norm: expected more than 1 value per channel when training, got input shape {shape:?}"
            ));
        }
        let (mu, var) = batch_stats(x, shape)?;
        let mut unbiased = vec![0f64; c];
        for ch in 0..c {
            mean[ch] = mu[ch];
            invstd[ch] = 1.0 / (var[ch] + eps).sqrt();
            unbiased[ch] = var[ch] * m as f64 / (m - 1) as f64;
        }
        if let Some(rm) = running_mean {
            for (r, mu) in rm.iter_mut().zip(&mean) {
                *r = ((1.0 - momentum) * f64::from(*r) + momentum * mu) as f32;
            }
        }
        if let Some(rv) = running_var {
            for (r, v) in rv.iter_mut().zip(&unbiased) {
                *r = ((1.0 - momentum) * f64::from(*r) + momentum * v) as f32;
            }
        }
        save_mean = mean.iter().map(|v| *v as f32).collect();
        save_invstd = invstd.iter().map(|v| *v as f32).collect();
    } else {
        let (Some(rm), Some(rv)) = (running_mean, running_var) else {
            return Err(
                "batch_norm: evaluation mode needs running_mean and running_var".to_string(),
            );
        };
        for ch in 0..c {
            mean[ch] = f64::from(rm[ch]);
            invstd[ch] = 1.0 / (f64::from(rv[ch]) + eps).sqrt();
        }
    }

    let mut y = vec![0f32; x.len()];
    for b in 0..n {
        for ch in 0..c {
            let gamma = weight.map_or(1.0, |w| f64::from(w[ch]));
            let beta = bias.map_or(0.0, |bv| f64::from(bv[ch]));
            let off = (b * c + ch) * rest;
            for (o, v) in y[off..off + rest].iter_mut().zip(&x[off..off + rest]) {
                *o = ((f64::from(*v) - mean[ch]) * invstd[ch] * gamma + beta) as f32;
            }
        }
    }
    Ok((y, save_mean, save_invstd))
}

/// Batch normalisation backward, mirroring `torch.ops.aten.native_batch_norm_backward(grad_out,
/// x, weight, running_mean, running_var, save_mean, save_invstd, training, eps, output_mask)`
/// (`aclnnBatchNormBackward`).
///
/// * `grad_out`, `x`: shape `shape` (rank `>= 2`, viewed as `(n, c, rest)`, `M = n*rest`).
/// * `weight` (gamma): `[c]` or `None` (ones).
/// * Training mode uses `save_mean` and `save_invstd` (`[c]`, from [`batch_norm`], required);
///   evaluation mode uses `running_mean` and `running_var` (`[c]`, required) with
///   `invstd = 1/sqrt(running_var + eps)`.
/// * `output_mask = [input, weight, bias]` selects the gradients to compute.
///
/// With `xhat = (x - mean)*invstd` and `g = grad_out`, per channel (sums over `M` values, `f64`):
/// * training: `dx = gamma*invstd*(g - mean(g) - xhat*mean(g*xhat))`;
/// * evaluation: `dx = g*gamma*invstd`;
/// * both: `dgamma = Σ g*xhat`, `dbeta = Σ g`.
///
/// Returns `(dx with the shape of x, dgamma [c], dbeta [c])`, `None` where the mask is false.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn batch_norm_backward(
    grad_out: &[f32],
    x: &[f32],
    shape: &[usize],
    weight: Option<&[f32]>,
    running_mean: Option<&[f32]>,
    running_var: Option<&[f32]>,
    save_mean: Option<&[f32]>,
    save_invstd: Option<&[f32]>,
    training: bool,
    eps: f64,
    output_mask: [bool; 3],
) -> RefResult<(Option<Vec<f32>>, Option<Vec<f32>>, Option<Vec<f32>>)> {
    check_shape("batch_norm_backward input", x.len(), shape)?;
    check_shape("batch_norm_backward grad_out", grad_out.len(), shape)?;
    let dims = ncr(shape)?;
    let (n, c, rest) = dims;
    check_opt("batch_norm_backward weight", weight, c)?;
    check_opt("batch_norm_backward running_mean", running_mean, c)?;
    check_opt("batch_norm_backward running_var", running_var, c)?;
    check_opt("batch_norm_backward save_mean", save_mean, c)?;
    check_opt("batch_norm_backward save_invstd", save_invstd, c)?;
    let m = (n * rest) as f64;

    let mut mean = vec![0f64; c];
    let mut invstd = vec![0f64; c];
    if training {
        let (Some(sm), Some(si)) = (save_mean, save_invstd) else {
            return Err(
                "batch_norm_backward: training mode needs save_mean and save_invstd".to_string(),
            );
        };
        for ch in 0..c {
            mean[ch] = f64::from(sm[ch]);
            invstd[ch] = f64::from(si[ch]);
        }
    } else {
        let (Some(rm), Some(rv)) = (running_mean, running_var) else {
            return Err(
                "batch_norm_backward: evaluation mode needs running_mean and running_var"
                    .to_string(),
            );
        };
        for ch in 0..c {
            mean[ch] = f64::from(rm[ch]);
            invstd[ch] = 1.0 / (f64::from(rv[ch]) + eps).sqrt();
        }
    }

    // Per channel: sum_g = Σ g, sum_gxhat = Σ g*xhat.
    let mut sum_g = vec![0f64; c];
    let mut sum_gxhat = vec![0f64; c];
    for ch in 0..c {
        let (mut sg, mut sgx) = (0f64, 0f64);
        for b in 0..n {
            let off = (b * c + ch) * rest;
            for (gv, xv) in grad_out[off..off + rest].iter().zip(&x[off..off + rest]) {
                let g = f64::from(*gv);
                sg += g;
                sgx += g * (f64::from(*xv) - mean[ch]) * invstd[ch];
            }
        }
        sum_g[ch] = sg;
        sum_gxhat[ch] = sgx;
    }

    let dx = if output_mask[0] {
        let mut dx = vec![0f32; x.len()];
        for b in 0..n {
            for ch in 0..c {
                let gamma = weight.map_or(1.0, |w| f64::from(w[ch]));
                let scale = gamma * invstd[ch];
                let off = (b * c + ch) * rest;
                let rows = dx[off..off + rest]
                    .iter_mut()
                    .zip(&grad_out[off..off + rest])
                    .zip(&x[off..off + rest]);
                if training {
                    let mean_g = sum_g[ch] / m;
                    let mean_gxhat = sum_gxhat[ch] / m;
                    for ((d, gv), xv) in rows {
                        let xhat = (f64::from(*xv) - mean[ch]) * invstd[ch];
                        *d = (scale * (f64::from(*gv) - mean_g - xhat * mean_gxhat)) as f32;
                    }
                } else {
                    for ((d, gv), _) in rows {
                        *d = (scale * f64::from(*gv)) as f32;
                    }
                }
            }
        }
        Some(dx)
    } else {
        None
    };
    let dgamma = output_mask[1].then(|| sum_gxhat.iter().map(|v| *v as f32).collect());
    let dbeta = output_mask[2].then(|| sum_g.iter().map(|v| *v as f32).collect());
    Ok((dx, dgamma, dbeta))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{assert_close, fd_check, weighted_sum, Lcg};
    use super::*;

    #[test]
    fn hand_computed_training() {
        // One channel, values 1, 2, 3, 4 (n = 2, rest = 2): mean 2.5, biased var 1.25,
        // unbiased var 5/3.
        let x = [1.0, 2.0, 3.0, 4.0];
        let mut rm = [1.0f32];
        let mut rv = [1.0f32];
        let (y, sm, si) = batch_norm(
            &x,
            &[2, 1, 2],
            Some(&[2.0]),
            Some(&[0.5]),
            Some(&mut rm),
            Some(&mut rv),
            true,
            0.1,
            0.0,
        )
        .unwrap();
        let invstd = 1.0 / 1.25f64.sqrt();
        assert_close(&sm, &[2.5], 0.0, 1e-7);
        assert_close(&si, &[invstd as f32], 0.0, 1e-7);
        let expected: Vec<f32> = x
            .iter()
            .map(|v| ((f64::from(*v) - 2.5) * invstd * 2.0 + 0.5) as f32)
            .collect();
        assert_close(&y, &expected, 1e-7, 1e-7);
        // running = 0.9*running + 0.1*stat
        assert_close(&rm, &[0.9 + 0.25], 1e-7, 1e-7);
        assert_close(&rv, &[(0.9 + 0.1 * 5.0 / 3.0) as f32], 1e-7, 1e-7);
    }

    #[test]
    fn hand_computed_eval() {
        // Channel 0: rm 1, rv 3, eps 1 -> (x - 1)/2; channel 1: rm 0, rv 0, eps 1 -> x.
        let x = [3.0, 5.0, 7.0, 9.0];
        let mut rm = [1.0f32, 0.0];
        let mut rv = [3.0f32, 0.0];
        let (y, sm, si) = batch_norm(
            &x,
            &[1, 2, 2],
            None,
            Some(&[0.0, 1.0]),
            Some(&mut rm),
            Some(&mut rv),
            false,
            0.1,
            1.0,
        )
        .unwrap();
        assert_eq!(y, vec![1.0, 2.0, 8.0, 10.0]);
        assert!(sm.is_empty() && si.is_empty());
        assert_eq!((rm, rv), ([1.0, 0.0], [3.0, 0.0]));
    }

    #[test]
    fn errors() {
        let x = [0.0f32; 6];
        assert!(batch_norm(&x, &[6], None, None, None, None, true, 0.1, 1e-5).is_err());
        assert!(batch_norm(&x, &[1, 6], None, None, None, None, true, 0.1, 1e-5).is_err());
        assert!(batch_norm(&x, &[2, 3], None, None, None, None, true, 0.1, 1e-5).is_ok());
        assert!(batch_norm(&x, &[2, 3], None, None, None, None, false, 0.1, 1e-5).is_err());
        assert!(batch_norm(
            &x,
            &[2, 3],
            Some(&[1.0; 2]),
            None,
            None,
            None,
            true,
            0.1,
            1e-5
        )
        .is_err());
        assert!(batch_norm(&x, &[2, 4], None, None, None, None, true, 0.1, 1e-5).is_err());
        assert!(batch_norm_backward(
            &x,
            &x,
            &[2, 3],
            None,
            None,
            None,
            None,
            None,
            true,
            1e-5,
            [true; 3]
        )
        .is_err());
        assert!(batch_norm_backward(
            &x,
            &x,
            &[2, 3],
            None,
            None,
            None,
            None,
            None,
            false,
            1e-5,
            [true; 3]
        )
        .is_err());
    }

    #[test]
    fn hand_computed_backward_training() {
        // Constant gradient: dx = 0 (the mean removes it), dbeta = Σ g, dgamma = Σ xhat = 0.
        let x = [1.0, 2.0, 3.0, 4.0];
        let (_, sm, si) = batch_norm(&x, &[4, 1], None, None, None, None, true, 0.1, 1e-5).unwrap();
        let (dx, dg, db) = batch_norm_backward(
            &[1.0; 4],
            &x,
            &[4, 1],
            Some(&[3.0]),
            None,
            None,
            Some(&sm),
            Some(&si),
            true,
            1e-5,
            [true; 3],
        )
        .unwrap();
        assert_close(&dx.unwrap(), &[0.0; 4], 1e-6, 0.0);
        assert_close(&dg.unwrap(), &[0.0], 1e-6, 0.0);
        assert_eq!(db.unwrap(), vec![4.0]);
    }

    #[test]
    fn training_backward_matches_finite_differences() {
        let mut rng = Lcg::new(10);
        for shape in [vec![3usize, 2, 2, 3], vec![4, 3], vec![2, 2, 5]] {
            let numel = super::super::numel(&shape).unwrap();
            let c = shape[1];
            let x = rng.vec(numel);
            let gamma = rng.vec(c);
            let beta = rng.vec(c);
            let eps = 1e-3;
            let (y, sm, si) = batch_norm(
                &x,
                &shape,
                Some(&gamma),
                Some(&beta),
                None,
                None,
                true,
                0.1,
                eps,
            )
            .unwrap();
            let r = rng.vec(y.len());
            let (dx, dg, db) = batch_norm_backward(
                &r,
                &x,
                &shape,
                Some(&gamma),
                None,
                None,
                Some(&sm),
                Some(&si),
                true,
                eps,
                [true; 3],
            )
            .unwrap();
            let fwd = |x: &[f32], g: &[f32], b: &[f32]| {
                let y = batch_norm(x, &shape, Some(g), Some(b), None, None, true, 0.1, eps)
                    .unwrap()
                    .0;
                weighted_sum(&y, &r)
            };
            fd_check(&x, &dx.unwrap(), 1e-3, 2e-4, 2e-3, |xp| {
                fwd(xp, &gamma, &beta)
            });
            fd_check(&gamma, &dg.unwrap(), 1e-2, 1e-4, 1e-3, |gp| {
                fwd(&x, gp, &beta)
            });
            fd_check(&beta, &db.unwrap(), 1e-2, 1e-4, 1e-3, |bp| {
                fwd(&x, &gamma, bp)
            });
        }
    }

    #[test]
    fn eval_backward_matches_finite_differences() {
        let mut rng = Lcg::new(11);
        let shape = [2usize, 3, 2, 2];
        let x = rng.vec(24);
        let gamma = rng.vec(3);
        let beta = rng.vec(3);
        let rm = rng.vec(3);
        let rv: Vec<f32> = (0..3).map(|_| rng.uniform(0.5, 2.0)).collect();
        let eps = 1e-5;
        let fwd = |x: &[f32], g: &[f32], b: &[f32]| {
            let (mut rm, mut rv) = (rm.clone(), rv.clone());
            batch_norm(
                x,
                &shape,
                Some(g),
                Some(b),
                Some(&mut rm),
                Some(&mut rv),
                false,
                0.1,
                eps,
            )
            .unwrap()
            .0
        };
        let r = rng.vec(24);
        let (dx, dg, db) = batch_norm_backward(
            &r,
            &x,
            &shape,
            Some(&gamma),
            Some(&rm),
            Some(&rv),
            None,
            None,
            false,
            eps,
            [true; 3],
        )
        .unwrap();
        fd_check(&x, &dx.unwrap(), 1e-2, 1e-4, 1e-3, |xp| {
            weighted_sum(&fwd(xp, &gamma, &beta), &r)
        });
        fd_check(&gamma, &dg.unwrap(), 1e-2, 1e-4, 1e-3, |gp| {
            weighted_sum(&fwd(&x, gp, &beta), &r)
        });
        fd_check(&beta, &db.unwrap(), 1e-2, 1e-4, 1e-3, |bp| {
            weighted_sum(&fwd(&x, &gamma, bp), &r)
        });
        // mask
        let (a, b, c) = batch_norm_backward(
            &r,
            &x,
            &shape,
            None,
            Some(&rm),
            Some(&rv),
            None,
            None,
            false,
            eps,
            [false, false, true],
        )
        .unwrap();
        assert!(a.is_none() && b.is_none() && c.is_some());
    }
}
