//! MindSpore's Momentum update (hand-computed steps, and MindSpore's own step of seresnet18 from
//! the golden files) and MindCV's LR schedules at sampled steps.
mod common;

use std::f64::consts::PI;

use senet::backend::cpu::CpuBackend;
use senet::backend::{
    Activation, Backend, BatchNormForward, BatchStats, Conv2dForward, Conv2dParams, Conv2dShape,
    MomentumParams, Shape4,
};
use senet::config::{Recipe, Scheduler, WeightDecayFilter};
use senet::model::{formula_input, formula_param, param_specs, Arch};
use senet::optim::{decays, lr_schedule};

/// BatchNorm epsilon (MindSpore `nn.BatchNorm2d`).
const EPS: f32 = 1e-5;

fn backend() -> CpuBackend {
    CpuBackend::new(2).unwrap()
}

// ---------------------------------------------------------------- optimizer

#[test]
fn momentum_update_two_steps() {
    let be = backend();
    let p0 = [0.5f32, -1.25, 2.0];
    let grads = [[256.0f32, -512.0, 1024.0], [-128.0f32, 64.0, 2048.0]];
    let (lr, mom, wd, ls) = (0.1f32, 0.9f32, 1e-4f32, 1024.0f32);
    for nesterov in [false, true] {
        // By hand, MindSpore's order: g = (grad + p*(wd*ls)) * (1/ls); v = v*m + g; p -= ...
        let wds = (wd as f64 * ls as f64) as f32;
        let (mut p, mut v) = (p0, [0.0f32; 3]);
        for g in grads {
            for i in 0..3 {
                let gi = (g[i] + p[i] * wds) * (1.0 / ls);
                v[i] = v[i] * mom + gi;
                if nesterov {
                    p[i] -= gi * lr + v[i] * mom * lr;
                } else {
                    p[i] -= lr * v[i];
                }
            }
        }
        let (mut param, mut moment) = (p0.to_vec(), vec![0.0; 3]);
        for g in grads {
            be.momentum_update(
                MomentumParams {
                    lr,
                    momentum: mom,
                    weight_decay: wd,
                    loss_scale: ls,
                    nesterov,
                },
                &mut param,
                &g.to_vec(),
                &mut moment,
                3,
            )
            .unwrap();
        }
        assert_eq!(param, p.to_vec(), "nesterov={nesterov}");
        assert_eq!(moment, v.to_vec(), "nesterov={nesterov}");
    }
    // The same sequence in plain numbers (no Nesterov), step 1: g = grad/1024 + 1e-4*p
    //   = [0.25005, -0.500125, 1.0002]; v = g; p = p0 - 0.1*g.
    // Step 2: g = [-0.125, 0.0625, 2.0] + 1e-4*p; v = 0.9*v + g; p -= 0.1*v.
    let (mut param, mut moment) = (p0.to_vec(), vec![0.0; 3]);
    let mut p = p0.map(|x| x as f64);
    let mut v = [0.0f64; 3];
    for g in grads {
        be.momentum_update(
            MomentumParams {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 1e-4,
                loss_scale: 1024.0,
                nesterov: false,
            },
            &mut param,
            &g.to_vec(),
            &mut moment,
            3,
        )
        .unwrap();
        for i in 0..3 {
            let gi = g[i] as f64 / 1024.0 + 1e-4 * p[i];
            v[i] = 0.9 * v[i] + gi;
            p[i] -= 0.1 * v[i];
        }
    }
    for i in 0..3 {
        assert!((param[i] as f64 - p[i]).abs() < 1e-6, "{param:?} vs {p:?}");
        assert!(
            (moment[i] as f64 - v[i]).abs() < 1e-6,
            "{moment:?} vs {v:?}"
        );
    }
    assert!(
        (p[0] - (0.5 - 0.1 * 0.25005 - 0.1 * (0.9 * 0.25005 + (-0.125 + 1e-4 * (0.5 - 0.025005)))))
            .abs()
            < 1e-12
    );
    // No decay, no loss scale: plain heavy-ball SGD.
    let (mut param, mut moment) = (vec![1.0f32], vec![0.5f32]);
    be.momentum_update(
        MomentumParams {
            lr: 0.5,
            momentum: 0.9,
            weight_decay: 0.0,
            loss_scale: 1.0,
            nesterov: false,
        },
        &mut param,
        &vec![2.0],
        &mut moment,
        1,
    )
    .unwrap();
    assert_eq!(
        (param[0], moment[0]),
        (1.0 - 0.5 * (0.45 + 2.0), 0.45f32 + 2.0)
    );
}

