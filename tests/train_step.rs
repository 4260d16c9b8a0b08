//! One training step of seresnet18 (10 classes) from the formula weights against MindCV /
//! MindSpore (`shared/golden/seresnet18_train_step.npz`, `meta.json`): the loss, every gradient
//! and every parameter and BN moving statistic after the Momentum step.
mod common;

use senet::backend::cpu::CpuBackend;
use senet::config::WeightDecayFilter;
use senet::model::init::formula_input;
use senet::model::{Arch, Params, SeNet};
use senet::train::{decays, TrainConfig, TrainNet};

/// `flat[::ceil(n/4096)]`, how the golden file samples tensors of more than 4096 elements.
fn sample(v: &[f32]) -> Vec<f32> {
    let step = v.len().div_ceil(4096).max(1);
    v.iter().step_by(step).copied().collect()
}

fn rel_l2(ours: &[f32], golden: &[f32]) -> f64 {
    assert_eq!(ours.len(), golden.len());
    let num: f64 = ours
        .iter()
        .zip(golden)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = golden.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn golden_array(
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

#[test]
fn one_step_matches_mindspore() {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::golden("meta.json")).unwrap())
            .unwrap();
    let train = &meta["train"];
    let labels: Vec<usize> = train["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(labels, vec![3, 0, 9, 3]);
    let net = SeNet::formula(Arch::SeResNet18, 10).unwrap();
    let x = formula_input("train_input", &[4, 3, 64, 64]);
    let cfg = TrainConfig {
        label_smoothing: 0.1,
        momentum: 0.9,
        weight_decay: 1e-4,
        nesterov: false,
        loss_scale: 1.0,
    };
    // make_golden.py hands nn.Momentum a plain parameter list, so MindSpore's default filter
    // applies: no weight decay on names containing beta or gamma ("auto").
    let mut tn = TrainNet::new(&net, CpuBackend::new(2).unwrap(), cfg, |n| {
        decays(n, WeightDecayFilter::Auto, None)
    })
    .unwrap();
    let stats = tn.forward_backward(&x, &labels).unwrap();
    let golden_loss = train["loss_value"].as_f64().unwrap();
    eprintln!("loss {} vs MindSpore {golden_loss}", stats.loss);
    assert!(((stats.loss - golden_loss) / golden_loss).abs() <= 1e-4);

    let mut archive =
        npyz::npz::NpzArchive::open(common::golden("seresnet18_train_step.npz")).unwrap();
    let mut worst = (0.0f64, String::new());
    let grad_l2 = train["grad_l2"].as_object().unwrap();
    for spec in net.params.specs().iter().filter(|s| s.kind.trainable()) {
        let g = tn.gradient(&spec.name).unwrap();
        let golden = golden_array(&mut archive, &format!("grad/{}", spec.name));
        let err = rel_l2(&sample(&g.data), &golden);
        // The full-tensor L2 norm recorded by the reference, too.
        let norm = g
            .data
            .iter()
            .map(|v| (*v as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let want = grad_l2[&spec.name].as_f64().unwrap();
        assert!(
            ((norm - want) / want).abs() <= 1e-3,
            "{}: |grad| {norm} vs {want}",
            spec.name
        );
        if err > worst.0 {
            worst = (err, spec.name.clone());
        }
        assert!(
            err <= 1e-3,
            "{}: gradient relative L2 error {err}",
            spec.name
        );
    }
    eprintln!(
        "worst gradient relative L2 error {:.2e} ({})",
        worst.0, worst.1
    );
    assert_eq!(
        grad_l2.len(),
        net.params
            .specs()
            .iter()
            .filter(|s| s.kind.trainable())
            .count()
    );

    tn.apply_momentum(0.1).unwrap();
    let mut after: Params = net.params.clone();
    tn.read_params(&mut after).unwrap();
    let mut worst = (0.0f64, String::new());
    for (spec, t) in after.iter() {
        let golden = golden_array(&mut archive, &format!("after/{}", spec.name));
        let err = rel_l2(&sample(&t.data), &golden);
        if err > worst.0 {
            worst = (err, spec.name.clone());
        }
        assert!(
            err <= 1e-4,
            "{}: value after the step, relative L2 error {err}",
            spec.name
        );
    }
    eprintln!(
        "worst after-step relative L2 error {:.2e} ({})",
        worst.0, worst.1
    );
}
