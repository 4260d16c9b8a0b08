//! conv2d of 3x3 stride-1 pad-1 convolutions by Winograd F(4x4, 3x3) (Lavin & Gray, "Fast
//! Algorithms for Convolutional Neural Networks", CVPR 2016, section 4), x86_64 AVX-512 only:
//! 36 multiplications per 4x4 output tile and channel pair instead of 144. The transforms are in
//! `kernels/cpu/winograd_avx512.c` (layouts in its header), the 36 products per task run on the
//! AVX-512 GEMM ([`sgemm::sgemm_packed`]).
//!
//! Rounding: each output is the same sum as the direct conv's, evaluated through the transforms,
//! so it differs from the direct conv by a few float32 ulps of the largest partial sums (the
//! tests hold it to 2e-5 of the sum of |products|); the result is deterministic and independent
//! of the thread count (tasks are whole images, each computed the same way).
//!
//! Work split: the weights are transformed once per call, in parallel over output channels;
//! then tasks of consecutive images run on the rayon pool, each transforming its input tiles,
//! running the 36 GEMMs and transforming back into its output images (with bias and ReLU), all in
//! per-thread buffers that stay in the caches.
use super::conv::{ConvGeometry, PerImage};
use super::sgemm::{self, Line};
use crate::backend::Activation;
use rayon::prelude::*;
use std::cell::RefCell;

/// Transformed positions of a 6x6 tile.
const XI: usize = 36;
/// Tiles (GEMM columns) a task aims for: 4 panels of 48.
const TARGET_TILES: usize = 192;
/// Bytes of a task's transformed input and output: those of both threads stay in the L3 cache.
const TASK_BYTES: usize = 6 << 20;

thread_local! {
    /// Per-thread transformed input V of a task (the B panels of the 36 GEMMs).
    static V: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
    /// Per-thread GEMM results M of a task (36, Cout, tiles rounded up to 16).
    static M: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
    /// Per-thread staging area of the transforms (36, tiles rounded up to 16).
    static S: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

extern "C" {
    fn senet_winograd_weights(w: *const f32, rows: usize, cin: usize, u: *mut f32);
    fn senet_winograd_input(
        x: *const f32,
        cin: usize,
        h: usize,
        w: usize,
        nimg: usize,
        v: *mut f32,
        scratch: *mut f32,
    );
    #[allow(clippy::too_many_arguments)]
    fn senet_winograd_output(
        m: *const f32,
        ldm: usize,
        cout: usize,
        h: usize,
        w: usize,
        nimg: usize,
        bias: *const f32,
        act: i32,
        y: *mut f32,
        scratch: *mut f32,
    );
}

/// Whether this path computes the convolution: AVX-512 present, a 3x3 kernel with stride 1,
/// padding 1 and no groups, at least 16 input and output channels, epilogue None or ReLU, and
/// work for every thread (one image per task: a single image on several threads keeps the
/// direct path, which splits the image).
pub(super) fn supports(act: Activation, g: &ConvGeometry, threads: usize) -> bool {
    sgemm::available()
        && g.kh == 3
        && g.kw == 3
        && g.p.stride == 1
        && g.p.padding == 1
        && g.p.groups == 1
        && g.xs.c >= 16
        && g.ys.c >= 16
        && act != Activation::Sigmoid
        && (g.xs.n >= 2 || threads == 1)
}

/// Tiles of one image.
fn tiles(h: usize, w: usize) -> usize {
    h.div_ceil(4) * w.div_ceil(4)
}

/// `y = act(conv(x, w) + bias)` for the batch `g.xs.n` (x: (N, Cin, H, W), w: (Cout, Cin, 3, 3),
/// y: (N, Cout, H, W)) on the current rayon pool of `threads` threads; then `post` on each image
/// by the task that computed it. `u` receives the transformed weights (Cout, 36, Cin). The
/// caller has checked [`supports`] and the slice lengths.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d(
    u: &mut Vec<f32>,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    act: Activation,
    y: &mut [f32],
    post: Option<PerImage>,
    threads: usize,
) {
    let (n, cin, cout) = (g.xs.n, g.xs.c, g.ys.c);
    let (xi, yi) = (g.xs.image_len(), g.ys.image_len());
    let per_img = tiles(g.xs.h, g.xs.w);
    let by_memory = TASK_BYTES / (XI * 4 * (cin + cout) * per_img);
    let per_task = TARGET_TILES
        .div_ceil(per_img)
        .min(by_memory)
        .min(n.div_ceil(threads))
        .max(1);
    u.resize(cout * XI * cin, 0.0);
    let rows = cout.div_ceil(4 * threads).max(1);
    u.par_chunks_mut(rows * XI * cin)
        .zip(w[..cout * cin * 9].par_chunks(rows * cin * 9))
        .for_each(|(uc, wc)| {
            // SAFETY: the CPU has AVX-512 (`supports`); wc holds rows x cin x 9 weights and
            // uc rows x 36 x cin floats for the rows of this chunk.
            unsafe {
                senet_winograd_weights(wc.as_ptr(), wc.len() / (cin * 9), cin, uc.as_mut_ptr())
            }
        });
    let u = &u[..];
    let run = |xc: &[f32], yc: &mut [f32]| task(u, xc, yc, yc.len() / yi, g, bias, act);
    let tasks = y[..n * yi]
        .par_chunks_mut(per_task * yi)
        .zip(x[..n * xi].par_chunks(per_task * xi));
    match post {
        None => tasks.for_each(|(yc, xc)| run(xc, yc)),
        Some(post) => {
            let (out, len, f) = (&mut post.out[..n * post.len], post.len, post.f);
            tasks
                .zip(out.par_chunks_mut(per_task * len))
                .for_each(|((yc, xc), oc)| {
                    run(xc, yc);
                    for (y1, o1) in yc.chunks_exact(yi).zip(oc.chunks_exact_mut(len)) {
                        f(y1, o1);
                    }
                })
        }
    }
}

