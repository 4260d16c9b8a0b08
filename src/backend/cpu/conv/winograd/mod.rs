//! conv2d of 3x3 stride-1 pad-1 convolutions by Winograd F(4x4, 3x3) or F(2x2, 3x3) (Lavin &
//! Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016, section 4; [`Tile`]),
//! x86_64 AVX-512 only: 36 multiplications per 4x4 output tile and channel pair instead of 144,
//! or 16 per 2x2 tile instead of 36. The transforms are in `kernels/cpu/winograd_avx512.c` and
//! `winograd2_avx512.c` (layouts in their header), the 36 or 16 products per task run on the
//! AVX-512 GEMM ([`sgemm::sgemm_packed`]).
//!
//! Rounding: each output is the same sum as the direct conv's, evaluated through the transforms,
//! so it differs from the direct conv's rounding. The error of an output is bounded by the
//! magnitudes of its whole input tile (6x6 for F4, 4x4 for F2), not of its own 3x3 window: the
//! tests hold F4 to 2e-5 of Σ_ci max|w[co, ci]| · Σ_tile |x[ci]| and F2 to 2e-6 (its transforms'
//! coefficients are 0, ±1 and 1/2, F4's reach 8). On network activations that is about 1e-6 of the
//! logits; an input value 1000x its neighbours makes the other outputs of its tile about 1e-3
//! off (relative), where the direct conv stays near 1e-7. Whenever this path is taken, an image's
//! result does not depend on the batch it is in or on the thread count (each transform works per
//! tile and channel, each product column sums in a fixed order); whether it is taken depends on
//! both ([`supports`]).
//!
//! Work split: the weights are transformed once per call, in parallel over output channels.
//! Batches: tasks of consecutive images run on the rayon pool, each transforming its input
//! tiles, running the 36 GEMMs and transforming back into its output images (with bias and
//! ReLU), in per-thread buffers that stay in the caches. A single image on several threads:
//! three parallel phases (input channels, blocks of xi, output channels).
use super::super::sgemm::{self, Line};
pub(super) use super::Tile;
use super::{self as conv, ConvGeometry, ConvOp, PerImage};
use crate::backend::Activation;
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::Range;

/// Transformed positions of F(4x4, 3x3)'s 6x6 tile ([`Tile::F4`]).
pub(super) const XI: usize = 36;

impl Tile {
    /// Transformed positions of a patch (the products per task).
    pub(super) const fn xi(self) -> usize {
        match self {
            Tile::F4 => XI,
            Tile::F2 => 16,
        }
    }

    /// Side of an output tile.
    const fn side(self) -> usize {
        match self {
            Tile::F4 => 4,
            Tile::F2 => 2,
        }
    }

    /// Tiles of one h x w image.
    pub(super) fn tiles(self, h: usize, w: usize) -> usize {
        h.div_ceil(self.side()) * w.div_ceil(self.side())
    }

    /// `senet_winograd{,2}_input` (the header's contract; [`Plan::input`]).
    fn input_fn(self) -> InputFn {
        match self {
            Tile::F4 => senet_winograd_input,
            Tile::F2 => senet_winograd2_input,
        }
    }

    /// `senet_winograd{,2}_output` (the header's contract; [`Plan::output`]).
    fn output_fn(self) -> OutputFn {
        match self {
            Tile::F4 => senet_winograd_output,
            Tile::F2 => senet_winograd2_output,
        }
    }

    /// `senet_winograd{,2}_weights` (its header's contract).
    ///
    /// # Safety
    /// AVX-512 present; `w` holds rows x cin x 9 floats, `u` rows x xi x cin.
    unsafe fn weights(self, w: *const f32, rows: usize, cin: usize, u: *mut f32) {
        // SAFETY: the caller's promise.
        unsafe {
            match self {
                Tile::F4 => senet_winograd_weights(w, rows, cin, u),
                Tile::F2 => senet_winograd2_weights(w, rows, cin, u),
            }
        }
    }
}
/// Tiles (GEMM columns) a task aims for: 4 panels of 48.
const TARGET_TILES: usize = 192;
/// Most bytes of one image's transformed input and output (V and M): 1024x1024 inputs of
/// seresnet50 go past it in layer1 and take the direct conv there.
const IMAGE_BYTES: usize = 64 << 20;
/// Fewest tiles of a single image computed on several threads (28x28 and larger).
const SINGLE_MIN_TILES: usize = 48;
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
    fn senet_winograd2_weights(w: *const f32, rows: usize, cin: usize, u: *mut f32);
    #[allow(clippy::too_many_arguments)]
    fn senet_winograd_input(
        x: *const f32,
        cin: usize,
        c0: usize,
        c1: usize,
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
        c0: usize,
        c1: usize,
        h: usize,
        w: usize,
        nimg: usize,
        bias: *const f32,
        act: i32,
        y: *mut f32,
        scratch: *mut f32,
    );
}

