//! Pooling on the CPU, forward and backward: MindSpore's `MaxPool2d(pad_mode="same")` (TF 'SAME'
//! geometry, [`same_pool_geometry`](crate::backend::same_pool_geometry)) and the global average pool (MindCV `GlobalAvgPooling`).
//! Tasks are (image, block of channels), so that batch 1 keeps every thread busy.
use super::kernels::{self, PoolWindows};
use super::CpuBackend;
use crate::backend::{check_len, MaxPool2dParams, Shape4};
use crate::Result;
use rayon::prelude::*;

/// Channel planes per task: (image, block of channels) tasks keep every thread busy at batch 1.
const PLANES_PER_TASK: usize = 8;

/// [`Backend::max_pool2d_same`](crate::backend::Backend::max_pool2d_same) on the CPU: `y`
/// (N, C, OH, OW) from `x` (N, C, H, W), OH, OW from [`same_pool_geometry`](crate::backend::same_pool_geometry); padded positions
/// never win. Errors (`Error::Shape`) on a zero kernel, stride or plane, or a buffer too short.
pub(super) fn max_pool2d_same(
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

/// [`Backend::max_pool2d_same_backward`](crate::backend::Backend::max_pool2d_same_backward) on
/// the CPU: `dx` (N, C, H, W) overwritten; each `dy` (N, C, OH, OW) value goes to the argmax of its
/// window in `x` (first maximum in row-major window order on ties; padded positions never win).
/// Errors (`Error::Shape`) on a zero kernel, stride or plane, or a buffer too short.
pub(super) fn max_pool2d_same_backward(
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
    be.pool.install(|| {
        dx[..xs.numel()]
            .par_chunks_mut(plane_in * PLANES_PER_TASK)
            .zip(x[..xs.numel()].par_chunks(plane_in * PLANES_PER_TASK))
            .zip(dy[..ys.numel()].par_chunks(plane_out * PLANES_PER_TASK))
            .for_each(|((dx1, x1), dy1)| {
                let c = x1.len() / plane_in;
                kernels::max_pool2d_backward(x1, dy1, PoolWindows::new(c, xs, pool, g), dx1)
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
                    plane.fill(g / denom);
                }
            });
    });
    Ok(())
}
