//! One training step of seresnet18 (10 classes) from the formula weights against MindCV /
//! MindSpore (`shared/golden/seresnet18_train_step.npz`, `meta.json`): the loss, every gradient
//! and every parameter and BN moving statistic after the Momentum step.
mod common;

use common::step::{golden_array, rel_l2, sample};

use senet::backend::cpu::CpuBackend;
use senet::config::WeightDecayFilter;
use senet::model::{formula_input, Arch, Params, SeNet};
use senet::optim::{decays, TrainConfig, TrainNet};

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
        loss_scale: 1.0,
        ..TrainConfig::mindcv_senet()
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

/// MindCV's TrainStep path (clip_grad / ema): gradients divided by the loss scale, clipped to
/// the global norm, Momentum with loss scale 1, then the EMA update of every parameter.
#[test]
fn clip_and_ema_follow_mindcv_train_step() {
    let net = SeNet::formula(Arch::SeResNet18, 10).unwrap();
    let x = formula_input("train_input", &[4, 3, 64, 64]);
    let labels = [3usize, 0, 9, 3];
    let (ls, clip, decay, lr, wd) = (1024.0f32, 1.0f32, 0.9999f32, 0.1f32, 1e-4f32);
    let cfg = TrainConfig {
        label_smoothing: 0.1,
        momentum: 0.9,
        weight_decay: wd,
        nesterov: false,
        loss_scale: ls,
        clip_value: Some(clip),
        ema_decay: Some(decay),
    };
    let mut tn = TrainNet::new(&net, CpuBackend::new(2).unwrap(), cfg, |_| true).unwrap();
    tn.forward_backward(&x, &labels).unwrap();
    let trainable: Vec<_> = net
        .params
        .specs()
        .iter()
        .filter(|s| s.kind.trainable())
        .collect();
    // Host reference: unscale, global norm over every trainable gradient, clip factor.
    let grads: Vec<Vec<f32>> = trainable
        .iter()
        .map(|s| {
            tn.gradient(&s.name)
                .unwrap()
                .data
                .iter()
                .map(|g| g / ls)
                .collect()
        })
        .collect();
    let norm = grads
        .iter()
        .flatten()
        .map(|g| (*g as f64).powi(2))
        .sum::<f64>()
        .sqrt() as f32;
    assert!(
        norm > clip,
        "the test needs a gradient norm above the clip value, got {norm}"
    );
    let factor = clip / norm.max(clip);
    tn.apply_momentum(lr).unwrap();
    let mut after = net.params.clone();
    tn.read_params(&mut after).unwrap();
    for (spec, g) in trainable.iter().zip(&grads) {
        let p0 = &net.params.get(&spec.name).unwrap().data;
        let p1 = &after.get(&spec.name).unwrap().data;
        for ((a, b), g) in p0.iter().zip(p1).zip(g) {
            // First step: the moment is g' itself, p -= lr * (g*factor + wd*p).
            let want = a - lr * (g * factor + wd * a);
            assert!(
                (b - want).abs() <= 1e-6 + 1e-5 * want.abs(),
                "{}: {b} vs {want}",
                spec.name
            );
        }
    }
    // EMA after one update: d = decay * (1 - exp(-1/2000)), ema = d*p0 + (1-d)*p1 for every
    // parameter, BN moving statistics included.
    let d = decay * (1.0 - (-1.0f32 / 2000.0).exp());
    let ema = tn.ema_params().unwrap().unwrap();
    assert_eq!(ema.len(), net.params.len());
    assert_eq!(tn.ema_updates(), 1.0);
    for ((name, e), (spec, p1)) in ema.iter().zip(after.iter()) {
        assert_eq!(name, &format!("ema.{}", spec.name));
        let p0 = &net.params.get(&spec.name).unwrap().data;
        for ((e, a), b) in e.data.iter().zip(p0).zip(&p1.data) {
            let want = d * a + (1.0 - d) * b;
            assert!(
                (e - want).abs() <= 1e-6 + 1e-6 * want.abs(),
                "{name}: {e} vs {want}"
            );
        }
    }
}

