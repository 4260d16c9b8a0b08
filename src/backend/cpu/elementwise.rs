//! Element-wise ops on the CPU: the fused SE scale + residual add + ReLU that ends every SE block
//! and its backward, the ReLU and sigmoid backwards (from the forward's output), and the
//! arithmetic on whole buffers (gradient accumulation, `axpby`, scaling, the squared norm, copies).
use rayon::prelude::*;

use super::kernels::{self as k, self};
use super::{check_len, CpuBackend};
use crate::backend::{check_se_scale_add_relu, SeGrads, Shape4};
use crate::Result;

/// Values per parallel task of the flat element-wise kernels (below it, one task).
pub(super) const CHUNK: usize = 1 << 16;

/// [`Backend::se_scale_add_relu`](crate::backend::Backend::se_scale_add_relu) on the CPU, in place,
/// in tasks of (image, block of channels) so that batch 1 uses every thread.
pub(super) fn se_scale_add_relu(
    be: &CpuBackend,
    x: &mut [f32],
    xs: Shape4,
    gate: &[f32],
    shortcut: &[f32],
) -> Result<()> {
    check_se_scale_add_relu(xs, x, gate, shortcut)?;
    let hw = xs.h * xs.w;
    let c = xs.c;
    be.pool.install(|| {
        // Tasks of (image, block of channels) so that batch 1 uses every thread.
        let block = c.div_ceil(8).max(1);
        x[..xs.numel()]
            .par_chunks_mut(block * hw)
            .zip(shortcut[..xs.numel()].par_chunks(block * hw))
            .enumerate()
            .for_each(|(i, (x1, s1))| {
                let first = i * block; // global channel index over n*c
                let cc = x1.len() / hw;
                kernels::scale_add_relu(x1, &gate[first..first + cc], s1, cc, hw);
            });
    });
    Ok(())
}

/// [`Backend::se_scale_add_relu_into`](crate::backend::Backend::se_scale_add_relu_into) on the
/// CPU: `out = relu(x * gate[n, c] + shortcut)` in one pass (no copy of `x` first; the same
/// arithmetic as [`se_scale_add_relu`]), in the same tasks. Errors as that op's, also for `out`
/// too short.
pub(super) fn se_scale_add_relu_into(
    be: &CpuBackend,
    x: &[f32],
    xs: Shape4,
    gate: &[f32],
    shortcut: &[f32],
    out: &mut [f32],
) -> Result<()> {
    check_se_scale_add_relu(xs, x, gate, shortcut)?;
    check_len("se_scale_add_relu output", out, xs.numel())?;
    let hw = xs.h * xs.w;
    be.pool.install(|| {
        let block = xs.c.div_ceil(8).max(1);
        out[..xs.numel()]
            .par_chunks_mut(block * hw)
            .zip(x[..xs.numel()].par_chunks(block * hw))
            .zip(shortcut[..xs.numel()].par_chunks(block * hw))
            .enumerate()
            .for_each(|(i, ((o1, x1), s1))| {
                let first = i * block; // global channel index over n*c
                let cc = x1.len() / hw;
                kernels::scale_add_relu_into(x1, &gate[first..first + cc], s1, cc, hw, o1);
            });
    });
    Ok(())
}

/// See [`crate::backend::Backend::relu_backward`].
pub(super) fn relu_backward(be: &CpuBackend, y: &[f32], dy: &mut [f32], len: usize) -> Result<()> {
    check_len("relu_backward y", y, len)?;
    check_len("relu_backward dy", dy, len)?;
    be.pool.install(|| {
        dy[..len]
            .par_chunks_mut(CHUNK)
            .zip(y[..len].par_chunks(CHUNK))
            .for_each(|(d, y1)| k::relu_backward(y1, d));
    });
    Ok(())
}

/// See [`crate::backend::Backend::sigmoid_backward`].
pub(super) fn sigmoid_backward(
    be: &CpuBackend,
    s: &[f32],
    dy: &mut [f32],
    len: usize,
) -> Result<()> {
    check_len("sigmoid_backward s", s, len)?;
    check_len("sigmoid_backward dy", dy, len)?;
    be.pool.install(|| {
        dy[..len]
            .par_chunks_mut(CHUNK)
            .zip(s[..len].par_chunks(CHUNK))
            .for_each(|(d, s1)| k::sigmoid_backward(s1, d));
    });
    Ok(())
}

