//! Convolution backward ops of the CPU backend (data and filter gradients, accumulation,
//! determinism, bad shapes, empty batches), checked against central finite differences of the
//! forward op, naive nested-loop references in f64 and the f32 summation bound.
//!
//! Every gradient check uses the scalar loss `L = Σ r ⊙ op(x)` with `r` random, so that
//! `∂L/∂op(x) = r` is the `dy` fed to the backward op. The forward ops run in f32; the loss and
//! the differences are taken in f64 over the actual f32 step. The dense, pooling and
//! gradient-accumulation ops are in `backward_layers.rs`.
mod common;

use common::fd::{assert_grad, assert_tail, backends, central_diff_h, dot, garbage, padded, Rng};
use senet::backend::cpu::CpuBackend;
use senet::backend::{
    Activation, Backend, Conv2dForward, Conv2dParams, Conv2dShape, LinearGrads, LinearShape, Shape4,
};

// ---------------------------------------------------------------- convolution

type ConvCase = Conv2dShape;

/// A case: batch `n`, `cin` input channels of `h`x`w`, `cout` outputs, a `k`x`k` kernel, and
/// (stride, padding, groups).
fn conv_case(
    n: usize,
    cin: usize,
    (h, w): (usize, usize),
    cout: usize,
    k: usize,
    (stride, padding, groups): (usize, usize, usize),
) -> ConvCase {
    ConvCase {
        xs: Shape4::new(n, cin, h, w),
        w_shape: [cout, cin / groups, k, k],
        p: Conv2dParams {
            stride,
            padding,
            groups,
        },
    }
}

/// Every geometry of SE-ResNet/SE-ResNeXt, on small odd-sized inputs: stride 1 and 2, padding
/// 0/1/3, kernels 1x1/3x3/7x7, groups 1/2/4, batch 1 and 3.
fn conv_cases() -> Vec<(&'static str, ConvCase)> {
    vec![
        ("stem 7x7 s2 p3", conv_case(1, 3, (11, 9), 4, 7, (2, 3, 1))),
        (
            "7x7 s2 p3 batch 3",
            conv_case(3, 2, (9, 9), 3, 7, (2, 3, 1)),
        ),
        ("3x3 s1 p1", conv_case(3, 4, (7, 5), 6, 3, (1, 1, 1))),
        ("3x3 s2 p1", conv_case(1, 4, (9, 9), 5, 3, (2, 1, 1))),
        ("3x3 s1 p0", conv_case(1, 3, (7, 5), 4, 3, (1, 0, 1))),
        (
            "3x3 s2 p0 (unused row/col)",
            conv_case(3, 2, (8, 6), 3, 3, (2, 0, 1)),
        ),
        (
            "grouped 3x3 s1 p1 g2",
            conv_case(3, 4, (7, 5), 6, 3, (1, 1, 2)),
        ),
        (
            "grouped 3x3 s2 p1 g4",
            conv_case(3, 8, (9, 9), 8, 3, (2, 1, 4)),
        ),
        (
            "grouped 3x3 s1 p1 g4 batch 1",
            conv_case(1, 8, (7, 5), 12, 3, (1, 1, 4)),
        ),
        ("1x1 s1 (direct)", conv_case(3, 6, (7, 5), 4, 1, (1, 0, 1))),
        (
            "1x1 s1 g2 (direct)",
            conv_case(1, 4, (9, 9), 6, 1, (1, 0, 2)),
        ),
        (
            "1x1 s2 (subsample)",
            conv_case(3, 4, (9, 9), 6, 1, (2, 0, 1)),
        ),
        (
            "1x1 s2 odd (subsample)",
            conv_case(1, 5, (7, 5), 3, 1, (2, 0, 1)),
        ),
        (
            "1x1 s1 p1 (im2col)",
            conv_case(1, 3, (5, 7), 2, 1, (1, 1, 1)),
        ),
    ]
}

