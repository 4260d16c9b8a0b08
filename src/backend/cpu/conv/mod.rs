//! Convolutions on the CPU: the forward (with the pooling that may follow it fused per image),
//! and its data / filter gradients ([`backward`]).
//!
//! Forward algorithms: on x86_64 CPUs with AVX-512, the native GEMM of
//! `kernels/cpu/sgemm_avx512.c` with the im2col fused into its packing ([`avx512`]), 3x3
//! stride-1 convs by Winograd F(4x4, 3x3) ([`winograd`]) unless [`Backend::set_fast_conv`]
//! turned it off (at batch 1 on weights transformed once; 14x14 planes by transposed products,
//! [`winograd_b1`]), single images with 7x7 output planes by a transposed product ([`batch1`]),
//! and grouped convs with at most 32 channels per group by a direct kernel
//! ([`grouped`]); elsewhere, per image, im2col (skipped for 1x1 convs) + one GEMM per group from
//! the `gemm` crate + bias/activation ([`conv2d_image`]).
//!
//! [`Backend::set_fast_conv`]: crate::backend::Backend::set_fast_conv
use super::kernels::{self, Im2col};
use super::matmul::{self, matmul, MatLayout, Par};
use super::CpuBackend;
use crate::backend::{
    check_len, Activation, Conv2dForward, Conv2dParams, Conv2dShape, MaxPool2dParams, Shape4,
};
use crate::Result;
use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512;
pub(super) mod backward;
#[cfg(target_arch = "x86_64")]
mod batch1;
#[cfg(target_arch = "x86_64")]
pub(super) mod grouped;
#[cfg(target_arch = "x86_64")]
mod wgrad;
#[cfg(target_arch = "x86_64")]
pub(super) mod winograd;
#[cfg(target_arch = "x86_64")]
mod winograd_b1;

/// [`Backend::conv2d`](crate::backend::Backend::conv2d) on the CPU: Winograd, the AVX-512 GEMM
/// or im2col + the `gemm` crate (see the module docs).
pub(super) fn conv2d(
    be: &CpuBackend,
    f: Conv2dForward<'_, Vec<f32>>,
    x: &[f32],
    y: &mut [f32],
) -> Result<Shape4> {
    conv2d_post(be, f, x, y, None, be.forward_winograd())
}

/// [`Backend::conv2d_avg_pool`](crate::backend::Backend::conv2d_avg_pool) on the CPU: each image is
/// pooled by the task that computed it.
pub(super) fn conv2d_avg_pool(
    be: &CpuBackend,
    f: Conv2dForward<'_, Vec<f32>>,
    x: &[f32],
    y: &mut [f32],
    pooled: &mut [f32],
) -> Result<Shape4> {
    let ys = f.shape.out_shape()?;
    let (cout, plane) = (ys.c, ys.h * ys.w);
    check_len("conv2d_avg_pool pooled", pooled, ys.n * cout)?;
    let avg = move |y1: &[f32], p1: &mut [f32]| kernels::global_avg_pool(y1, cout, plane, p1);
    let post = PerImage {
        out: pooled,
        len: cout,
        f: &avg,
    };
    conv2d_post(be, f, x, y, Some(post), be.forward_winograd())
}

/// [`Backend::conv2d_max_pool`](crate::backend::Backend::conv2d_max_pool) on the CPU: each image is
/// pooled by the task that computed it when the batch is split across threads.
pub(super) fn conv2d_max_pool(
    be: &CpuBackend,
    f: Conv2dForward<'_, Vec<f32>>,
    x: &[f32],
    y: &mut [f32],
    pool: MaxPool2dParams,
    pooled: &mut [f32],
) -> Result<Shape4> {
    let ys = f.shape.out_shape()?;
    if !be.split_batch(ys.n) {
        // One image: max_pool2d splits it across threads by channels.
        let ys = conv2d(be, f, x, y)?;
        return super::pool::max_pool2d(be, pool, y, ys, pooled);
    }
    let g = pool.geometry(ys)?;
    let ps = g.ys;
    check_len("conv2d_max_pool pooled", pooled, ps.numel())?;
    let windows = kernels::PoolWindows::new(ys.c, ys, pool, g);
    let max = move |y1: &[f32], p1: &mut [f32]| kernels::max_pool2d(y1, windows, p1);
    let post = PerImage {
        out: pooled,
        len: ps.image_len(),
        f: &max,
    };
    conv2d_post(be, f, x, y, Some(post), be.forward_winograd())?;
    Ok(ps)
}

