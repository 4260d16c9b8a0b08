//! conv2d of a single image's 3x3 stride-1 convs with small planes (14x14 and 7x7: stages 3 and
//! 4 of a 224x224 SE-ResNet at batch 1) by Winograd F(4x4, 3x3) with the 36 products transposed,
//! x86_64 AVX-512 only. At batch 1 a 14x14 image has only 16 tiles: as the columns of
//! [`super::winograd`]'s products they fill a third of one 48-column panel. Here the tiles are
//! the rows of `senet_sgemm_avx512_t` (two blocks of 8) and the output channels its vector
//! lanes, with U[xi] prepared once as that kernel's weight panels ([`prepare`], through
//! [`Backend::prepare_conv2d`]).
//!
//! Work split: the input transform by blocks of input channels (as [`super::winograd`]), then
//! each thread takes a range of output channels through its 36 products and their output
//! transform (bias, ReLU) with no barrier in between.
//!
//! Rounding: the transforms are [`super::winograd`]'s, and `senet_sgemm_avx512_t` sums each
//! product in the k blocks of the AVX-512 GEMM, as [`super::winograd`]'s products do: the
//! results are bit for bit those of [`super::winograd`] on one image (tested), whatever the
//! thread count, with its error bound.
//!
//! [`Backend::prepare_conv2d`]: crate::backend::Backend::prepare_conv2d
use super::super::sgemm::{self, Line};
use super::batch1::{senet_sgemm_avx512_t, senet_sgemm_t_panels, senet_sgemm_t_scratch_floats};
use super::winograd::{self, Disjoint, Plan, Tile, XI};
use super::{ConvGeometry, ConvOp, PerImage};
use crate::backend::Activation;
use crate::Result;
use rayon::prelude::*;
use std::cell::RefCell;

/// Channels of one weight panel and tiles of one V panel (`SENET_SGEMM_NR`).
const NR: usize = 48;

/// Fewest tiles computed here. U is 4x the weight: with few tiles the products stream it from
/// memory for little work. `benches/layers.rs` at batch 1 on 2 threads: 256x14x14 (16 tiles)
/// 2.3 -> 1.0-1.3 ms, 512x7x7 (4 tiles) 3.0 -> 3.5 ms and 5.8 -> 8.4 ms (the direct batch-1
/// product, `super::batch1`, keeps those).
const MIN_TILES: usize = 16;

