//! Reference math of the emulator: plain loops that are easy to check by eye.
//!
//! Conventions shared by every function of this module:
//!
//! * Tensors are contiguous row-major `&[f32]` slices with an explicit shape (NCHW for 4-D
//!   tensors). A shape of `[]` is a scalar (one element).
//! * Results are returned as fresh `Vec<f32>` (or `Vec<i64>` for indices); the only in-place
//!   arguments are the running statistics of [`norm::batch_norm`] and the buffer of
//!   [`cast::round_through_f16`].
//! * Inconsistent shapes or arguments give `Err(String)` with a readable message, never a panic.
//! * Semantics follow PyTorch/ATen, which the `aclnn*` operators mirror; each function names the
//!   PyTorch op it follows.
//! * Convolutions and matrix products (the cube's work) accumulate in `f32`, as the device's
//!   cube does: fp16/bf16/hf32 operands are multiplied exactly and summed into an fp32
//!   accumulator ("fp16 operands with fp32 accumulation"); the caller rounds the operands to the
//!   compute precision first (`ops::cube`). Other long reductions (normalisation statistics,
//!   sums) accumulate in `f64` and round to `f32` once at the end.
//! * Loops are ordered so that the innermost one walks contiguous memory.

pub mod cast;
pub mod conv;
pub mod elementwise;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod pool;

/// Result type of the reference functions: the error is a human-readable message.
pub type RefResult<T> = Result<T, String>;

/// Number of elements of a tensor of shape `shape` (`1` for the scalar shape `[]`), or an error
/// if the product overflows `usize`.
pub fn numel(shape: &[usize]) -> RefResult<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| format!("shape {shape:?} has too many elements"))
    })
}

/// Checks that the slice `name` of length `len` holds exactly `expected` elements.
pub(crate) fn check_len(name: &str, len: usize, expected: usize) -> RefResult<()> {
    if len == expected {
        Ok(())
    } else {
        Err(format!(
            "{name}: expected {expected} elements, got a slice of {len}"
        ))
    }
}

/// Checks that `data` holds exactly the elements of a tensor of shape `shape`.
pub(crate) fn check_shape(name: &str, data_len: usize, shape: &[usize]) -> RefResult<()> {
    let n = numel(shape)?;
    if data_len == n {
        Ok(())
    } else {
        Err(format!(
            "{name}: shape {shape:?} needs {n} elements, got a slice of {data_len}"
        ))
    }
}

/// `acc + Σ a[i]*b[i]`, accumulated in `f32` in index order (each product rounded to `f32`,
/// which is exact when the operands carry at most 12 significant bits: fp16, bf16, hf32).
pub(crate) fn dot_f32(acc: f32, a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(acc, |s, (x, y)| s + x * y)
}

/// `acc[i] += alpha * x[i]` for equally long slices, in `f32`.
pub(crate) fn axpy_f32(acc: &mut [f32], alpha: f32, x: &[f32]) {
    debug_assert_eq!(acc.len(), x.len());
    for (a, v) in acc.iter_mut().zip(x) {
        *a += alpha * *v;
    }
}

