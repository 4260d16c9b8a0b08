//! Gradients of `conv2d` (no bias) on the CPU, in the standard conv-as-GEMM formulation.
//!
//! For one image and one group, with `K = Cin/groups·kh·kw` and `P = OH·OW`, the forward is
//! `Y[Cout_g×P] = W[Cout_g×K]·col[K×P]` where `col = im2col(x)`. Its gradients are
//! - data:   `dcol[K×P] = Wᵀ·dY` (a TN product), then `dx = col2im(dcol)` (the scatter-add
//!   adjoint of the im2col gather);
//! - filter: `dW[Cout_g×K] += dY·colᵀ` (an NT product), summed over the images of the batch.
//!   On x86_64 with AVX-512 most convs take it on senet's GEMM, transposed, a run of images
//!   at a time ([`super::wgrad`]); the others on the `gemm` crate, image by image.
//!
//! Stride-1 convs (all of SE-ResNet's but the stem, the strided 3x3 and the downsampling 1x1)
//! take the data gradient as a forward convolution instead ([`transposed_conv`]): the 3x3 one of
//! `dy` with the weights transposed and rotated, the 1x1 one with them transposed, through
//! [`super::conv2d`] (the AVX-512 GEMM with its implicit im2col: no `dcol` buffer, 9x the size of
//! `dx` for a 3x3, and no col2im pass). The 3x3 ones take Winograd F(4x4, 3x3) wherever its
//! kernels compute the conv, even in training (where [`set_fast_conv`] keeps the forward
//! direct), unless [`set_winograd_data_gradient`] turned that off (`SENET_CPU_DGRAD=direct`):
//! rounded through the transforms, a step's gradients move about 1e-5 relative against
//! MindSpore's (1e-3 allowed; through a Winograd forward they would move 2e-3 to 5e-3). Unlike
//! the forward's, this choice depends on the conv alone, not on the batch or thread count, so
//! an image's data gradient is the same bits in any batch on any number of threads
//! (`tests/batch_split.rs`), as data-parallel training needs.
//!
//! [`set_fast_conv`]: crate::backend::Backend::set_fast_conv
//! [`set_winograd_data_gradient`]: CpuBackend::set_winograd_data_gradient
//!
//! Transposes are free: they are strides of [`MatLayout`]. 1x1 stride-1 unpadded convs skip
//! im2col/col2im (`col` is `x` itself); strided unpadded 1x1 convs gather with `subsample` and
//! scatter with its adjoint `subsample_backward`.
//!
//! Threading follows the forward: a batch is split image by image across threads (single-threaded
//! GEMMs, per-thread column scratch); a single image runs its GEMMs on the pool and its
//! gather/scatter over channel blocks. The filter gradient, a sum over images, is reduced in a
//! fixed order: the batch is cut into one contiguous run of images per thread, each run is summed
//! image by image into its own partial, and the partials are added in run order. Results are
//! therefore bit-identical run to run for a given thread count, whatever the scheduling.
use super::super::kernels;
use super::super::matmul::{matmul, MatLayout, Par};
use super::super::CpuBackend;
#[cfg(target_arch = "x86_64")]
use super::{winograd, ConvOp};
use super::{ConvGeometry, Tile, SCRATCH};
use crate::backend::{Activation, Conv2dForward, Conv2dParams, Conv2dShape, Shape4};
use crate::{mem, Result};
use rayon::prelude::*;
use std::cell::RefCell;

thread_local! {
    /// Partial filter gradients of the runs of images after the first, owned by the thread that
    /// calls [`conv2d_backward_filter`] (grown to the largest layer and reused).
    static PARTIALS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// How the columns of a convolution relate to its input.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Cols {
    /// 1x1, stride 1, no padding: the columns are the input itself.
    Direct,
    /// 1x1, stride > 1, no padding: the columns are the input subsampled.
    Subsample,
    /// Anything else: im2col.
    Im2col,
}

pub(super) fn cols_kind(g: &ConvGeometry) -> Cols {
    if g.kh == 1 && g.kw == 1 && g.p.padding == 0 {
        if g.p.stride == 1 {
            Cols::Direct
        } else {
            Cols::Subsample
        }
    } else {
        Cols::Im2col
    }
}

/// Channels per task when one image's gather/scatter is split across the pool.
fn channel_block(c: usize, par: Par) -> usize {
    match par {
        Par::Seq => c.max(1),
        Par::Rayon => c.div_ceil(4 * rayon::current_num_threads()).max(1),
    }
}

