//! conv2d of a whole batch on the AVX-512 GEMM ([`super::sgemm`]), x86_64 only: the weights
//! (Cout, Cin/g, kh, kw) are A as stored, the input images are B through the implicit im2col,
//! bias and ReLU are fused into the GEMM's stores.
//!
//! Work split (deterministic: every output value is summed in the same order whatever the split):
//! - batch > 1: tasks of consecutive images across the rayon pool. Images with few output
//!   pixels (7x7, 14x14) are put side by side as the columns of one GEMM (so 48-column panels
//!   are full), computed into a per-thread buffer in blocks of rows and copied out per image;
//!   larger images run one GEMM per image straight into the output.
//! - batch 1: the GEMM of the image is split across threads by column panels (large images) or
//!   by blocks of 8 output channels (small ones).
use super::super::kernels;
use super::super::sgemm::{self, BSrc, Out, NR};
use super::{self as conv, ConvGeometry, ConvOp, PerImage};
use crate::backend::{Activation, Conv2dParams, Shape4};
use rayon::prelude::*;
use std::cell::RefCell;

/// Columns a multi-image GEMM aims for (images smaller than half of this are grouped).
const TARGET_COLS: usize = 768;
/// Rows per multi-image GEMM call: its output block (rows x columns) stays in L2 for the copy.
const ROW_BLOCK: usize = 256;

thread_local! {
    /// Per-thread output block of the multi-image GEMMs (ROW_BLOCK x images*pixels).
    static CBUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread subsampled input of strided 1x1 convs (images x Cin x OH x OW).
    static XBUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A strided 1x1 conv without padding: its input is subsampled once (`kernels::subsample`) and
/// it runs as a pointwise conv, instead of re-gathering every other pixel in each B block.
fn strided_pointwise(g: &ConvGeometry) -> bool {
    g.kh == 1 && g.kw == 1 && g.p.padding == 0 && g.p.stride > 1
}

/// `xs[i] = x[i, :, ::stride, ::stride]` for the `nimg` images of `x`; returns the geometry
/// of the equivalent stride-1 conv on `xs`.
fn subsample(x: &[f32], g: &ConvGeometry, nimg: usize, xs: &mut Vec<f32>) -> ConvGeometry {
    let (c, oh, ow) = (g.xs.c, g.ys.h, g.ys.w);
    let (xi, si) = (g.xs.image_len(), c * oh * ow);
    xs.resize(nimg * si, 0.0);
    for (dst, src) in xs.chunks_exact_mut(si).zip(x.chunks_exact(xi)) {
        kernels::subsample(src, g.im2col(c), dst);
    }
    ConvGeometry {
        xs: Shape4::new(g.xs.n, c, oh, ow),
        ys: g.ys,
        kh: 1,
        kw: 1,
        p: Conv2dParams {
            stride: 1,
            padding: 0,
            groups: g.p.groups,
        },
    }
}

/// Whether this path handles the convolution: AVX-512 present, epilogue None or ReLU, and not
/// one of the shapes where the `gemm` crate path measured faster (`benches/layers.rs`):
/// - grouped convs with fewer than 32 outputs per group (ResNeXt's 3x3: the per-group B
///   packing costs more than the product, 61 vs 79 GFLOP/s);
/// - pointwise convs with at most 64 input channels on large planes (seresnet50's 1x1
///   64 -> 256 at 56x56: k = 64 is too short to hide the 8x48 tile's stores, 164 vs 176).
pub(super) fn supports(act: Activation, g: &ConvGeometry) -> bool {
    let groups = g.p.groups;
    let thin_groups = groups > 1 && g.ys.c / groups < 32;
    let short_pointwise = g.kh == 1
        && g.kw == 1
        && g.p.stride == 1
        && g.xs.c / groups <= 64
        && g.ys.h * g.ys.w >= 56 * 56;
    sgemm::available() && act != Activation::Sigmoid && !thin_groups && !short_pointwise
}

/// B of group `gi` for `nimg` images starting at `x[0]`. Pointwise convs are described as one
/// row of h*w pixels so that panel segments run across image rows.
fn source<'a>(x: &'a [f32], g: &ConvGeometry, gi: usize, nimg: usize) -> BSrc<'a> {
    let (xs, ys) = (g.xs, g.ys);
    let cin_g = xs.c / g.p.groups;
    let pointwise = g.kh == 1 && g.kw == 1 && g.p.padding == 0 && g.p.stride == 1;
    let (h, w, oh, ow) = if pointwise {
        (1, xs.h * xs.w, 1, ys.h * ys.w)
    } else {
        (xs.h, xs.w, ys.h, ys.w)
    };
    BSrc {
        x: &x[gi * cin_g * xs.h * xs.w..],
        img_stride: xs.image_len(),
        nimg,
        c: cin_g,
        h,
        w,
        kh: g.kh,
        kw: g.kw,
        stride: g.p.stride,
        pad: g.p.padding,
        oh,
        ow,
    }
}