// ---------------------------------------------------------------- LR schedules

fn recipe(scheduler: Scheduler) -> Recipe {
    let mut r = Recipe::builtin("seresnet18").unwrap();
    r.scheduler = scheduler;
    r
}

fn assert_lr(got: f32, want: f64, what: &str) {
    assert!(
        (got as f64 - want).abs() <= 1e-7 * want.abs().max(1e-3),
        "{what}: {got} vs {want}"
    );
}

#[test]
fn lr_senet_recipe_warmup_cosine_decay() {
    // configs/senet: warmup_cosine_decay, lr 0.075, min_lr 0, warmup 0, decay_epochs 150.
    let r = Recipe::builtin("seresnet50").unwrap();
    assert_eq!(
        (r.scheduler, r.lr, r.min_lr, r.warmup_epochs, r.decay_epochs),
        (Scheduler::WarmupCosineDecay, 0.075, 0.0, 0, 150)
    );
    let spe = 2502;
    let lrs = lr_schedule(&r, spe, 150).unwrap();
    assert_eq!(lrs.len(), 150 * spe);
    for i in [0usize, 1, 2501, 2502, 100_000, 187_650, 300_000, 375_299] {
        let want = 0.5 * 0.075 * (1.0 + (PI * (i as f64 / spe as f64) / 150.0).cos());
        assert_lr(lrs[i], want, &format!("step {i}"));
    }
    assert_eq!(lrs[0], 0.075);
    assert!(lrs[375_299] > 0.0 && lrs[375_299] < 1e-8);
}

#[test]
fn lr_warmup_then_cosine() {
    let mut r = recipe(Scheduler::WarmupCosineDecay);
    (
        r.lr,
        r.min_lr,
        r.warmup_epochs,
        r.warmup_factor,
        r.decay_epochs,
    ) = (0.1, 0.001, 2, 0.01, 8);
    let spe = 4;
    let lrs = lr_schedule(&r, spe, 10).unwrap();
    assert_eq!(lrs.len(), 40);
    // Warmup per step: from 0.001 (= lr*warmup_factor) towards 0.1 over 2 epochs.
    // Then cosine over the remaining 8 epochs, restarting at lr.
    for (i, &got) in lrs.iter().enumerate() {
        let want = if i < 8 {
            0.001 + (i as f64 / 4.0) / 2.0 * (0.1 - 0.001)
        } else {
            let t = (i - 8) as f64 / 4.0;
            0.001 + 0.5 * (0.1 - 0.001) * (1.0 + (PI * t / 8.0).cos())
        };
        assert_lr(got, want, &format!("step {i}"));
    }
    // lr_epoch_stair: constant within each epoch.
    r.lr_epoch_stair = true;
    let lrs = lr_schedule(&r, spe, 10).unwrap();
    for e in 0..10 {
        let want = if e < 2 {
            0.001 + e as f64 / 2.0 * (0.1 - 0.001)
        } else {
            0.001 + 0.5 * (0.1 - 0.001) * (1.0 + (PI * (e - 2) as f64 / 8.0).cos())
        };
        for s in 0..spe {
            assert_lr(lrs[e * spe + s], want, &format!("stair epoch {e} step {s}"));
        }
    }
}

