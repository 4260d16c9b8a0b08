//! Frozen BatchNorm of the CPU backend (MindSpore `use_batch_statistics=False`: the moving
//! statistics normalise in training too) against central finite differences of its own forward
//! and against train-mode BatchNorm on the same statistics; see `backward_norm.rs` for the
//! finite-difference conventions.
mod common;

use common::fd::{assert_grad, backend, dot, Rng};
use senet::backend::cpu::CpuBackend;
use senet::backend::{
    Activation, Backend, BatchNormBackward, BatchNormForward, BatchNormGrads, BatchStats,
    MovingStats, SavedStats, Shape4,
};

const EPS: f32 = 1e-5;

// ---------------------------------------------------------------- frozen BatchNorm

/// A frozen-BatchNorm case: input, affine parameters, moving statistics and the loss weights.
struct FrozenCase {
    xs: Shape4,
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mm: Vec<f32>,
    mv: Vec<f32>,
    w: Vec<f32>,
}

/// Host frozen BatchNorm pre-activation `gamma*(x-mm)/sqrt(mv+eps) + beta` in f64.
fn frozen_pre_host(k: &FrozenCase, x: &[f32], gamma: &[f32], beta: &[f32]) -> Vec<f64> {
    let hw = k.xs.h * k.xs.w;
    (0..k.xs.numel())
        .map(|j| {
            let c = (j / hw) % k.xs.c;
            let invstd = 1.0 / (k.mv[c] as f64 + EPS as f64).sqrt();
            gamma[c] as f64 * (x[j] as f64 - k.mm[c] as f64) * invstd + beta[c] as f64
        })
        .collect()
}

fn frozen_case(
    rng: &mut Rng,
    (n, c, h, w): (usize, usize, usize, usize),
    relu: bool,
) -> FrozenCase {
    let xs = Shape4::new(n, c, h, w);
    let mut k = FrozenCase {
        xs,
        x: rng.vec(xs.numel(), -3.0, 3.0),
        gamma: rng.vec(c, 0.5, 1.5),
        beta: rng.vec(c, -0.5, 0.5),
        mm: rng.vec(c, -1.0, 1.0),
        mv: rng.vec(c, 0.3, 2.5),
        w: rng.vec(xs.numel(), -1.0, 1.0),
    };
    if relu {
        // Keep every pre-activation at least 0.05 from the ReLU kink.
        let pre = frozen_pre_host(&k, &k.x, &k.gamma, &k.beta);
        let hw = h * w;
        for (j, p) in pre.iter().enumerate() {
            if p.abs() < 0.05 {
                let ch = (j / hw) % c;
                k.x[j] += if *p >= 0.0 { 0.3 } else { -0.3 } * k.gamma[ch].signum();
            }
        }
    }
    k
}

/// `L = Σ w * batch_norm_frozen(x)`.
fn frozen_loss(
    be: &CpuBackend,
    k: &FrozenCase,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    act: Activation,
) -> f64 {
    let mut y = vec![0.0; k.xs.numel()];
    be.batch_norm_frozen(
        BatchNormForward {
            xs: k.xs,
            gamma: &gamma.to_vec(),
            beta: &beta.to_vec(),
            act,
        },
        &x.to_vec(),
        MovingStats {
            mean: &k.mm,
            var: &k.mv,
            eps: EPS,
        },
        &mut y,
    )
    .unwrap();
    dot(&k.w, &y)
}

