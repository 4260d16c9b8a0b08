//! Classification losses: log-softmax, negative log-likelihood and the fused softmax
//! cross-entropy with dense labels, with their backwards. Mirrors `aten::_log_softmax(_backward
//! _data)` (`aclnnLogSoftmax`, `aclnnLogSoftmaxBackward`), `aten::nll_loss(_backward)`
//! (`aclnnNLLLoss`, `aclnnNLLLossBackward`) and TensorFlow's
//! `SoftmaxCrossEntropyWithLogits` (`aclnnSoftmaxCrossEntropyWithLogits`).
//!
//! Inputs are row-major `[rows, classes]` matrices, reduced along the class dimension (dim 1).
//! Row sums and exponentials are evaluated in `f64`.

use super::{check_len, check_shape, RefResult};

/// `reduction` value: keep one loss per sample.
pub const REDUCTION_NONE: i64 = 0;
/// `reduction` value: weighted mean of the per-sample losses.
pub const REDUCTION_MEAN: i64 = 1;
/// `reduction` value: sum of the per-sample losses.
pub const REDUCTION_SUM: i64 = 2;

/// Log-softmax of every row, mirroring `torch.log_softmax(x, dim=1)` on a 2-D input
/// (`aclnnLogSoftmax`).
///
/// `x`: `[rows, cols]` (`shape`). Returns `[rows, cols]` with
/// `y[i,j] = x[i,j] - max_i - ln(Σ_j exp(x[i,j] - max_i))` (in `f64`, `max_i` the row maximum).
pub fn log_softmax(x: &[f32], shape: [usize; 2]) -> RefResult<Vec<f32>> {
    check_shape("log_softmax", x.len(), &shape)?;
    let cols = shape[1];
    let mut y = vec![0f32; x.len()];
    if cols == 0 {
        return Ok(y);
    }
    for (yr, xr) in y.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
        let shift = row_log_sum_exp(xr);
        for (o, v) in yr.iter_mut().zip(xr) {
            *o = (f64::from(*v) - shift) as f32;
        }
    }
    Ok(y)
}

/// `max + ln(Σ exp(x - max))` of one row, in `f64`. NaN if the row holds a NaN; `-inf` if every
/// entry is `-inf` (the log-softmax is then `-inf - -inf = NaN`, as in PyTorch).
fn row_log_sum_exp(row: &[f32]) -> f64 {
    if row.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    if max == f64::NEG_INFINITY {
        return max;
    }
    let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
    max + sum.ln()
}

/// Backward of [`log_softmax`], mirroring `torch.ops.aten._log_softmax_backward_data(grad_out,
/// output, dim=1, ...)` (`aclnnLogSoftmaxBackward`).
///
/// `grad_out` and `output` (the log-softmax result): `[rows, cols]`. Returns `[rows, cols]` with
/// `dx[i,j] = grad_out[i,j] - exp(output[i,j]) * Σ_j grad_out[i,j]` (in `f64`).
pub fn log_softmax_backward(
    grad_out: &[f32],
    output: &[f32],
    shape: [usize; 2],
) -> RefResult<Vec<f32>> {
    check_shape("log_softmax_backward grad_out", grad_out.len(), &shape)?;
    check_shape("log_softmax_backward output", output.len(), &shape)?;
    let cols = shape[1];
    let mut dx = vec![0f32; grad_out.len()];
    if cols == 0 {
        return Ok(dx);
    }
    for ((dr, gr), yr) in dx
        .chunks_exact_mut(cols)
        .zip(grad_out.chunks_exact(cols))
        .zip(output.chunks_exact(cols))
    {
        let sum = super::sum_f64(gr);
        for ((d, g), y) in dr.iter_mut().zip(gr).zip(yr) {
            *d = (f64::from(*g) - f64::from(*y).exp() * sum) as f32;
        }
    }
    Ok(dx)
}

