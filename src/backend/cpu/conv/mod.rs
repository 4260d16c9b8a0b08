//! conv2d on one image: im2col (skipped for 1x1 convs) + one GEMM per group + bias/activation.
use super::kernels::{self, Im2col};
use super::matmul::{matmul, MatLayout, Par};
use crate::backend::{Activation, Conv2dParams, Shape4};
use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512;
pub(super) mod backward;
#[cfg(target_arch = "x86_64")]
pub(super) mod winograd;

thread_local! {
    /// Per-thread im2col scratch, grown to the largest layer and reused (also by the backward ops
    /// of `backward`, which never hold it across a call to the forward).
    pub(super) static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Shapes of one convolution (the batch size in `xs`/`ys` is ignored per image).
pub(super) struct ConvGeometry {
    pub xs: Shape4,
    pub ys: Shape4,
    pub kh: usize,
    pub kw: usize,
    pub p: Conv2dParams,
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
/// computed it. x and y hold `n` images of `xi` and `yi` floats.
#[allow(clippy::too_many_arguments)]
pub(super) fn image_tasks(
    x: &[f32],
    xi: usize,
    y: &mut [f32],
    yi: usize,
    n: usize,
    per_task: usize,
    post: Option<PerImage>,
    run: impl Fn(&[f32], &mut [f32]) + Sync,
) {
    use rayon::prelude::*;
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

/// `y1 = act(conv(x1, w) + bias)` for one image (x1: (Cin, H, W), y1: (Cout, OH, OW)).
pub(super) fn conv2d_image(
    x1: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    act: Activation,
    y1: &mut [f32],
    par: Par,
) {
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
            if g.kh == 1 && g.kw == 1 && g.p.padding == 0 {
                kernels::subsample(
                    x1,
                    xs.c,
                    xs.h,
                    xs.w,
                    g.p.stride,
                    ys.h,
                    ys.w,
                    &mut scratch[..need],
                );
            } else {
                let geom = Im2col {
                    c: xs.c,
                    h: xs.h,
                    w: xs.w,
                    kh: g.kh,
                    kw: g.kw,
                    stride: g.p.stride,
                    pad: g.p.padding,
                    oh: ys.h,
                    ow: ys.w,
                };
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
