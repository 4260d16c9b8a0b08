//! Reading and comparing against the golden training step (`shared/golden/seresnet18_train_step.npz`).

/// `flat[::ceil(n/4096)]`, how the golden file samples tensors of more than 4096 elements.
pub fn sample(v: &[f32]) -> Vec<f32> {
    let step = v.len().div_ceil(4096).max(1);
    v.iter().step_by(step).copied().collect()
}

/// `||ours - golden|| / ||golden||` (L2, in f64).
pub fn rel_l2(ours: &[f32], golden: &[f32]) -> f64 {
    assert_eq!(ours.len(), golden.len());
    let num: f64 = ours
        .iter()
        .zip(golden)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = golden.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// The f32 array `key` of the golden npz.
pub fn golden_array(
    archive: &mut npyz::npz::NpzArchive<std::io::BufReader<std::fs::File>>,
    key: &str,
) -> Vec<f32> {
    let npy = archive
        .by_name(key)
        .unwrap()
        .unwrap_or_else(|| panic!("{key} not in the golden npz"));
    senet::npy::from_npy(std::path::Path::new(key), npy)
        .unwrap()
        .data
}