// ---- loss-scale managers (MindSpore's loss-scale cell) -------------------------------------

fn scaled_net(scaler: senet::optim::LossScaler) -> (SeNet, TrainNet<CpuBackend>) {
    let net = SeNet::formula(Arch::SeResNet18, 10).unwrap();
    let cfg = TrainConfig {
        loss_scale: scaler.scale(),
        ..TrainConfig::mindcv_senet()
    };
    let mut tn = TrainNet::new(&net, CpuBackend::new(2).unwrap(), cfg, |_| true).unwrap();
    tn.set_loss_scaler(scaler);
    (net, tn)
}

fn trainable_values(net: &SeNet, tn: &TrainNet<CpuBackend>) -> Vec<Vec<f32>> {
    let mut p = net.params.clone();
    tn.read_params(&mut p).unwrap();
    p.iter()
        .filter(|(s, _)| s.kind.trainable())
        .map(|(_, t)| t.data.clone())
        .collect()
}

#[test]
fn dynamic_loss_scale_skips_an_overflowing_step_and_halves() {
    use senet::optim::LossScaler;
    let (net, mut tn) = scaled_net(LossScaler::dynamic(1024.0));
    let before = trainable_values(&net, &tn);
    let mut x = formula_input("train_input", &[4, 3, 64, 64]);
    x.data[123] = f32::NAN;
    let stats = tn.step(&x, &[3, 0, 9, 3], 0.1).unwrap();
    assert!(stats.overflow, "a NaN input must overflow the gradients");
    assert!(!tn.gradients_finite().unwrap());
    assert_eq!(
        trainable_values(&net, &tn),
        before,
        "the update was not skipped"
    );
    assert!(tn
        .moments()
        .unwrap()
        .iter()
        .all(|(_, m)| m.data.iter().all(|v| *v == 0.0)));
    assert_eq!(
        tn.loss_scaler(),
        &LossScaler::Dynamic {
            scale: 512.0,
            factor: 2.0,
            window: 2000,
            cur_iter: 2,
            last_overflow_iter: 1,
        }
    );
    // A fixed scale without drop_overflow_update applies every step, NaN included (MindSpore's
    // FixedLossScaleManager has no overflow check).
    let (net, mut tn) = scaled_net(LossScaler::Fixed {
        scale: 1024.0,
        drop_overflow_update: false,
    });
    let stats = tn.step(&x, &[3, 0, 9, 3], 0.1).unwrap();
    assert!(!stats.overflow);
    assert!(trainable_values(&net, &tn)
        .iter()
        .flatten()
        .any(|v| v.is_nan()));
}

#[test]
fn a_loss_scale_cell_step_unscales_before_the_optimizer() {
    use senet::optim::LossScaler;
    let (ls, lr, wd) = (256.0f32, 0.1f32, 1e-4f32);
    for scaler in [
        LossScaler::dynamic(ls),
        LossScaler::Fixed {
            scale: ls,
            drop_overflow_update: true,
        },
    ] {
        let (net, mut tn) = scaled_net(scaler.clone());
        let x = formula_input("train_input", &[4, 3, 64, 64]);
        tn.forward_backward(&x, &[3, 0, 9, 3]).unwrap();
        let specs: Vec<_> = net
            .params
            .specs()
            .iter()
            .filter(|s| s.kind.trainable())
            .collect();
        let grads: Vec<Vec<f32>> = specs
            .iter()
            .map(|s| tn.gradient(&s.name).unwrap().data)
            .collect();
        assert!(tn.apply_update(lr).unwrap(), "a finite step is applied");
        let after = trainable_values(&net, &tn);
        for ((spec, g), p1) in specs.iter().zip(&grads).zip(&after) {
            let p0 = &net.params.get(&spec.name).unwrap().data;
            for ((a, b), g) in p0.iter().zip(p1).zip(g) {
                // First step: moment = g/ls + wd*p (unscaled first, optimizer loss scale 1).
                let want = a - lr * (g / ls + wd * a);
                assert!(
                    (b - want).abs() <= 1e-6 + 1e-5 * want.abs(),
                    "{scaler:?} {}: {b} vs {want}",
                    spec.name
                );
            }
        }
        // The dynamic manager counted the iteration; the fixed one has no state to change.
        match tn.loss_scaler() {
            LossScaler::Dynamic {
                scale, cur_iter, ..
            } => assert_eq!((*scale, *cur_iter), (ls, 2)),
            other => assert_eq!(other, &scaler),
        }
    }
}

