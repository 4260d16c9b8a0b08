//! conv2d of a single image with a small output plane (7x7: stage 4 of a 224x224 SE-ResNet at
//! batch 1, [`MAX_PLANE`]) by the transposed product of `kernels/cpu/sgemm_avx512.c`
//! (`senet_sgemm_avx512_t`), x86_64 AVX-512 only: pixels are the rows, output channels the
//! vector lanes, so a 7x7 plane is seven full blocks of 7 rows instead of a 48-column panel and a
//! 1-column one, and the two threads split the output channels (no shared B packing, no
//! barrier inside the product). The weights, transposed into 48-channel panels, are prepared
//! once ([`prepare`], through [`Backend::prepare_conv2d`]); the input is the im2col matrix as
//! stored (the image itself for 1x1 convs, subsampled for strided ones).
//!
//! Rounding: each output is summed in the k blocks of the AVX-512 GEMM (`k_block`), each an FMA
//! chain with k ascending from 0, the blocks added in order, then the bias: bit for bit what
//! [`super::avx512`] computes, whatever the thread count; the error bound is
//! [`super::direct_reference`]'s (k + 1) u (Σ|w x| + |bias|).
//!
//! [`Backend::prepare_conv2d`]: crate::backend::Backend::prepare_conv2d
use super::super::kernels;
use super::avx512::SharedOut;
use super::{ConvGeometry, ConvOp, PerImage};
use crate::backend::Activation;
use crate::Result;
use rayon::prelude::*;
use std::cell::RefCell;

/// Largest output plane (pixels) computed here: 7x7 = 49 fits. At 14x14 `benches/layers.rs`
/// measured the 1x1 convs as fast as the GEMM path's column split and the 3x3 20% slower (its
/// im2col is a separate pass, the GEMM path gathers into its packing), so they stay there.
pub(super) const MAX_PLANE: usize = 64;
/// Channels of one weight panel (`SENET_SGEMM_NR`).
const NR: usize = 48;

extern "C" {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn senet_sgemm_avx512_t(
        m: usize,
        n: usize,
        k: usize,
        a: *const f32,
        lda: usize,
        panels: *const f32,
        j0: usize,
        y: *mut f32,
        ldy: usize,
        bias: *const f32,
        act: i32,
        scratch: *mut f32,
    );
    pub(super) fn senet_sgemm_t_panels(w: *const f32, rows: usize, k: usize, panels: *mut f32);
    pub(super) fn senet_sgemm_t_scratch_floats(m: usize) -> usize;
}

thread_local! {
    /// Per-thread partial sums of the k blocks (pixels x 192 channels).
    static PARTIAL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The im2col (or subsampled) input of the conv running, on the thread that called it.
    static COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether this path computes the convolution (given prepared weights): the batch-1 kernels
/// enabled (`super::super::batch1_kernels`), one image, no groups, an output plane of at most
/// [`MAX_PLANE`] pixels, epilogue None or ReLU.
pub(super) fn supports(act: Activation, g: &ConvGeometry) -> bool {
    super::super::batch1_kernels()
        && g.xs.n == 1
        && g.p.groups == 1
        && g.ys.h * g.ys.w <= MAX_PLANE
        && act != Activation::Sigmoid
}

/// Floats of the panels of a weight with `cout` rows of `k` values, plus room to align them.
fn prepared_len(cout: usize, k: usize) -> usize {
    cout.div_ceil(NR) * NR * k + 16
}

/// The prepared form of weight `w` (Cout, Cin, kh, kw) of `g`: its transpose as panels of 48
/// output channels (panel q holds `w[q*48 + t, r]` at `r*48 + t`, zero past Cout), starting at
/// the first 64-byte boundary of the buffer. The caller has checked `w`'s length. Errors: the
/// buffer cannot be allocated.
pub(super) fn prepare(g: &ConvGeometry, w: &[f32]) -> Result<Vec<f32>> {
    let (cout, k) = (g.ys.c, g.xs.c * g.kh * g.kw);
    let mut v = crate::mem::filled(prepared_len(cout, k), 0.0f32, || {
        format!("prepared conv weights ({cout} x {k})")
    })?;
    let off = v.as_ptr().align_offset(64);
    assert!(w.len() >= cout * k && off < 16);
    // SAFETY: w holds cout x k floats (checked), v from `off` holds the panels' floats
    // (prepared_len reserves 16 floats for the offset).
    unsafe { senet_sgemm_t_panels(w.as_ptr(), cout, k, v[off..].as_mut_ptr()) };
    Ok(v)
}

/// The panels inside a prepared buffer, if it holds those of `g`'s weight (None otherwise: then
/// the conv takes another path).
pub(super) fn panels<'a>(g: &ConvGeometry, prepared: &'a [f32]) -> Option<&'a [f32]> {
    let (cout, k) = (g.ys.c, g.xs.c * g.kh * g.kw);
    aligned_panels(prepared, prepared_len(cout, k))
}