/// `col` (Cin·kh·kw, OH·OW) of one image `x1` (Cin, H, W) (not for [`Cols::Direct`]).
pub(super) fn gather(x1: &[f32], g: &ConvGeometry, kind: Cols, col: &mut [f32], par: Par) {
    let (hw, plane) = (g.xs.h * g.xs.w, g.ys.h * g.ys.w);
    let kk = g.kh * g.kw;
    let block = channel_block(g.xs.c, par);
    let run = |x: &[f32], col: &mut [f32]| {
        let c = x.len() / hw;
        match kind {
            Cols::Subsample => kernels::subsample(x, g.im2col(c), col),
            _ => kernels::im2col(x, g.im2col(c), col),
        }
    };
    let x1 = &x1[..g.xs.c * hw];
    let col = &mut col[..g.xs.c * kk * plane];
    if par == Par::Seq || block >= g.xs.c {
        run(x1, col);
    } else {
        x1.par_chunks(block * hw)
            .zip(col.par_chunks_mut(block * kk * plane))
            .for_each(|(x, c)| run(x, c));
    }
}

/// `dx1` (Cin, H, W) overwritten with the adjoint gather of `dcol` (not for [`Cols::Direct`]).
fn scatter(dcol: &[f32], g: &ConvGeometry, kind: Cols, dx1: &mut [f32], par: Par) {
    let (hw, plane) = (g.xs.h * g.xs.w, g.ys.h * g.ys.w);
    let kk = g.kh * g.kw;
    let block = channel_block(g.xs.c, par);
    let run = |d: &[f32], dx: &mut [f32]| {
        let c = dx.len() / hw;
        match kind {
            Cols::Subsample => kernels::subsample_backward(d, g.im2col(c), dx),
            _ => kernels::col2im(d, g.im2col(c), dx),
        }
    };
    let dx1 = &mut dx1[..g.xs.c * hw];
    let dcol = &dcol[..g.xs.c * kk * plane];
    if par == Par::Seq || block >= g.xs.c {
        run(dcol, dx1);
    } else {
        dx1.par_chunks_mut(block * hw)
            .zip(dcol.par_chunks(block * kk * plane))
            .for_each(|(dx, d)| run(d, dx));
    }
}

/// Per-thread scratch of at least `need` values, passed to `f`.
fn with_scratch<R>(need: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < need {
            s.resize(need, 0.0);
        }
        f(&mut s[..need])
    })
}

/// Runs `f(group, out_g, par)` for every group's slice of `out` (equal, contiguous slices).
/// The outputs are disjoint, so the order does not affect the result. On the pool, many small
/// groups (ResNeXt: 32) run one per task with single-threaded GEMMs; few groups split inside
/// their GEMMs.
fn for_each_group(
    out: &mut [f32],
    groups: usize,
    par: Par,
    f: impl Fn(usize, &mut [f32], Par) + Sync,
) {
    let len = out.len() / groups;
    if len == 0 {
        return;
    }
    if par == Par::Rayon && groups >= rayon::current_num_threads() && groups > 1 {
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(gi, o)| f(gi, o, Par::Seq));
    } else {
        for (gi, o) in out.chunks_mut(len).enumerate() {
            f(gi, o, par);
        }
    }
}

/// Data gradient of one image: `dx1` (Cin, H, W) from `dy1` (Cout, OH, OW) and `w`.
fn data_image(dy1: &[f32], w: &[f32], g: &ConvGeometry, dx1: &mut [f32], par: Par) {
    let groups = g.p.groups;
    let (cin_g, cout_g) = (g.xs.c / groups, g.ys.c / groups);
    let k_g = cin_g * g.kh * g.kw;
    let plane = g.ys.h * g.ys.w;
    // dcol_g (k_g × P) = W_gᵀ (k_g × cout_g) · dY_g (cout_g × P).
    let group = |gi: usize, dcol_g: &mut [f32], par: Par| {
        matmul(
            &w[gi * cout_g * k_g..(gi + 1) * cout_g * k_g],
            MatLayout::transposed(k_g, cout_g),
            &dy1[gi * cout_g * plane..(gi + 1) * cout_g * plane],
            MatLayout::row_major(cout_g, plane),
            dcol_g,
            false,
            par,
        )
    };
    let dcol_of =
        |dcol: &mut [f32]| for_each_group(&mut dcol[..groups * k_g * plane], groups, par, group);
    let kind = cols_kind(g);
    if kind == Cols::Direct {
        // The columns are the input: the product lands in dx directly.
        dcol_of(&mut dx1[..g.xs.c * plane]);
    } else {
        with_scratch(g.xs.c * g.kh * g.kw * plane, |dcol| {
            dcol_of(dcol);
            scatter(dcol, g, kind, dx1, par);
        });
    }
}