/// `senet_winograd{,2}_input`: x, cin, c0, c1, h, w, nimg, v, scratch.
type InputFn =
    unsafe extern "C" fn(*const f32, usize, usize, usize, usize, usize, usize, *mut f32, *mut f32);
/// `senet_winograd{,2}_output`: m, ldm, cout, c0, c1, h, w, nimg, bias, act, y, scratch.
type OutputFn = unsafe extern "C" fn(
    *const f32,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    *const f32,
    i32,
    *mut f32,
    *mut f32,
);

// The same entry points for F(2x2, 3x3) (`kernels/cpu/winograd2_avx512.c`).
extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn senet_winograd2_input(
        x: *const f32,
        cin: usize,
        c0: usize,
        c1: usize,
        h: usize,
        w: usize,
        nimg: usize,
        v: *mut f32,
        scratch: *mut f32,
    );
    #[allow(clippy::too_many_arguments)]
    fn senet_winograd2_output(
        m: *const f32,
        ldm: usize,
        cout: usize,
        c0: usize,
        c1: usize,
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
/// a batch of several images, or one image of at least [`SINGLE_MIN_TILES`] tiles (smaller
/// ones are too few columns for the products, the direct conv splits them better), and an
/// image whose transformed input and output fit in [`IMAGE_BYTES`] (tasks hold whole images).
pub(super) fn supports(t: Tile, act: Activation, g: &ConvGeometry, threads: usize) -> bool {
    supports_every_batch(t, act, g)
        && (g.xs.n >= 2 || threads == 1 || t.tiles(g.xs.h, g.xs.w) >= SINGLE_MIN_TILES)
}

/// Whether this path can compute the convolution whatever the batch and thread count: AVX-512
/// present, [`fits`], and an image whose transformed input and output fit in [`IMAGE_BYTES`].
/// Training's data gradients choose by this alone, so that an image's gradient does not depend
/// on the batch it is in or on the thread count (a single image of few tiles on several threads
/// is then slower than the direct conv, but the same bits as in any batch).
pub(super) fn supports_every_batch(t: Tile, act: Activation, g: &ConvGeometry) -> bool {
    sgemm::available()
        && fits(act, g)
        && t.xi() * 4 * (g.xs.c + g.ys.c) * t.tiles(g.xs.h, g.xs.w) <= IMAGE_BYTES
}

/// Whether `g` and `act` are a conv these transforms compute: a 3x3 kernel with stride 1,
/// padding 1 and no groups, at least 16 input and output channels, epilogue None or ReLU.
pub(super) fn fits(act: Activation, g: &ConvGeometry) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.p.stride == 1
        && g.p.padding == 1
        && g.p.groups == 1
        && g.xs.c >= 16
        && g.ys.c >= 16
        && act != Activation::Sigmoid
}

