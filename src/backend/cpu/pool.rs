//! Pooling on the CPU, forward and backward: the max pool with MindSpore's `pad_mode="same"` (TF
//! 'SAME') or PyTorch's symmetric padding, both placed by
//! [`MaxPool2dParams::geometry`](crate::backend::MaxPool2dParams::geometry) (the C kernel takes
//! the padding before and the output size, and clips every window to the input), and the global
//! average pool (MindCV `GlobalAvgPooling`).
//! Tasks are (image, block of channels), so that batch 1 keeps every thread busy.
use super::kernels::{self, PoolWindows};
use super::CpuBackend;
use crate::backend::{check_len, MaxPool2dParams, Shape4};
use crate::Result;
use rayon::prelude::*;

/// Channel planes per task: (image, block of channels) tasks keep every thread busy at batch 1.
const PLANES_PER_TASK: usize = 8;

/// [`Backend::max_pool2d`](crate::backend::Backend::max_pool2d) on the CPU: `y`
/// (N, C, OH, OW) from `x` (N, C, H, W), OH, OW from
/// [`MaxPool2dParams::geometry`](crate::backend::MaxPool2dParams::geometry); padded positions
/// never win. Errors (`Error::Shape`): as the geometry, or a buffer too short.
pub(super) fn max_pool2d(
    be: &CpuBackend,
    pool: MaxPool2dParams,
    x: &[f32],
    xs: Shape4,
    y: &mut [f32],
) -> Result<Shape4> {
    let g = pool.check_forward(x, xs, y)?;
    let ys = g.ys;
    // One task per (image, channel block) keeps both threads busy at batch 1.
    let plane_in = xs.h * xs.w;
    let plane_out = ys.h * ys.w;
    be.pool.install(|| {
        y[..ys.numel()]
            .par_chunks_mut(plane_out * PLANES_PER_TASK)
            .zip(x[..xs.numel()].par_chunks(plane_in * PLANES_PER_TASK))
            .for_each(|(y1, x1)| {
                let c = x1.len() / plane_in;
                kernels::max_pool2d(x1, PoolWindows::new(c, xs, pool, g), y1)
            });
    });
    Ok(ys)
}

/// [`Backend::global_avg_pool`](crate::backend::Backend::global_avg_pool) on the CPU: `y[n, c]`
/// (N, C) = the mean of plane (n, c) of `x`. Errors (`Error::Shape`) if a buffer is too short.
pub(super) fn global_avg_pool(be: &CpuBackend, x: &[f32], xs: Shape4, y: &mut [f32]) -> Result<()> {
    check_len("global_avg_pool input", x, xs.numel())?;
    check_len("global_avg_pool output", y, xs.n * xs.c)?;
    let hw = xs.h * xs.w;
    be.pool.install(|| {
        y[..xs.n * xs.c]
            .par_chunks_mut(xs.c)
            .zip(x[..xs.numel()].par_chunks(xs.image_len()))
            .for_each(|(y1, x1)| kernels::global_avg_pool(x1, xs.c, hw, y1));
    });
    Ok(())
}

/// [`Backend::max_pool2d_backward`](crate::backend::Backend::max_pool2d_backward) on
/// the CPU: `dx` (N, C, H, W) overwritten; each `dy` (N, C, OH, OW) value goes to the argmax of its
/// window in `x` (first maximum in row-major window order on ties; padded positions never win).
/// Errors (`Error::Shape`) on a zero kernel, stride or plane, or a buffer too short.
pub(super) fn max_pool2d_backward(
    be: &CpuBackend,
    pool: MaxPool2dParams,
    x: &[f32],
    xs: Shape4,
    dy: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    let g = pool.check_backward(x, xs, dy, dx)?;
    let ys = g.ys;
    if xs.numel() == 0 {
        return Ok(());
    }
    let (plane_in, plane_out) = (xs.h * xs.w, ys.h * ys.w);
    let vector = !be.legacy_train_kernels
        && kernels::max_pool2d_backward_vector(PoolWindows::new(1, xs, pool, g));
    be.pool.install(|| {
        dx[..xs.numel()]
            .par_chunks_mut(plane_in * PLANES_PER_TASK)
            .zip(x[..xs.numel()].par_chunks(plane_in * PLANES_PER_TASK))
            .zip(dy[..ys.numel()].par_chunks(plane_out * PLANES_PER_TASK))
            .for_each(|((dx1, x1), dy1)| {
                let c = x1.len() / plane_in;
                let windows = PoolWindows::new(c, xs, pool, g);
                kernels::max_pool2d_backward(x1, dy1, windows, dx1, vector)
            });
    });
    Ok(())
}

