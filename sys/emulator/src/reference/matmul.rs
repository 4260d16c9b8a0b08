//! Matrix products, mirroring `torch.mm` (`aclnnMm`), `torch.addmm` (`aclnnAddmm`) and the 2-D
//! case of `torch.matmul` (`aclnnMatmul`).
//!
//! Matrices are contiguous row-major. Each output row is accumulated in an `f32` buffer, as the
//! cube accumulates (see [`super`]): for every `p` in order, `a[i,p]` times row `p` of `b` is
//! added to it (innermost loop over contiguous memory).

use super::{axpy_f32, check_shape, RefResult};

/// Product rows of `a [m,k] @ b [k,n]` (accumulated in `f32`), handed one by one to
/// `emit(i, row)`.
fn product_rows(
    a: &[f32],
    a_shape: [usize; 2],
    b: &[f32],
    b_shape: [usize; 2],
    mut emit: impl FnMut(usize, &[f32]),
) -> RefResult<()> {
    check_shape("matmul self", a.len(), &a_shape)?;
    check_shape("matmul mat2", b.len(), &b_shape)?;
    let [m, k] = a_shape;
    let [k2, n] = b_shape;
    if k != k2 {
        return Err(format!(
            "matmul: shapes {a_shape:?} and {b_shape:?} cannot be multiplied ({k} != {k2})"
        ));
    }
    let mut row = vec![0f32; n];
    for i in 0..m {
        row.fill(0.0);
        for p in 0..k {
            axpy_f32(&mut row, a[i * k + p], &b[p * n..(p + 1) * n]);
        }
        emit(i, &row);
    }
    Ok(())
}

/// Matrix product, mirroring `torch.mm(a, b)` (`aclnnMm`).
///
/// `a`: `[m, k]` (`a_shape`), `b`: `[k, n]` (`b_shape`). Returns `a @ b` `[m, n]`, every element
/// a dot product accumulated in `f32`.
pub fn mm(a: &[f32], a_shape: [usize; 2], b: &[f32], b_shape: [usize; 2]) -> RefResult<Vec<f32>> {
    let n = b_shape[1];
    let mut out = vec![0f32; a_shape[0] * n];
    product_rows(a, a_shape, b, b_shape, |i, row| {
        out[i * n..(i + 1) * n].copy_from_slice(row);
    })?;
    Ok(out)
}

/// `beta*self + alpha*(a @ b)`, mirroring `torch.addmm(self, a, b, beta=beta, alpha=alpha)`
/// (`aclnnAddmm`; a linear layer is `addmm(bias, x, weight^T)`).
///
/// * `self_`: shape `self_shape`, broadcastable to `[m, n]`: `[n]`, `[1, n]`, `[m, 1]`, `[m, n]`,
///   `[1]`, or `[]`.
/// * `a`: `[m, k]`, `b`: `[k, n]`.
///
/// Returns `[m, n]`: the product accumulated in `f32`, then `beta*self + alpha*product` in `f32`.
/// As in PyTorch, `beta = 0` ignores `self_` entirely (a NaN there does not propagate).
#[allow(clippy::too_many_arguments)]
pub fn addmm(
    self_: &[f32],
    self_shape: &[usize],
    a: &[f32],
    a_shape: [usize; 2],
    b: &[f32],
    b_shape: [usize; 2],
    beta: f32,
    alpha: f32,
) -> RefResult<Vec<f32>> {
    check_shape("addmm self", self_.len(), self_shape)?;
    let [m, n] = [a_shape[0], b_shape[1]];
    // Row/column strides of self seen as [m, n] (0 along broadcast dimensions).
    let (rs, cs) = match *self_shape {
        [] => (0, 0),
        [c] if c == n || c == 1 => (0, usize::from(c == n && n != 1)),
        [r, c] if (r == m || r == 1) && (c == n || c == 1) => (
            if r == m && m != 1 { c } else { 0 },
            usize::from(c == n && n != 1),
        ),
        _ => {
            return Err(format!(
                "addmm: self of shape {self_shape:?} cannot be broadcast to [{m}, {n}]"
            ))
        }
    };
    let mut out = vec![0f32; m * n];
    product_rows(a, a_shape, b, b_shape, |i, row| {
        for (j, (o, v)) in out[i * n..(i + 1) * n].iter_mut().zip(row).enumerate() {
            let s = if beta == 0.0 {
                0.0
            } else {
                beta * self_[i * rs + j * cs]
            };
            *o = s + alpha * v;
        }
    })?;
    Ok(out)
}

/// Matrix product of two 2-D tensors, mirroring `torch.matmul(a, b)` (`aclnnMatmul`) for the
/// 2-D x 2-D case only (the only one the emulator needs): same as [`mm`], returning
/// `(a @ b, [m, n])`. Any other rank is an error.
pub fn matmul(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
) -> RefResult<(Vec<f32>, Vec<usize>)> {
    match (a_shape, b_shape) {
        (&[m, k], &[k2, n]) => Ok((mm(a, [m, k], b, [k2, n])?, vec![m, n])),
        _ => Err(format!(
            "matmul: only 2-D x 2-D is supported, got shapes {a_shape:?} and {b_shape:?}"
        )),
    }
}

