//! Element-wise operators: activations and their backwards, broadcasting binary operators,
//! operators with a scalar, and sum/mean reductions over chosen dimensions.
//!
//! Binary operators broadcast as NumPy/PyTorch do: shapes are aligned on their last dimension,
//! missing leading dimensions count as 1, and two sizes are compatible when equal or when one of
//! them is 1. Arithmetic on single elements is done in `f32` exactly as PyTorch does on CPU
//! (`a + alpha*b` etc.); the transcendental `sigmoid` is evaluated in `f64` and rounded once;
//! reductions accumulate in `f64`.

use super::{check_len, check_shape, numel, RefResult};

/// ReLU, mirroring `torch.relu` (`aclnnRelu`): `max(x, 0)` element-wise; NaN stays NaN. Any shape.
pub fn relu(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| if v > 0.0 || v.is_nan() { v } else { 0.0 })
        .collect()
}

/// Logistic sigmoid, mirroring `torch.sigmoid` (`aclnnSigmoid`): `1/(1+exp(-x))` element-wise,
/// evaluated in `f64`. Any shape.
pub fn sigmoid(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| (1.0 / (1.0 + (-f64::from(v)).exp())) as f32)
        .collect()
}

/// Backward of a threshold (ReLU when `threshold = 0`), mirroring
/// `torch.ops.aten.threshold_backward(grad, self, threshold)` (`aclnnThresholdBackward`):
/// `grad` where `self > threshold`, else 0 (precisely ATen's `self <= threshold ? 0 : grad`, so a
/// NaN in `self` lets the gradient through).
///
/// `grad` and `self_` have the same shape (same length); the result has that shape too.
pub fn threshold_backward(grad: &[f32], self_: &[f32], threshold: f32) -> RefResult<Vec<f32>> {
    check_len("threshold_backward self", self_.len(), grad.len())?;
    Ok(grad
        .iter()
        .zip(self_)
        .map(|(&g, &s)| if s <= threshold { 0.0 } else { g })
        .collect())
}

/// Backward of [`sigmoid`], mirroring `torch.ops.aten.sigmoid_backward(grad, output)`
/// (`aclnnSigmoidBackward`): `grad * out * (1 - out)` where `out` is the sigmoid's output
/// (evaluated in `f64`). `grad` and `out` have the same length.
pub fn sigmoid_backward(grad: &[f32], out: &[f32]) -> RefResult<Vec<f32>> {
    check_len("sigmoid_backward output", out.len(), grad.len())?;
    Ok(grad
        .iter()
        .zip(out)
        .map(|(&g, &o)| {
            let o = f64::from(o);
            (f64::from(g) * o * (1.0 - o)) as f32
        })
        .collect())
}

/// Broadcast shape of two shapes (NumPy/PyTorch rules, see the module documentation), e.g.
/// `[2, 3, 4, 5]` and `[3, 1, 1]` give `[2, 3, 4, 5]`. Errors when two aligned sizes differ and
/// neither is 1.
pub fn broadcast_shape(a_shape: &[usize], b_shape: &[usize]) -> RefResult<Vec<usize>> {
    let rank = a_shape.len().max(b_shape.len());
    let mut out = vec![0usize; rank];
    for (i, o) in out.iter_mut().enumerate() {
        // Sizes aligned on the last dimension; missing leading dimensions are 1.
        let da = (i + a_shape.len())
            .checked_sub(rank)
            .map_or(1, |j| a_shape[j]);
        let db = (i + b_shape.len())
            .checked_sub(rank)
            .map_or(1, |j| b_shape[j]);
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(format!(
                "shapes {a_shape:?} and {b_shape:?} cannot be broadcast together"
            ));
        };
    }
    Ok(out)
}

/// Element strides of a contiguous tensor of shape `shape` seen through the broadcast shape
/// `out` (same rank as `out`): 0 for broadcast (size-1 or missing) dimensions.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let mut strides = vec![0usize; out.len()];
    let lead = out.len() - shape.len();
    let mut step = 1usize;
    for j in (0..shape.len()).rev() {
        strides[lead + j] = if shape[j] == 1 && out[lead + j] != 1 {
            0
        } else {
            step
        };
        step *= shape[j];
    }
    strides
}