/// [`Backend::global_avg_pool_backward`](crate::backend::Backend::global_avg_pool_backward) on
/// the CPU: `dx[n, c, h, w] = dy[n, c] / (H·W)` over (N, C, H, W), overwritten; `dy` is (N, C).
/// Errors (`Error::Shape`) if a buffer is too short.
pub(super) fn global_avg_pool_backward(
    be: &CpuBackend,
    dy: &[f32],
    xs: Shape4,
    dx: &mut [f32],
) -> Result<()> {
    each_plane_gradient(be, dy, xs, dx, |plane, v| plane.fill(v))
}

/// [`Backend::global_avg_pool_backward_add`](crate::backend::Backend::global_avg_pool_backward_add)
/// on the CPU in one pass: `dx[n, c, h, w] += dy[n, c] / (H·W)` over (N, C, H, W), the same
/// value added as [`global_avg_pool_backward`] then `add_assign` would add (bit for bit), with no
/// buffer between them. Errors (`Error::Shape`) if a buffer is too short.
pub(super) fn global_avg_pool_backward_add(
    be: &CpuBackend,
    dy: &[f32],
    xs: Shape4,
    dx: &mut [f32],
) -> Result<()> {
    each_plane_gradient(be, dy, xs, dx, |plane, v| {
        plane.iter_mut().for_each(|d| *d += v)
    })
}

