//! Tests of the Winograd paths: against the direct sum in f64 (F4 to 2e-5 of its patch's
//! magnitudes, F2 to a derived bound), batch and thread independence, prepared weights, which
//! convs each tile takes.
use super::*;
use crate::backend::{Conv2dParams, Shape4};

use crate::backend::cpu::test_values as fill;

fn geometry(n: usize, cin: usize, cout: usize, h: usize, w: usize, k: usize) -> ConvGeometry {
    let p = Conv2dParams {
        stride: 1,
        padding: k / 2,
        groups: 1,
    };
    ConvGeometry {
        xs: Shape4::new(n, cin, h, w),
        ys: Shape4::new(n, cout, h, w),
        kh: k,
        kw: k,
        p,
    }
}

/// Each image of a batch gets exactly the values it gets alone, on one thread or on two,
/// with either tile.
#[test]
fn an_image_does_not_depend_on_its_batch() {
    if !sgemm::available() {
        return;
    }
    for t in [Tile::F4, Tile::F2] {
        image_alone_and_in_its_batch(t);
    }
}

fn image_alone_and_in_its_batch(t: Tile) {
    let (n, cin, cout, h, w) = (5, 24, 40, 28, 26);
    let g = geometry(n, cin, cout, h, w, 3);
    let x = fill(g.xs.numel(), 3);
    let wt = fill(cout * cin * 9, 4);
    let bias = fill(cout, 5);
    let run = |g: &ConvGeometry, x: &[f32], threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        assert!(supports(t, Activation::Relu, g, threads));
        let mut y = vec![0.0; g.ys.numel()];
        let mut u = Vec::new();
        let op = ConvOp {
            g: *g,
            w: &wt,
            bias: Some(&bias),
            act: Activation::Relu,
        };
        pool.install(|| conv2d(t, &mut u, &op, x, &mut y, None, threads));
        y
    };
    let batch = run(&g, &x, 2);
    let one = geometry(1, cin, cout, h, w, 3);
    for (x1, y1) in x
        .chunks_exact(g.xs.image_len())
        .zip(batch.chunks_exact(g.ys.image_len()))
    {
        assert_eq!(run(&one, x1, 1), y1);
        assert_eq!(run(&one, x1, 2), y1);
    }
}

