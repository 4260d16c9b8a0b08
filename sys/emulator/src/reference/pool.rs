//! 2-D max pooling with indices and adaptive average pooling, with their backwards, mirroring
//! `aten::max_pool2d_with_indices(_backward)` (`aclnnMaxPool2dWithIndices`,
//! `aclnnMaxPool2dWithIndicesBackward`) and `aten::_adaptive_avg_pool2d(_backward)`
//! (`aclnnAdaptiveAvgPool2d`, `aclnnAdaptiveAvgPool2dBackward`).
//!
//! Layout: NCHW row-major; every `(n, c)` plane is pooled independently.

use super::{check_shape, numel, RefResult};

/// Output size of one spatial dimension of a pooling window, PyTorch's
/// `pooling_output_shape`: `out = floor_or_ceil((input + 2*pad - dilation*(kernel-1) - 1) /
/// stride) + 1`, and in ceil mode, if the last window would start at or past `input + pad`
/// (entirely in the right padding), `out -= 1`.
///
/// Errors if `kernel`, `stride` or `dilation` is zero, if `pad > kernel/2` (PyTorch's "pad
/// should be at most half of effective kernel size" check), or if the output would be empty.
pub fn pool_output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    ceil_mode: bool,
) -> RefResult<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(format!(
            "pool: kernel {kernel}, stride {stride} and dilation {dilation} must be positive"
        ));
    }
    if pad > kernel / 2 {
        return Err(format!(
            "pool: padding {pad} should be at most half of kernel size {kernel}"
        ));
    }
    let extent = dilation * (kernel - 1) + 1;
    if input + 2 * pad < extent {
        return Err(format!(
            "pool: input size {input} with padding {pad} is smaller than the dilated kernel {extent}"
        ));
    }
    let numerator = input + 2 * pad - extent;
    let mut out = if ceil_mode {
        numerator.div_ceil(stride) + 1
    } else {
        numerator / stride + 1
    };
    if ceil_mode && (out - 1) * stride >= input + pad {
        out -= 1;
    }
    if out == 0 {
        return Err(format!("pool: output size for input {input} is empty"));
    }
    Ok(out)
}