/// Applies `f` to every pair of broadcast elements; returns the result and its shape.
fn broadcast_binary(
    name: &str,
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    f: impl Fn(f32, f32) -> f32,
) -> RefResult<(Vec<f32>, Vec<usize>)> {
    check_shape(&format!("{name} self"), a.len(), a_shape)?;
    check_shape(&format!("{name} other"), b.len(), b_shape)?;
    let out_shape = broadcast_shape(a_shape, b_shape)?;
    let total = numel(&out_shape)?;
    if a_shape == b_shape {
        return Ok((a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect(), out_shape));
    }
    let rank = out_shape.len();
    if rank == 0 || total == 0 {
        // Both operands are scalars, or the result is empty.
        let out = if total == 0 {
            vec![]
        } else {
            vec![f(a[0], b[0])]
        };
        return Ok((out, out_shape));
    }
    let sa = broadcast_strides(a_shape, &out_shape);
    let sb = broadcast_strides(b_shape, &out_shape);
    let inner = out_shape[rank - 1];
    let (ia, ib) = (sa[rank - 1], sb[rank - 1]);
    let mut out = Vec::with_capacity(total);
    // Odometer over the outer dimensions, with the element offsets of a and b kept in step.
    let mut idx = vec![0usize; rank - 1];
    let (mut oa, mut ob) = (0usize, 0usize);
    for _ in 0..total / inner {
        for j in 0..inner {
            out.push(f(a[oa + j * ia], b[ob + j * ib]));
        }
        for d in (0..rank - 1).rev() {
            idx[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if idx[d] < out_shape[d] {
                break;
            }
            oa -= sa[d] * out_shape[d];
            ob -= sb[d] * out_shape[d];
            idx[d] = 0;
        }
    }
    Ok((out, out_shape))
}

/// Broadcasting addition, mirroring `torch.add(a, b, alpha=alpha)` (`aclnnAdd`):
/// `a + alpha*b` in `f32`. Returns the result and the broadcast shape.
pub fn add(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    alpha: f32,
) -> RefResult<(Vec<f32>, Vec<usize>)> {
    if alpha == 1.0 {
        broadcast_binary("add", a, a_shape, b, b_shape, |x, y| x + y)
    } else {
        broadcast_binary("add", a, a_shape, b, b_shape, |x, y| x + alpha * y)
    }
}

/// Broadcasting subtraction, mirroring `torch.sub(a, b, alpha=alpha)` (`aclnnSub`):
/// `a - alpha*b` in `f32`. Returns the result and the broadcast shape.
pub fn sub(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    alpha: f32,
) -> RefResult<(Vec<f32>, Vec<usize>)> {
    if alpha == 1.0 {
        broadcast_binary("sub", a, a_shape, b, b_shape, |x, y| x - y)
    } else {
        broadcast_binary("sub", a, a_shape, b, b_shape, |x, y| x - alpha * y)
    }
}

/// Broadcasting multiplication, mirroring `torch.mul(a, b)` (`aclnnMul`): `a * b` in `f32`.
/// Returns the result and the broadcast shape.
pub fn mul(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
) -> RefResult<(Vec<f32>, Vec<usize>)> {
    broadcast_binary("mul", a, a_shape, b, b_shape, |x, y| x * y)
}

/// Broadcasting true division, mirroring `torch.div(a, b)` (`aclnnDiv`): `a / b` in `f32`
/// (IEEE: `x/0` is `±inf` or NaN). Returns the result and the broadcast shape.
pub fn div(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
) -> RefResult<(Vec<f32>, Vec<usize>)> {
    broadcast_binary("div", a, a_shape, b, b_shape, |x, y| x / y)
}

/// Multiplication by a scalar, mirroring `torch.mul(a, s)` (`aclnnMuls`): `a * s` in `f32`.
/// Any shape.
pub fn muls(a: &[f32], s: f32) -> Vec<f32> {
    a.iter().map(|&v| v * s).collect()
}

/// Addition of a scalar, mirroring `torch.add(a, s, alpha=alpha)` (`aclnnAdds`):
/// `a + alpha*s` in `f32`. Any shape.
pub fn adds(a: &[f32], s: f32, alpha: f32) -> Vec<f32> {
    let t = alpha * s;
    a.iter().map(|&v| v + t).collect()
}

/// Normalises reduction dimensions: negative dims count from the end; an empty list means every
/// dimension. Returns one flag per dimension (`true` = reduced).
fn reduced_dims(shape: &[usize], dims: &[i64]) -> RefResult<Vec<bool>> {
    let rank = shape.len() as i64;
    let mut reduced = vec![dims.is_empty(); shape.len()];
    // A scalar accepts dim 0 / -1 (reducing nothing), as PyTorch does.
    let wrap = rank.max(1);
    for &d in dims {
        if d < -wrap || d >= wrap {
            return Err(format!(
                "reduction dim {d} out of range for shape {shape:?}"
            ));
        }
        let d = if d < 0 { d + wrap } else { d } as usize;
        if shape.is_empty() {
            continue;
        }
        if reduced[d] {
            return Err(format!(
                "reduction dim {d} appears more than once in {dims:?}"
            ));
        }
        reduced[d] = true;
    }
    Ok(reduced)
}

/// Per-output `f64` sums of a reduction.
struct Sums {
    /// One sum per output element.
    sums: Vec<f64>,
    /// The input shape with size 1 in the reduced dimensions (the `keepdim` output shape).
    kept: Vec<usize>,
    /// One flag per input dimension, `true` when reduced.
    reduced: Vec<bool>,
    /// Number of input elements summed into each output.
    count: usize,
}

/// Sums over the reduced dimensions in `f64`.
fn reduce_f64(name: &str, x: &[f32], shape: &[usize], dims: &[i64]) -> RefResult<Sums> {
    check_shape(name, x.len(), shape)?;
    let reduced = reduced_dims(shape, dims)?;
    let kept: Vec<usize> = shape
        .iter()
        .zip(&reduced)
        .map(|(&s, &r)| if r { 1 } else { s })
        .collect();
    let count: usize = shape
        .iter()
        .zip(&reduced)
        .filter(|(_, &r)| r)
        .map(|(&s, _)| s)
        .product();
    let mut acc = vec![0f64; numel(&kept)?];
    let rank = shape.len();
    if rank == 0 {
        acc[0] = f64::from(x[0]);
        return Ok(Sums {
            sums: acc,
            kept,
            reduced,
            count,
        });
    }
    if x.is_empty() {
        return Ok(Sums {
            sums: acc,
            kept,
            reduced,
            count,
        });
    }
    // Output strides seen from the input: 0 along reduced dimensions.
    let so = broadcast_strides(&kept, shape);
    let inner = shape[rank - 1];
    let io = so[rank - 1];
    let mut idx = vec![0usize; rank - 1];
    let mut oo = 0usize;
    for row in x.chunks_exact(inner) {
        if io == 0 {
            acc[oo] += super::sum_f64(row);
        } else {
            for (a, v) in acc[oo..oo + inner].iter_mut().zip(row) {
                *a += f64::from(*v);
            }
        }
        for d in (0..rank - 1).rev() {
            idx[d] += 1;
            oo += so[d];
            if idx[d] < shape[d] {
                break;
            }
            oo -= so[d] * shape[d];
            idx[d] = 0;
        }
    }
    Ok(Sums {
        sums: acc,
        kept,
        reduced,
        count,
    })
}

fn final_shape(kept: Vec<usize>, reduced: &[bool], keepdim: bool) -> Vec<usize> {
    if keepdim {
        kept
    } else {
        kept.into_iter()
            .zip(reduced)
            .filter(|(_, &r)| !r)
            .map(|(s, _)| s)
            .collect()
    }
}

/// Sum over dimensions, mirroring `torch.sum(x, dim=dims, keepdim=keepdim)` (`aclnnReduceSum`).
///
/// * `x`: shape `shape` (any rank, `[]` for a scalar).
/// * `dims`: dimensions to reduce, negative values counting from the end (`-1` = last); an empty
///   list reduces every dimension (as `torch.sum(x, dim=[])`). Repeated dims are an error.
/// * `keepdim`: keep reduced dimensions with size 1, otherwise drop them.
///
/// Returns `(sums, out_shape)`; sums are accumulated in `f64`.
pub fn reduce_sum(
    x: &[f32],
    shape: &[usize],
    dims: &[i64],
    keepdim: bool,
) -> RefResult<(Vec<f32>, Vec<usize>)> {
    let r = reduce_f64("reduce_sum", x, shape, dims)?;
    let out = r.sums.iter().map(|v| *v as f32).collect();
    Ok((out, final_shape(r.kept, &r.reduced, keepdim)))
}

/// Mean over dimensions, mirroring `torch.mean(x, dim=dims, keepdim=keepdim)` (`aclnnMean`).
/// Arguments and output shape as [`reduce_sum`]; each sum (in `f64`) is divided by the number of
/// reduced elements (NaN when that number is 0).
pub fn mean(
    x: &[f32],
    shape: &[usize],
    dims: &[i64],
    keepdim: bool,
) -> RefResult<(Vec<f32>, Vec<usize>)> {
    let r = reduce_f64("mean", x, shape, dims)?;
    let out = r
        .sums
        .iter()
        .map(|v| (*v / r.count as f64) as f32)
        .collect();
    Ok((out, final_shape(r.kept, &r.reduced, keepdim)))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{assert_close, fd_check, Lcg};
    use super::*;

    #[test]
    fn activations() {
        let r = relu(&[-1.0, 0.0, 2.5, f32::NAN, -0.0]);
        assert_eq!(&r[..3], &[0.0, 0.0, 2.5]);
        assert!(r[3].is_nan());
        assert_eq!(r[4], 0.0);
        let s = sigmoid(&[0.0, 2.0, -100.0, 100.0]);
        assert_eq!(s[0], 0.5);
        assert_close(&s[1..2], &[0.880_797_1], 0.0, 1e-7);
        assert_eq!(s[2], (1.0 / (1.0 + 100f64.exp())) as f32);
        assert_eq!(s[3], 1.0);
    }

    #[test]
    fn hand_computed_backwards() {
        let g =
            threshold_backward(&[1.0, 2.0, 3.0, 4.0], &[-1.0, 0.0, 0.5, f32::NAN], 0.0).unwrap();
        assert_eq!(g, vec![0.0, 0.0, 3.0, 4.0]);
        assert!(threshold_backward(&[1.0], &[1.0, 2.0], 0.0).is_err());
        let g = sigmoid_backward(&[2.0, 1.0], &[0.5, 0.25]).unwrap();
        assert_eq!(g, vec![0.5, 0.1875]);
        assert!(sigmoid_backward(&[1.0], &[]).is_err());
    }

    #[test]
    fn backwards_match_finite_differences() {
        let mut rng = Lcg::new(30);
        let x = rng.vec_away_from_zero(20, 0.05);
        let r = rng.vec(20);
        let loss = |f: fn(&[f32]) -> Vec<f32>, xp: &[f32]| -> f64 {
            f(xp)
                .iter()
                .zip(&r)
                .map(|(y, r)| f64::from(*y) * f64::from(*r))
                .sum()
        };
        let g = threshold_backward(&r, &x, 0.0).unwrap();
        fd_check(&x, &g, 1e-3, 1e-5, 1e-4, |xp| loss(relu, xp));
        let g = sigmoid_backward(&r, &sigmoid(&x)).unwrap();
        fd_check(&x, &g, 1e-2, 1e-5, 1e-3, |xp| loss(sigmoid, xp));
    }

    #[test]
    fn broadcast_shapes() {
        assert_eq!(
            broadcast_shape(&[2, 3, 4, 5], &[3, 1, 1]).unwrap(),
            vec![2, 3, 4, 5]
        );
        assert_eq!(broadcast_shape(&[1, 4], &[3, 1]).unwrap(), vec![3, 4]);
        assert_eq!(broadcast_shape(&[], &[2]).unwrap(), vec![2]);
        assert_eq!(broadcast_shape(&[], &[]).unwrap(), Vec::<usize>::new());
        assert_eq!(broadcast_shape(&[0, 1], &[1, 5]).unwrap(), vec![0, 5]);
        assert!(broadcast_shape(&[2, 3], &[3, 2]).is_err());
        assert!(broadcast_shape(&[0], &[2]).is_err());
    }

    #[test]
    fn hand_computed_binary_ops() {
        // [2,3] + alpha*[3]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let (y, s) = add(&a, &[2, 3], &[10.0, 20.0, 30.0], &[3], 0.5).unwrap();
        assert_eq!(s, vec![2, 3]);
        assert_eq!(y, vec![6.0, 12.0, 18.0, 9.0, 15.0, 21.0]);
        // [2,1] * [1,3] -> outer product
        let (y, s) = mul(&[1.0, 2.0], &[2, 1], &[3.0, 4.0, 5.0], &[1, 3]).unwrap();
        assert_eq!(s, vec![2, 3]);
        assert_eq!(y, vec![3.0, 4.0, 5.0, 6.0, 8.0, 10.0]);
        // SE-style scaling: [1,2,2,2] * [1,2,1,1]
        let x: Vec<f32> = (1..=8).map(|v| v as f32).collect();
        let (y, _) = mul(&x, &[1, 2, 2, 2], &[2.0, -1.0], &[1, 2, 1, 1]).unwrap();
        assert_eq!(y, vec![2.0, 4.0, 6.0, 8.0, -5.0, -6.0, -7.0, -8.0]);
        // scalar tensor operand, either side
        let (y, s) = sub(&[5.0], &[], &[1.0, 2.0], &[2], 2.0).unwrap();
        assert_eq!((y, s), (vec![3.0, 1.0], vec![2]));
        let (y, s) = div(&[1.0, 2.0], &[2], &[4.0], &[]).unwrap();
        assert_eq!((y, s), (vec![0.25, 0.5], vec![2]));
        let (y, s) = add(&[1.0], &[], &[2.0], &[], 1.0).unwrap();
        assert_eq!((y, s), (vec![3.0], vec![]));
        // same shape
        let (y, _) = sub(&[1.0, 2.0], &[2], &[1.0, 1.0], &[2], 1.0).unwrap();
        assert_eq!(y, vec![0.0, 1.0]);
        // errors
        assert!(add(&a, &[2, 3], &[1.0, 2.0], &[2], 1.0).is_err());
        assert!(add(&a, &[2, 2], &[1.0, 2.0], &[2], 1.0).is_err());
        // scalars
        assert_eq!(muls(&[1.0, -2.0], 3.0), vec![3.0, -6.0]);
        assert_eq!(adds(&[1.0, -2.0], 3.0, 2.0), vec![7.0, 4.0]);
    }

    /// Literal broadcasting by explicit multi-index arithmetic, to cross-check the odometer.
    #[test]
    fn broadcast_matches_index_arithmetic() {
        let mut rng = Lcg::new(31);
        let cases: [(&[usize], &[usize]); 5] = [
            (&[2, 3, 4], &[3, 1]),
            (&[2, 1, 4], &[1, 3, 1]),
            (&[5], &[2, 3, 5]),
            (&[2, 3, 1, 2], &[1, 3, 4, 1]),
            (&[1, 1], &[2, 2]),
        ];
        for (sa, sb) in cases {
            let a = rng.vec(numel(sa).unwrap());
            let b = rng.vec(numel(sb).unwrap());
            let (y, so) = add(&a, sa, &b, sb, 1.5).unwrap();
            let total = numel(&so).unwrap();
            assert_eq!(y.len(), total);
            for (flat, yv) in y.iter().enumerate() {
                // multi-index of flat in so
                let mut rem = flat;
                let mut index = vec![0usize; so.len()];
                for d in (0..so.len()).rev() {
                    index[d] = rem % so[d];
                    rem /= so[d];
                }
                let pick = |v: &[f32], s: &[usize]| {
                    let lead = so.len() - s.len();
                    let mut off = 0;
                    for j in 0..s.len() {
                        let i = if s[j] == 1 { 0 } else { index[lead + j] };
                        off = off * s[j] + i;
                    }
                    v[off]
                };
                assert_eq!(*yv, pick(&a, sa) + 1.5 * pick(&b, sb));
            }
        }
    }

    #[test]
    fn hand_computed_reductions() {
        // [2,3] = [[1,2,3],[4,5,6]]
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            reduce_sum(&x, &[2, 3], &[0], false).unwrap(),
            (vec![5.0, 7.0, 9.0], vec![3])
        );
        assert_eq!(
            reduce_sum(&x, &[2, 3], &[-1], true).unwrap(),
            (vec![6.0, 15.0], vec![2, 1])
        );
        assert_eq!(
            reduce_sum(&x, &[2, 3], &[], false).unwrap(),
            (vec![21.0], vec![])
        );
        assert_eq!(
            reduce_sum(&x, &[2, 3], &[1, 0], true).unwrap(),
            (vec![21.0], vec![1, 1])
        );
        assert_eq!(
            mean(&x, &[2, 3], &[1], false).unwrap(),
            (vec![2.0, 5.0], vec![2])
        );
        assert_eq!(
            mean(&x, &[2, 3], &[-2], true).unwrap(),
            (vec![2.5, 3.5, 4.5], vec![1, 3])
        );
        // NCHW mean over (h, w) = global average pooling: [1,2,1,3]
        assert_eq!(
            mean(&x, &[1, 2, 1, 3], &[2, 3], true).unwrap(),
            (vec![2.0, 5.0], vec![1, 2, 1, 1])
        );
        // middle dimension of [2,2,2]
        let y: Vec<f32> = (0..8).map(|v| v as f32).collect();
        assert_eq!(
            reduce_sum(&y, &[2, 2, 2], &[1], false).unwrap(),
            (vec![2.0, 4.0, 10.0, 12.0], vec![2, 2])
        );
        // scalar
        assert_eq!(
            reduce_sum(&[4.0], &[], &[], false).unwrap(),
            (vec![4.0], vec![])
        );
        assert_eq!(mean(&[4.0], &[], &[0], true).unwrap(), (vec![4.0], vec![]));
        // empty reduced dimension
        let (m, s) = mean(&[], &[2, 0], &[1], false).unwrap();
        assert_eq!(s, vec![2]);
        assert!(m[0].is_nan());
        assert_eq!(
            reduce_sum(&[], &[2, 0], &[1], false).unwrap(),
            (vec![0.0, 0.0], vec![2])
        );
        // errors
        assert!(reduce_sum(&x, &[2, 3], &[2], false).is_err());
        assert!(reduce_sum(&x, &[2, 3], &[-3], false).is_err());
        assert!(reduce_sum(&x, &[2, 3], &[1, -1], false).is_err());
        assert!(reduce_sum(&x, &[2, 2], &[1], false).is_err());
    }

    #[test]
    fn reduction_accumulates_in_f64() {
        // 1 followed by 2^20 - 1 copies of 2^-25: summed one by one in f32, 1 + 2^-25 rounds back
        // to 1 every time; in f64 the result is 1 + (2^20 - 1) * 2^-25.
        let mut x = vec![2f32.powi(-25); 1 << 20];
        x[0] = 1.0;
        let (s, _) = reduce_sum(&x, &[1 << 20], &[0], false).unwrap();
        assert_eq!(
            s[0],
            (1.0 + ((1u64 << 20) - 1) as f64 * 2f64.powi(-25)) as f32
        );
    }
}
