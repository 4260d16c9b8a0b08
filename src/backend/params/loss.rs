//! The arguments of the softmax cross entropy and their checks.
use super::check_len;
use crate::backend::BufferLen;
use crate::{Error, Result};

/// Softmax cross entropy with label smoothing (MindCV `CrossEntropySmooth` = PyTorch
/// `cross_entropy(label_smoothing=eps)`) over `n` rows of `classes` logits, the gradient scaled
/// by `scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropyParams {
    /// Rows (the batch).
    pub n: usize,
    /// Classes per row.
    pub classes: usize,
    /// Label smoothing `eps`, in [0, 1).
    pub label_smoothing: f32,
    /// Factor of the logit gradient: the loss scale's sens (1.0 normally).
    pub scale: f32,
}

impl CrossEntropyParams {
    /// The checks of [`Backend::softmax_cross_entropy`](crate::backend::Backend::softmax_cross_entropy):
    /// `n` and `classes` non-zero, one label per row and room in `logits` and `dlogits`
    /// ([`Error::Shape`]), every label below `classes` and `label_smoothing` in [0, 1)
    /// ([`Error::Invalid`]).
    pub(crate) fn check(
        &self,
        labels: &[usize],
        logits: &(impl BufferLen + ?Sized),
        dlogits: &(impl BufferLen + ?Sized),
    ) -> Result<()> {
        let (n, classes, eps) = (self.n, self.classes, self.label_smoothing);
        if n == 0 || classes == 0 {
            return Err(Error::Shape(format!(
                "softmax_cross_entropy: {n} rows of {classes} classes"
            )));
        }
        if labels.len() != n {
            return Err(Error::Shape(format!(
                "softmax_cross_entropy: {} labels for {n} rows",
                labels.len()
            )));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
            return Err(Error::Invalid(format!(
                "softmax_cross_entropy: label {l} of row {i} is not below {classes} classes"
            )));
        }
        if !(0.0..1.0).contains(&eps) {
            return Err(Error::Invalid(format!(
                "softmax_cross_entropy: label smoothing {eps} not in [0, 1)"
            )));
        }
        check_len("softmax_cross_entropy logits", logits, n * classes)?;
        check_len("softmax_cross_entropy dlogits", dlogits, n * classes)
    }

    /// The smoothed one-hot target, in f64: (the label's, every other class's) =
    /// `(1 - eps + eps/C, eps/C)`.
    pub(crate) fn targets(&self) -> (f64, f64) {
        let eps = self.label_smoothing as f64;
        let off = eps / self.classes as f64;
        (1.0 - eps + off, off)
    }

    /// The smoothed one-hot targets of `labels` (n x classes f32, row-major): [`Self::targets`]
    /// rounded to f32, what the Ascend loss uploads.
    pub fn smoothed_targets(&self, labels: &[usize]) -> Vec<f32> {
        let (on, off) = self.targets();
        let mut t = vec![off as f32; labels.len() * self.classes];
        for (row, &l) in labels.iter().enumerate() {
            t[row * self.classes + l] = on as f32;
        }
        t
    }

    /// Where [`Backend::softmax_cross_entropy_on_device`](crate::backend::Backend::softmax_cross_entropy_on_device)
    /// puts its results in its output buffer: the `n` per-row losses at 0, the `n * classes`
    /// f32 logits at the returned offset (the next multiple of 8 values, a 32-byte boundary);
    /// and the values the buffer needs.
    pub fn on_device_layout(&self) -> (usize, usize) {
        let logits_at = self.n.div_ceil(8) * 8;
        (logits_at, logits_at + self.n * self.classes)
    }

    /// Mean loss (in f64) and top-1 hits of `labels` from the host copy `out` of an
    /// [`Self::on_device_layout`] buffer. Errors: `out` too short ([`Error::Shape`]).
    pub fn read_on_device(&self, out: &[f32], labels: &[usize]) -> Result<(f64, usize)> {
        let (at, len) = self.on_device_layout();
        if out.len() < len || labels.len() != self.n {
            return Err(Error::Shape(format!(
                "{} values and {} labels for a loss read-back of {len} values and {} rows",
                out.len(),
                labels.len(),
                self.n
            )));
        }
        let loss = out[..self.n].iter().map(|&v| v as f64).sum::<f64>() / self.n as f64;
        let hits = out[at..len]
            .chunks(self.classes)
            .zip(labels)
            .filter(|(row, &l)| crate::model::metrics::in_topk(row, l, 1))
            .count();
        Ok((loss, hits))
    }
}