/// `y = act(conv(x, w) + bias)` for the batch `g.xs.n` (x: (N, Cin, H, W), w: (Cout, Cin, 3, 3),
/// y: (N, Cout, H, W)) on the current rayon pool of `threads` threads; then `post` on each image
/// by the task that computed it, by the algorithm `t`. `u` receives the transformed weights
/// (Cout, xi, Cin). The caller has checked [`supports`] and the slice lengths.
pub(super) fn conv2d(
    t: Tile,
    u: &mut Vec<f32>,
    op: &ConvOp,
    x: &[f32],
    y: &mut [f32],
    post: Option<PerImage>,
    threads: usize,
) {
    let (g, w) = (&op.g, op.w);
    let (cin, cout) = (g.xs.c, g.ys.c);
    let xi = t.xi();
    u.resize(cout * xi * cin, 0.0);
    let rows = cout.div_ceil(4 * threads).max(1);
    u.par_chunks_mut(rows * xi * cin)
        .zip(w[..cout * cin * 9].par_chunks(rows * cin * 9))
        .for_each(|(uc, wc)| {
            // SAFETY: the CPU has AVX-512 (`supports`); wc holds rows x cin x 9 weights and
            // uc rows x xi x cin floats for the rows of this chunk.
            unsafe { t.weights(wc.as_ptr(), wc.len() / (cin * 9), cin, uc.as_mut_ptr()) }
        });
    conv2d_prepared(t, u, op, x, y, post, threads);
}

/// The F(4x4, 3x3) transformed weights U (Cout, 36, Cin) of `w` (Cout, Cin, 3, 3) of `g`, for
/// [`conv2d_prepared`] (on the calling thread; through [`Backend::prepare_conv2d`]: batch 1
/// transforms them once instead of at every call). The caller has checked `w`'s length.
/// Errors: the buffer cannot be allocated.
///
/// [`Backend::prepare_conv2d`]: crate::backend::Backend::prepare_conv2d
pub(super) fn prepare(g: &ConvGeometry, w: &[f32]) -> crate::Result<Vec<f32>> {
    let (cin, cout) = (g.xs.c, g.ys.c);
    let mut u = crate::mem::filled(cout * XI * cin, 0.0f32, || {
        format!("prepared Winograd weights ({cout} x {cin})")
    })?;
    assert!(w.len() >= cout * cin * 9);
    // SAFETY: AVX-512 present (the caller checked `supports`); w holds cout x cin x 9 floats
    // (checked), u cout x 36 x cin.
    unsafe { Tile::F4.weights(w.as_ptr(), cout, cin, u.as_mut_ptr()) };
    Ok(u)
}

/// The prepared U inside `prepared`, if it is that of `g`'s weight ([`prepare`]'s length).
pub(super) fn prepared_u<'a>(g: &ConvGeometry, prepared: &'a [f32]) -> Option<&'a [f32]> {
    (prepared.len() == g.ys.c * XI * g.xs.c).then_some(prepared)
}

/// [`conv2d`] with the weights already transformed for `t` (`u`: (Cout, xi, Cin), [`prepare`]).
pub(super) fn conv2d_prepared(
    t: Tile,
    u: &[f32],
    op: &ConvOp,
    x: &[f32],
    y: &mut [f32],
    post: Option<PerImage>,
    threads: usize,
) {
    let g = &op.g;
    let (n, cin, cout) = (g.xs.n, g.xs.c, g.ys.c);
    assert!(u.len() >= cout * t.xi() * cin);
    let yi = g.ys.image_len();
    let per_img = t.tiles(g.xs.h, g.xs.w);
    let by_memory = TASK_BYTES / (t.xi() * 4 * (cin + cout) * per_img);
    let per_task = TARGET_TILES
        .div_ceil(per_img)
        .min(by_memory)
        .min(n.div_ceil(threads))
        .max(1);
    if n == 1 && threads > 1 {
        single_image(t, u, op, x, y, threads);
        if let Some(post) = post {
            post.apply_one(&y[..yi]);
        }
        return;
    }
    conv::image_tasks(x, y, g, per_task, post, |xc, yc| {
        task(t, u, op, xc, yc, yc.len() / yi)
    });
}

/// Sizes of the products of `nimg` images: tiles, packed B floats per xi, M row stride.
#[derive(Clone, Copy)]
pub(super) struct Plan {
    t: Tile,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    nimg: usize,
    ntiles: usize,
    panels: usize,
    ldm: usize,
}

impl Plan {
    pub(super) fn new(t: Tile, g: &ConvGeometry, nimg: usize) -> Plan {
        let (cin, cout, h, w) = (g.xs.c, g.ys.c, g.xs.h, g.xs.w);
        let ntiles = nimg * t.tiles(h, w);
        Plan {
            t,
            cin,
            cout,
            h,
            w,
            nimg,
            ntiles,
            panels: sgemm::packed_len(cin, ntiles),
            ldm: ntiles.next_multiple_of(16),
        }
    }

