//! Classification metrics over logits (N, C): softmax probabilities and the top-k classes
//! (`senet predict`, the C ABI's `senet_topk`), Top-k accuracy (MindSpore
//! `nn.Top1CategoricalAccuracy` / `Top5CategoricalAccuracy`: validation, and the training
//! accuracy of [`crate::optim::TrainNet`]) and the mean softmax cross entropy with label
//! smoothing (MindCV `CrossEntropySmooth`, PyTorch `cross_entropy(label_smoothing)`).

/// Log-softmax of one row of logits, in f64.
pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    row.iter().map(|&v| v as f64 - lse).collect()
}

/// Softmax probabilities of one row of logits.
pub fn softmax(row: &[f32]) -> Vec<f64> {
    log_softmax(row).into_iter().map(f64::exp).collect()
}

/// Cross entropy of one row with label smoothing `eps` over `C` classes:
/// `(1-eps) * -log p[label] + eps/C * sum_c -log p[c]`.
pub fn cross_entropy(row: &[f32], label: usize, eps: f64) -> f64 {
    let lp = log_softmax(row);
    let c = lp.len() as f64;
    let nll = -lp[label];
    let smooth: f64 = -lp.iter().sum::<f64>() / c;
    (1.0 - eps) * nll + eps * smooth
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
pub fn topk(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Whether `label` is among the `k` classes ranked first, ranking by logit, larger first, ties
/// broken by the lower index (exactly `k` classes are ranked first, as MindSpore's
/// `TopKCategoricalAccuracy`, which takes `argsort(-logits)[:k]`). A NaN logit ranks last, so
/// a model that outputs NaN or constant logits is not credited with hits it did not make.
pub fn in_topk(row: &[f32], label: usize, k: usize) -> bool {
    let v = row[label];
    if v.is_nan() {
        return false;
    }
    let ahead = row
        .iter()
        .enumerate()
        .filter(|&(i, &x)| x > v || (x == v && i < label))
        .count();
    ahead < k
}

/// Running Top-1 / Top-5 / loss accumulator over batches.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    /// Samples seen.
    pub samples: usize,
    /// Samples whose label is the top logit.
    pub top1_hits: usize,
    /// Samples whose label is among the 5 top logits.
    pub top5_hits: usize,
    /// Sum of the per-sample losses.
    pub loss_sum: f64,
}

impl Accumulator {
    /// Adds a batch: `logits` (n, classes) row-major and its labels; `label_smoothing` as the
    /// recipe's. Panics if a label is out of range (the dataset checks labels beforehand).
    pub fn add(&mut self, logits: &[f32], classes: usize, labels: &[usize], label_smoothing: f64) {
        for (row, &label) in logits.chunks(classes).zip(labels) {
            self.samples += 1;
            self.top1_hits += in_topk(row, label, 1) as usize;
            self.top5_hits += in_topk(row, label, 5) as usize;
            self.loss_sum += cross_entropy(row, label, label_smoothing);
        }
    }

    /// Top-1 accuracy in percent.
    pub fn top1(&self) -> f64 {
        100.0 * self.top1_hits as f64 / self.samples.max(1) as f64
    }

    /// Top-5 accuracy in percent.
    pub fn top5(&self) -> f64 {
        100.0 * self.top5_hits as f64 / self.samples.max(1) as f64
    }

    /// Mean loss per sample.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.samples.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_values() {
        // Uniform logits over 4 classes: -log(1/4) whatever the smoothing.
        let row = [0.0f32; 4];
        assert!((cross_entropy(&row, 2, 0.0) - 4f64.ln()).abs() < 1e-12);
        assert!((cross_entropy(&row, 2, 0.1) - 4f64.ln()).abs() < 1e-12);
        // [0, ln 3]: p = [1/4, 3/4]; label 1, eps 0.1: 0.9*-ln(3/4) + 0.05*(-ln(1/4) - ln(3/4)).
        let row = [0.0f32, 3f32.ln()];
        let want = 0.9 * -(0.75f64.ln()) + 0.05 * (-(0.25f64.ln()) - 0.75f64.ln());
        assert!((cross_entropy(&row, 1, 0.1) - want).abs() < 1e-6);
    }

    #[test]
    fn topk_and_accumulator() {
        let row = [0.1f32, 0.9, 0.3, 0.9, -1.0, 0.0, 0.2];
        assert_eq!(topk(&row, 3), vec![1, 3, 2]);
        // 0.9 at indices 1 and 3: index 1 ranks first, 3 second.
        assert!(in_topk(&row, 1, 1) && !in_topk(&row, 3, 1) && in_topk(&row, 3, 2));
        // Constant or NaN logits earn exactly k hits per k classes, never all of them.
        let flat = [0.0f32; 10];
        assert_eq!((0..10).filter(|&l| in_topk(&flat, l, 5)).count(), 5);
        let nan = [f32::NAN; 10];
        assert_eq!((0..10).filter(|&l| in_topk(&nan, l, 1)).count(), 0);
        assert!(!in_topk(&row, 4, 5) && in_topk(&row, 6, 5));
        let mut acc = Accumulator::default();
        acc.add(
            &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            6,
            &[0, 0],
            0.0,
        );
        assert_eq!((acc.samples, acc.top1_hits, acc.top5_hits), (2, 1, 2));
        assert!((acc.top1() - 50.0).abs() < 1e-12);
    }
}