thread_local! {
    /// The transformed input V of the conv running, on the thread that called it.
    static V: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
    /// Per-thread products M of its output channels (36, channels, tiles rounded up to 16).
    static M: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
    /// Per-thread partial sums of `senet_sgemm_avx512_t`'s k blocks.
    static PARTIAL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether this path computes the convolution (given prepared weights): the batch-1 kernels
/// enabled and not turned off by `SENET_CPU_B1=nowino`, one image, a conv of the Winograd
/// transforms (`winograd::fits`: 3x3, stride 1, padding 1, no groups, at least 16 input and
/// output channels, epilogue None or ReLU), [`MIN_TILES`] to 48 tiles (one V panel: planes up
/// to 24x24).
pub(super) fn supports(act: Activation, g: &ConvGeometry) -> bool {
    let tiles = Tile::F4.tiles(g.xs.h, g.xs.w);
    enabled() && g.xs.n == 1 && winograd::fits(act, g) && (MIN_TILES..=NR).contains(&tiles)
}

/// The batch-1 kernels on (`super::super::batch1_kernels`) and `SENET_CPU_B1` not naming `nowino`
/// (the A/B switch of this path alone: those convs then take the GEMM path of before).
fn enabled() -> bool {
    super::super::batch1_kernels() && !super::super::batch1_path_off("nowino")
}

/// Floats of one transformed position's panels (Cout rounded up to 48, times Cin).
fn panel_len(cout: usize, cin: usize) -> usize {
    cout.div_ceil(NR) * NR * cin
}

/// Floats of the prepared buffer: 36 positions' panels, plus room to align them.
fn prepared_len(cout: usize, cin: usize) -> usize {
    XI * panel_len(cout, cin) + 16
}

/// The prepared form of weight `w` (Cout, Cin, 3, 3) of `g`: for each transformed position xi,
/// U[xi] = (G g G^T)[xi] transposed into panels of 48 output channels
/// (`senet_sgemm_t_panels`: panel q holds `U[xi][q*48 + t][ci]` at `ci*48 + t`, zero past
/// Cout), the 36 one after the other from the first 64-byte boundary of the buffer. The caller
/// has checked `w`'s length. Errors: a buffer cannot be allocated.
pub(super) fn prepare(g: &ConvGeometry, w: &[f32]) -> Result<Vec<f32>> {
    let (cout, cin) = (g.ys.c, g.xs.c);
    let what = || format!("prepared Winograd weights ({cout} x {cin})");
    let u = winograd::prepare(g, w)?;
    let mut ux = crate::mem::filled(cout * cin, 0.0f32, what)?;
    let mut v = crate::mem::filled(prepared_len(cout, cin), 0.0f32, what)?;
    let off = v.as_ptr().align_offset(64);
    assert!(off < 16);
    let plen = panel_len(cout, cin);
    for (xi, dst) in v[off..].chunks_exact_mut(plen).enumerate() {
        for (row, urow) in ux.chunks_exact_mut(cin).zip(u.chunks_exact(XI * cin)) {
            row.copy_from_slice(&urow[xi * cin..(xi + 1) * cin]);
        }
        // SAFETY: ux holds cout x cin floats, dst the panels of cout rows of cin (plen).
        unsafe { senet_sgemm_t_panels(ux.as_ptr(), cout, cin, dst.as_mut_ptr()) };
    }
    Ok(v)
}

/// The panels inside a prepared buffer, if it holds those of `g`'s weight (None otherwise: then
/// the conv takes another path).
pub(super) fn panels<'a>(g: &ConvGeometry, prepared: &'a [f32]) -> Option<&'a [f32]> {
    super::batch1::aligned_panels(prepared, prepared_len(g.ys.c, g.xs.c))
}

/// `y = act(conv(x, w) + bias)` of `op` for its single image on the current rayon pool of
/// `threads` threads, U as `panels` ([`panels`]); then `post` on the image. The caller has
/// checked [`supports`] and the slice lengths.
pub(super) fn conv2d(
    op: &ConvOp,
    panels: &[f32],
    x: &[f32],
    y: &mut [f32],
    post: Option<PerImage>,
    threads: usize,
) {
    let g = &op.g;
    let (cin, cout) = (g.xs.c, g.ys.c);
    let plan = Plan::new(Tile::F4, g, 1);
    let (ntiles, vpanel, _) = plan.sizes();
    assert!(ntiles <= NR && vpanel == cin * NR);
    assert!(panels.len() >= XI * panel_len(cout, cin));
    assert_eq!(panels.as_ptr().align_offset(64), 0);
    let yi = g.ys.image_len();
    assert!(y.len() >= yi);
    if let Some(b) = op.bias {
        assert!(b.len() >= cout);
    }
    let mut vbuf = V.with(|b| b.take());
    let v = sgemm::aligned(&mut vbuf, plan.v_len());
    plan.input_parallel(x, v, threads);
    let v = &*v;
    let vecs = cout.div_ceil(16);
    let out = Disjoint(y.as_mut_ptr());
    (0..threads).into_par_iter().for_each(|t| {
        let j0 = vecs * t / threads * 16;
        let j1 = (vecs * (t + 1) / threads * 16).min(cout);
        if j0 < j1 {
            // SAFETY: task t writes only the planes of channels j0..j1 of the image in y,
            // disjoint from every other task's (checked above).
            unsafe { channels(op, &plan, panels, v, j0..j1, out) };
        }
    });
    V.with(|b| *b.borrow_mut() = vbuf);
    if let Some(post) = post {
        post.apply_one(&y[..yi]);
    }
}

