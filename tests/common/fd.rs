//! Finite-difference gradient checks shared by the backward tests.

/// Central difference of the scalar `f` with respect to every element of `v`, with step `h`,
/// dividing by the actual f32 distance between `v + h` and `v - h`.
pub fn central_diff(v: &[f32], h: f32, mut f: impl FnMut(&[f32]) -> f64) -> Vec<f64> {
    let mut v = v.to_vec();
    (0..v.len())
        .map(|i| {
            let v0 = v[i];
            let (vp, vm) = (v0 + h, v0 - h);
            v[i] = vp;
            let lp = f(&v);
            v[i] = vm;
            let lm = f(&v);
            v[i] = v0;
            (lp - lm) / (vp as f64 - vm as f64)
        })
        .collect()
}

/// Relative L2 error `|analytic - numeric| / |numeric|` of a whole gradient tensor. Panics on a
/// zero numeric gradient (a degenerate test).
pub fn rel_err(analytic: &[f32], numeric: &[f64]) -> f64 {
    assert_eq!(analytic.len(), numeric.len());
    let diff: f64 = analytic
        .iter()
        .zip(numeric)
        .map(|(&a, &b)| (a as f64 - b).powi(2))
        .sum();
    let norm: f64 = numeric.iter().map(|b| b * b).sum();
    assert!(
        norm > 1e-12,
        "degenerate test: zero finite-difference gradient"
    );
    (diff / norm).sqrt()
}

/// splitmix64-based generator of reproducible test values.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f32 {
        let u = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        (lo + (hi - lo) * u) as f32
    }
    pub fn vec(&mut self, len: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// The CPU backend on 2 threads.
pub fn backend() -> senet::backend::cpu::CpuBackend {
    senet::backend::cpu::CpuBackend::new(2).unwrap()
}

/// `Σ w*y` in f64: the scalar loss whose gradient the backward ops compute.
pub fn dot(w: &[f32], y: &[f32]) -> f64 {
    w.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Asserts `|analytic - numeric| / |numeric| <= 1e-3` (relative L2), naming `what`.
pub fn assert_grad(what: &str, analytic: &[f32], numeric: &[f64]) {
    let e = rel_err(analytic, numeric);
    assert!(
        e <= 1e-3,
        "{what}: relative error {e:.3e}\nanalytic {analytic:?}\nnumeric {numeric:?}"
    );
}

impl Rng {
    /// A random permutation of `0..len` (Fisher-Yates).
    pub fn permutation(&mut self, len: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..len).collect();
        for i in (1..len).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            p.swap(i, j);
        }
        p
    }
}

/// The CPU backend on 1 and on 2 threads (the serial and the parallel paths).
pub fn backends() -> Vec<senet::backend::cpu::CpuBackend> {
    vec![
        senet::backend::cpu::CpuBackend::new(1).unwrap(),
        senet::backend::cpu::CpuBackend::new(2).unwrap(),
    ]
}

/// Central differences with the step the layer tests use, 1e-2 (on f32 values of magnitude ~1).
pub fn central_diff_h(v: &[f32], f: impl FnMut(&[f32]) -> f64) -> Vec<f64> {
    central_diff(v, 1e-2, f)
}

/// Sentinel written past the end of a shape's elements: every op must leave it alone.
pub const TAIL: f32 = 7.25;
/// How many sentinels follow a buffer.
pub const TAIL_LEN: usize = 5;

/// `v` followed by the sentinel tail (a buffer longer than its shape).
pub fn padded(v: &[f32]) -> Vec<f32> {
    let mut b = v.to_vec();
    b.extend([TAIL; TAIL_LEN]);
    b
}

/// A buffer of `len` garbage values (to check overwriting) plus the sentinel tail.
pub fn garbage(len: usize) -> Vec<f32> {
    padded(&vec![-3.5; len])
}

/// Asserts `b` is `len` values plus an untouched sentinel tail, naming `what`.
pub fn assert_tail(what: &str, b: &[f32], len: usize) {
    assert_eq!(b.len(), len + TAIL_LEN, "{what}: buffer length");
    assert!(
        b[len..].iter().all(|&t| t == TAIL),
        "{what}: wrote past the shape"
    );
}