fn out_shape(c: &ConvCase) -> Shape4 {
    let (oh, ow) = c.p.out_hw(c.xs.h, c.xs.w, c.w_shape[2], c.w_shape[3]);
    Shape4::new(c.xs.n, c.w_shape[0], oh, ow)
}

fn conv_forward(be: &CpuBackend, c: &ConvCase, x: &[f32], w: &[f32]) -> Vec<f32> {
    let ys = out_shape(c);
    let mut y = vec![0.0; ys.numel()];
    let w = w.to_vec();
    let f = Conv2dForward {
        shape: *c,
        w: &w,
        bias: None,
        act: Activation::None,
        prepared: None,
    };
    let got = be.conv2d(f, &x.to_vec(), &mut y).unwrap();
    assert_eq!(got, ys);
    y
}

/// (dx, dw) from the backend, with buffers longer than the shapes and garbage in the outputs.
fn conv_backward(
    be: &CpuBackend,
    c: &ConvCase,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let ys = out_shape(c);
    let wl: usize = c.w_shape.iter().product();
    let (xb, wb, dyb) = (padded(x), padded(w), padded(dy));
    let mut dx = garbage(c.xs.numel());
    be.conv2d_backward_data(*c, &wb, &dyb, ys, &mut dx).unwrap();
    assert_tail("conv2d_backward_data dx", &dx, c.xs.numel());
    let mut dw = garbage(wl);
    be.conv2d_backward_filter(*c, &xb, &dyb, ys, &mut dw, false)
        .unwrap();
    assert_tail("conv2d_backward_filter dw", &dw, wl);
    dx.truncate(c.xs.numel());
    dw.truncate(wl);
    (dx, dw)
}

/// Naive f64 reference of both conv gradients: every (image, output channel, output pixel,
/// input channel of the group, tap) term, scattered.
fn naive_conv_backward(c: &ConvCase, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let r = naive_with_magnitudes(c, x, w, dy);
    (r.dx, r.dw)
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let bes = backends();
    let mut rng = Rng(1);
    for (name, c) in conv_cases() {
        let ys = out_shape(&c);
        let x = rng.vec(c.xs.numel(), -1.0, 1.0);
        let w = rng.vec(c.w_shape.iter().product(), -1.0, 1.0);
        let r = rng.vec(ys.numel(), -1.0, 1.0);
        let be = &bes[1];
        let num_dx = central_diff_h(&x, |xv| dot(&r, &conv_forward(be, &c, xv, &w)));
        let num_dw = central_diff_h(&w, |wv| dot(&r, &conv_forward(be, &c, &x, wv)));
        for be in &bes {
            let (dx, dw) = conv_backward(be, &c, &x, &w, &r);
            let t = be.threads();
            assert_grad(&format!("{name} dx ({t} threads)"), &dx, &num_dx);
            assert_grad(&format!("{name} dw ({t} threads)"), &dw, &num_dw);
        }
    }
}

#[test]
fn conv2d_gradients_match_naive_reference() {
    let bes = backends();
    let mut rng = Rng(2);
    // The main case: grouped, strided, padded, batch 3, odd size (ResNeXt's stride-2 3x3).
    let mut cases = vec![conv_case(3, 8, (9, 7), 8, 3, (2, 1, 4))];
    // And every other geometry, for good measure.
    cases.extend(conv_cases().into_iter().map(|(_, c)| c));
    for c in cases {
        let ys = out_shape(&c);
        let x = rng.vec(c.xs.numel(), -1.0, 1.0);
        let w = rng.vec(c.w_shape.iter().product(), -1.0, 1.0);
        let dy = rng.vec(ys.numel(), -1.0, 1.0);
        let (ref_dx, ref_dw) = naive_conv_backward(&c, &x, &w, &dy);
        for be in &bes {
            let (dx, dw) = conv_backward(be, &c, &x, &w, &dy);
            for (what, got, want) in [("dx", &dx, &ref_dx), ("dw", &dw, &ref_dw)] {
                for (i, (&g, &r)) in got.iter().zip(want.iter()).enumerate() {
                    assert!(
                        (g as f64 - r).abs() <= 1e-4,
                        "{c:?} {what}[{i}]: {g} vs reference {r}"
                    );
                }
            }
        }
    }
}

