//! Training ops of the CPU backend (BatchNorm train/backward, ReLU, sigmoid, the SE gate +
//! residual + ReLU backward, softmax cross entropy) against central finite differences of their
//! own forward ops and against hand-computed formulas. (The optimizer and the LR schedules are in
//! `tests/optimizer.rs`.)
//!
//! Finite differences: the forward ops run in f32; the scalar `L = Σ w*y` (random `w`, which is
//! also the `dy` fed to the backward) is accumulated in f64, the step uses the actual f32
//! perturbed values, and the check is the relative L2 error of the whole gradient tensor,
//! `|analytic - fd| / |fd| <= 1e-3`. Inputs of ReLU-masked ops are kept away from the kink.
mod common;

use common::fd::{assert_grad, backend, dot, Rng};

use senet::backend::cpu::CpuBackend;
use senet::backend::{
    Activation, Backend, BatchNormBackward, BatchNormForward, BatchNormGrads, BatchStats,
    CrossEntropyParams, LinearForward, LinearShape, SavedStats, SeGrads, Shape4,
};
use senet::model::metrics;

// ---------------------------------------------------------------- BatchNorm

const BN_SHAPES: [(usize, usize, usize, usize); 6] = [
    (1, 3, 1, 3),
    (2, 4, 3, 3),
    (3, 5, 7, 7),
    (2, 3, 5, 1),
    (1, 5, 7, 6),
    (3, 4, 1, 1),
];
const EPS: f32 = 1e-5;

/// Host BatchNorm pre-activation `gamma*(x-mean)/sqrt(var+eps) + beta` in f64.
fn bn_pre_host(x: &[f32], xs: Shape4, gamma: &[f32], beta: &[f32]) -> Vec<f64> {
    let hw = xs.h * xs.w;
    let m = (xs.n * hw) as f64;
    let mut out = vec![0.0; xs.numel()];
    for c in 0..xs.c {
        let idx = |n: usize, i: usize| (n * xs.c + c) * hw + i;
        let all = || (0..xs.n).flat_map(move |n| (0..hw).map(move |i| idx(n, i)));
        let mean = all().map(|j| x[j] as f64).sum::<f64>() / m;
        let var = all().map(|j| (x[j] as f64 - mean).powi(2)).sum::<f64>() / m;
        for j in all() {
            out[j] =
                gamma[c] as f64 * (x[j] as f64 - mean) / (var + EPS as f64).sqrt() + beta[c] as f64;
        }
    }
    out
}