/// See [`crate::backend::Backend::se_scale_add_relu_backward`].
pub(super) fn se_scale_add_relu_backward(
    be: &CpuBackend,
    x: &[f32],
    xs: Shape4,
    gate: &[f32],
    out: &[f32],
    dout: &[f32],
    grads: SeGrads<'_, Vec<f32>>,
) -> Result<()> {
    grads.check(xs, x, gate, out, dout)?;
    let SeGrads {
        dx,
        dgate,
        dshortcut,
    } = grads;
    let (numel, planes) = (xs.numel(), xs.n * xs.c);
    let hw = xs.h * xs.w;
    if numel == 0 {
        dgate[..planes].fill(0.0);
        return Ok(());
    }
    // Tasks of blocks of (image, channel) planes, so that batch 1 uses every thread.
    let block = xs.c.div_ceil(8).max(1);
    be.pool.install(|| {
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

/// [`Backend::add_assign`](crate::backend::Backend::add_assign) on the CPU: `dst[i] += src[i]`
/// for `i < len`. Errors (`Error::Shape`) if a buffer is shorter than `len`.
pub(super) fn add_assign(be: &CpuBackend, dst: &mut [f32], src: &[f32], len: usize) -> Result<()> {
    check_len("add_assign dst", dst, len)?;
    check_len("add_assign src", src, len)?;
    let add = |(d, s): (&mut [f32], &[f32])| {
        for (d, s) in d.iter_mut().zip(s) {
            *d += *s;
        }
    };
    if len <= CHUNK || be.threads == 1 {
        add((&mut dst[..len], &src[..len]));
    } else {
        be.pool.install(|| {
            dst[..len]
                .par_chunks_mut(CHUNK)
                .zip(src[..len].par_chunks(CHUNK))
                .for_each(add);
        });
    }
    Ok(())
}

/// [`Backend::axpby`](crate::backend::Backend::axpby) on the CPU: `y = a*y + b*x` over `len` values.
pub(super) fn axpby(y: &mut [f32], x: &[f32], len: usize, a: f32, b: f32) -> Result<()> {
    check_len("axpby y", y, len)?;
    check_len("axpby x", x, len)?;
    for (y, x) in y[..len].iter_mut().zip(&x[..len]) {
        *y = a * *y + b * *x;
    }
    Ok(())
}

/// [`Backend::scale`](crate::backend::Backend::scale) on the CPU: `x *= factor` over `len` values.
pub(super) fn scale(x: &mut [f32], len: usize, factor: f32) -> Result<()> {
    check_len("scale", x, len)?;
    x[..len].iter_mut().for_each(|v| *v *= factor);
    Ok(())
}

/// [`Backend::sum_squares`](crate::backend::Backend::sum_squares) on the CPU: `Σ x²` in f64, in order.
pub(super) fn sum_squares(x: &[f32], len: usize) -> Result<f64> {
    check_len("sum_squares", x, len)?;
    Ok(x[..len].iter().map(|&v| (v as f64) * (v as f64)).sum())
}

/// [`Backend::copy`](crate::backend::Backend::copy) on the CPU.
pub(super) fn copy(src: &[f32], dst: &mut [f32], len: usize) -> Result<()> {
    check_len("copy source", src, len)?;
    check_len("copy destination", dst, len)?;
    dst[..len].copy_from_slice(&src[..len]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    /// The one-pass SE block end into another buffer gives the in-place op's values bit for bit
    /// (NaN, ±inf and signed zeros included), leaves `x` and `out`'s tail alone, and refuses a
    /// short `out`; batch 1 and 3, planes of odd size.
    #[test]
    fn se_scale_add_relu_into_is_the_in_place_op() {
        let be = CpuBackend::new(2).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for xs in [Shape4::new(1, 5, 3, 7), Shape4::new(3, 16, 9, 9)] {
            let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0];
            let x: Vec<f32> = super::super::test_values(xs.numel(), 3)
                .iter()
                .enumerate()
                .map(|(i, &v)| if i % 37 < 5 { specials[i % 37] } else { v })
                .collect();
            let shortcut = super::super::test_values(xs.numel(), 4);
            let mut gate = super::super::test_values(xs.n * xs.c, 5);
            gate[0] = -0.0;
            let mut want = x.clone();
            be.se_scale_add_relu(&mut want, xs, &gate, &shortcut)
                .unwrap();
            let mut out = vec![9.0; xs.numel() + 2];
            be.se_scale_add_relu_into(&x, xs, &gate, &shortcut, &mut out)
                .unwrap();
            assert_eq!(bits(&out[..xs.numel()]), bits(&want), "{xs:?}");
            assert_eq!(&out[xs.numel()..], &[9.0, 9.0]);
            let mut short = vec![0.0; xs.numel() - 1];
            assert!(be
                .se_scale_add_relu_into(&x, xs, &gate, &shortcut, &mut short)
                .is_err());
        }
    }
}