/// Validates the targets and returns, per sample, `Some((class, weight))` or `None` when the
/// target equals `ignore_index`.
fn nll_targets(
    target: &[i64],
    shape: [usize; 2],
    weight: Option<&[f32]>,
    ignore_index: i64,
) -> RefResult<Vec<Option<(usize, f64)>>> {
    let [n, c] = shape;
    check_len("nll_loss target", target.len(), n)?;
    if let Some(w) = weight {
        check_len("nll_loss weight", w.len(), c)?;
    }
    target
        .iter()
        .map(|&t| {
            if t == ignore_index {
                Ok(None)
            } else if t < 0 || t as u64 >= c as u64 {
                Err(format!(
                    "nll_loss: target {t} is out of bounds for {c} classes"
                ))
            } else {
                let t = t as usize;
                Ok(Some((t, weight.map_or(1.0, |w| f64::from(w[t])))))
            }
        })
        .collect()
}

/// Negative log-likelihood loss, mirroring `torch.nn.functional.nll_loss(self, target, weight,
/// ignore_index=ignore_index, reduction=...)` on a 2-D input (ATen `nll_loss_forward`,
/// `aclnnNLLLoss`).
///
/// * `self_`: `[n, c]` log-probabilities (`shape`); a single sample is `[1, c]`.
/// * `target`: `[n]` class indices in `0..c`, or `ignore_index` (that sample then contributes
///   nothing, neither loss nor weight). Any other value is an error.
/// * `weight`: `[c]` class weights, `None` for all ones.
/// * `reduction`: [`REDUCTION_NONE`] (0), [`REDUCTION_MEAN`] (1) or [`REDUCTION_SUM`] (2).
///
/// With `l_i = -weight[t_i] * self_[i, t_i]` (0 for ignored samples) and `total_weight =
/// Σ weight[t_i]` over the non-ignored samples (in `f64`), returns `(out, total_weight)`:
/// * none: `out = [l_0, ..., l_{n-1}]` (`[n]`), `total_weight = 0`;
/// * mean: `out = [Σ l_i / total_weight]` (NaN when every sample is ignored);
/// * sum: `out = [Σ l_i]`.
pub fn nll_loss(
    self_: &[f32],
    shape: [usize; 2],
    target: &[i64],
    weight: Option<&[f32]>,
    reduction: i64,
    ignore_index: i64,
) -> RefResult<(Vec<f32>, f32)> {
    check_shape("nll_loss self", self_.len(), &shape)?;
    let targets = nll_targets(target, shape, weight, ignore_index)?;
    let c = shape[1];
    let losses: Vec<f64> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| t.map_or(0.0, |(t, w)| -w * f64::from(self_[i * c + t])))
        .collect();
    let total_weight: f64 = targets.iter().flatten().map(|(_, w)| w).sum();
    match reduction {
        REDUCTION_NONE => Ok((losses.iter().map(|v| *v as f32).collect(), 0.0)),
        REDUCTION_MEAN => {
            let sum: f64 = losses.iter().sum();
            Ok((vec![(sum / total_weight) as f32], total_weight as f32))
        }
        REDUCTION_SUM => Ok((vec![losses.iter().sum::<f64>() as f32], total_weight as f32)),
        _ => Err(format!("nll_loss: unknown reduction {reduction}")),
    }
}