/// Filter gradient of one image: `dw (+)= dY·colᵀ` per group (`accumulate` false overwrites).
fn filter_image(
    x1: &[f32],
    dy1: &[f32],
    g: &ConvGeometry,
    dw: &mut [f32],
    accumulate: bool,
    par: Par,
) {
    let groups = g.p.groups;
    let (cin_g, cout_g) = (g.xs.c / groups, g.ys.c / groups);
    let k_g = cin_g * g.kh * g.kw;
    let plane = g.ys.h * g.ys.w;
    // dW_g (cout_g × k_g) (+)= dY_g (cout_g × P) · col_gᵀ (P × k_g).
    let products = |col: &[f32], dw: &mut [f32]| {
        let group = |gi: usize, dw_g: &mut [f32], par: Par| {
            matmul(
                &dy1[gi * cout_g * plane..(gi + 1) * cout_g * plane],
                MatLayout::row_major(cout_g, plane),
                &col[gi * k_g * plane..(gi + 1) * k_g * plane],
                MatLayout::transposed(plane, k_g),
                dw_g,
                accumulate,
                par,
            )
        };
        for_each_group(&mut dw[..groups * cout_g * k_g], groups, par, group)
    };
    let kind = cols_kind(g);
    if kind == Cols::Direct {
        products(x1, dw);
    } else {
        with_scratch(g.xs.c * g.kh * g.kw * plane, |col| {
            gather(x1, g, kind, col, par);
            products(col, dw);
        });
    }
}

/// The data gradient of `conv` (output shape `ys`) as a forward convolution, when it is one:
/// for stride 1, a square k x k kernel and padding `p < k`,
/// `dx[ci, y, x] = Σ dy[co, y+p-ky, x+p-kx] · w[co, ci, ky, kx]`, which is the conv of `dy`
/// (N, Cout, OH, OW) with padding `k-1-p` and the weights of each group transposed and rotated
/// by 180° ([`transposed_weights`], (Cin, Cout/groups, k, k)); its output is (N, Cin, H, W).
/// Strided convs (whose gradient is a conv of `dy` dilated by the stride) are not.
fn transposed_conv(conv: Conv2dShape, ys: Shape4) -> Option<Conv2dShape> {
    let [cout, cin_g, kh, kw] = conv.w_shape;
    let p = conv.p;
    if p.stride != 1 || kh != kw || p.padding >= kh {
        return None;
    }
    Some(Conv2dShape {
        xs: ys,
        w_shape: [cin_g * p.groups, cout / p.groups, kh, kw],
        p: Conv2dParams {
            stride: 1,
            padding: kh - 1 - p.padding,
            groups: p.groups,
        },
    })
}

/// The weights of [`transposed_conv`]: `wt[g·cin_g + ci, co, ky, kx] = w[g·cout_g + co, ci,
/// k-1-ky, k-1-kx]` for each group g. Errors: [`crate::Error::OutOfMemory`].
fn transposed_weights(conv: Conv2dShape, w: &[f32]) -> Result<Vec<f32>> {
    let [cout, cin_g, kh, kw] = conv.w_shape;
    let groups = conv.p.groups;
    let cout_g = cout / groups;
    let (taps, len) = (kh * kw, conv.w_len());
    let mut wt = mem::filled(len, 0.0f32, || {
        format!("conv2d_backward_data transposed weights {:?}", conv.w_shape)
    })?;
    for gi in 0..groups {
        for co in 0..cout_g {
            for ci in 0..cin_g {
                let src = ((gi * cout_g + co) * cin_g + ci) * taps;
                let dst = ((gi * cin_g + ci) * cout_g + co) * taps;
                for (t, v) in w[src..src + taps].iter().rev().enumerate() {
                    wt[dst + t] = *v;
                }
            }
        }
    }
    Ok(wt)
}

