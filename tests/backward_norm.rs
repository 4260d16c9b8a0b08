//! Training ops of the CPU backend (BatchNorm train/backward, ReLU, sigmoid, the SE gate +
//! residual + ReLU backward, softmax cross entropy, Momentum) against central finite differences
//! of their own forward ops and against hand-computed formulas; MindCV's LR schedules at sampled
//! steps.
//!
//! Finite differences: the forward ops run in f32; the scalar `L = Σ w*y` (random `w`, which is
//! also the `dy` fed to the backward) is accumulated in f64, the step uses the actual f32
//! perturbed values, and the check is the relative L2 error of the whole gradient tensor,
//! `|analytic - fd| / |fd| <= 1e-3`. Inputs of ReLU-masked ops are kept away from the kink.
mod common;

use std::f64::consts::PI;

use senet::backend::cpu::CpuBackend;
use senet::backend::Conv2dParams;
use senet::backend::{Activation, Backend, Shape4};
use senet::config::{Recipe, Scheduler, WeightDecayFilter};
use senet::model::init::{formula_input, formula_param};
use senet::model::params::param_specs;
use senet::model::Arch;
use senet::train::metrics;
use senet::train::{decays, lr_schedule};

/// splitmix64-based generator of reproducible test values.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f32 {
        let u = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        (lo + (hi - lo) * u) as f32
    }
    fn vec(&mut self, len: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
}

fn backend() -> CpuBackend {
    CpuBackend::new(2).unwrap()
}

fn dot(w: &[f32], y: &[f32]) -> f64 {
    w.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Central difference of `f` with respect to every element of `v` (step `h`, using the actual
/// f32 values of `v ± h`).
fn fd(v: &mut [f32], h: f32, mut f: impl FnMut(&[f32]) -> f64) -> Vec<f64> {
    (0..v.len())
        .map(|i| {
            let v0 = v[i];
            let (vp, vm) = (v0 + h, v0 - h);
            v[i] = vp;
            let lp = f(v);
            v[i] = vm;
            let lm = f(v);
            v[i] = v0;
            (lp - lm) / (vp as f64 - vm as f64)
        })
        .collect()
}

fn rel_err(analytic: &[f32], numeric: &[f64]) -> f64 {
    assert_eq!(analytic.len(), numeric.len());
    let diff: f64 = analytic
        .iter()
        .zip(numeric)
        .map(|(&a, &b)| (a as f64 - b).powi(2))
        .sum();
    let norm: f64 = numeric.iter().map(|b| b * b).sum();
    assert!(norm > 1e-12, "finite-difference gradient is zero");
    (diff / norm).sqrt()
}

fn assert_grad(what: &str, analytic: &[f32], numeric: &[f64]) {
    let e = rel_err(analytic, numeric);
    assert!(
        e <= 1e-3,
        "{what}: relative error {e:.3e}\nanalytic {analytic:?}\nnumeric {numeric:?}"
    );
}

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
        &x.to_vec(),
        k.xs,
        &gamma.to_vec(),
        &beta.to_vec(),
        EPS,
        0.9,
        &mut mm,
        &mut mv,
        &mut sm,
        &mut si,
        act,
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
            &k.x, k.xs, &k.gamma, &k.beta, EPS, 0.9, &mut mm, &mut mv, &mut sm, &mut si, act,
            &mut y,
        )
        .unwrap();
        let (mut dx, mut dg, mut db) = (vec![0.0; numel + 3], vec![0.0; c], vec![0.0; c]);
        be.batch_norm_backward(
            &k.x,
            k.xs,
            &k.w,
            relu.then_some(&y),
            &k.gamma,
            &sm,
            &si,
            &mut dx,
            &mut dg,
            &mut db,
        )
        .unwrap();
        let h = 3e-3;
        let mut x = k.x.clone();
        let ndx = fd(&mut x, h, |x| bn_loss(&be, &k, x, &k.gamma, &k.beta, act));
        let mut g = k.gamma.clone();
        let ndg = fd(&mut g, h, |g| bn_loss(&be, &k, &k.x, g, &k.beta, act));
        let mut b = k.beta.clone();
        let ndb = fd(&mut b, h, |b| bn_loss(&be, &k, &k.x, &k.gamma, b, act));
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
        &x,
        xs,
        &gamma,
        &beta,
        EPS,
        0.9,
        &mut mm,
        &mut mv,
        &mut sm,
        &mut si,
        Activation::None,
        &mut y,
    )
    .unwrap();
    let (mut dx, mut dg, mut db) = (vec![9.0; 6], vec![0.0; 3], vec![0.0; 3]);
    be.batch_norm_backward(
        &x, xs, &w, None, &gamma, &sm, &si, &mut dx, &mut dg, &mut db,
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
        &x,
        xs,
        &gamma,
        &beta,
        EPS,
        0.9,
        &mut mm,
        &mut mv,
        &mut sm,
        &mut si,
        Activation::None,
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
        &x,
        xs,
        &gamma,
        &beta,
        EPS,
        0.9,
        &mut mm2,
        &mut mv2,
        &mut sm,
        &mut si,
        Activation::Relu,
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
            &x,
            one,
            &gamma,
            &beta,
            EPS,
            0.9,
            &mut vec![0.0; 2],
            &mut vec![0.0; 2],
            &mut vec![0.0; 2],
            &mut vec![0.0; 2],
            Activation::None,
            &mut vec![0.0; 2],
        )
        .unwrap_err();
    assert!(err.to_string().contains("per channel"), "{err}");
}