/// Naive f64 gradients (dx, dw) of `c` and, per element, the sums of the magnitudes of their
/// terms `Σ|w·dy|` and `Σ|x·dy|` (for the rounding bound of an f32 sum of them).
struct NaiveGrads {
    dx: Vec<f64>,
    dx_mag: Vec<f64>,
    dw: Vec<f64>,
    dw_mag: Vec<f64>,
}

fn naive_with_magnitudes(c: &ConvCase, x: &[f32], w: &[f32], dy: &[f32]) -> NaiveGrads {
    let ys = out_shape(c);
    let [cout, cin_g, kh, kw] = c.w_shape;
    let cout_g = cout / c.p.groups;
    let (s, pad) = (c.p.stride as isize, c.p.padding as isize);
    let zeros = |len: usize| vec![0.0f64; len];
    let mut r = NaiveGrads {
        dx: zeros(x.len()),
        dx_mag: zeros(x.len()),
        dw: zeros(w.len()),
        dw_mag: zeros(w.len()),
    };
    let (h, wd) = (c.xs.h as isize, c.xs.w as isize);
    for n in 0..c.xs.n {
        for co in 0..cout {
            let g = co / cout_g;
            for oy in 0..ys.h {
                for ox in 0..ys.w {
                    let d = dy[((n * cout + co) * ys.h + oy) * ys.w + ox] as f64;
                    for cl in 0..cin_g {
                        let ci = g * cin_g + cl;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = oy as isize * s + ky as isize - pad;
                                let ix = ox as isize * s + kx as isize - pad;
                                if iy < 0 || ix < 0 || iy >= h || ix >= wd {
                                    continue;
                                }
                                let xj = ((n * c.xs.c + ci) * c.xs.h + iy as usize) * c.xs.w
                                    + ix as usize;
                                let wj = ((co * cin_g + cl) * kh + ky) * kw + kx;
                                let (tx, tw) = (w[wj] as f64 * d, x[xj] as f64 * d);
                                r.dx[xj] += tx;
                                r.dx_mag[xj] += tx.abs();
                                r.dw[wj] += tw;
                                r.dw_mag[wj] += tw.abs();
                            }
                        }
                    }
                }
            }
        }
    }
    r
}

/// Higham's bound `γ_K = K·u/(1 - K·u)`, `u = 2^-24`, on the relative error of an f32 sum of
/// `K` products (in any order, FMA or not) against the sum of their magnitudes.
fn gamma(k: usize) -> f64 {
    let ku = k as f64 * (f32::EPSILON as f64 / 2.0);
    ku / (1.0 - ku)
}

fn assert_within_bound(what: &str, got: &[f32], want: &[f64], mag: &[f64], terms: usize) {
    for (i, &g) in got.iter().enumerate() {
        let bound = gamma(terms) * mag[i];
        assert!(
            (g as f64 - want[i]).abs() <= bound,
            "{what}[{i}] = {g}, reference {}, bound {bound:e}",
            want[i]
        );
    }
}