/// Which Winograd algorithm computes a conv.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Tile {
    /// F(4x4, 3x3): 4x4 output tiles from 6x6 patches, 36 products, 4x fewer multiplications
    /// than the direct conv. Inference and training's data gradients.
    F4,
    /// F(2x2, 3x3): 2x2 output tiles from 4x4 patches, 16 products, 2.25x fewer
    /// multiplications; its transforms add at most three values of their inputs' size, so it
    /// rounds close to the direct sum: training's forward (`tests/train_step.rs`).
    F2,
}

/// Where a conv may take a Winograd path ([`conv2d_post`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum WinogradUse {
    /// F(4x4, 3x3) wherever it is faster for this batch and thread count (inference).
    Fast,
    /// This tile wherever it can compute the conv, chosen by the conv alone so that an image's
    /// result does not depend on its batch or the thread count (training's forward: F(2x2, 3x3)).
    ByConv(Tile),
    /// Never (direct sums).
    Off,
}

/// [`Backend::conv2d`], then `post` on each output image by the task that computed it
/// (`post.out` holds `post.len` values per image; checked by the caller); Winograd as `wino`
/// says (the backend's setting, [`CpuBackend::forward_winograd`], or the backward's own).
fn conv2d_post(
    be: &CpuBackend,
    f: Conv2dForward<'_, Vec<f32>>,
    x: &[f32],
    y: &mut [f32],
    post: Option<PerImage>,
    wino: WinogradUse,
) -> Result<Shape4> {
    let ys = f.check(x, y)?;
    let xs = f.shape.xs;
    let op = ConvOp {
        g: ConvGeometry::new(f.shape, ys),
        w: f.w,
        bias: f.bias.map(|b| &b[..ys.c]),
        act: f.act,
    };
    #[cfg(target_arch = "x86_64")]
    if let WinogradUse::ByConv(t) = wino {
        if winograd::supports_every_batch(t, op.act, &op.g) {
            winograd_conv(be, t, &op, x, y, post);
            return Ok(ys);
        }
    }
    let winograd = wino == WinogradUse::Fast;
    #[cfg(target_arch = "x86_64")]
    if let Some(u) = f.prepared.and_then(|p| winograd_b1::panels(&op.g, p)) {
        if winograd && winograd_b1::supports(op.act, &op.g) {
            let threads = be.threads;
            be.pool
                .install(|| winograd_b1::conv2d(&op, u, x, y, post, threads));
            return Ok(ys);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if winograd && winograd::supports(Tile::F4, op.act, &op.g, be.threads) {
        let threads = be.threads;
        if let Some(u) = f.prepared.and_then(|p| winograd::prepared_u(&op.g, p)) {
            be.pool
                .install(|| winograd::conv2d_prepared(Tile::F4, u, &op, x, y, post, threads));
            return Ok(ys);
        }
        winograd_conv(be, Tile::F4, &op, x, y, post);
        return Ok(ys);
    }
    #[cfg(target_arch = "x86_64")]
    if grouped::supports(op.act, &op.g) {
        be.pool.install(|| grouped::conv2d(&op, x, y, post));
        return Ok(ys);
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(panels) = f.prepared.and_then(|p| batch1::panels(&op.g, p)) {
        if batch1::supports(op.act, &op.g) {
            let threads = be.threads;
            be.pool
                .install(|| batch1::conv2d(&op, panels, x, y, post, threads));
            return Ok(ys);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if avx512::supports(op.act, &op.g) {
        let threads = be.threads;
        be.pool.install(|| avx512::conv2d(&op, x, y, post, threads));
        return Ok(ys);
    }
    let (xi, yi) = (xs.image_len(), ys.image_len());
    let image = |x1: &[f32], y1: &mut [f32], par| conv2d_image(x1, &op, y1, par);
    be.pool.install(|| {
        if be.split_batch(xs.n) {
            // Image by image across the pool, `post` on each while it is in cache.
            image_tasks(x, y, &op.g, 1, post, |x1, y1| {
                image(x1, y1, matmul::Par::Seq)
            });
        } else {
            // One image at a time, each GEMM split across the pool.
            let (x, y) = (&x[..xs.numel()], &mut y[..ys.numel()]);
            let mut post = post;
            for (i, (y1, x1)) in y.chunks_mut(yi).zip(x.chunks(xi)).enumerate() {
                image(x1, y1, matmul::Par::Rayon);
                if let Some(p) = post.as_mut() {
                    (p.f)(y1, &mut p.out[i * p.len..(i + 1) * p.len]);
                }
            }
        }
    });
    Ok(ys)
}

/// `y = act(conv(x) + bias)` of `op` by Winograd with tile `t` on `be`'s pool, the weights
/// transformed into `be`'s buffer; the caller has checked [`winograd::supports_every_batch`]
/// and the slice lengths.
#[cfg(target_arch = "x86_64")]
fn winograd_conv(
    be: &CpuBackend,
    t: Tile,
    op: &ConvOp,
    x: &[f32],
    y: &mut [f32],
    post: Option<PerImage>,
) {
    // A panic in another conv leaves the buffer in a state that is overwritten anyway.
    let mut guard = (be.winograd_weights.lock()).unwrap_or_else(|e| e.into_inner());
    let u: &mut Vec<f32> = &mut guard;
    let threads = be.threads;
    be.pool
        .install(|| winograd::conv2d(t, u, op, x, y, post, threads));
}

/// [`Backend::prepare_conv2d`](crate::backend::Backend::prepare_conv2d) on the CPU: the weights
/// of a conv that a batch-1 path of small planes will compute, packed for it: the transformed
/// weights of a 3x3 stride-1 conv for `winograd_b1` or, for larger planes, `winograd` (unless
/// `be`'s Winograd is off), the transposed weights for `batch1`; None for every other conv
/// (and off x86_64).
pub(super) fn prepare_conv2d(
    be: &CpuBackend,
    f: Conv2dForward<'_, Vec<f32>>,
) -> Result<Option<Vec<f32>>> {
    let ys = f.shape.out_shape()?;
    check_len("prepare_conv2d weight", f.w, f.shape.w_len())?;
    #[cfg(target_arch = "x86_64")]
    {
        let g = ConvGeometry::new(f.shape, ys);
        if be.winograd && winograd_b1::supports(f.act, &g) {
            return winograd_b1::prepare(&g, f.w).map(Some);
        }
        if be.winograd
            && super::batch1_kernels()
            && winograd::supports(Tile::F4, f.act, &g, be.threads)
        {
            return winograd::prepare(&g, f.w).map(Some);
        }
        if batch1::supports(f.act, &g) {
            return batch1::prepare(&g, f.w).map(Some);
        }
    }
    Ok(None)
}

thread_local! {
    /// Per-thread im2col scratch, grown to the largest layer and reused (also by the backward ops
    /// of `backward`, which never hold it across a call to the forward).
    pub(super) static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Shapes of one convolution (the batch size in `xs`/`ys` is ignored per image).
#[derive(Clone, Copy)]
pub(super) struct ConvGeometry {
    pub xs: Shape4,
    pub ys: Shape4,
    pub kh: usize,
    pub kw: usize,
    pub p: Conv2dParams,
}

impl ConvGeometry {
    /// The geometry of `conv`, whose output shape is `ys` (checked by the caller).
    pub fn new(conv: Conv2dShape, ys: Shape4) -> ConvGeometry {
        let [_, _, kh, kw] = conv.w_shape;
        ConvGeometry {
            xs: conv.xs,
            ys,
            kh,
            kw,
            p: conv.p,
        }
    }

    /// The gather of `c` input channels of one image into the columns of the GEMM.
    pub fn im2col(&self, c: usize) -> Im2col {
        Im2col {
            c,
            h: self.xs.h,
            w: self.xs.w,
            kh: self.kh,
            kw: self.kw,
            stride: self.p.stride,
            pad: self.p.padding,
            oh: self.ys.h,
            ow: self.ys.w,
        }
    }
}

#[cfg(test)]
impl ConvGeometry {
    /// The geometry of a conv of `n` images (cin, h, w) -> cout, a kh x kw kernel, params `p`.
    pub fn of(
        n: usize,
        cin: usize,
        cout: usize,
        hw: [usize; 2],
        k: [usize; 2],
        p: Conv2dParams,
    ) -> ConvGeometry {
        let ([h, w], [kh, kw]) = (hw, k);
        let (oh, ow) = p.out_hw(h, w, kh, kw);
        ConvGeometry {
            xs: Shape4::new(n, cin, h, w),
            ys: Shape4::new(n, cout, oh, ow),
            kh,
            kw,
            p,
        }
    }
}

/// One convolution as the CPU paths compute it: `y = act(conv(x, w) + bias)` over the geometry
/// `g` (slices checked by the caller: `w` holds the weight, `bias` Cout values).
#[derive(Clone, Copy)]
pub(super) struct ConvOp<'a> {
    /// The shapes.
    pub g: ConvGeometry,
    /// The weight (Cout, Cin/groups, kh, kw).
    pub w: &'a [f32],
    /// The bias, Cout values, if any.
    pub bias: Option<&'a [f32]>,
    /// The epilogue's activation.
    pub act: Activation,
}

/// Work on each output image of a conv done by the task that computed the image, while it is
/// still in cache (a pooling that follows the conv).
pub(super) struct PerImage<'a> {
    /// The results, `len` values per image, in image order.
    pub out: &'a mut [f32],
    /// Values per image in `out`.
    pub len: usize,
    /// Computes one image's results from its conv output (Cout, OH, OW).
    pub f: &'a (dyn Fn(&[f32], &mut [f32]) + Sync),
}

impl PerImage<'_> {
    /// `f` on the first image `y1` (a batch of one).
    pub fn apply_one(self, y1: &[f32]) {
        (self.f)(y1, &mut self.out[..self.len]);
    }
}

/// `run(x_task, y_task)` on tasks of `per_task` consecutive images (the last one may hold fewer)
/// across the current rayon pool, then `post` on each image of a task by the thread that
/// computed it. x and y hold the `g.xs.n` input and output images of `g`.
pub(super) fn image_tasks(
    x: &[f32],
    y: &mut [f32],
    g: &ConvGeometry,
    per_task: usize,
    post: Option<PerImage>,
    run: impl Fn(&[f32], &mut [f32]) + Sync,
) {
    use rayon::prelude::*;
    let (n, xi, yi) = (g.xs.n, g.xs.image_len(), g.ys.image_len());
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

/// `y1 = act(conv(x1, w) + bias)` of `op` for one image (x1: (Cin, H, W), y1: (Cout, OH, OW)).
pub(super) fn conv2d_image(x1: &[f32], op: &ConvOp, y1: &mut [f32], par: Par) {
    let (g, w, bias, act) = (&op.g, op.w, op.bias, op.act);
    let (xs, ys) = (g.xs, g.ys);
    let groups = g.p.groups;
    let cin_g = xs.c / groups;
    let cout_g = ys.c / groups;
    let k_g = cin_g * g.kh * g.kw;
    let plane = ys.h * ys.w;
    let direct = g.kh == 1 && g.kw == 1 && g.p.padding == 0 && g.p.stride == 1;
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let col: &[f32] = if direct {
            x1
        } else {
            let need = xs.c * g.kh * g.kw * plane;
            if scratch.len() < need {
                scratch.resize(need, 0.0);
            }
            let geom = g.im2col(xs.c);
            if g.kh == 1 && g.kw == 1 && g.p.padding == 0 {
                kernels::subsample(x1, geom, &mut scratch[..need]);
            } else {
                kernels::im2col(x1, geom, &mut scratch[..need]);
            }
            &scratch[..need]
        };
        for gi in 0..groups {
            let wg = &w[gi * cout_g * k_g..(gi + 1) * cout_g * k_g];
            let cg = &col[gi * k_g * plane..(gi + 1) * k_g * plane];
            let yg = &mut y1[gi * cout_g * plane..(gi + 1) * cout_g * plane];
            matmul(
                wg,
                MatLayout::row_major(cout_g, k_g),
                cg,
                MatLayout::row_major(k_g, plane),
                yg,
                false,
                par,
            );
        }
    });
    kernels::bias_act(&mut y1[..ys.c * plane], bias, ys.c, plane, act);
}

/// The direct sum of output (co, oy, ox) of image `x1` in f64, and its bound: an FMA chain of
/// k terms from 0 then the bias add rounds k + 1 times, each by at most u = 2^-24 relative to
/// the running magnitude, so |got - exact| <= (k + 1) u (Σ|w x| + |bias|) (Higham, "Accuracy
/// and Stability of Numerical Algorithms", 2nd ed., section 3.1, with the γ term's
/// 1/(1 - (k+1)u) below 1.01). The same holds for the AVX-512 GEMM's nb blocks of kb terms,
/// their sums added in order: a term goes through at most kb + nb - 1 + 1 <= k + 1 roundings.
#[cfg(test)]
pub(super) fn direct_reference(
    op: &ConvOp,
    x1: &[f32],
    co: usize,
    oy: usize,
    ox: usize,
) -> (f64, f64) {
    let g = &op.g;
    let cin_g = g.xs.c / g.p.groups;
    let gi = co / (g.ys.c / g.p.groups);
    let b = op.bias.map_or(0.0, |b| b[co] as f64);
    let (mut s, mut mag) = (b, b.abs());
    for ci in 0..cin_g {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let iy = (oy * g.p.stride + ky) as isize - g.p.padding as isize;
                let ix = (ox * g.p.stride + kx) as isize - g.p.padding as isize;
                if iy < 0 || ix < 0 || iy >= g.xs.h as isize || ix >= g.xs.w as isize {
                    continue;
                }
                let xv = x1[((gi * cin_g + ci) * g.xs.h + iy as usize) * g.xs.w + ix as usize];
                let wv = op.w[((co * cin_g + ci) * g.kh + ky) * g.kw + kx];
                s += xv as f64 * wv as f64;
                mag += (xv as f64 * wv as f64).abs();
            }
        }
    }
    if op.act == Activation::Relu {
        s = s.max(0.0);
    }
    let k = (cin_g * g.kh * g.kw) as f64;
    (s, 1.01 * (k + 1.0) * f64::from(f32::EPSILON) / 2.0 * mag)
}

