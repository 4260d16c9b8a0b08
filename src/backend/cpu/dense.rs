//! The dense layer (MindSpore `nn.Dense`: `y = x·wᵀ + b`, x (n, in), w (out, in)) on the CPU:
//! the forward as one GEMM plus the bias and activation per row, the gradients as two GEMMs and a
//! column sum.
use super::matmul::{self, matmul, MatLayout, Par};
use super::{kernels, CpuBackend};
use crate::backend::{LinearForward, LinearGrads, LinearShape};
use crate::Result;

/// [`Backend::linear`](crate::backend::Backend::linear) on the CPU: `y` (n, out) = `x · wᵀ` (one GEMM
/// split across the pool), then per row the bias and `act`. Errors (`Error::Shape`) if a buffer
/// is too short.
pub(super) fn linear(
    be: &CpuBackend,
    f: LinearForward<'_, Vec<f32>>,
    x: &[f32],
    y: &mut [f32],
) -> Result<()> {
    f.check(x, y)?;
    let LinearShape {
        n,
        in_features,
        out_features,
    } = f.shape;
    let (w, b, act) = (f.w, f.b, f.act);
    if n == 1 && !super::batch1_path_off("nolocal") {
        // One row: the crate computes a matrix-vector product on one thread whatever its
        // parallelism, so it runs here instead of on the pool, with its bias and activation:
        // no hand-over to a pool thread and back (about 10 us per call, 32 calls per
        // seresnet50 forward, each of a few us of work). Same arithmetic as through the pool.
        let y1 = &mut y[..out_features];
        matmul::matmul(
            &x[..in_features],
            MatLayout::row_major(1, in_features),
            w,
            MatLayout::transposed(in_features, out_features),
            y1,
            false,
            Par::Seq,
        );
        kernels::bias_act(y1, Some(b), out_features, 1, act);
        return Ok(());
    }
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
pub(super) fn linear_backward(
    be: &CpuBackend,
    shape: LinearShape,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    grads: LinearGrads<'_, Vec<f32>>,
) -> Result<()> {
    shape.check_backward(x, w, dy, &grads)?;
    let LinearShape {
        n,
        in_features: i,
        out_features: o,
    } = shape;
    let LinearGrads { dx, dw, db } = grads;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::test_values as fill;
    use crate::backend::{Activation, Backend};

    /// A single row (computed on the calling thread) gives bit for bit the product the pool
    /// computes for it (the `gemm` crate's, `Par::Rayon`, then bias and activation), on 1, 2 and
    /// 3 threads: seresnet50's SE and classifier shapes, odd sizes, k of 1 and 2 (the crate's
    /// outer-product path); nothing written past the row.
    #[test]
    fn one_row_on_the_calling_thread_is_the_pool_product() {
        let shapes = [
            (2048, 1000),
            (2048, 128),
            (128, 2048),
            (256, 16),
            (37, 19),
            (1, 5),
            (2, 70),
        ];
        for (case, &(inf, outf)) in shapes.iter().enumerate() {
            let x = fill(inf, case as u64 + 1);
            let w = fill(outf * inf, case as u64 + 20);
            let b = fill(outf, case as u64 + 40);
            let act = [Activation::None, Activation::Relu, Activation::Sigmoid][case % 3];
            for threads in [1, 2, 3] {
                let be = CpuBackend::new(threads).unwrap();
                let mut want = vec![0.0; outf];
                be.pool.install(|| {
                    matmul(
                        &x,
                        MatLayout::row_major(1, inf),
                        &w,
                        MatLayout::transposed(inf, outf),
                        &mut want,
                        false,
                        Par::Rayon,
                    )
                });
                kernels::bias_act(&mut want, Some(&b), outf, 1, act);
                let f = LinearForward {
                    shape: LinearShape {
                        n: 1,
                        in_features: inf,
                        out_features: outf,
                    },
                    w: &w,
                    b: &b,
                    act,
                };
                let mut y = vec![f32::NAN; outf + 3];
                be.linear(f, &x, &mut y).unwrap();
                assert!(y[outf..].iter().all(|v| v.is_nan()), "written past y");
                let same = want.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{inf} -> {outf}, {threads} threads");
            }
        }
    }
}