/// Both conv gradients as direct sums (`set_fast_conv(false)`, `set_winograd_data_gradient(false)`:
/// stride-1 data gradients as a forward conv on the AVX-512 GEMM, or the `gemm` crate where that
/// declines; the Winograd data gradient of training: `winograd_data_gradient_within_its_tile_bound`)
/// and with the legacy data gradient (im2col GEMM + col2im), on 1 and 2 threads, against the
/// naive f64 sums, on shapes large enough for the AVX-512 paths (32+ outputs per group,
/// pointwise with more than 64 inputs), odd sizes and batch 1. Each path is an f32 sum of the element's terms in some order (`cout_g·kh·kw`
/// per dx element, `N·OH·OW` per dw element), so it is within Higham's bound of the exact sum.
#[test]
fn conv2d_gradients_within_the_f32_summation_bound() {
    let mut rng = Rng(11);
    let cases = [
        conv_case(1, 48, (9, 7), 40, 3, (1, 1, 1)),
        conv_case(3, 32, (7, 5), 64, 3, (1, 1, 1)),
        conv_case(2, 64, (5, 7), 64, 3, (1, 1, 2)),
        conv_case(1, 24, (7, 9), 36, 3, (1, 0, 1)),
        conv_case(3, 72, (7, 7), 96, 1, (1, 0, 1)),
        conv_case(1, 80, (5, 3), 40, 1, (1, 0, 1)),
        conv_case(5, 16, (9, 9), 50, 1, (2, 0, 1)),
        conv_case(2, 32, (9, 9), 48, 3, (2, 1, 1)),
        conv_case(3, 3, (11, 9), 20, 7, (2, 3, 1)),
        conv_case(1, 5, (11, 9), 6, 7, (1, 3, 1)),
    ];
    let mut bes = Vec::new();
    for threads in [1, 2] {
        for legacy in [false, true] {
            let mut be = CpuBackend::new(threads).unwrap();
            be.set_fast_conv(false);
            be.set_winograd_data_gradient(false);
            be.set_legacy_conv_backward(legacy);
            bes.push((format!("{threads} threads, legacy {legacy}"), be));
        }
    }
    for c in cases {
        let ys = out_shape(&c);
        let x = rng.vec(c.xs.numel(), -1.0, 1.0);
        let w = rng.vec(c.w_shape.iter().product(), -1.0, 1.0);
        let dy = rng.vec(ys.numel(), -1.0, 1.0);
        let want = naive_with_magnitudes(&c, &x, &w, &dy);
        let dx_terms = c.w_shape[0] / c.p.groups * c.w_shape[2] * c.w_shape[3];
        let dw_terms = ys.n * ys.h * ys.w;
        for (name, be) in &bes {
            let (dx, dw) = conv_backward(be, &c, &x, &w, &dy);
            let what = format!("{c:?} ({name})");
            assert_within_bound(&format!("{what} dx"), &dx, &want.dx, &want.dx_mag, dx_terms);
            assert_within_bound(&format!("{what} dw"), &dw, &want.dw, &want.dw_mag, dw_terms);
        }
    }
}

