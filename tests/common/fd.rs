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
