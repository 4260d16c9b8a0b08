//! Backward ops of the CPU backend other than convolutions (dense, max and global average
//! pooling, gradient accumulation), checked against central finite differences of the forward
//! ops and against naive nested-loop references.
//!
//! Every gradient check uses the scalar loss `L = Σ r ⊙ op(x)` with `r` random, so that
//! `∂L/∂op(x) = r` is the `dy` fed to the backward op. The forward ops run in f32; the loss and
//! the differences are taken in f64 over the actual f32 step.
mod common;

use common::fd::{assert_grad, assert_tail, backends, central_diff_h, dot, garbage, padded, Rng};
use senet::backend::cpu::CpuBackend;
use senet::backend::{
    same_pool_geometry, Activation, Backend, LinearForward, LinearGrads, LinearShape,
    MaxPool2dParams, Shape4,
};

// ---------------------------------------------------------------- dense

#[test]
fn linear_gradients_match_finite_differences() {
    let bes = backends();
    let mut rng = Rng(5);
    for (n, inf, outf) in [(3, 7, 5), (1, 9, 4), (4, 16, 10)] {
        let x = rng.vec(n * inf, -1.0, 1.0);
        let w = rng.vec(outf * inf, -1.0, 1.0);
        let b = rng.vec(outf, -1.0, 1.0);
        let r = rng.vec(n * outf, -1.0, 1.0);
        let be0 = &bes[1];
        let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
            let mut y = vec![0.0; n * outf];
            let (w, b) = (w.to_vec(), b.to_vec());
            let f = LinearForward {
                shape: LinearShape {
                    n,
                    in_features: inf,
                    out_features: outf,
                },
                w: &w,
                b: &b,
                act: Activation::None,
            };
            be0.linear(f, &x.to_vec(), &mut y).unwrap();
            dot(&r, &y)
        };
        let num_dx = central_diff_h(&x, |v| fwd(v, &w, &b));
        let num_dw = central_diff_h(&w, |v| fwd(&x, v, &b));
        let num_db = central_diff_h(&b, |v| fwd(&x, &w, v));
        let shape = LinearShape {
            n,
            in_features: inf,
            out_features: outf,
        };
        for be in &bes {
            let t = be.threads();
            let (xb, wb, rb) = (padded(&x), padded(&w), padded(&r));
            let mut dx = garbage(n * inf);
            let mut dw = garbage(outf * inf);
            let mut db = garbage(outf);
            let grads = LinearGrads {
                dx: Some(&mut dx),
                dw: &mut dw,
                db: &mut db,
            };
            be.linear_backward(shape, &xb, &wb, &rb, grads).unwrap();
            assert_tail("linear dx", &dx, n * inf);
            assert_tail("linear dw", &dw, outf * inf);
            assert_tail("linear db", &db, outf);
            let what = format!("linear n={n} in={inf} out={outf} ({t} threads)");
            assert_grad(&format!("{what} dx"), &dx[..n * inf], &num_dx);
            assert_grad(&format!("{what} dw"), &dw[..outf * inf], &num_dw);
            assert_grad(&format!("{what} db"), &db[..outf], &num_db);
            // Without dx: the same dw and db.
            let mut dw2 = garbage(outf * inf);
            let mut db2 = garbage(outf);
            let grads = LinearGrads {
                dx: None,
                dw: &mut dw2,
                db: &mut db2,
            };
            be.linear_backward(shape, &xb, &wb, &rb, grads).unwrap();
            assert_eq!(dw2, dw);
            assert_eq!(db2, db);
        }
    }
    let be = &bes[0];
    let mut small = vec![0.0; 3];
    assert!(be
        .linear_backward(
            LinearShape {
                n: 2,
                in_features: 3,
                out_features: 2,
            },
            &vec![0.0; 6],
            &vec![0.0; 6],
            &vec![0.0; 4],
            LinearGrads {
                dx: None,
                dw: &mut small,
                db: &mut vec![0.0; 2],
            },
        )
        .is_err());
}

// ---------------------------------------------------------------- pooling

fn pool_out(xs: Shape4, k: usize, s: usize) -> Shape4 {
    let (oh, _) = same_pool_geometry(xs.h, k, s);
    let (ow, _) = same_pool_geometry(xs.w, k, s);
    Shape4::new(xs.n, xs.c, oh, ow)
}