/// The 64-byte aligned panels inside `prepared`, a buffer of `len` floats (16 of them reserved
/// for the alignment offset), if it has that length; None otherwise.
pub(super) fn aligned_panels(prepared: &[f32], len: usize) -> Option<&[f32]> {
    let off = prepared.as_ptr().align_offset(64);
    (prepared.len() == len && off < 16).then(|| &prepared[off..])
}

/// `y = act(conv(x, w) + bias)` of `op` for its single image on the current rayon pool of
/// `threads` threads, the weights as `panels` ([`panels`]); then `post` on the image. The
/// caller has checked [`supports`] and the slice lengths.
pub(super) fn conv2d(
    op: &ConvOp,
    panels: &[f32],
    x: &[f32],
    y: &mut [f32],
    post: Option<PerImage>,
    threads: usize,
) {
    let g = &op.g;
    let (kh, kw) = (g.kh, g.kw);
    let plane = g.ys.h * g.ys.w;
    let yi = g.ys.image_len();
    if kh == 1 && kw == 1 && g.p.padding == 0 && g.p.stride == 1 {
        product(op, panels, &x[..g.xs.image_len()], &mut y[..yi], threads);
    } else {
        COL.with(|col| {
            let mut col = col.borrow_mut();
            let rows = g.xs.c * kh * kw;
            col.resize(rows * plane, 0.0);
            let chw = g.xs.h * g.xs.w;
            let per_task = g.xs.c.div_ceil(threads).max(1);
            let pointwise = kh == 1 && kw == 1 && g.p.padding == 0;
            // The gather split by input channels: its rows of each channel are contiguous.
            col.par_chunks_mut(per_task * kh * kw * plane)
                .zip(x[..g.xs.image_len()].par_chunks(per_task * chw))
                .for_each(|(c1, x1)| {
                    let geom = g.im2col(x1.len() / chw);
                    if pointwise {
                        kernels::subsample(x1, geom, c1);
                    } else {
                        kernels::im2col(x1, geom, c1);
                    }
                });
            product(op, panels, &col, &mut y[..yi], threads);
        });
    }
    if let Some(post) = post {
        post.apply_one(&y[..yi]);
    }
}