/// `y = act(conv(x, w) + bias)` of `op` for the whole batch `op.g.xs.n` (x: (N, Cin, H, W), y:
/// (N, Cout, OH, OW)), on the current rayon pool of `threads` threads; then `post` on each
/// image, by the task that computed it.
pub(super) fn conv2d(
    op: &ConvOp,
    x: &[f32],
    y: &mut [f32],
    post: Option<PerImage>,
    threads: usize,
) {
    let g = &op.g;
    let (n, yi) = (g.xs.n, g.ys.image_len());
    let plane = g.ys.h * g.ys.w;
    if n == 1 && threads > 1 {
        single_image(x, op, &mut y[..yi], threads);
        if let Some(post) = post {
            post.apply_one(&y[..yi]);
        }
        return;
    }
    let per_task = if 2 * plane >= TARGET_COLS {
        1
    } else {
        TARGET_COLS.div_ceil(plane).min(n.div_ceil(threads)).max(1)
    };
    conv::image_tasks(x, y, g, per_task, post, |xc, yc| {
        images(xc, op, yc, yc.len() / yi)
    });
}

/// The `nimg` images of one task, on the calling thread.
fn images(x: &[f32], op: &ConvOp, y: &mut [f32], nimg: usize) {
    if strided_pointwise(&op.g) {
        return XBUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let g1 = subsample(x, &op.g, nimg, &mut buf);
            images_on(&buf, &ConvOp { g: g1, ..*op }, y, nimg)
        });
    }
    images_on(x, op, y, nimg)
}

/// [`images`] once strided 1x1 inputs are subsampled.
fn images_on(x: &[f32], op: &ConvOp, y: &mut [f32], nimg: usize) {
    let (g, w, bias, act) = (&op.g, op.w, op.bias, op.act);
    let groups = g.p.groups;
    let cout_g = g.ys.c / groups;
    let k_g = g.xs.c / groups * g.kh * g.kw;
    let plane = g.ys.h * g.ys.w;
    let yi = g.ys.image_len();
    for gi in 0..groups {
        let wg = &w[gi * cout_g * k_g..(gi + 1) * cout_g * k_g];
        let bg = bias.map(|b| &b[gi * cout_g..(gi + 1) * cout_g]);
        if nimg == 1 {
            let src = source(x, g, gi, 1);
            let c = &mut y[gi * cout_g * plane..(gi + 1) * cout_g * plane];
            sgemm::sgemm(
                cout_g,
                plane,
                wg,
                k_g,
                &src,
                0,
                Out { c, ldc: plane },
                bg,
                act,
            );
            continue;
        }
        let src = source(x, g, gi, nimg);
        let cols = nimg * plane;
        CBUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let need = ROW_BLOCK.min(cout_g) * cols;
            if buf.len() < need {
                buf.resize(need, 0.0);
            }
            for m0 in (0..cout_g).step_by(ROW_BLOCK) {
                let mb = ROW_BLOCK.min(cout_g - m0);
                let out = Out {
                    c: &mut buf[..mb * cols],
                    ldc: cols,
                };
                let bm = bg.map(|b| &b[m0..m0 + mb]);
                sgemm::sgemm(mb, cols, &wg[m0 * k_g..], k_g, &src, 0, out, bm, act);
                for img in 0..nimg {
                    let base = img * yi + (gi * cout_g + m0) * plane;
                    for (i, dst) in y[base..base + mb * plane]
                        .chunks_exact_mut(plane)
                        .enumerate()
                    {
                        dst.copy_from_slice(&buf[i * cols + img * plane..][..plane]);
                    }
                }
            }
        });
    }
}

/// A raw output pointer shared by tasks that write disjoint columns.
#[derive(Clone, Copy)]
pub(super) struct SharedOut(pub(super) *mut f32);
// SAFETY: only used by `single_image` and `batch1::product`, whose tasks write disjoint
// elements.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so closures capture the whole Send wrapper).
    pub(super) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// One image, its GEMMs split across `threads` tasks.
