//! conv2d on one image: im2col (skipped for 1x1 convs) + one GEMM per group + bias/activation.
use super::kernels::{self, Im2col};
use super::matmul::{matmul, MatLayout, Par};
use crate::backend::{Activation, Conv2dParams, Shape4};
use std::cell::RefCell;

thread_local! {
    /// Per-thread im2col scratch, grown to the largest layer and reused (also by the backward ops
    /// of `conv_backward`, which never hold it across a call to the forward).
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