#[test]
fn dynamic_loss_scale_state_survives_a_checkpoint() {
    use senet::engine::train::state::{
        read_state, restore_scaler, save_state, EpochSums, OptimizerState,
    };
    use senet::optim::LossScaler;
    // The state after one overflowing step (the step itself is tested above; its NaN input
    // also made the BatchNorm moving statistics NaN, which no checkpoint may hold).
    let (net, mut tn) = scaled_net(LossScaler::dynamic(1024.0));
    tn.set_loss_scaler(LossScaler::Dynamic {
        scale: 512.0,
        factor: 2.0,
        window: 2000,
        cur_iter: 2,
        last_overflow_iter: 1,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.ckpt");
    let mut scratch = net.params.clone();
    let opt = OptimizerState {
        global_step: 1,
        momentum: 0.9,
        learning_rate: &[0.1, 0.05],
    };
    let sums = EpochSums {
        loss_sum: 2.25,
        loss_steps: 1,
        top1_hits: 3,
        images: 4,
    };
    save_state(&path, &tn, &mut scratch, &opt, &sums).unwrap();
    let st = read_state(&path, &net.params).unwrap();
    assert_eq!(st.global_step, 1);
    assert_eq!(st.momentum, Some(0.9));
    assert_eq!(st.learning_rate.as_deref(), Some(&[0.1f32, 0.05][..]));
    assert_eq!(st.epoch_sums, Some(sums));
    assert_eq!(st.scale_sense, Some(512.0));
    assert_eq!(st.scaler_iters, Some((2, 1)));
    assert_eq!(
        &restore_scaler(LossScaler::dynamic(1024.0), &st),
        tn.loss_scaler()
    );
}

/// The training step's kernels around the convs (the vector max-pool backward, the one-pass SE
/// block end and squeeze gradient) give the step of their legacy versions
/// (`CpuBackend::set_legacy_train_kernels`) bit for bit: the loss, every gradient, and every
/// parameter, moment and moving statistic after the Momentum step, on seresnet18 at batch 4 (whose
/// stem pool sees ties: the ReLU's zeros).
#[test]
fn the_step_is_the_legacy_kernels_step_bit_for_bit() {
    let net = SeNet::formula(Arch::SeResNet18, 10).unwrap();
    let x = formula_input("train_input", &[4, 3, 64, 64]);
    let labels = [3, 0, 9, 3];
    let step = |legacy: bool| {
        let mut be = CpuBackend::new(2).unwrap();
        be.set_legacy_train_kernels(legacy);
        let mut tn = TrainNet::new(&net, be, TrainConfig::mindcv_senet(), |_| true).unwrap();
        let loss = tn.forward_backward(&x, &labels).unwrap().loss;
        let grads: Vec<Vec<u32>> = net
            .params
            .specs()
            .iter()
            .filter(|s| s.kind.trainable())
            .map(|s| bits(&tn.gradient(&s.name).unwrap().data))
            .collect();
        tn.apply_momentum(0.1).unwrap();
        let mut after: Params = net.params.clone();
        tn.read_params(&mut after).unwrap();
        let after: Vec<Vec<u32>> = after.iter().map(|(_, t)| bits(&t.data)).collect();
        (loss.to_bits(), grads, after)
    };
    let (new, legacy) = (step(false), step(true));
    assert_eq!(new.0, legacy.0, "loss");
    assert!(!new.1.is_empty() && new.1.len() == legacy.1.len());
    for (i, (a, b)) in new.1.iter().zip(&legacy.1).enumerate() {
        assert!(a == b, "gradient {i} differs");
    }
    for (i, (a, b)) in new.2.iter().zip(&legacy.2).enumerate() {
        assert!(a == b, "tensor {i} after the step differs");
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}