/// The product of the im2col matrix `a` (K x plane, as stored) and the prepared weights into
/// `y` (Cout, plane), the output channels split across `threads` tasks in blocks of 16.
fn product(op: &ConvOp, panels: &[f32], a: &[f32], y: &mut [f32], threads: usize) {
    let g = &op.g;
    let (cout, plane, k) = (g.ys.c, g.ys.h * g.ys.w, g.xs.c * g.kh * g.kw);
    assert!(a.len() >= k * plane && y.len() >= cout * plane);
    assert!(panels.len() >= cout.div_ceil(NR) * NR * k);
    assert_eq!(panels.as_ptr().align_offset(64), 0);
    if let Some(b) = op.bias {
        assert!(b.len() >= cout);
    }
    let act = i32::from(op.act == Activation::Relu);
    let vecs = cout.div_ceil(16);
    let out = SharedOut(y.as_mut_ptr());
    (0..threads).into_par_iter().for_each(|t| {
        let j0 = vecs * t / threads * 16;
        let j1 = (vecs * (t + 1) / threads * 16).min(cout);
        if j0 >= j1 {
            return;
        }
        PARTIAL.with(|s| {
            let mut s = s.borrow_mut();
            // SAFETY: a constant getter without preconditions.
            let need = unsafe { senet_sgemm_t_scratch_floats(plane) };
            if s.len() < need {
                s.resize(need, 0.0);
            }
            let bias = op.bias.map_or(std::ptr::null(), |b| b[j0..].as_ptr());
            // SAFETY: the CPU has AVX-512 (`supports`); a holds k x plane floats, the panels
            // every channel's k rows, the bias cout values (all checked above); task t writes
            // only the planes of channels j0..j1 of y (row stride plane), disjoint from every
            // other task's and inside y (checked above); the scratch holds `need` floats.
            unsafe {
                senet_sgemm_avx512_t(
                    plane,
                    j1 - j0,
                    k,
                    a.as_ptr(),
                    plane,
                    panels.as_ptr(),
                    j0,
                    out.at(j0 * plane),
                    plane,
                    bias,
                    act,
                    s.as_mut_ptr(),
                )
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::super::{avx512, check_against_direct};
    use super::*;
    use crate::backend::cpu::test_values as fill;
    use crate::backend::Conv2dParams;

    /// Against the direct sum with the derived bound, and bit for bit against the AVX-512 GEMM
    /// path ([`avx512::conv2d`] on one thread): 1x1 and 3x3 convs, strides 1 and 2, planes 7x7,
    /// 14x14 and odd ones (5x5: neither 7 nor 8 rows divide it; 3x9), output channels that are
    /// not multiples of 16 or 48, k in one block and in several, bias or none, ReLU or none,
    /// the fused per-image post, on 1, 2 and 3 threads (bit for bit the same).
    #[test]
    fn matches_direct_convolution_and_the_gemm() {
        if !super::super::super::batch1_kernels() {
            return;
        }
        // (cin, cout, h, w, k, stride, pad)
        let cases = [
            (64, 70, 7, 7, 3, 1, 1),
            (300, 100, 7, 7, 1, 1, 0),
            (33, 40, 14, 14, 3, 1, 1),
            (48, 17, 14, 14, 1, 2, 0),
            (29, 96, 5, 5, 3, 1, 1),
            (520, 33, 3, 9, 1, 1, 0),
            (16, 200, 9, 9, 3, 2, 1),
            (7, 5, 7, 7, 1, 1, 0),
        ];
        for (case, &(cin, cout, h, w, k, s, pad)) in cases.iter().enumerate() {
            let p = Conv2dParams {
                stride: s,
                padding: pad,
                groups: 1,
            };
            let g = ConvGeometry::of(1, cin, cout, [h, w], [k, k], p);
            let x = fill(g.xs.numel(), case as u64 + 1);
            let wt = fill(cout * cin * k * k, case as u64 + 50);
            let bias = fill(cout, case as u64 + 90);
            let act = if case % 2 == 0 {
                Activation::Relu
            } else {
                Activation::None
            };
            let op = ConvOp {
                g,
                w: &wt,
                bias: (case % 3 != 1).then_some(&bias[..]),
                act,
            };
            // The kernel computes any plane; the dispatch takes it for small ones.
            assert_eq!(
                supports(act, &g),
                g.ys.h * g.ys.w <= MAX_PLANE,
                "case {case}"
            );
            let prepared = prepare(&g, &wt).unwrap();
            let pan = panels(&g, &prepared).unwrap();
            let one = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            let mut gemm = vec![0.0; g.ys.numel()];
            one.install(|| avx512::conv2d(&op, &x, &mut gemm, None, 1));
            for threads in [1, 2, 3] {
                let what = format!("case {case} threads {threads}");
                let y = check_against_direct(&op, &x, threads, &what, |x, y, post| {
                    conv2d(&op, pan, x, y, post, threads)
                });
                assert!(
                    gemm.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "case {case}: {threads} threads differ from the GEMM path"
                );
            }
        }
    }

    /// A NaN or infinity in the input reaches exactly the outputs whose sums contain it, as in
    /// the GEMM path.
    #[test]
    fn propagates_non_finite_inputs_like_the_gemm() {
        if !super::super::super::batch1_kernels() {
            return;
        }
        let p = Conv2dParams {
            stride: 1,
            padding: 1,
            groups: 1,
        };
        let g = ConvGeometry::of(1, 20, 50, [7, 7], [3, 3], p);
        let mut x = fill(g.xs.numel(), 3);
        x[5 * 49 + 10] = f32::NAN;
        x[9 * 49 + 48] = f32::INFINITY;
        let wt = fill(50 * 20 * 9, 4);
        for act in [Activation::None, Activation::Relu] {
            let op = ConvOp {
                g,
                w: &wt,
                bias: None,
                act,
            };
            let prepared = prepare(&g, &wt).unwrap();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let (mut y, mut want) = (vec![0.0; g.ys.numel()], vec![0.0; g.ys.numel()]);
            pool.install(|| {
                conv2d(&op, panels(&g, &prepared).unwrap(), &x, &mut y, None, 2);
                avx512::conv2d(&op, &x, &mut want, None, 1);
            });
            assert!(y.iter().any(|v| v.is_nan()));
            assert!(want.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    /// Which convs take this path, and a prepared buffer of another weight shape is refused.
    #[test]
    fn chooses_its_convolutions() {
        if !super::super::super::batch1_kernels() {
            return;
        }
        let geom = |n: usize, cin: usize, hw: usize, k: usize, stride: usize, groups: usize| {
            let p = Conv2dParams {
                stride,
                padding: k / 2,
                groups,
            };
            ConvGeometry::of(n, cin, 64, [hw, hw], [k, k], p)
        };
        let relu = Activation::Relu;
        assert!(supports(relu, &geom(1, 512, 7, 3, 1, 1)));
        assert!(supports(relu, &geom(1, 1024, 14, 1, 2, 1)));
        assert!(supports(relu, &geom(1, 512, 14, 3, 2, 1)));
        assert!(!supports(relu, &geom(1, 256, 14, 1, 1, 1)));
        assert!(!supports(relu, &geom(1, 256, 28, 1, 2, 1)));
        assert!(!supports(relu, &geom(2, 512, 7, 3, 1, 1)));
        assert!(!supports(relu, &geom(1, 128, 28, 3, 1, 1)));
        assert!(!supports(relu, &geom(1, 512, 7, 3, 1, 32)));
        assert!(!supports(Activation::Sigmoid, &geom(1, 512, 7, 1, 1, 1)));
        let g = geom(1, 32, 7, 3, 1, 1);
        let prepared = prepare(&g, &fill(64 * 32 * 9, 1)).unwrap();
        assert!(panels(&g, &prepared).is_some());
        assert!(panels(&geom(1, 32, 7, 1, 1, 1), &prepared).is_none());
    }
}