/// [`Backend::conv2d_backward_data`](crate::backend::Backend::conv2d_backward_data) on the CPU:
/// `dx` (N, Cin, H, W) = ∂L/∂x of `y = conv2d(x, w)` given `dy` (N, Cout, OH, OW), overwritten.
/// Errors (`Error::Shape`) if `ys` is not the forward output of `conv`, or a buffer is too short.
pub(in crate::backend::cpu) fn conv2d_backward_data(
    be: &CpuBackend,
    conv: Conv2dShape,
    w: &[f32],
    dy: &[f32],
    ys: Shape4,
    dx: &mut [f32],
) -> Result<()> {
    conv.check_backward_data(w, dy, ys, dx)?;
    let g = ConvGeometry::new(conv, ys);
    let xs = conv.xs;
    let (xi, yi) = (xs.image_len(), ys.image_len());
    if xi == 0 || xs.n == 0 {
        return Ok(());
    }
    if yi == 0 {
        dx[..xs.numel()].fill(0.0);
        return Ok(());
    }
    if let Some(t) = transposed_conv(conv, ys).filter(|_| !be.legacy_conv_backward) {
        let wt = transposed_weights(conv, w)?;
        // Winograd chosen by the conv alone, not by the batch or the thread count, so that an
        // image's gradient is the same bits in any batch on any number of threads.
        #[cfg(target_arch = "x86_64")]
        if (be.winograd || be.winograd_data_gradient)
            && winograd::supports_every_batch(Tile::F4, Activation::None, &ConvGeometry::new(t, xs))
        {
            let op = ConvOp {
                g: ConvGeometry::new(t, xs),
                w: &wt,
                bias: None,
                act: Activation::None,
            };
            super::winograd_conv(be, Tile::F4, &op, dy, dx, None);
            return Ok(());
        }
        let f = Conv2dForward {
            shape: t,
            w: &wt,
            bias: None,
            act: Activation::None,
            prepared: None,
        };
        super::conv2d_post(be, f, dy, dx, None, super::WinogradUse::Off)?;
        return Ok(());
    }
    be.pool.install(|| {
        if be.split_batch(xs.n) {
            dx[..xs.numel()]
                .par_chunks_mut(xi)
                .zip(dy[..ys.numel()].par_chunks(yi))
                .for_each(|(dx1, dy1)| data_image(dy1, w, &g, dx1, Par::Seq));
        } else {
            for (dx1, dy1) in dx[..xs.numel()].chunks_mut(xi).zip(dy.chunks(yi)) {
                data_image(dy1, w, &g, dx1, Par::Rayon);
            }
        }
    });
    Ok(())
}

/// [`Backend::conv2d_backward_filter`](crate::backend::Backend::conv2d_backward_filter) on the
/// CPU: `dw` (Cout, Cin/groups, kh, kw) (+)= ∂L/∂w summed over the batch; `accumulate` false
/// overwrites. Deterministic for a given thread count (see the module doc). Errors
/// (`Error::Shape`) as [`conv2d_backward_data`].
pub(in crate::backend::cpu) fn conv2d_backward_filter(
    be: &CpuBackend,
    conv: Conv2dShape,
    x: &[f32],
    dy: &[f32],
    ys: Shape4,
    dw: &mut [f32],
    accumulate: bool,
) -> Result<()> {
    conv.check_backward_filter(x, dy, ys, dw)?;
    let g = ConvGeometry::new(conv, ys);
    let (xs, wl) = (conv.xs, conv.w_len());
    let dw = &mut dw[..wl];
    let (xi, yi) = (xs.image_len(), ys.image_len());
    if xs.n == 0 || yi == 0 || xi == 0 {
        if !accumulate {
            dw.fill(0.0);
        }
        return Ok(());
    }
    let n = xs.n;
    // On senet's GEMM (`wgrad.rs`), one run of images per thread even on one thread; a single
    // image on several threads keeps the `gemm` crate's threaded products.
    #[cfg(target_arch = "x86_64")]
    let on_sgemm = super::wgrad::usable(be.legacy_filter_gradient, &g);
    #[cfg(not(target_arch = "x86_64"))]
    let on_sgemm = false;
    let by_runs = be.split_batch(n) || (on_sgemm && be.threads == 1);
    if !by_runs {
        be.pool.install(|| {
            for i in 0..n {
                let x1 = &x[i * xi..(i + 1) * xi];
                let dy1 = &dy[i * yi..(i + 1) * yi];
                filter_image(x1, dy1, &g, dw, accumulate || i > 0, Par::Rayon);
            }
        });
        return Ok(());
    }
    // One contiguous run of images per thread: run 0 sums into dw, run r > 0 into partial r-1;
    // the partials are then added to dw in run order (fixed, whatever the scheduling).
    let runs = be.threads.min(n);
    let bounds = |r: usize| (r * n / runs, (r + 1) * n / runs);
    PARTIALS.with(|partials| {
        let mut partials = partials.borrow_mut();
        let need = (runs - 1) * wl;
        if partials.len() < need {
            partials.resize(need, 0.0);
        }
        let partials = &mut partials[..need];
        be.pool.install(|| {
            let mut targets: Vec<&mut [f32]> = Vec::with_capacity(runs);
            targets.push(&mut *dw);
            targets.extend(partials.chunks_mut(wl));
            targets.into_par_iter().enumerate().for_each(|(r, target)| {
                let (first, end) = bounds(r);
                if on_sgemm {
                    #[cfg(target_arch = "x86_64")]
                    return super::wgrad::run(x, dy, &g, first..end, target, r == 0 && accumulate);
                }
                for i in first..end {
                    let x1 = &x[i * xi..(i + 1) * xi];
                    let dy1 = &dy[i * yi..(i + 1) * yi];
                    let acc = i > first || (r == 0 && accumulate);
                    filter_image(x1, dy1, &g, target, acc, Par::Seq);
                }
            });
        });
        for part in partials.chunks(wl) {
            for (d, s) in dw.iter_mut().zip(part) {
                *d += *s;
            }
        }
    });
    Ok(())
}