#[test]
fn lr_cosine_cycles() {
    let mut r = recipe(Scheduler::CosineDecay);
    (r.lr, r.min_lr, r.warmup_epochs, r.decay_epochs) = (1.0, 0.0, 0, 3);
    (r.num_cycles, r.cycle_decay) = (2, 0.5);
    let lrs = lr_schedule(&r, 1, 8).unwrap();
    let cos = |peak: f64, t: f64| 0.5 * peak * (1.0 + (PI * t / 3.0).cos());
    let want = [
        cos(1.0, 0.0),
        cos(1.0, 1.0),
        cos(1.0, 2.0),
        cos(0.5, 0.0),
        cos(0.5, 1.0),
        cos(0.5, 2.0),
        0.0,
        0.0,
    ];
    assert_eq!(lrs.len(), 8);
    for (i, (&g, w)) in lrs.iter().zip(want).enumerate() {
        assert_lr(g, w, &format!("cycle step {i}"));
    }
    // Cut at the run's length when the cycles are longer.
    assert_eq!(lr_schedule(&r, 1, 4).unwrap().len(), 4);
}

#[test]
fn lr_step_multistep_constant_exponential_polynomial() {
    let mut r = recipe(Scheduler::StepDecay);
    (r.lr, r.warmup_epochs, r.decay_epochs, r.decay_rate) = (0.1, 0, 2, 0.5);
    let lrs = lr_schedule(&r, 3, 6).unwrap();
    let want = [0.1, 0.1, 0.05, 0.05, 0.025, 0.025];
    for (i, &g) in lrs.iter().enumerate() {
        assert_lr(g, want[i / 3], &format!("step_decay {i}"));
    }

    let mut r = recipe(Scheduler::MultiStepDecay);
    (r.lr, r.warmup_epochs, r.decay_rate) = (0.1, 0, 0.1);
    r.multi_step_decay_milestones = vec![4, 2];
    let lrs = lr_schedule(&r, 2, 6).unwrap();
    let want = [0.1, 0.1, 0.01, 0.01, 0.001, 0.001];
    for (i, &g) in lrs.iter().enumerate() {
        assert_lr(g, want[i / 2], &format!("multi_step {i}"));
    }
    // With warmup, milestones count from the end of warmup (as MindCV's list concatenation).
    (r.warmup_epochs, r.warmup_factor) = (1, 0.5);
    let lrs = lr_schedule(&r, 2, 4).unwrap();
    let want = [0.05, 0.075, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01];
    for (i, &g) in lrs.iter().enumerate() {
        assert_lr(g, want[i], &format!("multi_step warmup {i}"));
    }

    let mut r = recipe(Scheduler::Constant);
    (r.lr, r.warmup_epochs) = (0.02, 0);
    assert_eq!(lr_schedule(&r, 5, 3).unwrap(), vec![0.02f32; 15]);

    let mut r = recipe(Scheduler::ExponentialDecay);
    (r.lr, r.warmup_epochs, r.decay_rate) = (0.1, 0, 0.9);
    let lrs = lr_schedule(&r, 4, 3).unwrap();
    for (i, &g) in lrs.iter().enumerate() {
        assert_lr(
            g,
            0.1 * 0.9f64.powf(i as f64 / 4.0),
            &format!("exponential {i}"),
        );
    }
    r.lr_epoch_stair = true;
    let lrs = lr_schedule(&r, 4, 3).unwrap();
    for (i, &g) in lrs.iter().enumerate() {
        assert_lr(
            g,
            0.1 * 0.9f64.powi((i / 4) as i32),
            &format!("exponential stair {i}"),
        );
    }

    let mut r = recipe(Scheduler::PolynomialDecay);
    (r.lr, r.warmup_epochs, r.decay_rate) = (0.1, 0, 2.0);
    let lrs = lr_schedule(&r, 2, 4).unwrap();
    for (i, &g) in lrs.iter().enumerate() {
        let e = i as f64 / 2.0;
        assert_lr(g, 0.1 * (1.0 - e / 4.0).powi(2), &format!("polynomial {i}"));
    }

    let r = recipe(Scheduler::Cyclic);
    let err = lr_schedule(&r, 2, 4).unwrap_err().to_string();
    assert!(err.contains("cyclic"), "{err}");
}

// ---------------------------------------------------------------- MindSpore's own numbers