/// Runs `run(x, y, post)` (a conv of `op` on the current pool, then `post`) on a pool of
/// `threads` threads, into outputs 5 floats longer than the batch's (NaN) with a post that sums
/// each plane, and checks that nothing past the outputs is written, that every output is within
/// [`direct_reference`]'s bound of the direct sum and that the post saw the outputs. Returns
/// the outputs (for comparisons across thread counts); `what` names the case in failures.
#[cfg(test)]
pub(super) fn check_against_direct(
    op: &ConvOp,
    x: &[f32],
    threads: usize,
    what: &str,
    run: impl Fn(&[f32], &mut [f32], Option<PerImage>) + Sync,
) -> Vec<f32> {
    let g = &op.g;
    let (cout, plane) = (g.ys.c, g.ys.h * g.ys.w);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut y = vec![f32::NAN; g.ys.numel() + 5];
    let mut sums = vec![0.0f32; g.ys.n * cout];
    let f = |y1: &[f32], o1: &mut [f32]| {
        for (o, p) in o1.iter_mut().zip(y1.chunks_exact(plane)) {
            *o = p.iter().sum();
        }
    };
    let post = PerImage {
        out: &mut sums,
        len: cout,
        f: &f,
    };
    pool.install(|| run(x, &mut y, Some(post)));
    assert!(
        y[g.ys.numel()..].iter().all(|v| v.is_nan()),
        "{what}: written past the outputs"
    );
    y.truncate(g.ys.numel());
    let images = x
        .chunks_exact(g.xs.image_len())
        .zip(y.chunks_exact(g.ys.image_len()));
    for (img, (x1, y1)) in images.enumerate() {
        for co in 0..cout {
            let p = &y1[co * plane..(co + 1) * plane];
            for (i, &got) in p.iter().enumerate() {
                let (want, bound) = direct_reference(op, x1, co, i / g.ys.w, i % g.ys.w);
                assert!(
                    (got as f64 - want).abs() <= bound,
                    "{what} image {img} channel {co} pixel {i}: {got} vs {want}"
                );
            }
            assert_eq!(sums[img * cout + co], p.iter().sum::<f32>(), "{what}");
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    /// `conv2d_avg_pool` (`conv2d_max_pool`) gives bit for bit `conv2d` then `global_avg_pool`
    /// (`max_pool2d`), on the AVX-512 path
    /// and the `gemm`-crate path (thin groups), for one and several images, on 1 and 2 threads.
    #[test]
    fn conv2d_avg_pool_matches_conv_then_pool() {
        // (n, cin, h, cout, k, stride, pad, groups)
        let cases = [
            (1, 8, 20, 24, 3, 1, 1, 1),
            (3, 8, 20, 24, 3, 1, 1, 1),
            (5, 16, 7, 40, 1, 1, 0, 1),
            (2, 16, 9, 32, 3, 2, 1, 4),
            (1, 16, 9, 32, 3, 1, 1, 4),
        ];
        for threads in [1, 2] {
            let be = CpuBackend::new(threads).unwrap();
            for &(n, cin, h, cout, k, s, pad, groups) in &cases {
                let p = Conv2dParams {
                    stride: s,
                    padding: pad,
                    groups,
                };
                let xs = Shape4::new(n, cin, h, h);
                let fill = |len: usize, seed: usize| -> Vec<f32> {
                    (0..len)
                        .map(|i| ((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5 - 1.0)
                        .collect()
                };
                let x = fill(xs.numel(), 1);
                let w_shape = [cout, cin / groups, k, k];
                let w = fill(w_shape.iter().product(), 2);
                let b = fill(cout, 3);
                let (oh, ow) = p.out_hw(h, h, k, k);
                let len = n * cout * oh * ow;
                let (mut y1, mut y2) = (vec![0.0; len], vec![0.0; len]);
                let (mut p1, mut p2) = (vec![0.0; n * cout], vec![0.0; n * cout]);
                let act = Activation::Relu;
                let f = Conv2dForward {
                    shape: Conv2dShape { xs, w_shape, p },
                    w: &w,
                    bias: Some(&b),
                    act,
                    prepared: None,
                };
                let ys = be.conv2d(f, &x, &mut y1).unwrap();
                be.global_avg_pool(&y1, ys, &mut p1).unwrap();
                let ys2 = be.conv2d_avg_pool(f, &x, &mut y2, &mut p2).unwrap();
                assert_eq!(ys, ys2);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&y1), bits(&y2));
                assert_eq!(bits(&p1), bits(&p2));
                // The same with the stem's max pools (3x3, stride 2): MindCV's "same", timm's
                // resnet.py padding 1 and senet.py ceil mode.
                for pool in [
                    MaxPool2dParams::same(3, 2),
                    MaxPool2dParams::symmetric(3, 2, 1, false),
                    MaxPool2dParams::symmetric(3, 2, 0, true),
                ] {
                    let mut m1 = vec![0.0; len];
                    let ms = be.max_pool2d(pool, &y1, ys, &mut m1).unwrap();
                    let mut m2 = vec![0.0; len];
                    let ms2 = be.conv2d_max_pool(f, &x, &mut y2, pool, &mut m2).unwrap();
                    assert_eq!(ms, ms2);
                    assert_eq!(bits(&y1), bits(&y2));
                    assert_eq!(bits(&m1[..ms.numel()]), bits(&m2[..ms.numel()]));
                }
            }
        }
    }
}