/// The `nimg` images of one task, on the calling thread.
fn task(
    u: &[f32],
    x: &[f32],
    y: &mut [f32],
    nimg: usize,
    g: &ConvGeometry,
    bias: Option<&[f32]>,
    act: Activation,
) {
    let (cin, cout, h, w) = (g.xs.c, g.ys.c, g.xs.h, g.xs.w);
    let ntiles = nimg * tiles(h, w);
    let panels = sgemm::packed_len(cin, ntiles);
    let ldm = ntiles.next_multiple_of(16);
    assert!(x.len() >= nimg * cin * h * w && y.len() >= nimg * cout * h * w);
    assert!(
        nimg * cin * h * w < i32::MAX as usize,
        "tile offsets exceed 32 bits"
    );
    let mut bufs = [&V, &M, &S].map(|b| b.with(|b| b.take()));
    let [v, m, s] = &mut bufs;
    let v = sgemm::aligned(v, XI * panels);
    let m = sgemm::aligned(m, XI * cout * ldm);
    let s = sgemm::aligned(s, XI * ldm);
    // SAFETY: AVX-512 present; x holds the task's images (checked); v holds the 36 packed
    // matrices of ceil(ntiles / 48) panels of cin x 48 floats, s the 36 x ldm staging floats,
    // both 64-byte aligned.
    unsafe { senet_winograd_input(x.as_ptr(), cin, h, w, nimg, v.as_mut_ptr(), s.as_mut_ptr()) };
    for xi in 0..XI {
        sgemm::sgemm_packed(
            cout,
            ntiles,
            cin,
            &u[xi * cin..],
            XI * cin,
            &v[xi * panels..(xi + 1) * panels],
            &mut m[xi * cout * ldm..(xi + 1) * cout * ldm],
            ldm,
        );
    }
    let act = i32::from(act == Activation::Relu);
    let bias = bias.map_or(std::ptr::null(), |b| b[..cout].as_ptr());
    let (m, y) = (m.as_ptr(), y.as_mut_ptr());
    // SAFETY: m holds 36 x cout x ldm floats and s 36 x ldm (64-byte aligned, ldm a multiple
    // of 16); y the task's output images (checked); bias, when given, cout floats.
    unsafe { senet_winograd_output(m, ldm, cout, h, w, nimg, bias, act, y, s.as_mut_ptr()) };
    for (buf, b) in [&V, &M, &S].into_iter().zip(bufs) {
        buf.with(|cell| *cell.borrow_mut() = b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Conv2dParams, Shape4};

    /// Deterministic values in [-1, 1).
    fn fill(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Against the direct sum in f64 for odd sizes (partial tiles), several images per task,
    /// channel counts that are not multiples of 16, bias and ReLU, and the fused per-image post.
    #[test]
    fn matches_direct_convolution() {
        if !sgemm::available() {
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for &(n, cin, cout, h, w, relu) in &[
            (2, 16, 16, 4, 4, false),
            (3, 17, 33, 7, 9, true),
            (5, 40, 24, 14, 14, false),
            (2, 64, 70, 13, 5, true),
            (1, 20, 16, 30, 31, false),
            (2, 16, 16, 6, 70, true),
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
            let x = fill(xs.numel(), (cin * h + w) as u64);
            let wt = fill(cout * cin * 9, cout as u64);
            let bias = fill(cout, 7);
            let act = if relu {
                Activation::Relu
            } else {
                Activation::None
            };
            let threads = if n == 1 { 1 } else { 2 };
            assert!(supports(act, &g, threads));
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
            pool.install(|| {
                conv2d(
                    &mut u,
                    &x,
                    &wt,
                    Some(&bias),
                    &g,
                    act,
                    &mut y,
                    Some(post),
                    threads,
                )
            });
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
                            let (mut s, mut mag) = (bias[co] as f64, bias[co].abs() as f64);
                            for ci in 0..cin {
                                for ky in 0..3 {
                                    for kx in 0..3 {
                                        let (iy, ix) = (oy + ky, ox + kx);
                                        if iy == 0 || ix == 0 || iy > h || ix > w {
                                            continue;
                                        }
                                        let v = i1[ci * h * w + (iy - 1) * w + ix - 1] as f64
                                            * wt[((co * cin + ci) * 3 + ky) * 3 + kx] as f64;
                                        s += v;
                                        mag += v.abs();
                                    }
                                }
                            }
                            if relu {
                                s = s.max(0.0);
                            }
                            let got = y1[co * h * w + oy * w + ox];
                            total += got;
                            assert!(
                                (got as f64 - s).abs() <= 2e-5 * mag,
                                "n{n} cin{cin} cout{cout} {h}x{w} image {img} ({co},{oy},{ox}): \
                                 {got} vs {s}"
                            );
                        }
                    }
                    assert_eq!(s1[co], total, "post of image {img} channel {co}");
                }
            }
        }
    }
}
