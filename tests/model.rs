//! The model zoo against MindCV: parameter names, shapes and counts, and eval-mode logits of all
//! five variants with the golden formula weights (`shared/golden/README.md`).
mod common;

use senet::backend::cpu::CpuBackend;
use senet::model::{formula_input, param_specs, Arch, InferenceNet, SeNet};

/// Parses `mindcv_senet_params.txt`: `### arch` headers, then `name (d0, d1, ...)` lines.
fn reference_params(arch: &str) -> Vec<(String, Vec<usize>)> {
    let text = std::fs::read_to_string(common::shared().join("reference/mindcv_senet_params.txt"))
        .unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("### ") {
            inside = name.trim() == arch;
            continue;
        }
        if !inside || line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, shape) = line.split_once(' ').unwrap();
        let dims = shape
            .trim_matches(|c| c == '(' || c == ')')
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().unwrap())
            .collect();
        out.push((name.to_string(), dims));
    }
    out
}

#[test]
fn parameter_names_shapes_and_counts_match_mindcv() {
    let expected_counts = [11_789_224, 21_977_440, 28_141_144, 16_828_808, 27_628_120];
    let expected_tensors = [134, 246, 331, 179, 331];
    for ((arch, count), tensors) in Arch::ALL.iter().zip(expected_counts).zip(expected_tensors) {
        let ours: Vec<(String, Vec<usize>)> = param_specs(*arch, 1000)
            .into_iter()
            .map(|s| (s.name, s.shape))
            .collect();
        // The reference lists BatchNorm tensors as gamma, beta, moving_mean, moving_variance;
        // MindSpore's own order (see `parameter_order_is_mindspore_file_order`) puts the moving
        // statistics first. Compare names and shapes, then the order outside BatchNorm groups.
        let mut reference = reference_params(arch.name());
        let mut sorted = ours.clone();
        sorted.sort();
        reference.sort();
        assert_eq!(sorted, reference, "{}", arch.name());
        assert_eq!(ours.len(), tensors, "{}", arch.name());
        let net = SeNet::new(*arch, 1000, 0).unwrap();
        assert_eq!(net.params.numel(), count, "{}", arch.name());
    }
}

#[test]
fn any_num_classes() {
    let net = SeNet::new(Arch::SeResNet18, 10, 0).unwrap();
    assert_eq!(
        net.params.require("classifier.weight").unwrap().shape,
        vec![10, 512]
    );
    assert_eq!(net.params.numel(), 11_789_224 - 990 * 513);
}

#[test]
fn eval_logits_match_mindcv_for_all_variants() {
    let x = formula_input("input", &[2, 3, 224, 224]);
    for arch in Arch::ALL {
        let net = SeNet::formula(arch, 1000).unwrap();
        let mut inf = InferenceNet::new(&net, CpuBackend::new(2).unwrap()).unwrap();
        let logits = inf.forward(&x).unwrap();
        let golden =
            senet::npy::read_f32(&common::golden(&format!("{}_eval_logits.npy", arch.name())))
                .unwrap();
        assert_eq!(logits.shape, golden.shape);
        let max = logits
            .data
            .iter()
            .zip(&golden.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{}: max |ours - MindCV| = {max:.3e}", arch.name());
        assert!(max <= 1e-3, "{}: max abs diff {max}", arch.name());
        // Batch of one gives the same logits (the single-image path splits GEMMs, not images).
        let one =
            senet::Tensor::from_vec(&[1, 3, 224, 224], x.data[..3 * 224 * 224].to_vec()).unwrap();
        let l1 = inf.forward(&one).unwrap();
        let max1 = l1
            .data
            .iter()
            .zip(&golden.data[..1000])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(max1 <= 1e-3, "{} batch 1: max abs diff {max1}", arch.name());
    }
}

#[test]
fn parameter_order_is_mindspore_file_order() {
    // The order of the tensors in a .ckpt that MindSpore itself wrote for seresnet18.
    let ckpt =
        senet::checkpoint::read_checkpoint(&common::golden("seresnet18_formula.ckpt")).unwrap();
    let file: Vec<&str> = ckpt.names().collect();
    let specs = param_specs(Arch::SeResNet18, 1000);
    let ours: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(ours, file);
}