    /// The same plan for an M that holds only `cout` output channels (a thread's share of
    /// them: its output then starts at that share's first channel).
    pub(super) fn with_cout(self, cout: usize) -> Plan {
        Plan { cout, ..self }
    }

    /// Sizes of V and M: the tiles, the floats of one transformed position's packed matrix in
    /// V (`Cin` rows of 48 floats when the tiles fit one panel), the row stride of M.
    pub(super) fn sizes(&self) -> (usize, usize, usize) {
        (self.ntiles, self.panels, self.ldm)
    }

    /// Floats of V (xi packed matrices) and of M (xi x Cout x ldm).
    pub(super) fn v_len(&self) -> usize {
        self.t.xi() * self.panels
    }

    pub(super) fn m_len(&self) -> usize {
        self.t.xi() * self.cout * self.ldm
    }

    /// V of input channels `c` of `x` (the plan's images) into `v`, with this thread's staging.
    ///
    /// # Safety
    /// `v` holds [`Self::v_len`] floats, 64-byte aligned; no one else accesses its rows of the
    /// channels `c` meanwhile.
    pub(super) unsafe fn input(&self, x: &[f32], c: Range<usize>, v: *mut f32) {
        assert!(x.len() >= self.nimg * self.cin * self.h * self.w && c.end <= self.cin);
        let input = self.t.input_fn();
        with_staging(self.t.xi() * self.ldm, |s| {
            // SAFETY: AVX-512 present (`supports`); x holds the images (checked), v is the
            // caller's promise, s holds the staging floats, 64-byte aligned.
            unsafe {
                input(
                    x.as_ptr(),
                    self.cin,
                    c.start,
                    c.end,
                    self.h,
                    self.w,
                    self.nimg,
                    v,
                    s.as_mut_ptr(),
                )
            }
        })
    }

    /// V of the plan's images `x` into `v` ([`Self::v_len`] floats, 64-byte aligned) on the
    /// current rayon pool, in blocks of input channels.
    pub(super) fn input_parallel(&self, x: &[f32], v: &mut [f32], threads: usize) {
        assert!(v.len() >= self.v_len());
        assert_eq!(v.as_ptr().align_offset(64), 0);
        let vp = Disjoint(v.as_mut_ptr());
        let cin_blocks: Vec<_> = blocks(self.cin, threads).collect();
        cin_blocks.into_par_iter().for_each(|c| {
            // SAFETY: v has the plan's size, aligned (checked); each block writes only the rows
            // of its channels.
            unsafe { self.input(x, c, vp.ptr()) }
        });
    }

    /// The products M[xi] = U[xi] V[xi] for the xi of `m` (consecutive M[xi] from `xi0`).
    fn products(&self, u: &[f32], v: &[f32], xi0: usize, m: &mut [f32]) {
        let (mlen, nxi) = (self.cout * self.ldm, self.t.xi());
        for (xi, mx) in (xi0..).zip(m.chunks_exact_mut(mlen)) {
            sgemm::sgemm_packed(
                self.cout,
                self.ntiles,
                self.cin,
                &u[xi * self.cin..],
                nxi * self.cin,
                &v[xi * self.panels..(xi + 1) * self.panels],
                mx,
                self.ldm,
            );
        }
    }

    /// Output channels `c` of the images from M, with this thread's staging.
    ///
    /// # Safety
    /// `y` holds the plan's output images (nimg x Cout x H x W floats); no one else accesses
    /// the planes of the channels `c` meanwhile.
    pub(super) unsafe fn output(
        &self,
        m: &[f32],
        c: Range<usize>,
        bias: Option<&[f32]>,
        act: Activation,
        y: *mut f32,
    ) {
        assert!(m.len() >= self.m_len() && c.end <= self.cout);
        assert_eq!(m.as_ptr().align_offset(64), 0);
        let act = i32::from(act == Activation::Relu);
        let bias = bias.map_or(std::ptr::null(), |b| b[..self.cout].as_ptr());
        let output = self.t.output_fn();
        with_staging(self.t.xi() * self.ldm, |s| {
            // SAFETY: m holds xi x cout x ldm floats, aligned (checked), s the staging floats;
            // bias, when given, cout floats; y is the caller's promise.
            unsafe {
                output(
                    m.as_ptr(),
                    self.ldm,
                    self.cout,
                    c.start,
                    c.end,
                    self.h,
                    self.w,
                    self.nimg,
                    bias,
                    act,
                    y,
                    s.as_mut_ptr(),
                )
            }
        })
    }
}