/// Sum of an `f32` slice accumulated in `f64` with four independent partial sums.
pub(crate) fn sum_f64(a: &[f32]) -> f64 {
    let mut s = [0f64; 4];
    let ca = a.chunks_exact(4);
    let ra = ca.remainder();
    for x in ca {
        for l in 0..4 {
            s[l] += f64::from(x[l]);
        }
    }
    let mut tail = 0f64;
    for x in ra {
        tail += f64::from(*x);
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// Helpers shared by the unit tests: a deterministic random generator, closeness checks and a
/// central-difference gradient checker.
#[cfg(test)]
pub(crate) mod testutil {
    /// A small linear congruential generator (deterministic, no dependency).
    pub struct Lcg(u64);

    impl Lcg {
        pub fn new(seed: u64) -> Self {
            Lcg(seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407))
        }

        /// Uniform in `[0, 1)`.
        pub fn unit(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Uniform in `[lo, hi)`.
        pub fn uniform(&mut self, lo: f64, hi: f64) -> f32 {
            (lo + (hi - lo) * self.unit()) as f32
        }

        /// `n` values uniform in `[-1, 1)`.
        pub fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.uniform(-1.0, 1.0)).collect()
        }

        /// `n` values uniform in `[-1, 1)` whose magnitude is at least `gap` (kept away from 0).
        pub fn vec_away_from_zero(&mut self, n: usize, gap: f64) -> Vec<f32> {
            (0..n)
                .map(|_| {
                    let m = self.uniform(gap, 1.0);
                    if self.unit() < 0.5 {
                        -m
                    } else {
                        m
                    }
                })
                .collect()
        }

        /// The values `0, step, 2*step, ...` (n of them, shifted to be centred on 0) in a random
        /// order: all distinct, at least `step` apart.
        pub fn distinct(&mut self, n: usize, step: f32) -> Vec<f32> {
            let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * step).collect();
            for i in (1..n).rev() {
                let j = (self.unit() * (i + 1) as f64) as usize;
                v.swap(i, j.min(i));
            }
            v
        }
    }

    /// Asserts `|a - b| <= atol + rtol * |b|` element-wise.
    #[track_caller]
    pub fn assert_close(a: &[f32], b: &[f32], atol: f64, rtol: f64) {
        assert_eq!(a.len(), b.len(), "length mismatch");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let (x, y) = (f64::from(*x), f64::from(*y));
            assert!(
                (x - y).abs() <= atol + rtol * y.abs(),
                "element {i}: got {x}, expected {y}"
            );
        }
    }

    /// `Σ r[i] * y[i]` in `f64`: a scalar loss whose gradient with respect to `y` is `r`.
    pub fn weighted_sum(y: &[f32], r: &[f32]) -> f64 {
        assert_eq!(y.len(), r.len());
        y.iter()
            .zip(r)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    }

    /// Compares `analytic` (the gradient of `loss` at `x`) with central differences of step
    /// `eps`: every element must satisfy `|numeric - analytic| <= atol + rtol * |analytic|`.
    #[track_caller]
    pub fn fd_check(
        x: &[f32],
        analytic: &[f32],
        eps: f32,
        atol: f64,
        rtol: f64,
        mut loss: impl FnMut(&[f32]) -> f64,
    ) {
        assert_eq!(x.len(), analytic.len(), "gradient length mismatch");
        let mut xp = x.to_vec();
        for i in 0..x.len() {
            let plus = x[i] + eps;
            let minus = x[i] - eps;
            xp[i] = plus;
            let lp = loss(&xp);
            xp[i] = minus;
            let lm = loss(&xp);
            xp[i] = x[i];
            let numeric = (lp - lm) / (f64::from(plus) - f64::from(minus));
            let a = f64::from(analytic[i]);
            assert!(
                (numeric - a).abs() <= atol + rtol * a.abs(),
                "element {i}: finite difference {numeric}, analytic {a}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numel_and_checks() {
        assert_eq!(numel(&[]).unwrap(), 1);
        assert_eq!(numel(&[2, 3, 4]).unwrap(), 24);
        assert_eq!(numel(&[2, 0, 4]).unwrap(), 0);
        assert!(numel(&[usize::MAX, 2]).is_err());
        assert!(check_shape("x", 6, &[2, 3]).is_ok());
        assert!(check_shape("x", 5, &[2, 3]).is_err());
        assert!(check_len("x", 5, 4).is_err());
    }

    #[test]
    fn dot_sum_axpy() {
        let a: Vec<f32> = (1..=7).map(|v| v as f32).collect();
        let b = vec![2f32; 7];
        assert_eq!(dot_f32(0.0, &a, &b), 56.0);
        assert_eq!(dot_f32(1.5, &[], &[]), 1.5);
        assert_eq!(sum_f64(&a), 28.0);
        let mut acc = vec![1f32; 7];
        axpy_f32(&mut acc, 0.5, &a);
        assert_eq!(acc[6], 4.5);
        // f32 accumulation: 2^24 + 1 is not representable, so adding 1 to 2^24 is lost.
        assert_eq!(dot_f32(16_777_216.0, &[1.0], &[1.0]), 16_777_216.0);
    }
}