/// Naive reference of the max-pool backward: the first strict maximum of each clipped window.
fn naive_max_pool_backward(x: &[f32], xs: Shape4, k: usize, s: usize, dy: &[f32]) -> Vec<f32> {
    let ys = pool_out(xs, k, s);
    let (_, pt) = same_pool_geometry(xs.h, k, s);
    let (_, pl) = same_pool_geometry(xs.w, k, s);
    let mut dx = vec![0.0f32; xs.numel()];
    for plane in 0..xs.n * xs.c {
        for oy in 0..ys.h {
            for ox in 0..ys.w {
                let mut best: Option<(f32, usize)> = None;
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * s + ky) as isize - pt as isize;
                        let ix = (ox * s + kx) as isize - pl as isize;
                        if iy < 0 || ix < 0 || iy >= xs.h as isize || ix >= xs.w as isize {
                            continue;
                        }
                        let j = (plane * xs.h + iy as usize) * xs.w + ix as usize;
                        if best.is_none_or(|(m, _)| x[j] > m) {
                            best = Some((x[j], j));
                        }
                    }
                }
                dx[best.unwrap().1] += dy[(plane * ys.h + oy) * ys.w + ox];
            }
        }
    }
    dx
}

fn pool_cases() -> Vec<(Shape4, usize, usize)> {
    vec![
        (Shape4::new(2, 3, 9, 9), 3, 2),  // the stem pool, odd size
        (Shape4::new(1, 10, 7, 5), 3, 2), // more planes than one task
        (Shape4::new(3, 2, 8, 8), 3, 2),  // even size: padding only at the bottom/right
        (Shape4::new(1, 2, 7, 5), 3, 1),  // heavy overlap
        (Shape4::new(3, 3, 6, 7), 2, 2),  // no overlap
    ]
}

#[test]
fn max_pool_gradient_matches_finite_differences() {
    let bes = backends();
    let mut rng = Rng(6);
    for (xs, k, s) in pool_cases() {
        let ys = pool_out(xs, k, s);
        // Distinct values 0.05 apart: no ties, and a step of 1e-2 never changes a window's argmax.
        let x: Vec<f32> = rng
            .permutation(xs.numel())
            .into_iter()
            .map(|v| v as f32 * 0.05 - 1.0)
            .collect();
        let r = rng.vec(ys.numel(), -1.0, 1.0);
        let fwd = |xv: &[f32]| {
            let mut y = vec![0.0; ys.numel()];
            let got = bes[1]
                .max_pool2d(MaxPool2dParams::same(k, s), &xv.to_vec(), xs, &mut y)
                .unwrap();
            assert_eq!(got, ys);
            dot(&r, &y)
        };
        let num = central_diff_h(&x, fwd);
        for be in &bes {
            let mut dx = garbage(xs.numel());
            be.max_pool2d_backward(
                MaxPool2dParams::same(k, s),
                &padded(&x),
                xs,
                &padded(&r),
                &mut dx,
            )
            .unwrap();
            assert_tail("max_pool2d_backward dx", &dx, xs.numel());
            let what = format!("max pool {xs:?} k{k} s{s} ({} threads)", be.threads());
            assert_grad(&what, &dx[..xs.numel()], &num);
            let reference = naive_max_pool_backward(&x, xs, k, s, &r);
            assert_eq!(
                &dx[..xs.numel()],
                &reference[..],
                "{what}: vs naive reference"
            );
        }
    }
}

