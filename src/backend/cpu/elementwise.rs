//! Element-wise gradients on the CPU: ReLU and sigmoid backward (from the forward's output) and
//! the backward of the fused SE scale + residual add + ReLU that ends every SE block.
use rayon::prelude::*;

use super::check_len;
use super::train_kernels as k;
use crate::backend::Shape4;
use crate::Result;

/// Values per parallel task of the flat element-wise kernels (below it, one task).
pub(super) const CHUNK: usize = 1 << 16;

/// See [`crate::backend::Backend::relu_backward`].
pub(super) fn relu_backward(
    pool: &rayon::ThreadPool,
    y: &[f32],
    dy: &mut [f32],
    len: usize,
) -> Result<()> {
    check_len("relu_backward y", y, len)?;
    check_len("relu_backward dy", dy, len)?;
    pool.install(|| {
        dy[..len]
            .par_chunks_mut(CHUNK)
            .zip(y[..len].par_chunks(CHUNK))
            .for_each(|(d, y1)| k::relu_backward(y1, d));
    });
    Ok(())
}

/// See [`crate::backend::Backend::sigmoid_backward`].
pub(super) fn sigmoid_backward(
    pool: &rayon::ThreadPool,
    s: &[f32],
    dy: &mut [f32],
    len: usize,
) -> Result<()> {
    check_len("sigmoid_backward s", s, len)?;
    check_len("sigmoid_backward dy", dy, len)?;
    pool.install(|| {
        dy[..len]
            .par_chunks_mut(CHUNK)
            .zip(s[..len].par_chunks(CHUNK))
            .for_each(|(d, s1)| k::sigmoid_backward(s1, d));
    });
    Ok(())
}

/// See [`crate::backend::Backend::se_scale_add_relu_backward`].
#[allow(clippy::too_many_arguments)]
pub(super) fn se_scale_add_relu_backward(
    pool: &rayon::ThreadPool,
    x: &[f32],
    xs: Shape4,
    gate: &[f32],
    out: &[f32],
    dout: &[f32],
    dx: &mut [f32],
    dgate: &mut [f32],
    dshortcut: &mut [f32],
) -> Result<()> {
    let numel = xs.numel();
    let planes = xs.n * xs.c;
    check_len("se_scale_add_relu_backward x", x, numel)?;
    check_len("se_scale_add_relu_backward out", out, numel)?;
    check_len("se_scale_add_relu_backward dout", dout, numel)?;
    check_len("se_scale_add_relu_backward dx", dx, numel)?;
    check_len("se_scale_add_relu_backward dshortcut", dshortcut, numel)?;
    check_len("se_scale_add_relu_backward gate", gate, planes)?;
    check_len("se_scale_add_relu_backward dgate", dgate, planes)?;
    let hw = xs.h * xs.w;
    if numel == 0 {
        dgate[..planes].fill(0.0);
        return Ok(());
    }
    // Tasks of blocks of (image, channel) planes, so that batch 1 uses every thread.
    let block = xs.c.div_ceil(8).max(1);
    pool.install(|| {
        dx[..numel]
            .par_chunks_mut(block * hw)
            .zip(dshortcut[..numel].par_chunks_mut(block * hw))
            .zip(dgate[..planes].par_chunks_mut(block))
            .enumerate()
            .for_each(|(i, ((dx1, ds1), dg1))| {
                for (j, dg) in dg1.iter_mut().enumerate() {
                    let p = i * block + j; // plane index over n*c
                    let r = p * hw..(p + 1) * hw;
                    let l = j * hw..(j + 1) * hw;
                    *dg = k::se_scale_add_relu_backward(
                        &x[r.clone()],
                        gate[p],
                        &out[r.clone()],
                        &dout[r],
                        &mut dx1[l.clone()],
                        &mut ds1[l],
                    ) as f32;
                }
            });
    });
    Ok(())
}