fn check_frozen_fd(relu: bool) {
    let be = backend();
    let mut rng = Rng(if relu { 31 } else { 37 });
    let act = if relu {
        Activation::Relu
    } else {
        Activation::None
    };
    // One value per channel is fine here: no batch statistics.
    let shapes = [
        (1, 1, 1, 1),
        (1, 3, 1, 3),
        (2, 4, 3, 3),
        (3, 5, 7, 7),
        (2, 3, 5, 1),
    ];
    for shape in shapes {
        let k = frozen_case(&mut rng, shape, relu);
        let (c, numel) = (k.xs.c, k.xs.numel());
        let (mm0, mv0) = (k.mm.clone(), k.mv.clone());
        let mut y = vec![0.0; numel + 5];
        be.batch_norm_frozen(
            BatchNormForward {
                xs: k.xs,
                gamma: &k.gamma,
                beta: &k.beta,
                act,
            },
            &k.x,
            MovingStats {
                mean: &k.mm,
                var: &k.mv,
                eps: EPS,
            },
            &mut y,
        )
        .unwrap();
        // The forward is the host formula, and the moving statistics are inputs only.
        let pre = frozen_pre_host(&k, &k.x, &k.gamma, &k.beta);
        for (j, p) in pre.iter().enumerate() {
            let want = if relu { p.max(0.0) } else { *p };
            assert!(
                (y[j] as f64 - want).abs() <= 2e-6 * want.abs().max(1.0),
                "y[{j}] {} vs {want}",
                y[j]
            );
        }
        assert_eq!((&k.mm, &k.mv), (&mm0, &mv0));
        let (mut dx, mut dg, mut db) = (vec![0.0; numel + 3], vec![0.0; c], vec![0.0; c]);
        be.batch_norm_frozen_backward(
            BatchNormBackward {
                xs: k.xs,
                x: &k.x,
                dy: &k.w,
                y_relu: relu.then_some(&y),
                gamma: &k.gamma,
            },
            MovingStats {
                mean: &k.mm,
                var: &k.mv,
                eps: EPS,
            },
            BatchNormGrads {
                dx: &mut dx,
                dgamma: &mut dg,
                dbeta: &mut db,
            },
        )
        .unwrap();
        let h = 3e-3;
        let ndx =
            common::fd::central_diff(&k.x, h, |x| frozen_loss(&be, &k, x, &k.gamma, &k.beta, act));
        let ndg =
            common::fd::central_diff(&k.gamma, h, |g| frozen_loss(&be, &k, &k.x, g, &k.beta, act));
        let ndb =
            common::fd::central_diff(&k.beta, h, |b| frozen_loss(&be, &k, &k.x, &k.gamma, b, act));
        let tag = format!("{:?} relu={relu}", k.xs);
        assert_grad(&format!("frozen bn dx {tag}"), &dx[..numel], &ndx);
        assert_grad(&format!("frozen bn dgamma {tag}"), &dg, &ndg);
        assert_grad(&format!("frozen bn dbeta {tag}"), &db, &ndb);
    }
}

#[test]
fn batch_norm_frozen_backward_matches_finite_differences() {
    check_frozen_fd(false);
}

#[test]
fn batch_norm_frozen_relu_backward_matches_finite_differences() {
    check_frozen_fd(true);
}