fn single_image(x: &[f32], op: &ConvOp, y: &mut [f32], threads: usize) {
    if strided_pointwise(&op.g) {
        // The same per-thread buffer as the multi-image path: no allocation per layer.
        return XBUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let g1 = subsample(x, &op.g, 1, &mut buf);
            single_image(&buf, &ConvOp { g: g1, ..*op }, y, threads)
        });
    }
    let (g, w, bias, act) = (&op.g, op.w, op.bias, op.act);
    let groups = g.p.groups;
    let cout_g = g.ys.c / groups;
    let k_g = g.xs.c / groups * g.kh * g.kw;
    let plane = g.ys.h * g.ys.w;
    let panels = plane.div_ceil(NR);
    for gi in 0..groups {
        let wg = &w[gi * cout_g * k_g..(gi + 1) * cout_g * k_g];
        let bg = bias.map(|b| &b[gi * cout_g..(gi + 1) * cout_g]);
        let src = source(x, g, gi, 1);
        let yg = &mut y[gi * cout_g * plane..(gi + 1) * cout_g * plane];
        if panels >= 2 * threads {
            let out = SharedOut(yg.as_mut_ptr());
            (0..threads).into_par_iter().for_each(|t| {
                let j0 = (panels * t / threads * NR).min(plane);
                let j1 = (panels * (t + 1) / threads * NR).min(plane);
                // SAFETY: task t writes columns j0..j1 of the cout_g x plane block yg (row
                // stride plane), disjoint from every other task's columns and inside yg.
                unsafe {
                    sgemm::sgemm_ptr(
                        cout_g,
                        j1 - j0,
                        wg,
                        k_g,
                        &src,
                        j0,
                        out.at(j0),
                        plane,
                        bg,
                        act,
                    )
                }
            });
        } else {
            let rows = cout_g.div_ceil(threads).div_ceil(8) * 8;
            yg.par_chunks_mut(rows * plane)
                .enumerate()
                .for_each(|(t, c)| {
                    let m0 = t * rows;
                    let mb = c.len() / plane;
                    let bm = bg.map(|b| &b[m0..m0 + mb]);
                    let out = Out { c, ldc: plane };
                    sgemm::sgemm(mb, plane, &wg[m0 * k_g..], k_g, &src, 0, out, bm, act);
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::matmul::Par;

    fn fill(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5) - 1.0)
            .collect()
    }

    /// Same results as the im2col + `gemm`-crate path (and bit for bit the same results on 1, 2
    /// and 3 threads) for every work split: batch 1 split by
    /// columns or rows, batches of large images, small images batched into one GEMM, groups.
    #[test]
    fn matches_gemm_crate_path() {
        if !sgemm::available() {
            return;
        }
        // (n, cin, h, cout, k, stride, pad, groups)
        let cases = [
            (1, 3, 30, 16, 7, 2, 3, 1),
            (3, 3, 30, 16, 7, 2, 3, 1),
            (1, 16, 20, 24, 3, 1, 1, 1),
            (1, 16, 7, 40, 3, 1, 1, 1),
            (5, 16, 7, 40, 3, 1, 1, 1),
            (4, 32, 14, 20, 1, 1, 0, 1),
            (3, 32, 14, 20, 1, 2, 0, 1),
            (1, 32, 14, 20, 1, 2, 0, 1),
            (2, 8, 90, 20, 1, 1, 0, 1),
            (2, 8, 9, 20, 1, 3, 0, 2),
            (2, 24, 11, 12, 3, 2, 1, 1),
            (3, 16, 9, 32, 3, 1, 1, 4),
            (1, 16, 30, 32, 3, 1, 1, 8),
            (7, 600, 3, 9, 1, 1, 0, 1),
        ];
        for &(n, cin, h, cout, k, s, p, groups) in &cases {
            let params = Conv2dParams {
                stride: s,
                padding: p,
                groups,
            };
            let g = ConvGeometry::of(n, cin, cout, [h, h], [k, k], params);
            let x = fill(g.xs.numel(), 1);
            let w = fill(cout * cin / groups * k * k, 2);
            let b = fill(cout, 3);
            for act in [Activation::None, Activation::Relu] {
                let op = ConvOp {
                    g,
                    w: &w,
                    bias: Some(&b),
                    act,
                };
                let mut want = vec![0.0; g.ys.numel()];
                for (y1, x1) in want
                    .chunks_mut(g.ys.image_len())
                    .zip(x.chunks(g.xs.image_len()))
                {
                    super::super::conv2d_image(x1, &op, y1, Par::Seq);
                }
                let mut first: Option<Vec<f32>> = None;
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut got = vec![f32::NAN; g.ys.numel()];
                    pool.install(|| conv2d(&op, &x, &mut got, None, threads));
                    for (i, (a, e)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                            "case {:?} threads {threads} at {i}: {a} vs {e}",
                            (n, cin, h, cout, k, s, p, groups)
                        );
                    }
                    // Deterministic: bit for bit the same whatever the split.
                    match &first {
                        None => first = Some(got),
                        Some(f) => {
                            assert!(f.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()))
                        }
                    }
                }
            }
        }
    }
}