/// The filter gradient on senet's AVX-512 GEMM (`conv/wgrad.rs`, the default where the CPU has
/// it, for 48+ output channels per group, 1x1 convs only with no more outputs than inputs):
/// against the naive f64 sums within Higham's bound for the `N·OH·OW` terms of each element (its
/// sums are direct sums in another order), overwriting and accumulating onto a start (then one
/// more term, the start itself), on 1, 2 and 3 threads. The shapes cover planes of more than one
/// k block (24x24: 576 pixels), 7x7 planes laid side by side 10 images per product (batch 13:
/// products of 10 and 3 images, runs cut across them), 3x3 strided and padded, the 7x7 stem, 1x1
/// direct and subsampled, groups of 48 channels, and output channels not a multiple of the
/// GEMM's 48-column panels nor of its 16-float vectors.
/// The path taken: where one thread sums several images per product (planes under 512 pixels,
/// `Some(true)`), the result is not the `gemm` crate's (`set_legacy_filter_gradient`) bit for
/// bit; groups of fewer than 48 output channels and 1x1 expansions stay on the `gemm` crate,
/// bit-equal (`Some(false)`). (With one image per product both paths can add the same k blocks
/// in the same order, bit-equal: `None`, no check.) Gathering side-by-side images' columns in
/// place or copying them there (`set_legacy_filter_gather`) gives the same bits.
#[test]
fn filter_gradient_on_sgemm_within_the_f32_summation_bound() {
    let mut rng = Rng(31);
    let cases = [
        (conv_case(3, 8, (24, 24), 50, 3, (1, 1, 1)), None),
        (conv_case(13, 24, (7, 7), 52, 3, (1, 1, 1)), Some(true)),
        (conv_case(13, 64, (7, 7), 56, 1, (1, 0, 1)), Some(true)),
        (conv_case(4, 16, (15, 13), 49, 3, (2, 1, 1)), Some(true)),
        (conv_case(3, 3, (23, 21), 48, 7, (2, 3, 1)), Some(true)),
        (conv_case(5, 64, (9, 9), 48, 1, (2, 0, 1)), Some(true)),
        (conv_case(3, 32, (9, 7), 96, 3, (1, 1, 2)), Some(true)),
        (conv_case(2, 192, (6, 6), 144, 1, (1, 0, 3)), Some(true)),
        (conv_case(3, 32, (9, 7), 64, 3, (1, 1, 4)), Some(false)),
        (conv_case(3, 16, (9, 7), 64, 1, (1, 0, 1)), Some(false)),
    ];
    for (c, differs) in cases {
        let ys = out_shape(&c);
        let wl: usize = c.w_shape.iter().product();
        let x = rng.vec(c.xs.numel(), -1.0, 1.0);
        let dy = rng.vec(ys.numel(), -1.0, 1.0);
        let start = rng.vec(wl, -1.0, 1.0);
        let w = vec![0.0; wl];
        let want = naive_with_magnitudes(&c, &x, &w, &dy);
        let terms = ys.n * ys.h * ys.w;
        for threads in [1, 2, 3] {
            let mut legacy = CpuBackend::new(threads).unwrap();
            legacy.set_legacy_filter_gradient(true);
            let be = CpuBackend::new(threads).unwrap();
            let what = format!("{c:?} ({threads} threads)");
            let old = conv_backward(&legacy, &c, &x, &w, &dy).1;
            let dw = conv_backward(&be, &c, &x, &w, &dy).1;
            assert_within_bound(&what, &dw, &want.dw, &want.dw_mag, terms);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let mut copy = CpuBackend::new(threads).unwrap();
            copy.set_legacy_filter_gather(true);
            let copied = conv_backward(&copy, &c, &x, &w, &dy).1;
            assert_eq!(
                bits(&copied),
                bits(&dw),
                "{what}: gathered in place or copied"
            );
            match differs {
                Some(true) if threads == 1 => assert_ne!(bits(&dw), bits(&old), "{what}: path"),
                Some(false) => assert_eq!(bits(&dw), bits(&old), "{what}: path"),
                _ => {}
            }
            let mut acc = start.clone();
            be.conv2d_backward_filter(c, &x, &dy, ys, &mut acc, true)
                .unwrap();
            let plus = |v: &[f64], add: &dyn Fn(usize) -> f64| {
                v.iter()
                    .enumerate()
                    .map(|(i, s)| s + add(i))
                    .collect::<Vec<_>>()
            };
            let want_acc = plus(&want.dw, &|i| f64::from(start[i]));
            let mag_acc = plus(&want.dw_mag, &|i| f64::from(start[i]).abs());
            let what = format!("{what} accumulated");
            assert_within_bound(&what, &acc, &want_acc, &mag_acc, terms + 1);
        }
    }
}