/// Frozen BatchNorm with the statistics of the batch itself is the training forward, and its
/// backward is the training backward without the terms through the mean and variance.
#[test]
fn batch_norm_frozen_agrees_with_train_mode_on_its_own_statistics() {
    let be = backend();
    let mut rng = Rng(41);
    let xs = Shape4::new(2, 3, 4, 5);
    let (c, numel) = (xs.c, xs.numel());
    let x = rng.vec(numel, -2.0, 4.0);
    let gamma = rng.vec(c, 0.5, 1.5);
    let beta = rng.vec(c, -0.5, 0.5);
    let (mut mm, mut mv, mut sm, mut si) = (vec![0.0; c], vec![1.0; c], vec![0.0; c], vec![0.0; c]);
    let mut y_train = vec![0.0; numel];
    be.batch_norm_train(
        BatchNormForward {
            xs,
            gamma: &gamma,
            beta: &beta,
            act: Activation::None,
        },
        &x,
        BatchStats {
            eps: EPS,
            momentum: 0.9,
            moving_mean: &mut mm,
            moving_var: &mut mv,
            saved_mean: &mut sm,
            saved_invstd: &mut si,
        },
        &mut y_train,
    )
    .unwrap();
    // The biased batch variance from the saved invstd.
    let var: Vec<f32> = si
        .iter()
        .map(|&i| (1.0 / (i as f64 * i as f64) - EPS as f64) as f32)
        .collect();
    let mut y = vec![0.0; numel];
    be.batch_norm_frozen(
        BatchNormForward {
            xs,
            gamma: &gamma,
            beta: &beta,
            act: Activation::None,
        },
        &x,
        MovingStats {
            mean: &sm,
            var: &var,
            eps: EPS,
        },
        &mut y,
    )
    .unwrap();
    for (a, b) in y.iter().zip(&y_train) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }
    // dgamma and dbeta do not depend on whether the statistics are constants.
    let w = rng.vec(numel, -1.0, 1.0);
    let (mut dx, mut dg, mut db) = (vec![0.0; numel], vec![0.0; c], vec![0.0; c]);
    be.batch_norm_backward(
        BatchNormBackward {
            xs,
            x: &x,
            dy: &w,
            y_relu: None,
            gamma: &gamma,
        },
        SavedStats {
            mean: &sm,
            invstd: &si,
        },
        BatchNormGrads {
            dx: &mut dx,
            dgamma: &mut dg,
            dbeta: &mut db,
        },
    )
    .unwrap();
    let (mut fdx, mut fdg, mut fdb) = (vec![0.0; numel], vec![0.0; c], vec![0.0; c]);
    be.batch_norm_frozen_backward(
        BatchNormBackward {
            xs,
            x: &x,
            dy: &w,
            y_relu: None,
            gamma: &gamma,
        },
        MovingStats {
            mean: &sm,
            var: &var,
            eps: EPS,
        },
        BatchNormGrads {
            dx: &mut fdx,
            dgamma: &mut fdg,
            dbeta: &mut fdb,
        },
    )
    .unwrap();
    for ch in 0..c {
        assert!((dg[ch] - fdg[ch]).abs() <= 1e-4 * dg[ch].abs().max(1.0));
        assert!((db[ch] - fdb[ch]).abs() <= 1e-5 * db[ch].abs().max(1.0));
    }
    // dx = w * gamma * invstd exactly.
    let hw = xs.h * xs.w;
    for (j, d) in fdx.iter().enumerate() {
        let ch = (j / hw) % c;
        let want = w[j] as f64 * gamma[ch] as f64 / (var[ch] as f64 + EPS as f64).sqrt();
        assert!((*d as f64 - want).abs() <= 1e-6 * want.abs().max(1.0));
    }
}

#[test]
fn batch_norm_frozen_errors_name_the_problem() {
    let be = backend();
    let xs = Shape4::new(1, 2, 1, 2);
    let x = vec![1.0f32; 4];
    let ones = vec![1.0f32; 2];
    let mut y = vec![0.0; 4];
    let short = vec![1.0f32; 1];
    let err = be
        .batch_norm_frozen(
            BatchNormForward {
                xs,
                gamma: &ones,
                beta: &ones,
                act: Activation::None,
            },
            &x,
            MovingStats {
                mean: &short,
                var: &ones,
                eps: EPS,
            },
            &mut y,
        )
        .unwrap_err();
    assert!(err.to_string().contains("moving_mean"), "{err}");
    let err = be
        .batch_norm_frozen(
            BatchNormForward {
                xs,
                gamma: &ones,
                beta: &ones,
                act: Activation::Sigmoid,
            },
            &x,
            MovingStats {
                mean: &ones,
                var: &ones,
                eps: EPS,
            },
            &mut y,
        )
        .unwrap_err();
    assert!(err.to_string().contains("Relu"), "{err}");
    let bad_var = vec![1.0f32, -1.0];
    let err = be
        .batch_norm_frozen(
            BatchNormForward {
                xs,
                gamma: &ones,
                beta: &ones,
                act: Activation::None,
            },
            &x,
            MovingStats {
                mean: &ones,
                var: &bad_var,
                eps: EPS,
            },
            &mut y,
        )
        .unwrap_err();
    assert!(err.to_string().contains("channel 1"), "{err}");
    let (mut dx, mut dg, mut db) = (vec![0.0; 4], vec![0.0; 1], vec![0.0; 2]);
    let err = be
        .batch_norm_frozen_backward(
            BatchNormBackward {
                xs,
                x: &x,
                dy: &x,
                y_relu: None,
                gamma: &ones,
            },
            MovingStats {
                mean: &ones,
                var: &ones,
                eps: EPS,
            },
            BatchNormGrads {
                dx: &mut dx,
                dgamma: &mut dg,
                dbeta: &mut db,
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("dgamma"), "{err}");
}

// ---------------------------------------------------------------- element-wise