/// Backward of [`nll_loss`], mirroring ATen `nll_loss_backward(grad_out, self, target, weight,
/// reduction, ignore_index, total_weight)` (`aclnnNLLLossBackward`).
///
/// * `grad_out`: `[n]` for [`REDUCTION_NONE`], one element otherwise.
/// * `self_shape = [n, c]`; `target`, `weight`, `reduction`, `ignore_index` as in [`nll_loss`];
///   `total_weight` as returned by it (used by the mean reduction only).
///
/// Returns `grad_input` `[n, c]`: zero except `grad_input[i, t_i] = -weight[t_i] * g_i` for
/// non-ignored samples, where `g_i = grad_out[i]` (none), `grad_out[0] / total_weight` (mean) or
/// `grad_out[0]` (sum).
#[allow(clippy::too_many_arguments)]
pub fn nll_loss_backward(
    grad_out: &[f32],
    self_shape: [usize; 2],
    target: &[i64],
    weight: Option<&[f32]>,
    reduction: i64,
    ignore_index: i64,
    total_weight: f32,
) -> RefResult<Vec<f32>> {
    let targets = nll_targets(target, self_shape, weight, ignore_index)?;
    let [n, c] = self_shape;
    let per_sample = |i: usize| -> f64 {
        match reduction {
            REDUCTION_NONE => f64::from(grad_out[i]),
            REDUCTION_MEAN => f64::from(grad_out[0]) / f64::from(total_weight),
            _ => f64::from(grad_out[0]),
        }
    };
    match reduction {
        REDUCTION_NONE => check_len("nll_loss_backward grad_out", grad_out.len(), n)?,
        REDUCTION_MEAN | REDUCTION_SUM => {
            check_len("nll_loss_backward grad_out", grad_out.len(), 1)?
        }
        _ => return Err(format!("nll_loss_backward: unknown reduction {reduction}")),
    }
    let mut grad = vec![0f32; n * c];
    for (i, t) in targets.iter().enumerate() {
        if let Some((t, w)) = t {
            grad[i * c + t] = (-w * per_sample(i)) as f32;
        }
    }
    Ok(grad)
}