/// The data gradient of 3x3 stride-1 convs as a training step takes it (`set_fast_conv(false)`
/// for the forward, the data gradient by Winograd F(4x4, 3x3)): a forward conv of `dy` with the
/// transposed, rotated weights, so within the Winograd forward's bound (`conv/winograd/`):
/// `2e-5 · Σ_co max_taps |w[co, ci]| · Σ |dy[co]|` over the 6x6 tile of `dy` that feeds the 4x4
/// tile of `dx` holding the element (rows and columns `4t-1 .. 4t+4`, clipped), against the
/// naive f64 sum; and not the direct sum bit for bit (the Winograd path was taken).
#[test]
fn winograd_data_gradient_within_its_tile_bound() {
    let mut rng = Rng(23);
    for (c, threads) in [
        (conv_case(2, 32, (14, 13), 24, 3, (1, 1, 1)), 1),
        (conv_case(3, 16, (9, 11), 48, 3, (1, 1, 1)), 2),
        (conv_case(1, 24, (29, 28), 16, 3, (1, 1, 1)), 2),
    ] {
        let (mut wino, mut direct) = (
            CpuBackend::new(threads).unwrap(),
            CpuBackend::new(threads).unwrap(),
        );
        wino.set_fast_conv(false);
        wino.set_winograd_data_gradient(true);
        direct.set_fast_conv(false);
        direct.set_winograd_data_gradient(false);
        let ys = out_shape(&c);
        let x = rng.vec(c.xs.numel(), -1.0, 1.0);
        let w = rng.vec(c.w_shape.iter().product(), -1.0, 1.0);
        let dy = rng.vec(ys.numel(), -1.0, 1.0);
        let want = naive_with_magnitudes(&c, &x, &w, &dy);
        let (dx, _) = conv_backward(&wino, &c, &x, &w, &dy);
        let (dx_direct, _) = conv_backward(&direct, &c, &x, &w, &dy);
        assert_ne!(dx, dx_direct, "{c:?}: the Winograd path was not taken");
        let [cout, cin, _, _] = c.w_shape;
        let (h, wd) = (c.xs.h, c.xs.w);
        let wmax = |co: usize, ci: usize| {
            w[(co * cin + ci) * 9..(co * cin + ci + 1) * 9]
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs() as f64))
        };
        let rows = |t: usize, len: usize| (4 * t).saturating_sub(1)..(4 * t + 5).min(len);
        for n in 0..c.xs.n {
            for ci in 0..cin {
                for iy in 0..h {
                    for ix in 0..wd {
                        let mut mag = 0.0;
                        for co in 0..cout {
                            let plane = &dy[(n * cout + co) * h * wd..][..h * wd];
                            let tile: f64 = rows(iy / 4, h)
                                .flat_map(|yy| rows(ix / 4, wd).map(move |xx| (yy, xx)))
                                .map(|(yy, xx)| plane[yy * wd + xx].abs() as f64)
                                .sum();
                            mag += wmax(co, ci) * tile;
                        }
                        let i = ((n * cin + ci) * h + iy) * wd + ix;
                        assert!(
                            (dx[i] as f64 - want.dx[i]).abs() <= 2e-5 * mag,
                            "{c:?}: dx[{i}] = {}, reference {}, bound {:e}",
                            dx[i],
                            want.dx[i],
                            2e-5 * mag
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn conv2d_backward_filter_accumulates() {
    let be = CpuBackend::new(2).unwrap();
    let mut rng = Rng(3);
    for n in [1, 3] {
        let c = conv_case(n, 4, (7, 5), 4, 3, (1, 1, 2));
        let ys = out_shape(&c);
        let x = rng.vec(c.xs.numel(), -1.0, 1.0);
        let dy = rng.vec(ys.numel(), -1.0, 1.0);
        let wl: usize = c.w_shape.iter().product();
        let mut fresh = vec![0.0; wl];
        be.conv2d_backward_filter(c, &x, &dy, ys, &mut fresh, false)
            .unwrap();
        let start = rng.vec(wl, -1.0, 1.0);
        let mut acc = start.clone();
        be.conv2d_backward_filter(c, &x, &dy, ys, &mut acc, true)
            .unwrap();
        for i in 0..wl {
            assert!(
                (acc[i] - (start[i] + fresh[i])).abs() <= 1e-5,
                "batch {n}: dw[{i}] {} != {} + {}",
                acc[i],
                start[i],
                fresh[i]
            );
        }
    }
}

#[test]
fn conv2d_backward_is_deterministic() {
    let be = CpuBackend::new(2).unwrap();
    let mut rng = Rng(4);
    for c in [
        conv_case(5, 16, (14, 14), 32, 3, (1, 1, 1)),
        conv_case(7, 32, (9, 9), 32, 3, (2, 1, 8)),
        conv_case(1, 16, (14, 14), 32, 3, (1, 1, 1)),
        conv_case(4, 32, (7, 7), 64, 1, (1, 0, 1)),
    ] {
        let ys = out_shape(&c);
        let x = rng.vec(c.xs.numel(), -1.0, 1.0);
        let w = rng.vec(c.w_shape.iter().product(), -1.0, 1.0);
        let dy = rng.vec(ys.numel(), -1.0, 1.0);
        let first = conv_backward(&be, &c, &x, &w, &dy);
        for _ in 0..3 {
            let again = conv_backward(&be, &c, &x, &w, &dy);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&first.1),
                bits(&again.1),
                "{c:?}: dw differs between runs"
            );
            assert_eq!(
                bits(&first.0),
                bits(&again.0),
                "{c:?}: dx differs between runs"
            );
        }
    }
}

#[test]
fn conv2d_backward_rejects_bad_shapes() {
    let be = CpuBackend::new(1).unwrap();
    let c = conv_case(2, 4, (7, 5), 6, 3, (2, 1, 2));
    let ys = out_shape(&c);
    let x = vec![0.0; c.xs.numel()];
    let w = vec![0.0; c.w_shape.iter().product()];
    let dy = vec![0.0; ys.numel()];
    let mut dx = vec![0.0; c.xs.numel()];
    let mut dw = vec![0.0; w.len()];
    let wrong_ys = Shape4::new(2, 6, ys.h + 1, ys.w);
    assert!(be
        .conv2d_backward_data(c, &w, &dy, wrong_ys, &mut dx)
        .is_err());
    assert!(be
        .conv2d_backward_filter(c, &x, &dy, wrong_ys, &mut dw, false)
        .is_err());
    let bad_groups = Conv2dParams { groups: 3, ..c.p };
    let bad = Conv2dShape { p: bad_groups, ..c };
    assert!(be.conv2d_backward_data(bad, &w, &dy, ys, &mut dx).is_err());
    let mut short = vec![0.0; c.xs.numel() - 1];
    assert!(be.conv2d_backward_data(c, &w, &dy, ys, &mut short).is_err());
    let mut short_w = vec![0.0; w.len() - 1];
    assert!(be
        .conv2d_backward_filter(c, &x, &dy, ys, &mut short_w, false)
        .is_err());
}

#[test]
fn empty_batch_gives_zero_parameter_gradients() {
    let be = CpuBackend::new(2).unwrap();
    let mut dw = vec![3.0; 6];
    let mut db = vec![3.0; 2];
    be.linear_backward(
        LinearShape {
            n: 0,
            in_features: 3,
            out_features: 2,
        },
        &vec![],
        &vec![1.0; 6],
        &vec![],
        LinearGrads {
            dx: None,
            dw: &mut dw,
            db: &mut db,
        },
    )
    .unwrap();
    assert_eq!((dw, db), (vec![0.0; 6], vec![0.0; 2]));
    let c = conv_case(0, 4, (7, 5), 6, 3, (2, 1, 2));
    let ys = out_shape(&c);
    let mut dw = vec![3.0; c.w_shape.iter().product()];
    be.conv2d_backward_filter(c, &vec![], &vec![], ys, &mut dw, true)
        .unwrap();
    assert!(dw.iter().all(|&v| v == 3.0), "accumulate: unchanged");
    be.conv2d_backward_filter(c, &vec![], &vec![], ys, &mut dw, false)
        .unwrap();
    assert!(dw.iter().all(|&v| v == 0.0), "overwrite: zeroed");
    be.conv2d_backward_data(c, &vec![0.0; dw.len()], &vec![], ys, &mut vec![])
        .unwrap();
}