/// Transpose of a row-major `[rows, cols]` matrix, returning the row-major `[cols, rows]`
/// matrix (`a.t().contiguous()` in PyTorch), e.g. to materialise a transposed operand.
pub fn transpose2d(a: &[f32], shape: [usize; 2]) -> RefResult<Vec<f32>> {
    check_shape("transpose2d", a.len(), &shape)?;
    let [r, c] = shape;
    let mut out = vec![0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = a[i * c + j];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Lcg;
    use super::*;

    #[test]
    fn hand_computed_mm() {
        // [[1,2,3],[4,5,6]] @ [[7,8],[9,10],[11,12]] = [[58,64],[139,154]]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
        assert_eq!(
            mm(&a, [2, 3], &b, [3, 2]).unwrap(),
            vec![58.0, 64.0, 139.0, 154.0]
        );
        assert_eq!(
            matmul(&a, &[2, 3], &b, &[3, 2]).unwrap(),
            (vec![58.0, 64.0, 139.0, 154.0], vec![2, 2])
        );
        assert!(mm(&a, [2, 3], &b, [2, 3]).is_err());
        assert!(mm(&a, [3, 3], &b, [3, 2]).is_err());
        assert!(matmul(&a, &[6], &b, &[6]).is_err());
        // k = 0: zeros
        assert_eq!(mm(&[], [2, 0], &[], [0, 2]).unwrap(), vec![0.0; 4]);
    }

    #[test]
    fn hand_computed_addmm() {
        let a = [1.0, 2.0, 3.0, 4.0]; // [[1,2],[3,4]]
        let b = [1.0, 0.0, 0.0, 1.0]; // identity
                                      // bias [n]
        assert_eq!(
            addmm(&[10.0, 20.0], &[2], &a, [2, 2], &b, [2, 2], 1.0, 1.0).unwrap(),
            vec![11.0, 22.0, 13.0, 24.0]
        );
        // [1, n] with beta 2 and alpha 0.5
        assert_eq!(
            addmm(&[10.0, 20.0], &[1, 2], &a, [2, 2], &b, [2, 2], 2.0, 0.5).unwrap(),
            vec![20.5, 41.0, 21.5, 42.0]
        );
        // [m, 1]
        assert_eq!(
            addmm(&[10.0, 20.0], &[2, 1], &a, [2, 2], &b, [2, 2], 1.0, 1.0).unwrap(),
            vec![11.0, 12.0, 23.0, 24.0]
        );
        // [m, n]
        assert_eq!(
            addmm(
                &[1.0, 1.0, 2.0, 2.0],
                &[2, 2],
                &a,
                [2, 2],
                &b,
                [2, 2],
                -1.0,
                1.0
            )
            .unwrap(),
            vec![0.0, 1.0, 1.0, 2.0]
        );
        // scalar and [1]
        assert_eq!(
            addmm(&[1.0], &[], &a, [2, 2], &b, [2, 2], 1.0, 1.0).unwrap(),
            vec![2.0, 3.0, 4.0, 5.0]
        );
        assert_eq!(
            addmm(&[1.0], &[1], &a, [2, 2], &b, [2, 2], 1.0, 1.0).unwrap(),
            vec![2.0, 3.0, 4.0, 5.0]
        );
        // beta = 0 ignores NaN
        assert_eq!(
            addmm(&[f32::NAN; 2], &[2], &a, [2, 2], &b, [2, 2], 0.0, 1.0).unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        // [1, 1] self on a [1, 1] product
        assert_eq!(
            addmm(&[5.0], &[1, 1], &[2.0], [1, 1], &[3.0], [1, 1], 1.0, 1.0).unwrap(),
            vec![11.0]
        );
        assert!(addmm(&[1.0; 3], &[3], &a, [2, 2], &b, [2, 2], 1.0, 1.0).is_err());
        assert!(addmm(&[1.0; 4], &[2, 2, 1], &a, [2, 2], &b, [2, 2], 1.0, 1.0).is_err());
    }

    #[test]
    fn matches_dot_products_and_transpose() {
        let mut rng = Lcg::new(40);
        let (m, k, n) = (5, 7, 3);
        let a = rng.vec(m * k);
        let b = rng.vec(k * n);
        let y = mm(&a, [m, k], &b, [k, n]).unwrap();
        let bt = transpose2d(&b, [k, n]).unwrap();
        assert_eq!(transpose2d(&bt, [n, k]).unwrap(), b);
        // f32 accumulation in index order, each product rounded to f32: exactly the sequential
        // f32 sum, and within gamma_k * Σ|a||b| (gamma_k = k u / (1 - k u), u = 2^-24) of the
        // exact dot product.
        let u = 2f64.powi(-24);
        let gamma = k as f64 * u / (1.0 - k as f64 * u);
        for i in 0..m {
            for j in 0..n {
                let seq = (0..k).fold(0f32, |s, p| s + a[i * k + p] * bt[j * k + p]);
                assert_eq!(y[i * n + j], seq);
                let exact: f64 = (0..k)
                    .map(|p| f64::from(a[i * k + p]) * f64::from(bt[j * k + p]))
                    .sum();
                let mag: f64 = (0..k)
                    .map(|p| (f64::from(a[i * k + p]) * f64::from(bt[j * k + p])).abs())
                    .sum();
                assert!((f64::from(y[i * n + j]) - exact).abs() <= gamma * mag);
            }
        }
        // (a @ b)^T = b^T @ a^T
        let yt = mm(&bt, [n, k], &transpose2d(&a, [m, k]).unwrap(), [k, m]).unwrap();
        assert_eq!(transpose2d(&y, [m, n]).unwrap(), yt);
        assert!(transpose2d(&a, [m, m]).is_err());
    }
}
