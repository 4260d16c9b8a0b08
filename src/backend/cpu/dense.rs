//! The dense layer (MindSpore `nn.Dense`: `y = x·wᵀ + b`, x (n, in), w (out, in)) on the CPU:
//! the forward as one GEMM plus the bias and activation per row, the gradients as two GEMMs and a
//! column sum.
use super::matmul::{self, matmul, MatLayout, Par};
use super::{check_len, kernels, CpuBackend};
use crate::backend::Activation;
use crate::Result;

/// [`Backend::linear`](crate::backend::Backend::linear) on the CPU: `y` (n, out) = `x · wᵀ` (one GEMM
/// split across the pool), then per row the bias and `act`. Errors (`Error::Shape`) if a buffer
/// is too short.
#[allow(clippy::too_many_arguments)]
pub(super) fn linear(
    be: &CpuBackend,
    x: &[f32],
    n: usize,
    w: &[f32],
    out_features: usize,
    in_features: usize,
    b: &[f32],
    act: Activation,
    y: &mut [f32],
) -> Result<()> {
    check_len("linear input", x, n * in_features)?;
    check_len("linear weight", w, out_features * in_features)?;
    check_len("linear bias", b, out_features)?;
    check_len("linear output", y, n * out_features)?;
    // y (n, out) = x (n, in) · wᵀ (in, out), then bias + activation per row.
    be.pool.install(|| {
        matmul::matmul(
            x,
            matmul::MatLayout::row_major(n, in_features),
            w,
            matmul::MatLayout::transposed(in_features, out_features),
            y,
            false,
            matmul::Par::Rayon,
        );
    });
    // Per row: bias per feature (a "channel" of one element) and the activation.
    for row in y[..n * out_features].chunks_mut(out_features) {
        kernels::bias_act(row, Some(b), out_features, 1, act);
    }
    Ok(())
}

/// [`Backend::linear_backward`](crate::backend::Backend::linear_backward) on the CPU, given
/// `dy` (n, out):
/// - `dx` (n, in) = `dy · w` when `dx` is given, overwritten;
/// - `dw` (out, in) = `dyᵀ · x`, overwritten;
/// - `db` (out) = the sum of `dy` over its rows (in row order), overwritten.
///
/// Errors (`Error::Shape`) if a buffer is too short.
#[allow(clippy::too_many_arguments)]
pub(super) fn linear_backward(
    be: &CpuBackend,
    x: &[f32],
    n: usize,
    w: &[f32],
    out_features: usize,
    in_features: usize,
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: &mut [f32],
) -> Result<()> {
    let (o, i) = (out_features, in_features);
    check_len("linear_backward x", x, n * i)?;
    check_len("linear_backward weight", w, o * i)?;
    check_len("linear_backward dy", dy, n * o)?;
    check_len("linear_backward dw", dw, o * i)?;
    check_len("linear_backward db", db, o)?;
    if let Some(dx) = dx.as_deref() {
        check_len("linear_backward dx", dx, n * i)?;
    }
    be.pool.install(|| {
        if let Some(dx) = dx {
            // dx (n × in) = dy (n × out) · w (out × in).
            matmul(
                dy,
                MatLayout::row_major(n, o),
                w,
                MatLayout::row_major(o, i),
                dx,
                false,
                Par::Rayon,
            );
        }
        // dw (out × in) = dyᵀ (out × n) · x (n × in).
        matmul(
            dy,
            MatLayout::transposed(o, n),
            x,
            MatLayout::row_major(n, i),
            dw,
            false,
            Par::Rayon,
        );
    });
    let db = &mut db[..o];
    db.fill(0.0);
    for row in dy[..n * o].chunks(o.max(1)) {
        for (b, &g) in db.iter_mut().zip(row) {
            *b += g;
        }
    }
    Ok(())
}