#[test]
fn max_pool_gradient_goes_to_first_max_on_ties() {
    let be = CpuBackend::new(2).unwrap();
    let mut rng = Rng(7);
    for (xs, k, s) in pool_cases() {
        let ys = pool_out(xs, k, s);
        // Few distinct values: windows full of ties.
        let x: Vec<f32> = (0..xs.numel())
            .map(|_| (rng.next_u64() % 3) as f32)
            .collect();
        let dy = rng.vec(ys.numel(), -1.0, 1.0);
        let mut dx = garbage(xs.numel());
        be.max_pool2d_backward(MaxPool2dParams::same(k, s), &x, xs, &dy, &mut dx)
            .unwrap();
        let reference = naive_max_pool_backward(&x, xs, k, s, &dy);
        assert_eq!(&dx[..xs.numel()], &reference[..], "{xs:?} k{k} s{s}");
    }
    // A single window of equal values: everything goes to its top-left element.
    let xs = Shape4::new(1, 1, 3, 3);
    let mut dx = vec![0.0; 9];
    be.max_pool2d_backward(
        MaxPool2dParams::same(3, 3),
        &vec![1.0; 9],
        xs,
        &vec![2.5],
        &mut dx,
    )
    .unwrap();
    assert_eq!(dx, [2.5, 0., 0., 0., 0., 0., 0., 0., 0.]);
    assert!(be
        .max_pool2d_backward(
            MaxPool2dParams::same(0, 2),
            &vec![0.0; 9],
            xs,
            &vec![0.0; 4],
            &mut dx
        )
        .is_err());
    assert!(be
        .max_pool2d_backward(
            MaxPool2dParams::same(3, 2),
            &vec![0.0; 9],
            xs,
            &vec![0.0; 3],
            &mut dx
        )
        .is_err());
}

#[test]
fn global_avg_pool_gradient_matches_finite_differences() {
    let bes = backends();
    let mut rng = Rng(8);
    for xs in [
        Shape4::new(3, 5, 7, 5),
        Shape4::new(1, 17, 3, 3),
        Shape4::new(2, 4, 1, 1),
    ] {
        let x = rng.vec(xs.numel(), -1.0, 1.0);
        let r = rng.vec(xs.n * xs.c, -1.0, 1.0);
        let fwd = |xv: &[f32]| {
            let mut y = vec![0.0; xs.n * xs.c];
            bes[1].global_avg_pool(&xv.to_vec(), xs, &mut y).unwrap();
            dot(&r, &y)
        };
        let num = central_diff_h(&x, fwd);
        for be in &bes {
            let mut dx = garbage(xs.numel());
            be.global_avg_pool_backward(&padded(&r), xs, &mut dx)
                .unwrap();
            assert_tail("global_avg_pool_backward dx", &dx, xs.numel());
            assert_grad(&format!("gap {xs:?}"), &dx[..xs.numel()], &num);
            // Exactly dy / (H·W).
            let hw = (xs.h * xs.w) as f32;
            for (i, &g) in dx[..xs.numel()].iter().enumerate() {
                assert_eq!(g, r[i / (xs.h * xs.w)] / hw);
            }
        }
    }
    assert!(bes[0]
        .global_avg_pool_backward(&vec![0.0; 2], Shape4::new(1, 3, 2, 2), &mut vec![0.0; 12])
        .is_err());
}

// ---------------------------------------------------------------- accumulation

#[test]
fn add_assign_matches_finite_differences_and_exact_sums() {
    let bes = backends();
    let mut rng = Rng(9);
    // L = Σ r ⊙ (dst + src): ∂L/∂src = ∂L/∂dst = r.
    let len = 37;
    let (d0, s0, r) = (
        rng.vec(len, -1.0, 1.0),
        rng.vec(len, -1.0, 1.0),
        rng.vec(len, -1.0, 1.0),
    );
    let fwd = |d: &[f32], s: &[f32]| {
        let mut db = d.to_vec();
        bes[1].add_assign(&mut db, &s.to_vec(), len).unwrap();
        dot(&r, &db)
    };
    let num_src = central_diff_h(&s0, |s| fwd(&d0, s));
    let num_dst = central_diff_h(&d0, |d| fwd(d, &s0));
    assert_grad("add_assign src", &r, &num_src);
    assert_grad("add_assign dst", &r, &num_dst);
    // Exact sums, leading `len` values only; large enough for the parallel path.
    for len in [37, 300_001] {
        let (d0, s0) = (rng.vec(len, -1.0, 1.0), rng.vec(len, -1.0, 1.0));
        for be in &bes {
            let mut dst = padded(&d0);
            be.add_assign(&mut dst, &padded(&s0), len).unwrap();
            assert_tail("add_assign dst", &dst, len);
            for i in 0..len {
                assert_eq!(dst[i], d0[i] + s0[i]);
            }
        }
    }
    assert!(bes[0]
        .add_assign(&mut vec![0.0; 3], &vec![0.0; 4], 4)
        .is_err());
}