/// Moves inputs whose BN pre-activation is within `margin` of 0 further from it, until none is.
fn keep_off_kink(x: &mut [f32], xs: Shape4, gamma: &[f32], beta: &[f32], margin: f64) {
    for _ in 0..100 {
        let pre = bn_pre_host(x, xs, gamma, beta);
        let mut moved = false;
        for (j, p) in pre.iter().enumerate() {
            if p.abs() < margin {
                let c = (j / (xs.h * xs.w)) % xs.c;
                // Away from the kink: pre grows with x when gamma > 0.
                let away = if *p >= 0.0 { 0.3f32 } else { -0.3 };
                x[j] += away * gamma[c].signum();
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
    panic!("could not move BN inputs off the ReLU kink");
}

struct BnCase {
    xs: Shape4,
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    w: Vec<f32>,
}

fn bn_case(rng: &mut Rng, (n, c, h, w): (usize, usize, usize, usize), relu: bool) -> BnCase {
    let xs = Shape4::new(n, c, h, w);
    // Channels with different offsets and spreads.
    let mut x = vec![0.0; xs.numel()];
    let offs = rng.vec(c, -2.0, 2.0);
    let spread = rng.vec(c, 0.5, 2.0);
    for (j, v) in x.iter_mut().enumerate() {
        let ch = (j / (h * w)) % c;
        *v = offs[ch] + spread[ch] * rng.uniform(-1.5, 1.5);
    }
    let gamma = rng.vec(c, 0.5, 1.5);
    let beta = rng.vec(c, -0.5, 0.5);
    if relu {
        keep_off_kink(&mut x, xs, &gamma, &beta, 0.05);
    }
    let wv = rng.vec(xs.numel(), -1.0, 1.0);
    BnCase {
        xs,
        x,
        gamma,
        beta,
        w: wv,
    }
}

/// `L = Σ w * batch_norm_train(x)` (fresh moving stats each call).
fn bn_loss(
    be: &CpuBackend,
    k: &BnCase,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    act: Activation,
) -> f64 {
    let c = k.xs.c;
    let (mut mm, mut mv) = (vec![0.0; c], vec![1.0; c]);
    let (mut sm, mut si) = (vec![0.0; c], vec![0.0; c]);
    let mut y = vec![0.0; k.xs.numel()];
    be.batch_norm_train(
        BatchNormForward {
            xs: k.xs,
            gamma: &gamma.to_vec(),
            beta: &beta.to_vec(),
            act,
        },
        &x.to_vec(),
        BatchStats {
            eps: EPS,
            momentum: 0.9,
            moving_mean: &mut mm,
            moving_var: &mut mv,
            saved_mean: &mut sm,
            saved_invstd: &mut si,
        },
        &mut y,
    )
    .unwrap();
    dot(&k.w, &y)
}

fn check_bn_fd(relu: bool) {
    let be = backend();
    let mut rng = Rng(if relu { 11 } else { 7 });
    let act = if relu {
        Activation::Relu
    } else {
        Activation::None
    };
    for shape in BN_SHAPES {
        let k = bn_case(&mut rng, shape, relu);
        let (c, numel) = (k.xs.c, k.xs.numel());
        // Forward (kept for backward), then backward with dy = w.
        let (mut mm, mut mv) = (vec![0.0; c], vec![1.0; c]);
        let (mut sm, mut si) = (vec![0.0; c], vec![0.0; c]);
        // Buffers longer than the shape needs, as the engine allocates them.
        let mut y = vec![0.0; numel + 5];
        be.batch_norm_train(
            BatchNormForward {
                xs: k.xs,
                gamma: &k.gamma,
                beta: &k.beta,
                act,
            },
            &k.x,
            BatchStats {
                eps: EPS,
                momentum: 0.9,
                moving_mean: &mut mm,
                moving_var: &mut mv,
                saved_mean: &mut sm,
                saved_invstd: &mut si,
            },
            &mut y,
        )
        .unwrap();
        let (mut dx, mut dg, mut db) = (vec![0.0; numel + 3], vec![0.0; c], vec![0.0; c]);
        be.batch_norm_backward(
            BatchNormBackward {
                xs: k.xs,
                x: &k.x,
                dy: &k.w,
                y_relu: relu.then_some(&y),
                gamma: &k.gamma,
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
        let h = 3e-3;
        let x = k.x.clone();
        let ndx = common::fd::central_diff(&x, h, |x| bn_loss(&be, &k, x, &k.gamma, &k.beta, act));
        let g = k.gamma.clone();
        let ndg = common::fd::central_diff(&g, h, |g| bn_loss(&be, &k, &k.x, g, &k.beta, act));
        let b = k.beta.clone();
        let ndb = common::fd::central_diff(&b, h, |b| bn_loss(&be, &k, &k.x, &k.gamma, b, act));
        let tag = format!("{:?} relu={relu}", k.xs);
        assert_grad(&format!("bn dx {tag}"), &dx[..numel], &ndx);
        assert_grad(&format!("bn dgamma {tag}"), &dg, &ndg);
        assert_grad(&format!("bn dbeta {tag}"), &db, &ndb);
    }
}

#[test]
fn batch_norm_backward_matches_finite_differences() {
    check_bn_fd(false);
}

/// Two values per channel normalise to exactly -1 and +1 whatever they are: `dx` is 0 (up to
/// the `eps` term), `dgamma`/`dbeta` are not.
#[test]
fn batch_norm_two_values_per_channel_has_no_input_gradient() {
    let be = backend();
    let xs = Shape4::new(2, 3, 1, 1);
    let x = vec![0.3f32, -1.0, 2.0, 1.3, 4.0, -2.0];
    let (gamma, beta) = (vec![1.5f32, 0.7, 1.1], vec![0.1f32, -0.2, 0.3]);
    let w = vec![0.5f32, -0.25, 1.0, -0.75, 0.2, 0.6];
    let (mut mm, mut mv, mut sm, mut si) = (vec![0.0; 3], vec![1.0; 3], vec![0.0; 3], vec![0.0; 3]);
    let mut y = vec![0.0; 6];
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
        &mut y,
    )
    .unwrap();
    let (mut dx, mut dg, mut db) = (vec![9.0; 6], vec![0.0; 3], vec![0.0; 3]);
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
    assert!(dx.iter().all(|d| d.abs() < 1e-4), "{dx:?}");
    for c in 0..3 {
        // x[0,c] < x[1,c] except channel 1: xhat = -1/+1 (times sqrt(var/(var+eps))).
        let s = if x[c] < x[3 + c] { 1.0 } else { -1.0 };
        assert!((dg[c] - s * (w[3 + c] - w[c])).abs() < 1e-4, "{dg:?}");
        assert!((db[c] - (w[c] + w[3 + c])).abs() < 1e-6, "{db:?}");
    }
}

#[test]
fn batch_norm_relu_backward_matches_finite_differences() {
    check_bn_fd(true);
}

#[test]
fn batch_norm_train_values_and_moving_stats() {
    let be = backend();
    let mut rng = Rng(3);
    let xs = Shape4::new(3, 4, 5, 3);
    let (c, hw, numel) = (xs.c, 15, xs.numel());
    let x = rng.vec(numel, -3.0, 5.0);
    let gamma = rng.vec(c, 0.5, 1.5);
    let beta = rng.vec(c, -0.5, 0.5);
    let mm0 = rng.vec(c, -0.1, 0.1);
    let mv0 = rng.vec(c, 0.5, 1.5);
    let (mut mm, mut mv) = (mm0.clone(), mv0.clone());
    let (mut sm, mut si, mut y) = (vec![0.0; c], vec![0.0; c], vec![0.0; numel]);
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
        &mut y,
    )
    .unwrap();
    let m = (xs.n * hw) as f64;
    let mom = 0.9f32 as f64;
    let close = |a: f32, b: f64, what: &str| {
        assert!(
            (a as f64 - b).abs() <= 2e-6 * b.abs().max(1.0),
            "{what}: {a} vs {b}"
        )
    };
    for ch in 0..c {
        let vals: Vec<f64> = (0..xs.n)
            .flat_map(|n| (0..hw).map(move |i| (n * c + ch) * hw + i))
            .map(|j| x[j] as f64)
            .collect();
        let mean = vals.iter().sum::<f64>() / m;
        let biased = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m;
        let unbiased = biased * m / (m - 1.0);
        let invstd = 1.0 / (biased + EPS as f64).sqrt();
        close(sm[ch], mean, "saved mean");
        close(si[ch], invstd, "saved invstd");
        close(
            mm[ch],
            mom * mm0[ch] as f64 + (1.0 - mom) * mean,
            "moving mean",
        );
        close(
            mv[ch],
            mom * mv0[ch] as f64 + (1.0 - mom) * unbiased,
            "moving variance",
        );
        // Not the biased one: the two differ by far more than the tolerance here.
        assert!((mv[ch] as f64 - (mom * mv0[ch] as f64 + (1.0 - mom) * biased)).abs() > 1e-4);
        for n in 0..xs.n {
            for i in 0..hw {
                let j = (n * c + ch) * hw + i;
                let want = gamma[ch] as f64 * (x[j] as f64 - mean) * invstd + beta[ch] as f64;
                close(y[j], want, "y");
            }
        }
    }
    // Fused ReLU = ReLU of the plain output.
    let (mut mm2, mut mv2) = (mm0.clone(), mv0.clone());
    let mut y2 = vec![0.0; numel];
    be.batch_norm_train(
        BatchNormForward {
            xs,
            gamma: &gamma,
            beta: &beta,
            act: Activation::Relu,
        },
        &x,
        BatchStats {
            eps: EPS,
            momentum: 0.9,
            moving_mean: &mut mm2,
            moving_var: &mut mv2,
            saved_mean: &mut sm,
            saved_invstd: &mut si,
        },
        &mut y2,
    )
    .unwrap();
    for (a, b) in y2.iter().zip(&y) {
        assert_eq!(*a, b.max(0.0));
    }
    assert_eq!((mm2, mv2), (mm, mv));
    // One value per channel cannot be trained on.
    let one = Shape4::new(1, 2, 1, 1);
    let err = be
        .batch_norm_train(
            BatchNormForward {
                xs: one,
                gamma: &gamma,
                beta: &beta,
                act: Activation::None,
            },
            &x,
            BatchStats {
                eps: EPS,
                momentum: 0.9,
                moving_mean: &mut vec![0.0; 2],
                moving_var: &mut vec![0.0; 2],
                saved_mean: &mut vec![0.0; 2],
                saved_invstd: &mut vec![0.0; 2],
            },
            &mut vec![0.0; 2],
        )
        .unwrap_err();
    assert!(err.to_string().contains("per channel"), "{err}");
}

/// `act(z)` through the backend's forward op (a dense layer with identity weights).
fn activation_forward(be: &CpuBackend, z: &[f32], act: Activation) -> Vec<f32> {
    let k = z.len();
    let mut w = vec![0.0f32; k * k];
    for i in 0..k {
        w[i * k + i] = 1.0;
    }
    let mut y = vec![0.0; k];
    let b = vec![0.0; k];
    let f = LinearForward {
        shape: LinearShape {
            n: 1,
            in_features: k,
            out_features: k,
        },
        w: &w,
        b: &b,
        act,
    };
    be.linear(f, &z.to_vec(), &mut y).unwrap();
    y
}

#[test]
fn relu_backward_matches_finite_differences() {
    let be = backend();
    let mut rng = Rng(21);
    for len in [1usize, 7, 45, 147] {
        // |z| >= 0.05: the perturbation never crosses the kink.
        let mut z: Vec<f32> = (0..len)
            .map(|_| {
                let v = rng.uniform(0.05, 2.0);
                if rng.next_u64() & 1 == 0 {
                    v
                } else {
                    -v
                }
            })
            .collect();
        z[0] = 0.7; // at least one active unit
        let w = rng.vec(len, -1.0, 1.0);
        let y = activation_forward(&be, &z, Activation::Relu);
        let mut dz = w.clone();
        dz.push(123.0); // beyond len: untouched
        be.relu_backward(&y, &mut dz, len).unwrap();
        assert_eq!(dz[len], 123.0);
        let zz = z.clone();
        let num = common::fd::central_diff(&zz, 1e-2, |z| {
            dot(&w, &activation_forward(&be, z, Activation::Relu))
        });
        assert_grad(&format!("relu len {len}"), &dz[..len], &num);
    }
}

#[test]
fn sigmoid_backward_matches_finite_differences() {
    let be = backend();
    let mut rng = Rng(22);
    for len in [1usize, 5, 36, 105] {
        let z = rng.vec(len, -4.0, 4.0);
        let w = rng.vec(len, -1.0, 1.0);
        let s = activation_forward(&be, &z, Activation::Sigmoid);
        let mut dz = w.clone();
        be.sigmoid_backward(&s, &mut dz, len).unwrap();
        let zz = z.clone();
        let num = common::fd::central_diff(&zz, 1e-2, |z| {
            dot(&w, &activation_forward(&be, z, Activation::Sigmoid))
        });
        assert_grad(&format!("sigmoid len {len}"), &dz, &num);
    }
}

#[test]
fn se_scale_add_relu_backward_matches_finite_differences() {
    let be = backend();
    let mut rng = Rng(23);
    for (n, c, h, w) in [
        (1, 3, 1, 1),
        (2, 4, 3, 2),
        (3, 5, 7, 7),
        (1, 5, 6, 7),
        (2, 3, 1, 5),
    ] {
        let xs = Shape4::new(n, c, h, w);
        let (numel, hw) = (xs.numel(), h * w);
        let x = rng.vec(numel, -2.0, 2.0);
        let gate = rng.vec(n * c, 0.05, 0.95);
        let mut sc = rng.vec(numel, -1.5, 1.5);
        // Keep x*gate + shortcut away from the ReLU kink.
        for j in 0..numel {
            let pre = x[j] * gate[j / hw] + sc[j];
            if pre.abs() < 0.05 {
                sc[j] += if pre >= 0.0 { 0.2 } else { -0.2 };
            }
        }
        let wv = rng.vec(numel, -1.0, 1.0);
        let forward = |x: &[f32], gate: &[f32], sc: &[f32]| -> Vec<f32> {
            let mut out = x.to_vec();
            be.se_scale_add_relu(&mut out, xs, &gate.to_vec(), &sc.to_vec())
                .unwrap();
            out
        };
        let out = forward(&x, &gate, &sc);
        let (mut dx, mut dg, mut ds) = (vec![0.0; numel], vec![0.0; n * c], vec![0.0; numel]);
        be.se_scale_add_relu_backward(
            &x,
            xs,
            &gate,
            &out,
            &wv,
            SeGrads {
                dx: &mut dx,
                dgate: &mut dg,
                dshortcut: &mut ds,
            },
        )
        .unwrap();
        let h = 1e-3;
        let (xx, gg, ss) = (x.clone(), gate.clone(), sc.clone());
        let ndx = common::fd::central_diff(&xx, h, |v| dot(&wv, &forward(v, &gate, &sc)));
        let ndg = common::fd::central_diff(&gg, h, |v| dot(&wv, &forward(&x, v, &sc)));
        let nds = common::fd::central_diff(&ss, h, |v| dot(&wv, &forward(&x, &gate, v)));
        assert_grad(&format!("se dx {xs:?}"), &dx, &ndx);
        assert_grad(&format!("se dgate {xs:?}"), &dg, &ndg);
        assert_grad(&format!("se dshortcut {xs:?}"), &ds, &nds);
    }
}

// ---------------------------------------------------------------- loss

#[test]
fn softmax_cross_entropy_gradient_and_value() {
    let be = backend();
    let mut rng = Rng(31);
    for (n, classes) in [(1usize, 3usize), (2, 5), (3, 10), (3, 4)] {
        let logits = rng.vec(n * classes, -3.0, 3.0);
        let labels: Vec<usize> = (0..n).map(|i| (i * 7 + 1) % classes).collect();
        for eps in [0.0f32, 0.1] {
            let mut d = vec![0.0; n * classes];
            let loss = be
                .softmax_cross_entropy(
                    CrossEntropyParams {
                        n,
                        classes,
                        label_smoothing: eps,
                        scale: 1.0,
                    },
                    &logits,
                    &labels,
                    &mut d,
                )
                .unwrap();
            // = the evaluation metric (f64 reference), averaged over the rows.
            let want: f64 = logits
                .chunks(classes)
                .zip(&labels)
                .map(|(row, &l)| metrics::cross_entropy(row, l, eps as f64))
                .sum::<f64>()
                / n as f64;
            assert!((loss - want).abs() < 1e-12, "loss {loss} vs {want}");
            // Gradient of the returned loss.
            let z = logits.clone();
            let mut scratch = vec![0.0; n * classes];
            let num = common::fd::central_diff(&z, 1e-3, |z| {
                be.softmax_cross_entropy(
                    CrossEntropyParams {
                        n,
                        classes,
                        label_smoothing: eps,
                        scale: 1.0,
                    },
                    &z.to_vec(),
                    &labels,
                    &mut scratch,
                )
                .unwrap()
            });
            assert_grad(&format!("ce n={n} C={classes} eps={eps}"), &d, &num);
            // The loss scale's sens multiplies the gradient.
            let mut d2 = vec![0.0; n * classes];
            be.softmax_cross_entropy(
                CrossEntropyParams {
                    n,
                    classes,
                    label_smoothing: eps,
                    scale: 1024.0,
                },
                &logits,
                &labels,
                &mut d2,
            )
            .unwrap();
            for (a, b) in d2.iter().zip(&d) {
                assert!(
                    (*a as f64 - 1024.0 * *b as f64).abs()
                        <= 1e-6 * (1024.0 * b.abs() as f64).max(1e-3)
                );
            }
        }
    }
    // Uniform logits over 4 classes: loss ln 4 whatever the smoothing.
    let mut d = vec![0.0; 4];
    let l = be
        .softmax_cross_entropy(
            CrossEntropyParams {
                n: 1,
                classes: 4,
                label_smoothing: 0.1,
                scale: 1.0,
            },
            &vec![0.5; 4],
            &[2],
            &mut d,
        )
        .unwrap();
    assert!((l - 4f64.ln()).abs() < 1e-12);
    // softmax 0.25; target 0.9 + 0.025 on the label, 0.025 elsewhere.
    let want = [0.225f32, 0.225, -0.675, 0.225];
    for (a, b) in d.iter().zip(want) {
        assert!((a - b).abs() < 1e-7, "{d:?}");
    }
    let err = be
        .softmax_cross_entropy(
            CrossEntropyParams {
                n: 1,
                classes: 4,
                label_smoothing: 0.1,
                scale: 1.0,
            },
            &vec![0.0; 4],
            &[4],
            &mut d,
        )
        .unwrap_err();
    assert!(err.to_string().contains("label 4"), "{err}");
}

/// Reductions have a fixed order: one thread and two threads give identical bits.
#[test]
fn batch_norm_and_se_backward_are_deterministic_across_thread_counts() {
    let mut rng = Rng(41);
    let xs = Shape4::new(3, 5, 9, 7);
    let (numel, c) = (xs.numel(), xs.c);
    let x = rng.vec(numel, -2.0, 3.0);
    let dy = rng.vec(numel, -1.0, 1.0);
    let gate = rng.vec(xs.n * c, 0.1, 0.9);
    let (gamma, beta) = (rng.vec(c, 0.5, 1.5), rng.vec(c, -0.5, 0.5));
    let run = |threads: usize| {
        let be = CpuBackend::new(threads).unwrap();
        let (mut mm, mut mv, mut sm, mut si) =
            (vec![0.0; c], vec![1.0; c], vec![0.0; c], vec![0.0; c]);
        let mut y = vec![0.0; numel];
        be.batch_norm_train(
            BatchNormForward {
                xs,
                gamma: &gamma,
                beta: &beta,
                act: Activation::Relu,
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
            &mut y,
        )
        .unwrap();
        let (mut dx, mut dg, mut db) = (vec![0.0; numel], vec![0.0; c], vec![0.0; c]);
        be.batch_norm_backward(
            BatchNormBackward {
                xs,
                x: &x,
                dy: &dy,
                y_relu: Some(&y),
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
        let (mut sx, mut sg, mut ss) = (vec![0.0; numel], vec![0.0; xs.n * c], vec![0.0; numel]);
        be.se_scale_add_relu_backward(
            &x,
            xs,
            &gate,
            &y,
            &dy,
            SeGrads {
                dx: &mut sx,
                dgate: &mut sg,
                dshortcut: &mut ss,
            },
        )
        .unwrap();
        (mm, mv, y, dx, dg, db, sg)
    };
    assert_eq!(run(1), run(2));
}