/// Against the golden MindCV/MindSpore train step of seresnet18 (formula weights,
/// `shared/golden/README.md`): every small trainable tensor after one `nn.Momentum` step
/// (lr 0.1, momentum 0.9, weight decay 1e-4, fresh moments) from MindSpore's own gradient; and
/// `layer0.1`'s moving stats after the stem conv + train-mode BatchNorm (momentum 0.9,
/// unbiased variance).
///
/// NB: `make_golden.py` passes a plain parameter list to `nn.Momentum`, so MindSpore's default
/// filter applies and `gamma`/`beta` were *not* decayed (despite `meta.json`'s "on all params"):
/// that is `decays(name, Auto, None)`, which this test uses (and so also checks).
#[test]
fn golden_momentum_step_and_stem_batch_norm_stats() {
    let be = backend();
    let path = common::golden("seresnet18_train_step.npz");
    let mut npz = npyz::npz::NpzArchive::open(&path).unwrap();
    let mut read = |name: &str| -> Vec<f32> {
        let npy = npz
            .by_name(name)
            .unwrap()
            .unwrap_or_else(|| panic!("{name}"));
        senet::npy::from_npy(&path, npy).unwrap().data
    };
    let specs = param_specs(Arch::SeResNet18, 10);
    let mut checked = 0;
    for spec in specs.iter().filter(|s| s.kind.trainable()) {
        let n: usize = spec.shape.iter().product();
        if n > 4096 {
            continue; // stored subsampled
        }
        let mut p = formula_param(spec).data;
        let grad = read(&format!("grad/{}", spec.name));
        let after = read(&format!("after/{}", spec.name));
        let mut moment = vec![0.0; n];
        let wd = if decays(&spec.name, WeightDecayFilter::Auto, None) {
            1e-4
        } else {
            0.0
        };
        be.momentum_update(
            MomentumParams {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: wd,
                loss_scale: 1.0,
                nesterov: false,
            },
            &mut p,
            &grad,
            &mut moment,
            n,
        )
        .unwrap();
        for (a, b) in p.iter().zip(&after) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{}: {a} vs MindSpore {b}",
                spec.name
            );
        }
        checked += 1;
    }
    assert!(checked > 50, "{checked} tensors checked");

    // Stem: conv 7x7/2 pad 3, then BatchNorm in training mode.
    let spec = |name: &str| specs.iter().find(|s| s.name == name).unwrap();
    let x = formula_input("train_input", &[4, 3, 64, 64]).data;
    let w = formula_param(spec("layer0.0.weight")).data;
    let xs = Shape4::new(4, 3, 64, 64);
    let p = Conv2dParams {
        stride: 2,
        padding: 3,
        groups: 1,
    };
    let mut y = vec![0.0; 4 * 64 * 32 * 32];
    let f = Conv2dForward {
        shape: Conv2dShape {
            xs,
            w_shape: [64, 3, 7, 7],
            p,
        },
        w: &w,
        bias: None,
        act: Activation::None,
        prepared: None,
    };
    let ys = be.conv2d(f, &x, &mut y).unwrap();
    let gamma = formula_param(spec("layer0.1.gamma")).data;
    let beta = formula_param(spec("layer0.1.beta")).data;
    let mut mm = formula_param(spec("layer0.1.moving_mean")).data;
    let mut mv = formula_param(spec("layer0.1.moving_variance")).data;
    let (mut sm, mut si, mut out) = (vec![0.0; 64], vec![0.0; 64], vec![0.0; ys.numel()]);
    be.batch_norm_train(
        BatchNormForward {
            xs: ys,
            gamma: &gamma,
            beta: &beta,
            act: Activation::Relu,
        },
        &y,
        BatchStats {
            eps: EPS,
            momentum: 0.9,
            moving_mean: &mut mm,
            moving_var: &mut mv,
            saved_mean: &mut sm,
            saved_invstd: &mut si,
        },
        &mut out,
    )
    .unwrap();
    let want_mm = read("after/layer0.1.moving_mean");
    let want_mv = read("after/layer0.1.moving_variance");
    for c in 0..64 {
        assert!(
            (mm[c] - want_mm[c]).abs() <= 1e-5,
            "moving_mean[{c}] {} vs {}",
            mm[c],
            want_mm[c]
        );
        assert!(
            (mv[c] - want_mv[c]).abs() <= 1e-5 * want_mv[c].abs().max(1.0),
            "moving_variance[{c}] {} vs {}",
            mv[c],
            want_mv[c]
        );
    }
}