/// `0..n` in about `2 * threads` consecutive blocks.
fn blocks(n: usize, threads: usize) -> impl Iterator<Item = Range<usize>> {
    let step = n.div_ceil(2 * threads).max(1);
    (0..n.div_ceil(step)).map(move |i| i * step..((i + 1) * step).min(n))
}

/// `f` on this thread's staging area of `len` floats (64-byte aligned).
fn with_staging<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = S.with(|b| b.take());
    let r = f(sgemm::aligned(&mut buf, len));
    S.with(|b| *b.borrow_mut() = buf);
    r
}

/// The `nimg` images of one task, on the calling thread.
fn task(t: Tile, u: &[f32], op: &ConvOp, x: &[f32], y: &mut [f32], nimg: usize) {
    let (g, bias, act) = (&op.g, op.bias, op.act);
    let plan = Plan::new(t, g, nimg);
    assert!(y.len() >= nimg * plan.cout * plan.h * plan.w);
    let (mut vbuf, mut mbuf) = (V.with(|b| b.take()), M.with(|b| b.take()));
    let v = sgemm::aligned(&mut vbuf, plan.v_len());
    let m = sgemm::aligned(&mut mbuf, plan.m_len());
    // SAFETY: v and m are this call's own buffers of the plan's sizes (aligned); y holds the
    // task's output images (checked).
    unsafe { plan.input(x, 0..plan.cin, v.as_mut_ptr()) };
    plan.products(u, v, 0, m);
    unsafe { plan.output(m, 0..plan.cout, bias, act, y.as_mut_ptr()) };
    V.with(|b| *b.borrow_mut() = vbuf);
    M.with(|b| *b.borrow_mut() = mbuf);
}

/// A raw pointer shared by parallel tasks that write disjoint parts of its buffer.
#[derive(Clone, Copy)]
pub(super) struct Disjoint(pub *mut f32);
// SAFETY: only used for buffers whose parts written by different tasks are disjoint (below).
unsafe impl Send for Disjoint {}
unsafe impl Sync for Disjoint {}

impl Disjoint {
    /// The pointer (a method, so that closures capture the whole `Disjoint`).
    pub(super) fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// One image on `threads` threads, in three parallel phases: V by blocks of input channels,
/// the products by blocks of xi, the output by blocks of output channels.
fn single_image(t: Tile, u: &[f32], op: &ConvOp, x: &[f32], y: &mut [f32], threads: usize) {
    let (g, bias, act) = (&op.g, op.bias, op.act);
    let plan = Plan::new(t, g, 1);
    assert!(y.len() >= plan.cout * plan.h * plan.w);
    let (mut vbuf, mut mbuf) = (V.with(|b| b.take()), M.with(|b| b.take()));
    let v = sgemm::aligned(&mut vbuf, plan.v_len());
    let m = sgemm::aligned(&mut mbuf, plan.m_len());
    plan.input_parallel(x, v, threads);
    let v = &*v;
    let xi_step = t.xi().div_ceil(2 * threads);
    m.par_chunks_mut(xi_step * plan.cout * plan.ldm)
        .enumerate()
        .for_each(|(i, mc)| plan.products(u, v, i * xi_step, mc));
    let m = &*m;
    let yp = Disjoint(y.as_mut_ptr());
    let cout_blocks: Vec<_> = blocks(plan.cout, threads).collect();
    cout_blocks.into_par_iter().for_each(|c| {
        // SAFETY: y holds the image (checked); each block writes only its channels' planes.
        unsafe { plan.output(m, c, bias, act, yp.ptr()) }
    });
    V.with(|b| *b.borrow_mut() = vbuf);
    M.with(|b| *b.borrow_mut() = mbuf);
}

#[cfg(test)]
mod tests;