/// Softmax cross-entropy against dense label distributions, mirroring TensorFlow's
/// `SoftmaxCrossEntropyWithLogits` (`aclnnSoftmaxCrossEntropyWithLogits`, MindSpore's
/// `ops.SoftmaxCrossEntropyWithLogits`).
///
/// * `features`: `[n, c]` logits; `labels`: `[n, c]` (typically one-hot or smoothed rows summing
///   to 1); `shape = [n, c]`.
///
/// Returns `(loss [n], backprop [n, c])` with `loss[i] = -Σ_j labels[i,j] *
/// log_softmax(features)[i,j]` and `backprop[i,j] = softmax(features)[i,j] - labels[i,j]` (the
/// gradient of `loss[i]` with respect to `features[i,·]` when the labels sum to 1), in `f64`.
pub fn softmax_cross_entropy_with_logits(
    features: &[f32],
    labels: &[f32],
    shape: [usize; 2],
) -> RefResult<(Vec<f32>, Vec<f32>)> {
    check_shape(
        "softmax_cross_entropy_with_logits features",
        features.len(),
        &shape,
    )?;
    check_shape(
        "softmax_cross_entropy_with_logits labels",
        labels.len(),
        &shape,
    )?;
    let [n, c] = shape;
    let mut loss = vec![0f32; n];
    let mut backprop = vec![0f32; n * c];
    if c == 0 {
        return Ok((loss, backprop));
    }
    for (i, l) in loss.iter_mut().enumerate() {
        let fr = &features[i * c..(i + 1) * c];
        let lr = &labels[i * c..(i + 1) * c];
        let lse = row_log_sum_exp(fr);
        let mut sum = 0f64;
        for ((b, f), y) in backprop[i * c..(i + 1) * c].iter_mut().zip(fr).zip(lr) {
            let logp = f64::from(*f) - lse;
            sum -= f64::from(*y) * logp;
            *b = (logp.exp() - f64::from(*y)) as f32;
        }
        *l = sum as f32;
    }
    Ok((loss, backprop))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{assert_close, fd_check, weighted_sum, Lcg};
    use super::*;

    #[test]
    fn hand_computed_log_softmax() {
        // Row [0, ln 3]: softmax [1/4, 3/4].
        let x = [0.0, 3f32.ln(), 1000.0, 1000.0];
        let y = log_softmax(&x, [2, 2]).unwrap();
        assert_close(
            &y,
            &[0.25f32.ln(), 0.75f32.ln(), 0.5f32.ln(), 0.5f32.ln()],
            1e-7,
            1e-6,
        );
        // Shift invariance for large values stays finite.
        assert!(y.iter().all(|v| v.is_finite()));
        // NaN propagates; an all -inf row gives NaN.
        let y = log_softmax(
            &[f32::NAN, 1.0, f32::NEG_INFINITY, f32::NEG_INFINITY],
            [2, 2],
        )
        .unwrap();
        assert!(y.iter().all(|v| v.is_nan()));
        // -inf entry next to finite ones stays -inf.
        let y = log_softmax(&[f32::NEG_INFINITY, 0.0], [1, 2]).unwrap();
        assert_eq!(y, vec![f32::NEG_INFINITY, 0.0]);
        assert!(log_softmax(&x, [3, 2]).is_err());
        // backward: grad [1, 0] at softmax [1/4, 3/4] -> [1 - 1/4, -3/4]
        let d = log_softmax_backward(&[1.0, 0.0], &[0.25f32.ln(), 0.75f32.ln()], [1, 2]).unwrap();
        assert_close(&d, &[0.75, -0.75], 1e-7, 1e-6);
    }

    #[test]
    fn log_softmax_backward_matches_finite_differences() {
        let mut rng = Lcg::new(50);
        let shape = [3, 5];
        let x: Vec<f32> = rng.vec(15).iter().map(|v| v * 3.0).collect();
        let y = log_softmax(&x, shape).unwrap();
        let r = rng.vec(15);
        let d = log_softmax_backward(&r, &y, shape).unwrap();
        fd_check(&x, &d, 1e-2, 1e-4, 1e-3, |xp| {
            weighted_sum(&log_softmax(xp, shape).unwrap(), &r)
        });
    }

    #[test]
    fn hand_computed_nll_loss() {
        // 3 samples, 2 classes; targets 0, 1, ignored (-100); weights [2, 3].
        let x = [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0];
        let t = [0, 1, -100];
        let w = [2.0, 3.0];
        let (out, tw) = nll_loss(&x, [3, 2], &t, Some(&w), REDUCTION_NONE, -100).unwrap();
        assert_eq!((out, tw), (vec![2.0, 12.0, 0.0], 0.0));
        let (out, tw) = nll_loss(&x, [3, 2], &t, Some(&w), REDUCTION_SUM, -100).unwrap();
        assert_eq!((out, tw), (vec![14.0], 5.0));
        let (out, tw) = nll_loss(&x, [3, 2], &t, Some(&w), REDUCTION_MEAN, -100).unwrap();
        assert_eq!((out, tw), (vec![14.0 / 5.0], 5.0));
        let (out, tw) = nll_loss(&x, [3, 2], &t, None, REDUCTION_MEAN, -100).unwrap();
        assert_eq!((out, tw), (vec![2.5], 2.0));
        // all ignored: mean is NaN
        let (out, tw) = nll_loss(&x, [3, 2], &[-100; 3], None, REDUCTION_MEAN, -100).unwrap();
        assert!(out[0].is_nan());
        assert_eq!(tw, 0.0);
        // errors
        assert!(nll_loss(&x, [3, 2], &[0, 2, 0], None, REDUCTION_MEAN, -100).is_err());
        assert!(nll_loss(&x, [3, 2], &[0, -1, 0], None, REDUCTION_MEAN, -100).is_err());
        assert!(nll_loss(&x, [3, 2], &[0, 1], None, REDUCTION_MEAN, -100).is_err());
        assert!(nll_loss(&x, [3, 2], &t, Some(&[1.0]), REDUCTION_MEAN, -100).is_err());
        assert!(nll_loss(&x, [3, 2], &t, None, 3, -100).is_err());
        // backward
        let g = nll_loss_backward(&[0.5], [3, 2], &t, Some(&w), REDUCTION_MEAN, -100, 5.0).unwrap();
        assert_eq!(g, vec![-0.2, 0.0, 0.0, -0.3, 0.0, 0.0]);
        let g = nll_loss_backward(
            &[1.0, 2.0, 3.0],
            [3, 2],
            &t,
            None,
            REDUCTION_NONE,
            -100,
            0.0,
        )
        .unwrap();
        assert_eq!(g, vec![-1.0, 0.0, 0.0, -2.0, 0.0, 0.0]);
        let g = nll_loss_backward(&[2.0], [3, 2], &t, None, REDUCTION_SUM, -100, 2.0).unwrap();
        assert_eq!(g, vec![-2.0, 0.0, 0.0, -2.0, 0.0, 0.0]);
        assert!(
            nll_loss_backward(&[1.0, 2.0], [3, 2], &t, None, REDUCTION_NONE, -100, 0.0).is_err()
        );
        assert!(
            nll_loss_backward(&[1.0, 2.0], [3, 2], &t, None, REDUCTION_SUM, -100, 0.0).is_err()
        );
    }

    #[test]
    fn nll_loss_backward_matches_finite_differences() {
        let mut rng = Lcg::new(51);
        let shape = [4, 3];
        let x = rng.vec(12);
        let t = [2, 0, 1, 2];
        let w = [0.5, 2.0, 1.5];
        for reduction in [REDUCTION_NONE, REDUCTION_MEAN, REDUCTION_SUM] {
            let (out, tw) = nll_loss(&x, shape, &t, Some(&w), reduction, 1).unwrap();
            let r = rng.vec(out.len());
            let g = nll_loss_backward(&r, shape, &t, Some(&w), reduction, 1, tw).unwrap();
            fd_check(&x, &g, 0.25, 1e-5, 1e-4, |xp| {
                weighted_sum(
                    &nll_loss(xp, shape, &t, Some(&w), reduction, 1).unwrap().0,
                    &r,
                )
            });
        }
    }

    #[test]
    fn hand_computed_softmax_cross_entropy() {
        // logits [0, ln 3] -> softmax [1/4, 3/4]; label one-hot on class 1: loss = -ln(3/4).
        let (loss, bp) =
            softmax_cross_entropy_with_logits(&[0.0, 3f32.ln()], &[0.0, 1.0], [1, 2]).unwrap();
        assert_close(&loss, &[-(0.75f32.ln())], 1e-7, 1e-6);
        assert_close(&bp, &[0.25, -0.25], 1e-7, 1e-6);
        assert!(softmax_cross_entropy_with_logits(&[0.0; 4], &[0.0; 3], [2, 2]).is_err());
    }

    #[test]
    fn softmax_cross_entropy_backprop_matches_finite_differences() {
        let mut rng = Lcg::new(52);
        let shape = [3, 4];
        let x: Vec<f32> = rng.vec(12).iter().map(|v| v * 2.0).collect();
        // Smoothed labels, each row summing to 1.
        let mut labels = vec![0.025f32; 12];
        for (i, t) in [1usize, 3, 0].iter().enumerate() {
            labels[i * 4 + t] = 0.925;
        }
        let (_, bp) = softmax_cross_entropy_with_logits(&x, &labels, shape).unwrap();
        // d(Σ_i loss_i)/dx = backprop.
        fd_check(&x, &bp, 1e-2, 1e-4, 1e-3, |xp| {
            softmax_cross_entropy_with_logits(xp, &labels, shape)
                .unwrap()
                .0
                .iter()
                .map(|v| f64::from(*v))
                .sum()
        });
        // Consistency with log_softmax + dense NLL.
        let (loss, _) = softmax_cross_entropy_with_logits(&x, &labels, shape).unwrap();
        let ls = log_softmax(&x, shape).unwrap();
        for i in 0..3 {
            let l: f64 = (0..4)
                .map(|j| -f64::from(labels[i * 4 + j]) * f64::from(ls[i * 4 + j]))
                .sum();
            assert_close(&[loss[i]], &[l as f32], 1e-6, 1e-6);
        }
    }
}