/// `apply(plane (n, c) of dx, dy[n, c] / (H·W))` for every plane of `xs`, in tasks of
/// [`PLANES_PER_TASK`] planes. Errors (`Error::Shape`) if a buffer is too short.
fn each_plane_gradient(
    be: &CpuBackend,
    dy: &[f32],
    xs: Shape4,
    dx: &mut [f32],
    apply: impl Fn(&mut [f32], f32) + Sync,
) -> Result<()> {
    check_len("global_avg_pool_backward dy", dy, xs.n * xs.c)?;
    check_len("global_avg_pool_backward dx", dx, xs.numel())?;
    let hw = xs.h * xs.w;
    if hw == 0 || xs.numel() == 0 {
        return Ok(());
    }
    let denom = hw as f32;
    be.pool.install(|| {
        dx[..xs.numel()]
            .par_chunks_mut(hw * PLANES_PER_TASK)
            .zip(dy[..xs.n * xs.c].par_chunks(PLANES_PER_TASK))
            .for_each(|(dx1, dy1)| {
                for (plane, &g) in dx1.chunks_mut(hw).zip(dy1) {
                    apply(plane, g / denom);
                }
            });
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, PoolPadding};

    /// PyTorch's max pool written out: the plane copied into a -inf border of `pad`, the
    /// windows laid from the padded origin (`out` of them per axis), and each `dy` added at the
    /// first maximum of its window. Returns (y, dx) of one (h, w) plane.
    fn padded_reference(
        x: &[f32],
        (h, w): (usize, usize),
        (k, s, pad): (usize, usize, usize),
        (oh, ow): (usize, usize),
        dy: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let (ph, pw) = (h + 2 * pad, w + 2 * pad);
        let mut padded = vec![f32::NEG_INFINITY; ph * pw];
        for r in 0..h {
            padded[(r + pad) * pw + pad..][..w].copy_from_slice(&x[r * w..][..w]);
        }
        let (mut y, mut dx) = (vec![0.0; oh * ow], vec![0.0; h * w]);
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = (f32::NEG_INFINITY, 0, 0);
                for r in oy * s..(oy * s + k).min(ph) {
                    for c in ox * s..(ox * s + k).min(pw) {
                        if padded[r * pw + c] > best.0 {
                            best = (padded[r * pw + c], r, c);
                        }
                    }
                }
                y[oy * ow + ox] = best.0;
                dx[(best.1 - pad) * w + best.2 - pad] += dy[oy * ow + ox];
            }
        }
        (y, dx)
    }

    /// Windows of every kernel 1 to 4, stride 1 and 2 and padding (before) up to k - 1 over 3
    /// planes of `h` x `w`, in that order.
    fn every_window(h: usize, w: usize) -> Vec<PoolWindows> {
        let mut all = Vec::new();
        for k in 1..=4 {
            for s in [1, 2] {
                for pad in 0..k {
                    all.push(PoolWindows {
                        c: 3,
                        h,
                        w,
                        k,
                        s,
                        pad: (pad, k - 1 - pad),
                        out: ((h + pad - 1) / s + 1, (w + k - 1 - pad - 1) / s + 1),
                    });
                }
            }
        }
        all
    }

    /// The vectorised max pool gives the scalar kernel's results bit for bit (a NaN in a window
    /// gives its last NaN, payload included; -0.0 and 0.0 keep the first; ±inf), for strides 1
    /// and 2, kernels 1 to 4, every padding up to k - 1, planes narrower and wider than 16 and 32
    /// columns; and a NaN reaches exactly the outputs whose windows hold it.
    #[test]
    fn vector_max_pool_is_the_scalar_one() {
        // (Without AVX-512 the first part compares the scalar kernel with itself.)
        let specials = [
            f32::NAN,
            f32::from_bits(0x7fc0_1234),
            f32::from_bits(0xffc0_0042),
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
        ];
        for (h, w) in [(5, 7), (9, 16), (12, 33), (17, 70)] {
            let x: Vec<f32> = crate::backend::cpu::test_values(3 * h * w, (h * w) as u64)
                .iter()
                .enumerate()
                .map(|(i, &v)| match (i * 7919) % 23 {
                    r @ 0..=6 => specials[r],
                    _ => v,
                })
                .collect();
            for g in every_window(h, w) {
                let len = 3 * g.out.0 * g.out.1;
                let (mut got, mut want) = (vec![1.0; len + 3], vec![1.0; len + 3]);
                kernels::max_pool2d(&x, g, &mut got);
                kernels::max_pool2d_with(&x, g, &mut want, false);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{g:?}");
            }
        }
        // One NaN at (4, 5) of a 9x11 plane, 3x3 stride 2 without padding: the windows
        // starting at rows 2, 4 and columns 4 (3 and 5 do not start on the stride) hold it.
        let (h, w) = (9, 11);
        let mut x: Vec<f32> = (0..h * w).map(|i| i as f32).collect();
        x[4 * w + 5] = f32::NAN;
        let g = PoolWindows {
            c: 1,
            h,
            w,
            k: 3,
            s: 2,
            pad: (0, 0),
            out: (4, 5),
        };
        let mut y = vec![0.0; 20];
        kernels::max_pool2d(&x, g, &mut y);
        for oy in 0..4 {
            for ox in 0..5 {
                let holds = (2 * oy..2 * oy + 3).contains(&4) && (2 * ox..2 * ox + 3).contains(&5);
                let v = y[oy * 5 + ox];
                assert_eq!(v.is_nan(), holds, "({oy}, {ox})");
                if !holds {
                    let (r, c) = ((2 * oy + 2).min(h - 1), (2 * ox + 2).min(w - 1));
                    assert_eq!(v, (r * w + c) as f32, "({oy}, {ox})");
                }
            }
        }
    }

    /// Small integers (so that windows hold ties) with NaNs of two payloads, ±inf and ±0.0
    /// mixed in; `seed` picks the draw.
    fn tied_values(n: usize, seed: u64) -> Vec<f32> {
        let specials = [
            f32::NAN,
            f32::from_bits(0x7fc0_1234),
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
        ];
        crate::backend::cpu::test_values(n, seed)
            .iter()
            .enumerate()
            .map(|(i, &v)| match (i * 7919 + seed as usize) % 61 {
                r @ 0..=5 => specials[r],
                _ => (v * 3.0).round(),
            })
            .collect()
    }

    /// The vectorised max-pool backward gives the scalar kernel's `dx` bit for bit on inputs
    /// full of ties (which element of a window gets the gradient, and the order of the additions
    /// where windows overlap), NaNs, ±inf and signed zeros, with `dy` holding -0.0 too: the
    /// stem's 3x3 stride-2 pool placed as MindSpore's 'same' and as PyTorch's padding 1 (ceil
    /// mode or not) on even and odd planes, and every kernel 1 to 4, stride 1 and 2, padding up
    /// to k - 1 on planes narrower and wider than 16 and 32 columns.
    #[test]
    fn vector_max_pool_backward_is_the_scalar_one() {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let check = |g: PoolWindows, what: &str| {
            if !kernels::max_pool2d_backward_vector(g) {
                return;
            }
            let x = tied_values(g.c * g.h * g.w, (g.h * 31 + g.w) as u64);
            let dy: Vec<f32> = tied_values(g.c * g.out.0 * g.out.1, g.k as u64 + 7)
                .iter()
                .map(|&v| if v.is_finite() { v / 4.0 + 0.125 } else { -0.0 })
                .collect();
            let len = g.c * g.h * g.w;
            let (mut got, mut want) = (vec![7.0; len + 3], vec![7.0; len + 3]);
            kernels::max_pool2d_backward(&x, &dy, g, &mut got, true);
            kernels::max_pool2d_backward(&x, &dy, g, &mut want, false);
            let first = bits(&got)
                .iter()
                .zip(bits(&want))
                .position(|(a, b)| *a != b);
            assert_eq!(
                first, None,
                "{what}: {g:?}: dx differs from the scalar kernel's"
            );
        };
        let stem_pools = [
            MaxPool2dParams::same(3, 2),
            MaxPool2dParams::symmetric(3, 2, 1, false),
            MaxPool2dParams::symmetric(3, 2, 1, true),
        ];
        for (h, w) in [(112, 112), (7, 9), (33, 31), (56, 57), (1, 1), (2, 35)] {
            let xs = Shape4::new(1, 3, h, w);
            for pool in stem_pools {
                let g = pool.geometry(xs).unwrap();
                check(PoolWindows::new(3, xs, pool, g), "stem pool");
            }
        }
        for (h, w) in [(5, 7), (9, 16), (12, 33), (17, 70)] {
            for g in every_window(h, w) {
                check(g, "windows");
            }
        }
    }

    /// With ties in every window, the backend's max-pool backward (the vector kernel where the
    /// CPU has AVX-512) sends each gradient to the first maximum in row-major window order,
    /// PyTorch's rule (and MindSpore's: its MaxPoolGrad takes the forward's argmax, the first
    /// maximum), for the stem's pool as timm and MindCV place it.
    #[test]
    fn max_pool_backward_ties_go_to_the_first_maximum() {
        let be = CpuBackend::new(2).unwrap();
        for (h, w) in [(112, 112), (9, 11), (10, 10)] {
            for pool in [
                MaxPool2dParams::symmetric(3, 2, 1, false),
                MaxPool2dParams::same(3, 2),
            ] {
                let xs = Shape4::new(2, 9, h, w);
                // Integers 0..3 only: most windows hold several maxima.
                let x: Vec<f32> = (0..xs.numel())
                    .map(|j| ((j * 7919) % 13 % 4) as f32)
                    .collect();
                let g = pool.geometry(xs).unwrap();
                // The reference pads top and left alike (its bottom and right are clipped).
                assert_eq!(g.pad_top, g.pad_left);
                let pad = g.pad_top;
                let ys = g.ys;
                let dy: Vec<f32> = (0..ys.numel()).map(|j| (j % 13) as f32 - 6.0).collect();
                let mut dx = vec![f32::NAN; xs.numel()];
                be.max_pool2d_backward(pool, &x, xs, &dy, &mut dx).unwrap();
                let (plane_in, plane_out) = (h * w, ys.h * ys.w);
                for p in 0..xs.n * xs.c {
                    let (_, want_dx) = padded_reference(
                        &x[p * plane_in..][..plane_in],
                        (h, w),
                        (3, 2, pad),
                        (ys.h, ys.w),
                        &dy[p * plane_out..][..plane_out],
                    );
                    assert_eq!(&dx[p * plane_in..][..plane_in], &want_dx[..], "{pool:?}");
                }
            }
        }
    }

    /// The one-pass global-average-pool backward added into `dx` gives the two passes' values
    /// (the pool's gradient into a buffer, then `add_assign`) bit for bit, on planes of 1, 49
    /// and 3136 values; and refuses short buffers.
    #[test]
    fn global_avg_pool_backward_add_is_the_two_passes() {
        let be = CpuBackend::new(2).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for xs in [
            Shape4::new(3, 5, 1, 1),
            Shape4::new(2, 9, 7, 7),
            Shape4::new(1, 3, 56, 56),
        ] {
            let dy = crate::backend::cpu::test_values(xs.n * xs.c, 11);
            let dx0 = crate::backend::cpu::test_values(xs.numel(), 12);
            let mut pooled = vec![0.0; xs.numel()];
            be.global_avg_pool_backward(&dy, xs, &mut pooled).unwrap();
            let mut want = dx0.clone();
            be.add_assign(&mut want, &pooled, xs.numel()).unwrap();
            let mut got = dx0.clone();
            global_avg_pool_backward_add(&be, &dy, xs, &mut got).unwrap();
            assert_eq!(bits(&got), bits(&want), "{xs:?}");
            assert!(global_avg_pool_backward_add(&be, &dy, xs, &mut got[1..].to_vec()).is_err());
            let short_dy = &dy[..xs.n * xs.c - 1];
            assert!(global_avg_pool_backward_add(&be, short_dy, xs, &mut got).is_err());
        }
    }

    #[test]
    fn symmetric_max_pool_is_pytorchs() {
        let be = CpuBackend::new(2).unwrap();
        // Planes even and odd, more channels than one task; every border rule of timm's stems
        // and a kernel-2 pool whose ceil mode drops a window.
        for (h, w) in [(8, 8), (7, 9), (112, 113)] {
            for pool in [
                MaxPool2dParams::symmetric(3, 2, 1, false),
                MaxPool2dParams::symmetric(3, 2, 0, true),
                MaxPool2dParams::symmetric(3, 2, 1, true),
                MaxPool2dParams::symmetric(2, 2, 1, true),
            ] {
                let PoolPadding::Symmetric { pad, .. } = pool.padding else {
                    unreachable!()
                };
                let xs = Shape4::new(2, 9, h, w);
                // Distinct values, negative ones included (a -inf border must not win).
                let x: Vec<f32> = (0..xs.numel())
                    .map(|j| ((j * 7919) % 10007) as f32 / 100.0 - 50.0)
                    .collect();
                let ys = pool.geometry(xs).unwrap().ys;
                let dy: Vec<f32> = (0..ys.numel()).map(|j| (j % 13) as f32 - 6.0).collect();
                let mut y = vec![f32::NAN; ys.numel()];
                assert_eq!(be.max_pool2d(pool, &x, xs, &mut y).unwrap(), ys);
                let mut dx = vec![f32::NAN; xs.numel()];
                be.max_pool2d_backward(pool, &x, xs, &dy, &mut dx).unwrap();
                let (plane_in, plane_out) = (h * w, ys.h * ys.w);
                for p in 0..xs.n * xs.c {
                    let (want_y, want_dx) = padded_reference(
                        &x[p * plane_in..][..plane_in],
                        (h, w),
                        (pool.kernel, pool.stride, pad),
                        (ys.h, ys.w),
                        &dy[p * plane_out..][..plane_out],
                    );
                    assert_eq!(&y[p * plane_out..][..plane_out], &want_y[..], "{pool:?}");
                    assert_eq!(&dx[p * plane_in..][..plane_in], &want_dx[..], "{pool:?}");
                }
            }
        }
    }
}