// ---------------------------------------------------------------- element-wise

/// `act(z)` through the backend's forward op (a dense layer with identity weights).
fn activation_forward(be: &CpuBackend, z: &[f32], act: Activation) -> Vec<f32> {
    let k = z.len();
    let mut w = vec![0.0f32; k * k];
    for i in 0..k {
        w[i * k + i] = 1.0;
    }
    let mut y = vec![0.0; k];
    be.linear(&z.to_vec(), 1, &w, k, k, &vec![0.0; k], act, &mut y)
        .unwrap();
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
        let mut zz = z.clone();
        let num = fd(&mut zz, 1e-2, |z| {
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
        let mut zz = z.clone();
        let num = fd(&mut zz, 1e-2, |z| {
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
        be.se_scale_add_relu_backward(&x, xs, &gate, &out, &wv, &mut dx, &mut dg, &mut ds)
            .unwrap();
        let h = 1e-3;
        let (mut xx, mut gg, mut ss) = (x.clone(), gate.clone(), sc.clone());
        let ndx = fd(&mut xx, h, |v| dot(&wv, &forward(v, &gate, &sc)));
        let ndg = fd(&mut gg, h, |v| dot(&wv, &forward(&x, v, &sc)));
        let nds = fd(&mut ss, h, |v| dot(&wv, &forward(&x, &gate, v)));
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
                .softmax_cross_entropy(&logits, n, classes, &labels, eps, 1.0, &mut d)
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
            let mut z = logits.clone();
            let mut scratch = vec![0.0; n * classes];
            let num = fd(&mut z, 1e-3, |z| {
                be.softmax_cross_entropy(&z.to_vec(), n, classes, &labels, eps, 1.0, &mut scratch)
                    .unwrap()
            });
            assert_grad(&format!("ce n={n} C={classes} eps={eps}"), &d, &num);
            // The loss scale's sens multiplies the gradient.
            let mut d2 = vec![0.0; n * classes];
            be.softmax_cross_entropy(&logits, n, classes, &labels, eps, 1024.0, &mut d2)
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
        .softmax_cross_entropy(&vec![0.5; 4], 1, 4, &[2], 0.1, 1.0, &mut d)
        .unwrap();
    assert!((l - 4f64.ln()).abs() < 1e-12);
    // softmax 0.25; target 0.9 + 0.025 on the label, 0.025 elsewhere.
    let want = [0.225f32, 0.225, -0.675, 0.225];
    for (a, b) in d.iter().zip(want) {
        assert!((a - b).abs() < 1e-7, "{d:?}");
    }
    let err = be
        .softmax_cross_entropy(&vec![0.0; 4], 1, 4, &[4], 0.1, 1.0, &mut d)
        .unwrap_err();
    assert!(err.to_string().contains("label 4"), "{err}");
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
                &mut param,
                &g.to_vec(),
                &mut moment,
                3,
                lr,
                mom,
                wd,
                ls,
                nesterov,
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
            &mut param,
            &g.to_vec(),
            &mut moment,
            3,
            0.1,
            0.9,
            1e-4,
            1024.0,
            false,
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
        &mut param,
        &vec![2.0],
        &mut moment,
        1,
        0.5,
        0.9,
        0.0,
        1.0,
        false,
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
        be.momentum_update(&mut p, &grad, &mut moment, n, 0.1, 0.9, wd, 1.0, false)
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
    let ys = be
        .conv2d(&x, xs, &w, [64, 3, 7, 7], None, p, Activation::None, &mut y)
        .unwrap();
    let gamma = formula_param(spec("layer0.1.gamma")).data;
    let beta = formula_param(spec("layer0.1.beta")).data;
    let mut mm = formula_param(spec("layer0.1.moving_mean")).data;
    let mut mv = formula_param(spec("layer0.1.moving_variance")).data;
    let (mut sm, mut si, mut out) = (vec![0.0; 64], vec![0.0; 64], vec![0.0; ys.numel()]);
    be.batch_norm_train(
        &y,
        ys,
        &gamma,
        &beta,
        EPS,
        0.9,
        &mut mm,
        &mut mv,
        &mut sm,
        &mut si,
        Activation::Relu,
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
            &x,
            xs,
            &gamma,
            &beta,
            EPS,
            0.9,
            &mut mm,
            &mut mv,
            &mut sm,
            &mut si,
            Activation::Relu,
            &mut y,
        )
        .unwrap();
        let (mut dx, mut dg, mut db) = (vec![0.0; numel], vec![0.0; c], vec![0.0; c]);
        be.batch_norm_backward(
            &x,
            xs,
            &dy,
            Some(&y),
            &gamma,
            &sm,
            &si,
            &mut dx,
            &mut dg,
            &mut db,
        )
        .unwrap();
        let (mut sx, mut sg, mut ss) = (vec![0.0; numel], vec![0.0; xs.n * c], vec![0.0; numel]);
        be.se_scale_add_relu_backward(&x, xs, &gate, &y, &dy, &mut sx, &mut sg, &mut ss)
            .unwrap();
        (mm, mv, y, dx, dg, db, sg)
    };
    assert_eq!(run(1), run(2));
}
