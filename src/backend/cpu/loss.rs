//! Softmax cross entropy with label smoothing on the CPU (MindCV `CrossEntropySmooth` =
//! `ops.cross_entropy(label_smoothing=eps)`, the same as PyTorch's), with its logit gradient.
//!
//! Per row with `p = softmax(z)` and target `t = (1-eps)*onehot(label) + eps/C`:
//! `loss = (1-eps) * -log p[label] + eps/C * Σ_c -log p[c] = -Σ_c t[c] log p[c]`; the mean over
//! the `n` rows is returned. `dloss/dz = (p - t) / n`, written multiplied by `scale`. Everything is
//! computed in f64 per row (the rows are few: one per image), then rounded to f32.
use crate::backend::CrossEntropyParams;
use crate::Result;

/// See [`crate::backend::Backend::softmax_cross_entropy`].
pub(super) fn softmax_cross_entropy(
    p: CrossEntropyParams,
    logits: &[f32],
    labels: &[usize],
    dlogits: &mut [f32],
) -> Result<f64> {
    p.check(labels, logits, dlogits)?;
    let CrossEntropyParams {
        n, classes, scale, ..
    } = p;
    let eps = p.label_smoothing as f64;
    let (on, off) = p.targets(); // targets of the label and of every class
    let g = scale as f64 / n as f64;
    let mut total = 0.0f64;
    for ((row, drow), &label) in logits[..n * classes]
        .chunks(classes)
        .zip(dlogits[..n * classes].chunks_mut(classes))
        .zip(labels)
    {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        let lse = max + sum.ln();
        // -Σ t log p = Σ t (lse - z): the label's share plus the uniform share.
        let sum_z: f64 = row.iter().map(|&v| v as f64).sum();
        let nll = lse - row[label] as f64;
        let smooth = lse - sum_z / classes as f64;
        total += (1.0 - eps) * nll + eps * smooth;
        for (c, (d, &z)) in drow.iter_mut().zip(row).enumerate() {
            let p = (z as f64 - lse).exp();
            let t = if c == label { on } else { off };
            *d = ((p - t) * g) as f32;
        }
    }
    Ok(total / n as f64)
}