/// The 36 products of output channels `c` (`c.start` a multiple of 16) into this thread's M,
/// then their output transform into `y`.
///
/// # Safety
/// `y` holds the image's output (Cout x H x W floats); no one else accesses the planes of the
/// channels `c` meanwhile. `v` holds the plan's V, `panels` the prepared U (checked by the
/// caller).
unsafe fn channels(
    op: &ConvOp,
    plan: &Plan,
    panels: &[f32],
    v: &[f32],
    c: std::ops::Range<usize>,
    y: Disjoint,
) {
    let (cin, cout, plane) = (op.g.xs.c, op.g.ys.c, op.g.ys.h * op.g.ys.w);
    let (ntiles, vpanel, ldm) = plan.sizes();
    let nch = c.len();
    let local = plan.with_cout(nch);
    let mut mbuf = M.with(|b| b.take());
    let m = sgemm::aligned(&mut mbuf, local.m_len());
    PARTIAL.with(|s| {
        let mut s = s.borrow_mut();
        // SAFETY: a constant getter without preconditions.
        let need = unsafe { senet_sgemm_t_scratch_floats(ntiles) };
        if s.len() < need {
            s.resize(need, 0.0);
        }
        let plen = panel_len(cout, cin);
        for (xi, mx) in m.chunks_exact_mut(nch * ldm).enumerate() {
            // SAFETY: AVX-512 present (`supports`); V[xi] holds cin rows of 48 floats, the
            // first ntiles of them the tiles' values; the panels of xi every channel's cin
            // rows; mx nch rows of ldm >= ntiles floats; the scratch `need` floats.
            unsafe {
                senet_sgemm_avx512_t(
                    ntiles,
                    nch,
                    cin,
                    v[xi * vpanel..].as_ptr(),
                    NR,
                    panels[xi * plen..].as_ptr(),
                    c.start,
                    mx.as_mut_ptr(),
                    ldm,
                    std::ptr::null(),
                    0,
                    s.as_mut_ptr(),
                )
            }
        }
    });
    let bias = op.bias.map(|b| &b[c.start..c.end]);
    // SAFETY: m holds the 36 products of the nch channels (local's M); the channels' planes
    // start at channel c.start of y (the caller's promise).
    unsafe { local.output(m, 0..nch, bias, op.act, y.ptr().add(c.start * plane)) };
    M.with(|b| *b.borrow_mut() = mbuf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::test_values as fill;
    use crate::backend::{Conv2dParams, Shape4};

    fn geometry(cin: usize, cout: usize, h: usize, w: usize) -> ConvGeometry {
        let p = Conv2dParams {
            stride: 1,
            padding: 1,
            groups: 1,
        };
        ConvGeometry {
            xs: Shape4::new(1, cin, h, w),
            ys: Shape4::new(1, cout, h, w),
            kh: 3,
            kw: 3,
            p,
        }
    }

    /// Against the direct sum (the bound of [`super::super::direct_reference`] does not hold
    /// for Winograd: the bound is the one of `winograd::tests::matches_direct_convolution`,
    /// through the bit-for-bit comparison with that path), and bit for bit the multi-image
    /// Winograd path's result for the same image, on 1, 2 and 3 threads: odd planes (partial
    /// tiles, 1 to 36 tiles: fewer than [`supports`] takes, to test the kernels' edges), channel counts not multiples of 16 or 48, several k blocks
    /// (Cin 520), bias or none, ReLU or none, the fused post, nothing written past the output.
    #[test]
    fn is_the_winograd_path_bit_for_bit() {
        if !super::super::super::batch1_kernels() {
            return;
        }
        for &(cin, cout, h, w, relu, bias) in &[
            (16, 16, 4, 4, false, true),
            (17, 33, 7, 7, true, true),
            (256, 40, 14, 14, false, false),
            (40, 100, 15, 17, true, true),
            (520, 70, 14, 13, true, true),
            (24, 200, 13, 11, false, true),
            (32, 48, 24, 24, true, false),
        ] {
            let g = geometry(cin, cout, h, w);
            let x = fill(g.xs.numel(), (cin * h + w) as u64);
            let wt = fill(cout * cin * 9, cout as u64);
            let b = fill(cout, 7);
            let act = if relu {
                Activation::Relu
            } else {
                Activation::None
            };
            let op = ConvOp {
                g,
                w: &wt,
                bias: bias.then_some(&b[..]),
                act,
            };
            let prepared = prepare(&g, &wt).unwrap();
            let p = panels(&g, &prepared).unwrap();
            // The multi-image path on one thread (its single-image split needs 48 tiles).
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            let mut want = vec![0.0; g.ys.numel()];
            let mut u = Vec::new();
            pool.install(|| winograd::conv2d(Tile::F4, &mut u, &op, &x, &mut want, None, 1));
            for threads in 1..=3 {
                let what = format!("{cin}->{cout} {h}x{w} on {threads} threads");
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut y = vec![f32::NAN; g.ys.numel() + 5];
                let mut sums = vec![0.0f32; cout];
                let plane = h * w;
                let f = |y1: &[f32], o1: &mut [f32]| {
                    for (o, q) in o1.iter_mut().zip(y1.chunks_exact(plane)) {
                        *o = q.iter().sum();
                    }
                };
                let post = PerImage {
                    out: &mut sums,
                    len: cout,
                    f: &f,
                };
                pool.install(|| conv2d(&op, p, &x, &mut y, Some(post), threads));
                assert!(y[g.ys.numel()..].iter().all(|v| v.is_nan()), "{what}");
                y.truncate(g.ys.numel());
                assert!(
                    y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{what}: differs from the Winograd path"
                );
                for (s, q) in sums.iter().zip(y.chunks_exact(plane)) {
                    assert_eq!(*s, q.iter().sum::<f32>(), "{what}: post");
                }
            }
        }
    }

    /// Which convs take this path: single images of 3x3 stride-1 convs with 16 to 48 tiles.
    #[test]
    fn chooses_its_convolutions() {
        if !super::super::super::batch1_kernels() {
            return;
        }
        let relu = Activation::Relu;
        assert!(supports(relu, &geometry(256, 256, 14, 14)));
        assert!(supports(Activation::None, &geometry(16, 16, 13, 13)));
        assert!(supports(relu, &geometry(64, 64, 24, 24)));
        // 7x7 (4 tiles), 25x25 (49 tiles), too few channels, the SE sigmoid.
        assert!(!supports(relu, &geometry(512, 512, 7, 7)));
        assert!(!supports(relu, &geometry(64, 64, 25, 25)));
        assert!(!supports(relu, &geometry(15, 64, 14, 14)));
        assert!(!supports(relu, &geometry(64, 15, 14, 14)));
        assert!(!supports(Activation::Sigmoid, &geometry(64, 64, 14, 14)));
        // Several images, stride 2, groups, 1x1.
        let mut g = geometry(64, 64, 14, 14);
        g.xs.n = 2;
        assert!(!supports(relu, &g));
        let mut g = geometry(64, 64, 14, 14);
        g.p.stride = 2;
        assert!(!supports(relu, &g));
        let mut g = geometry(64, 64, 14, 14);
        g.p.groups = 2;
        assert!(!supports(relu, &g));
        let mut g = geometry(64, 64, 14, 14);
        (g.kh, g.kw, g.p.padding) = (1, 1, 0);
        assert!(!supports(relu, &g));
        // A prepared buffer of another conv's shape is refused.
        let prepared = prepare(&geometry(64, 64, 14, 14), &vec![0.5; 64 * 64 * 9]).unwrap();
        assert!(panels(&geometry(64, 64, 14, 14), &prepared).is_some());
        assert!(panels(&geometry(80, 64, 14, 14), &prepared).is_none());
    }
}