/// Max pooling with argmax indices, mirroring `torch.nn.functional.max_pool2d(x, kernel,
/// stride, padding, dilation, ceil_mode, return_indices=True)` (ATen
/// `max_pool2d_with_indices`).
///
/// * `x`: `[n, c, h, w]` given by `shape`.
/// * `kernel = [kh, kw]`, `stride = [sh, sw]` (explicit, no "default to kernel"),
///   `padding = [ph, pw]` with `p <= k/2`, `dilation = [dh, dw]`, `ceil_mode` as in
///   [`pool_output_size`].
///
/// Padding is implicit `-inf`: a window only scans the input positions inside the plane, rows
/// `oy*sh - ph + i*dh` and columns `ox*sw - pw + j*dw`, row-major. The window maximum starts at
/// `-inf` at the first in-range position and is replaced by a value `v` when `v > max` or `v` is
/// NaN (so the first maximum wins on ties and a NaN propagates, the last NaN of the window giving
/// the index, as in ATen's CPU kernel).
///
/// Returns `(y, indices, [n, c, oh, ow])`: `indices[b,ch,oy,ox] = ih*w + iw` is the flat
/// position of the chosen element within its `h*w` input plane.
pub fn max_pool2d_with_indices(
    x: &[f32],
    shape: [usize; 4],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> RefResult<(Vec<f32>, Vec<i64>, [usize; 4])> {
    check_shape("max_pool2d input", x.len(), &shape)?;
    let [n, c, h, w] = shape;
    let oh = pool_output_size(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)?;
    let ow = pool_output_size(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)?;
    let out_shape = [n, c, oh, ow];
    let total = numel(&out_shape)?;
    let mut y = vec![0f32; total];
    let mut indices = vec![0i64; total];
    // In-range window taps along one dimension: (first position, end (exclusive), step).
    let window = |o: usize, dim: usize, size: usize| -> (i64, i64, i64) {
        let d = dilation[dim] as i64;
        let mut start = (o * stride[dim]) as i64 - padding[dim] as i64;
        let end = (start + (kernel[dim] as i64 - 1) * d + 1).min(size as i64);
        while start < 0 {
            start += d;
        }
        (start, end, d)
    };
    for plane in 0..n * c {
        let xp = &x[plane * h * w..][..h * w];
        for oy in 0..oh {
            let (y0, y1, dy) = window(oy, 0, h);
            for ox in 0..ow {
                let (x0, x1, dx) = window(ox, 1, w);
                let mut best = f32::NEG_INFINITY;
                let mut best_index = y0 * w as i64 + x0;
                let mut iy = y0;
                while iy < y1 {
                    let mut ix = x0;
                    while ix < x1 {
                        let index = iy * w as i64 + ix;
                        let v = xp[index as usize];
                        if v > best || v.is_nan() {
                            best = v;
                            best_index = index;
                        }
                        ix += dx;
                    }
                    iy += dy;
                }
                let o = (plane * oh + oy) * ow + ox;
                y[o] = best;
                indices[o] = best_index;
            }
        }
    }
    Ok((y, indices, out_shape))
}

/// Backward of [`max_pool2d_with_indices`], mirroring ATen `max_pool2d_with_indices_backward`:
/// every output gradient is added to the input position its index names.
///
/// * `grad_out`, `indices`: `[n, c, oh, ow]` with `out_hw = [oh, ow]`.
/// * `input_shape = [n, c, h, w]`; each index must lie in `0..h*w`.
///
/// Returns `grad_input` `[n, c, h, w]`: `grad_input[b,ch,idx] = Σ grad_out[b,ch,o]` over the
/// outputs `o` with `indices[b,ch,o] = idx` (summed in `f64`, since windows may overlap).
pub fn max_pool2d_with_indices_backward(
    grad_out: &[f32],
    indices: &[i64],
    input_shape: [usize; 4],
    out_hw: [usize; 2],
) -> RefResult<Vec<f32>> {
    let [n, c, h, w] = input_shape;
    let out_shape = [n, c, out_hw[0], out_hw[1]];
    check_shape("max_pool2d_backward grad_out", grad_out.len(), &out_shape)?;
    check_shape("max_pool2d_backward indices", indices.len(), &out_shape)?;
    let in_plane = h * w;
    let out_plane = out_hw[0] * out_hw[1];
    let mut grad_in = vec![0f32; numel(&input_shape)?];
    let mut acc = vec![0f64; in_plane];
    for plane in 0..n * c {
        acc.fill(0.0);
        let gp = &grad_out[plane * out_plane..][..out_plane];
        let ip = &indices[plane * out_plane..][..out_plane];
        for (g, idx) in gp.iter().zip(ip) {
            if *idx < 0 || *idx as usize >= in_plane {
                return Err(format!(
                    "max_pool2d_backward: index {idx} outside the {h}x{w} input plane"
                ));
            }
            acc[*idx as usize] += f64::from(*g);
        }
        for (d, a) in grad_in[plane * in_plane..][..in_plane].iter_mut().zip(&acc) {
            *d = *a as f32;
        }
    }
    Ok(grad_in)
}

/// Bins of adaptive pooling along one dimension: output `i` of `out` covers input positions
/// `floor(i*input/out) .. ceil((i+1)*input/out)`.
fn adaptive_bin(i: usize, input: usize, out: usize) -> (usize, usize) {
    let start = (i * input) / out;
    let end = ((i + 1) * input).div_ceil(out);
    (start, end)
}

fn check_adaptive(shape: [usize; 4], out_hw: [usize; 2]) -> RefResult<()> {
    if out_hw[0] == 0 || out_hw[1] == 0 {
        return Err(format!(
            "adaptive_avg_pool2d: output size {out_hw:?} must be positive"
        ));
    }
    if shape[2] == 0 || shape[3] == 0 {
        return Err(format!(
            "adaptive_avg_pool2d: input spatial size of {shape:?} must be positive"
        ));
    }
    Ok(())
}

/// Adaptive average pooling, mirroring `torch.nn.functional.adaptive_avg_pool2d(x, [oh, ow])`
/// (ATen `_adaptive_avg_pool2d`).
///
/// * `x`: `[n, c, h, w]` given by `shape`; `out_hw = [oh, ow]` (both positive).
///
/// Returns `y` `[n, c, oh, ow]`: `y[b,ch,i,j]` is the mean (`f64` sum) of `x[b,ch]` over rows
/// `floor(i*h/oh) .. ceil((i+1)*h/oh)` and columns `floor(j*w/ow) .. ceil((j+1)*w/ow)`. With
/// `out_hw = [1, 1]` this is global average pooling.
pub fn adaptive_avg_pool2d(
    x: &[f32],
    shape: [usize; 4],
    out_hw: [usize; 2],
) -> RefResult<Vec<f32>> {
    check_shape("adaptive_avg_pool2d input", x.len(), &shape)?;
    check_adaptive(shape, out_hw)?;
    let [n, c, h, w] = shape;
    let [oh, ow] = out_hw;
    let mut y = vec![0f32; n * c * oh * ow];
    for plane in 0..n * c {
        let xp = &x[plane * h * w..][..h * w];
        for i in 0..oh {
            let (y0, y1) = adaptive_bin(i, h, oh);
            for j in 0..ow {
                let (x0, x1) = adaptive_bin(j, w, ow);
                let mut sum = 0f64;
                for iy in y0..y1 {
                    sum += super::sum_f64(&xp[iy * w + x0..iy * w + x1]);
                }
                let count = ((y1 - y0) * (x1 - x0)) as f64;
                y[(plane * oh + i) * ow + j] = (sum / count) as f32;
            }
        }
    }
    Ok(y)
}

/// Backward of [`adaptive_avg_pool2d`], mirroring ATen `_adaptive_avg_pool2d_backward`.
///
/// * `grad_out`: `[n, c, oh, ow]` with `out_hw = [oh, ow]`; `input_shape = [n, c, h, w]`.
///
/// Returns `grad_input` `[n, c, h, w]`: every output gradient divided by its bin's element count
/// is added to each input position of the bin (bins overlap when `h % oh != 0`; sums in `f64`).
pub fn adaptive_avg_pool2d_backward(
    grad_out: &[f32],
    input_shape: [usize; 4],
    out_hw: [usize; 2],
) -> RefResult<Vec<f32>> {
    check_adaptive(input_shape, out_hw)?;
    let [n, c, h, w] = input_shape;
    let [oh, ow] = out_hw;
    check_shape(
        "adaptive_avg_pool2d_backward grad_out",
        grad_out.len(),
        &[n, c, oh, ow],
    )?;
    let mut grad_in = vec![0f32; numel(&input_shape)?];
    let mut acc = vec![0f64; h * w];
    for plane in 0..n * c {
        acc.fill(0.0);
        for i in 0..oh {
            let (y0, y1) = adaptive_bin(i, h, oh);
            for j in 0..ow {
                let (x0, x1) = adaptive_bin(j, w, ow);
                let count = ((y1 - y0) * (x1 - x0)) as f64;
                let g = f64::from(grad_out[(plane * oh + i) * ow + j]) / count;
                for iy in y0..y1 {
                    for a in &mut acc[iy * w + x0..iy * w + x1] {
                        *a += g;
                    }
                }
            }
        }
        for (d, a) in grad_in[plane * h * w..][..h * w].iter_mut().zip(&acc) {
            *d = *a as f32;
        }
    }
    Ok(grad_in)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{fd_check, weighted_sum, Lcg};
    use super::*;

    #[test]
    fn output_sizes() {
        // ResNet stem: 112 -> 56 with k3 s2 p1 (57 in ceil mode: the last window starts at 111).
        assert_eq!(pool_output_size(112, 3, 2, 1, 1, false).unwrap(), 56);
        assert_eq!(pool_output_size(112, 3, 2, 1, 1, true).unwrap(), 57);
        // 5 with k2 s2: floor -> 2, ceil -> 3.
        assert_eq!(pool_output_size(5, 2, 2, 0, 1, false).unwrap(), 2);
        assert_eq!(pool_output_size(5, 2, 2, 0, 1, true).unwrap(), 3);
        // ceil mode drop: input 4, k2, s2, p1: ceil((4+2-2)/2)+1 = 3, (3-1)*2 = 4 < 5 keeps 3;
        // input 3, k1, s2, p0: ceil(2/2)+1 = 2, (2-1)*2 = 2 < 3 keeps 2;
        // input 4, k2, s3, p1: ceil(4/3)+1 = 3, (3-1)*3 = 6 >= 5 -> 2.
        assert_eq!(pool_output_size(4, 2, 2, 1, 1, true).unwrap(), 3);
        assert_eq!(pool_output_size(3, 1, 2, 0, 1, true).unwrap(), 2);
        assert_eq!(pool_output_size(4, 2, 3, 1, 1, true).unwrap(), 2);
        assert_eq!(pool_output_size(4, 2, 3, 1, 1, false).unwrap(), 2);
        // errors
        assert!(pool_output_size(4, 2, 1, 2, 1, false).is_err());
        assert!(pool_output_size(1, 3, 1, 0, 1, false).is_err());
        assert!(pool_output_size(4, 2, 0, 0, 1, false).is_err());
    }

    #[test]
    fn hand_computed_max_pool() {
        // 4x4 plane 0..16, k2 s2: maxima at the bottom-right of each 2x2 block.
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let (y, idx, s) =
            max_pool2d_with_indices(&x, [1, 1, 4, 4], [2, 2], [2, 2], [0, 0], [1, 1], false)
                .unwrap();
        assert_eq!(s, [1, 1, 2, 2]);
        assert_eq!(y, vec![5.0, 7.0, 13.0, 15.0]);
        assert_eq!(idx, vec![5, 7, 13, 15]);
        // k3 s2 p1 on 3x3 of -1..-9: padding never wins even though all values are negative.
        let x: Vec<f32> = (1..=9).map(|v| -(v as f32)).collect();
        let (y, idx, s) =
            max_pool2d_with_indices(&x, [1, 1, 3, 3], [3, 3], [2, 2], [1, 1], [1, 1], false)
                .unwrap();
        assert_eq!(s, [1, 1, 2, 2]);
        assert_eq!(y, vec![-1.0, -2.0, -4.0, -5.0]);
        assert_eq!(idx, vec![0, 1, 3, 4]);
    }

    #[test]
    fn max_pool_ties_nan_and_ceil() {
        // Ties: the first in scan order wins.
        let (y, idx, _) = max_pool2d_with_indices(
            &[1.0, 3.0, 3.0, 3.0],
            [1, 1, 2, 2],
            [2, 2],
            [1, 1],
            [0, 0],
            [1, 1],
            false,
        )
        .unwrap();
        assert_eq!((y, idx), (vec![3.0], vec![1]));
        // NaN wins.
        let (y, idx, _) = max_pool2d_with_indices(
            &[1.0, f32::NAN, 5.0, 3.0],
            [1, 1, 2, 2],
            [2, 2],
            [1, 1],
            [0, 0],
            [1, 1],
            false,
        )
        .unwrap();
        assert!(y[0].is_nan());
        assert_eq!(idx, vec![1]);
        // All -inf: the index is the first in-range position.
        let (y, idx, _) = max_pool2d_with_indices(
            &[f32::NEG_INFINITY; 4],
            [1, 1, 2, 2],
            [2, 2],
            [1, 1],
            [1, 1],
            [1, 1],
            false,
        )
        .unwrap();
        assert_eq!(y, vec![f32::NEG_INFINITY; 9]);
        assert_eq!(idx, vec![0, 0, 1, 0, 0, 1, 2, 2, 3]);
        // Ceil mode on a 1x5 row with k2 s2: the last window holds only the last element.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let (y, idx, s) =
            max_pool2d_with_indices(&x, [1, 1, 1, 5], [1, 2], [1, 2], [0, 0], [1, 1], true)
                .unwrap();
        assert_eq!(s, [1, 1, 1, 3]);
        assert_eq!(y, vec![2.0, 4.0, 5.0]);
        assert_eq!(idx, vec![1, 3, 4]);
        // Dilation 2 on a 1x5 row, k2: windows {0,2}, {1,3}, {2,4}.
        let x = [5.0, 1.0, 2.0, 7.0, 3.0];
        let (y, idx, _) =
            max_pool2d_with_indices(&x, [1, 1, 1, 5], [1, 2], [1, 1], [0, 0], [1, 2], false)
                .unwrap();
        assert_eq!(y, vec![5.0, 7.0, 3.0]);
        assert_eq!(idx, vec![0, 3, 4]);
    }

    #[test]
    fn hand_computed_max_pool_backward() {
        // Overlapping windows (k2 s1 on a 1x3 row [1, 3, 2]) both pick index 1.
        let (_, idx, _) = max_pool2d_with_indices(
            &[1.0, 3.0, 2.0],
            [1, 1, 1, 3],
            [1, 2],
            [1, 1],
            [0, 0],
            [1, 1],
            false,
        )
        .unwrap();
        assert_eq!(idx, vec![1, 1]);
        let g = max_pool2d_with_indices_backward(&[0.5, 0.25], &idx, [1, 1, 1, 3], [1, 2]).unwrap();
        assert_eq!(g, vec![0.0, 0.75, 0.0]);
        assert!(
            max_pool2d_with_indices_backward(&[0.5, 0.25], &[1, 3], [1, 1, 1, 3], [1, 2]).is_err()
        );
        assert!(max_pool2d_with_indices_backward(&[0.5], &[1, 1], [1, 1, 1, 3], [1, 2]).is_err());
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn max_pool_backward_matches_finite_differences() {
        let mut rng = Lcg::new(20);
        let cases: [(
            [usize; 4],
            [usize; 2],
            [usize; 2],
            [usize; 2],
            [usize; 2],
            bool,
        ); 4] = [
            ([2, 2, 5, 6], [3, 3], [2, 2], [1, 1], [1, 1], false),
            ([1, 3, 7, 5], [3, 2], [2, 1], [1, 0], [1, 1], true),
            ([1, 2, 6, 6], [2, 2], [1, 1], [0, 1], [2, 2], false),
            ([2, 1, 5, 5], [2, 2], [2, 2], [0, 0], [1, 1], true),
        ];
        for (shape, k, s, p, d, ceil) in cases {
            let x = rng.distinct(numel(&shape).unwrap(), 0.05);
            let (y, idx, os) = max_pool2d_with_indices(&x, shape, k, s, p, d, ceil).unwrap();
            let r = rng.vec(y.len());
            let g = max_pool2d_with_indices_backward(&r, &idx, shape, [os[2], os[3]]).unwrap();
            fd_check(&x, &g, 1e-3, 1e-4, 1e-4, |xp| {
                weighted_sum(
                    &max_pool2d_with_indices(xp, shape, k, s, p, d, ceil)
                        .unwrap()
                        .0,
                    &r,
                )
            });
        }
    }

    #[test]
    fn hand_computed_adaptive_avg_pool() {
        // 1x5 row to 3 bins: [0,2), [1,4), [3,5).
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = adaptive_avg_pool2d(&x, [1, 1, 1, 5], [1, 3]).unwrap();
        assert_eq!(y, vec![1.5, 3.0, 4.5]);
        let g = adaptive_avg_pool2d_backward(&[2.0, 3.0, 4.0], [1, 1, 1, 5], [1, 3]).unwrap();
        assert_eq!(g, vec![1.0, 2.0, 1.0, 3.0, 2.0]);
        // Global pooling.
        let y = adaptive_avg_pool2d(
            &[1.0, 2.0, 3.0, 6.0, 10.0, 20.0, 30.0, 60.0],
            [1, 2, 2, 2],
            [1, 1],
        )
        .unwrap();
        assert_eq!(y, vec![3.0, 30.0]);
        assert!(adaptive_avg_pool2d(&x, [1, 1, 1, 5], [0, 3]).is_err());
        assert!(adaptive_avg_pool2d(&x, [1, 1, 1, 4], [1, 3]).is_err());
        assert!(adaptive_avg_pool2d_backward(&x, [1, 1, 1, 5], [1, 3]).is_err());
    }

    #[test]
    fn adaptive_avg_pool_backward_matches_finite_differences() {
        let mut rng = Lcg::new(21);
        for (shape, out) in [
            ([2, 3, 7, 5], [3, 2]),
            ([1, 2, 4, 4], [4, 4]),
            ([1, 1, 3, 5], [5, 7]),
            ([2, 2, 6, 6], [1, 1]),
        ] {
            let x = rng.vec(numel(&shape).unwrap());
            let y = adaptive_avg_pool2d(&x, shape, out).unwrap();
            let r = rng.vec(y.len());
            let g = adaptive_avg_pool2d_backward(&r, shape, out).unwrap();
            fd_check(&x, &g, 0.25, 1e-5, 1e-4, |xp| {
                weighted_sum(&adaptive_avg_pool2d(xp, shape, out).unwrap(), &r)
            });
        }
    }
}
