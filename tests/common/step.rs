//! Reading and comparing against the golden training step (`shared/golden/seresnet18_train_step.npz`),
//! and the tolerances of a training step on the emulated NPU.

/// Unit roundoff of FLOAT16 (`2^-11`): the cube's operands in O2, and every FLOAT cube operand
/// on the first-generation 910 (whose cube has no FP32, aclnnConvolution.md legacy row).
pub const U_FP16: f32 = 1.0 / 2048.0;
/// Unit roundoff of HFLOAT32 (11 mantissa bits, `2^-12`): FLOAT convolutions on A2/A3, where
/// KEEP_DTYPE is unsupported (aclnnConvolution.md:436) and torch_npu's default is USE_HF32.
pub const U_HF32: f32 = 1.0 / 4096.0;

/// Weighted layers on the longest path of `arch`: the stem, every conv of the residual
/// branches and the two SE Dense layers of each block, the classifier.
pub fn depth(arch: senet::model::Arch) -> usize {
    use senet::model::{blocks, BlockKind};
    2 + blocks(arch)
        .iter()
        .map(|b| match b.kind {
            BlockKind::Basic => 2 + 2,
            _ => 3 + 2,
        })
        .sum::<usize>()
}

/// The longest dot product of the five networks: a 3x3 convolution over 512 channels.
pub const K_MAX: f32 = 4608.0;

/// Max |logits - golden| allowed for a network `depth` weighted layers deep whose cube rounds
/// `roundings` operands or results per layer to a precision of unit roundoff `u`:
/// `sqrt(depth) * (roundings * u + sqrt(K_MAX) * 2^-24) * max|logit|`.
///
/// The probabilistic model of rounding error (independent relative errors of at most u each,
/// adding up like a random walk): each layer perturbs its outputs relatively by
/// `roundings * u` (its operand and result roundings) plus `sqrt(k) * 2^-24` (the cube's FLOAT
/// accumulation of k terms); in eval mode BatchNorm is folded into the convs, so nothing
/// renormalises, but nothing amplifies either: the perturbations of the `depth` layers add up
/// the same way, ~sqrt(depth) times one layer's, relative to the activations' scale, which the
/// logits carry. Roundings per
/// layer: O2 = 2 (the cast weight, the FLOAT16 output, which is the next layer's exact
/// input); FLOAT on A2 = 2 (input and weight rounded to HFLOAT32; the output stays FLOAT);
/// FLOAT on the first-generation 910 = 3 (input and weight converted to FLOAT16, the result
/// computed in FLOAT16 and converted back).
pub fn logit_bound(golden: &[f32], depth: usize, roundings: f32, u: f32) -> f32 {
    let gamma = K_MAX.sqrt() * 2f32.powi(-24);
    let scale = golden.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    (depth as f32).sqrt() * (roundings * u + gamma) * scale
}

/// The O2 step's tolerances: (loss relative error, gradient relative L2, after-step relative
/// L2). That is this step's sensitivity to its cube's FLOAT16 rounding, not an error of the
/// backend: with 4 images of 64x64, layer4's BatchNorm normalises over 16 values per channel,
/// and ReLU masks and max-pool argmaxes of near-equal values flip under a 2^-11 perturbation,
/// so the gradients further down differ from MindSpore's fp32 ones by far more than u (the
/// classifier's stays within ~2e-3); each op on its own stays within its cube bound
/// (tests/ascend_ops.rs).
pub const O2_STEP_TOL: (f64, f64, f64) = (1e-3, 0.25, 3e-2);

/// The FLOAT step's tolerances on the emulated A2 (same order as [`O2_STEP_TOL`]): its
/// convolutions run in HFLOAT32 (USE_HF32; KEEP_DTYPE is unsupported for FLOAT there,
/// aclnnConvolution.md:436), everything else in FLOAT: the same sensitivity as the O2 step to a
/// cube rounding of half the unit roundoff (2^-12 against 2^-11), so half its tolerances.
pub const HF32_STEP_TOL: (f64, f64, f64) = {
    let r = (U_HF32 / U_FP16) as f64;
    (O2_STEP_TOL.0 * r, O2_STEP_TOL.1 * r, O2_STEP_TOL.2 * r)
};

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