/// The weights prepared once ([`prepare`], [`conv2d_prepared`]) give bit for bit the
/// results of the transform at every call, for one image on two threads (the three
/// phases) and a batch, and a buffer of another conv's length is refused.
#[test]
fn prepared_weights_are_the_transformed_ones() {
    if !sgemm::available() {
        return;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for n in [1, 3] {
        let (cin, cout, h, w) = (20, 35, 28, 30);
        let g = geometry(n, cin, cout, h, w, 3);
        let x = fill(g.xs.numel(), 11);
        let wt = fill(cout * cin * 9, 12);
        let bias = fill(cout, 13);
        let op = ConvOp {
            g,
            w: &wt,
            bias: Some(&bias),
            act: Activation::Relu,
        };
        let (mut want, mut got) = (vec![0.0; g.ys.numel()], vec![1.0; g.ys.numel()]);
        let mut u = Vec::new();
        pool.install(|| conv2d(Tile::F4, &mut u, &op, &x, &mut want, None, 2));
        let prepared = prepare(&g, &wt).unwrap();
        assert_eq!(prepared, u);
        let pu = prepared_u(&g, &prepared).unwrap();
        pool.install(|| conv2d_prepared(Tile::F4, pu, &op, &x, &mut got, None, 2));
        assert!(got
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(prepared_u(&geometry(n, cin, cout + 1, h, w, 3), &prepared).is_none());
    }
}

/// Which convs take this path: 3x3 stride 1 only, and only sizes whose buffers stay bounded;
/// F(2x2, 3x3) by the conv alone, whatever the batch and threads.
#[test]
fn chooses_its_convolutions() {
    if !sgemm::available() {
        return;
    }
    let relu = Activation::Relu;
    let f4 = |g: ConvGeometry, threads| supports(Tile::F4, relu, &g, threads);
    assert!(f4(geometry(32, 64, 64, 56, 56, 3), 2));
    assert!(f4(geometry(1, 128, 128, 28, 28, 3), 2));
    // One 14x14 image on two threads: 16 tiles, the direct conv splits it better.
    assert!(!f4(geometry(1, 256, 256, 14, 14, 3), 2));
    assert!(f4(geometry(1, 256, 256, 14, 14, 3), 1));
    // 1x1 convs, too few channels, the SE sigmoid, huge images.
    assert!(!f4(geometry(32, 64, 64, 56, 56, 1), 2));
    assert!(!f4(geometry(32, 3, 64, 56, 56, 3), 2));
    assert!(!supports(
        Tile::F4,
        Activation::Sigmoid,
        &geometry(32, 64, 64, 56, 56, 3),
        2
    ));
    assert!(!f4(geometry(2, 64, 64, 256, 256, 3), 2));
    // Training's F(2x2, 3x3): one small image as well as a batch; not 1x1, not 3 inputs.
    let f2 = |g: ConvGeometry| supports_every_batch(Tile::F2, Activation::None, &g);
    assert!(f2(geometry(1, 512, 512, 7, 7, 3)) && f2(geometry(32, 64, 64, 56, 56, 3)));
    assert!(!f2(geometry(32, 64, 64, 56, 56, 1)) && !f2(geometry(32, 3, 64, 56, 56, 3)));
}

/// Against the direct sum in f64 for odd sizes (partial tiles), several images per task,
/// channel counts that are not multiples of 16, bias and ReLU, and the fused per-image post,
/// with either tile. F4 is held to 2e-5 of the magnitudes of the output's 6x6 patch. F2's
/// bound is derived: every coefficient of its B, G and A is 0, ±1 or ±1/2, so
/// |V| <= Σ_patch |x|, |U| <= (1 + 1/2)^2 max|w| and an output sums 9 of the M = Σ_ci U·V
/// entries: the sum of the magnitudes of all its terms is at most 9 · 2.25 = 20.25 times
/// `mag` (Σ_ci max|w[co, ci]| · Σ_patch |x[ci]|, the 4x4 patch); along any term's path at
/// most 2 (input) + 4 (weights) + Cin (the FMA chain of the product) + 4 (output) + 1
/// (bias) roundings of u = 2^-24 each, so |error| <= (Cin + 11) · u · 20.25 · mag (first
/// order; the ReLU does not add error).
#[test]
fn matches_direct_convolution() {
    if !sgemm::available() {
        return;
    }
    for t in [Tile::F4, Tile::F2] {
        matches_direct_with(t);
    }
}

fn matches_direct_with(t: Tile) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    // (images, Cin, Cout, H, W, ReLU, threads, spike): partial tiles, several images per
    // task, a tile row wider than 16 tiles, one image on one thread and on two (three
    // phases), one input value 1000x the others (its whole tile's error grows with it).
    for &(n, cin, cout, h, w, relu, threads, spike) in &[
        (2, 16, 16, 4, 4, false, 2, false),
        (3, 17, 33, 7, 9, true, 2, false),
        (5, 40, 24, 14, 14, false, 2, false),
        (2, 64, 70, 13, 5, true, 2, false),
        (1, 20, 16, 30, 31, false, 1, false),
        (2, 16, 16, 6, 70, true, 2, false),
        (1, 21, 35, 28, 30, true, 2, false),
        (2, 16, 16, 8, 8, false, 2, true),
    ] {
        let xs = Shape4::new(n, cin, h, w);
        let ys = Shape4::new(n, cout, h, w);
        let p = Conv2dParams {
            stride: 1,
            padding: 1,
            groups: 1,
        };
        let g = ConvGeometry {
            xs,
            ys,
            kh: 3,
            kw: 3,
            p,
        };
        let mut x = fill(xs.numel(), (cin * h + w) as u64);
        if spike {
            x[3] = 1000.0;
        }
        let wt = fill(cout * cin * 9, cout as u64);
        let bias = fill(cout, 7);
        let act = if relu {
            Activation::Relu
        } else {
            Activation::None
        };
        assert!(supports(t, act, &g, threads));
        let mut y = vec![f32::NAN; ys.numel()];
        let mut sums = vec![0.0f32; n * cout];
        let f = |y1: &[f32], o1: &mut [f32]| {
            for (o, plane) in o1.iter_mut().zip(y1.chunks_exact(h * w)) {
                *o = plane.iter().sum();
            }
        };
        let post = PerImage {
            out: &mut sums,
            len: cout,
            f: &f,
        };
        let mut u = Vec::new();
        let op = ConvOp {
            g,
            w: &wt,
            bias: Some(&bias),
            act,
        };
        pool.install(|| conv2d(t, &mut u, &op, &x, &mut y, Some(post), threads));
        let side = t.side();
        let rel = match t {
            Tile::F4 => 2e-5,
            Tile::F2 => (cin + 11) as f64 * 2f64.powi(-24) * 20.25,
        };
        for (img, ((i1, y1), s1)) in x
            .chunks_exact(xs.image_len())
            .zip(y.chunks_exact(ys.image_len()))
            .zip(sums.chunks_exact(cout))
            .enumerate()
        {
            for co in 0..cout {
                let mut total = 0.0f32;
                for oy in 0..h {
                    for ox in 0..w {
                        // The bound: the magnitudes of the output's whole input patch.
                        let (ty, tx) = (oy / side * side, ox / side * side);
                        let (mut s, mut mag) = (bias[co] as f64, bias[co].abs() as f64);
                        for ci in 0..cin {
                            let wc = &wt[(co * cin + ci) * 9..(co * cin + ci + 1) * 9];
                            let wmax = wc.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
                            let plane = &i1[ci * h * w..(ci + 1) * h * w];
                            for iy in ty.saturating_sub(1)..(ty + side + 1).min(h) {
                                for ix in tx.saturating_sub(1)..(tx + side + 1).min(w) {
                                    mag += plane[iy * w + ix].abs() as f64 * wmax;
                                }
                            }
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) = (oy + ky, ox + kx);
                                    if iy == 0 || ix == 0 || iy > h || ix > w {
                                        continue;
                                    }
                                    s += plane[(iy - 1) * w + ix - 1] as f64
                                        * wc[ky * 3 + kx] as f64;
                                }
                            }
                        }
                        if relu {
                            s = s.max(0.0);
                        }
                        let got = y1[co * h * w + oy * w + ox];
                        total += got;
                        assert!(
                            (got as f64 - s).abs() <= rel * mag,
                            "{t:?} n{n} cin{cin} cout{cout} {h}x{w} image {img} \
                             ({co},{oy},{ox}): {got} vs {s}"
                        );
                    }
                }
                assert_eq!(s1[co], total, "post of image {img} channel {co}");
            }
        }
    }
}
