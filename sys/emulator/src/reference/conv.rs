//! 2-D convolution (cross-correlation, as every deep-learning framework defines it) and its
//! backward, mirroring `torch.nn.functional.conv2d` / `aten::convolution` and
//! `aten::convolution_backward` (`aclnnConvolution`, `aclnnConvolutionBackward`).
//!
//! Layout: input `[n, cin, h, w]`, weight `[cout, cin/groups, kh, kw]`, output
//! `[n, cout, oh, ow]`, all NCHW row-major. Padding is symmetric zero padding.
//!
//! The loops work on whole output (or input) planes: for every `(channel, ky, kx)` tap a scalar
//! weight times a shifted input row is added to an accumulator row, so the innermost loop walks
//! contiguous memory.
//!
//! Arithmetic is the cube's (see [`super`]): every product is formed from the operands as given
//! (the caller rounds them to the compute precision first) and accumulated in `f32`, in the
//! order `(input channel, ky, kx)` for the forward and the data gradient and `(batch, oy, ox)`
//! for the weight and bias gradients.

use super::{axpy_f32, check_len, check_shape, dot_f32, numel, RefResult};

/// Output spatial size of a convolution, PyTorch's formula
/// `o = (i + 2p - d*(k-1) - 1) / s + 1` applied to each of the two spatial dimensions.
///
/// `input_hw = [h, w]`, `kernel_hw = [kh, kw]`. Errors if a stride or dilation is zero, a kernel
/// dimension is zero, or the dilated kernel does not fit in the padded input.
pub fn conv2d_output_hw(
    input_hw: [usize; 2],
    kernel_hw: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> RefResult<[usize; 2]> {
    let mut out = [0usize; 2];
    for i in 0..2 {
        if stride[i] == 0 || dilation[i] == 0 || kernel_hw[i] == 0 {
            return Err(format!(
                "conv2d: stride {stride:?}, dilation {dilation:?} and kernel {kernel_hw:?} must be positive"
            ));
        }
        let padded = input_hw[i] + 2 * padding[i];
        let extent = dilation[i] * (kernel_hw[i] - 1) + 1;
        if extent > padded {
            return Err(format!(
                "conv2d: dilated kernel extent {extent} exceeds padded input size {padded} \
                 (input {input_hw:?}, padding {padding:?})"
            ));
        }
        out[i] = (padded - extent) / stride[i] + 1;
    }
    Ok(out)
}

/// Range `lo..hi` of output positions `o < out` whose input position
/// `o*stride + offset - pad` (with `offset = k*dilation`) lies inside `0..input`.
fn valid_range(
    out: usize,
    input: usize,
    stride: usize,
    pad: usize,
    offset: usize,
) -> (usize, usize) {
    // o*stride + offset - pad >= 0  <=>  o >= ceil((pad - offset) / stride)
    let lo = if pad > offset {
        (pad - offset).div_ceil(stride)
    } else {
        0
    };
    // o*stride + offset - pad <= input - 1  <=>  o <= (input - 1 + pad - offset) / stride
    let hi = if input + pad > offset {
        ((input - 1 + pad - offset) / stride + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Validated geometry of one convolution.
struct Geometry {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    cin_g: usize,
    cout_g: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    #[allow(clippy::too_many_arguments)]
    fn new(
        x_len: usize,
        x_shape: [usize; 4],
        w_len: usize,
        w_shape: [usize; 4],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> RefResult<Self> {
        check_shape("conv2d input", x_len, &x_shape)?;
        check_shape("conv2d weight", w_len, &w_shape)?;
        let [n, cin, h, w] = x_shape;
        let [cout, cin_g, kh, kw] = w_shape;
        if groups == 0 {
            return Err("conv2d: groups must be positive".into());
        }
        if cin % groups != 0 || cout % groups != 0 {
            return Err(format!(
                "conv2d: input channels {cin} and output channels {cout} must be divisible by groups {groups}"
            ));
        }
        if cin / groups != cin_g {
            return Err(format!(
                "conv2d: weight {w_shape:?} expects {cin_g} input channels per group, \
                 input {x_shape:?} with {groups} groups has {}",
                cin / groups
            ));
        }
        let [oh, ow] = conv2d_output_hw([h, w], [kh, kw], stride, padding, dilation)?;
        Ok(Geometry {
            n,
            cin,
            h,
            w,
            cout,
            cin_g,
            cout_g: cout / groups,
            kh,
            kw,
            oh,
            ow,
            stride,
            padding,
            dilation,
        })
    }

    fn out_shape(&self) -> [usize; 4] {
        [self.n, self.cout, self.oh, self.ow]
    }

    /// Valid output rows / columns for kernel tap `(ky, kx)`.
    fn rows(&self, ky: usize) -> (usize, usize) {
        valid_range(
            self.oh,
            self.h,
            self.stride[0],
            self.padding[0],
            ky * self.dilation[0],
        )
    }

    fn cols(&self, kx: usize) -> (usize, usize) {
        valid_range(
            self.ow,
            self.w,
            self.stride[1],
            self.padding[1],
            kx * self.dilation[1],
        )
    }

    /// Input row of output row `oy` at tap `ky` (only call inside [`Self::rows`]).
    fn in_row(&self, oy: usize, ky: usize) -> usize {
        oy * self.stride[0] + ky * self.dilation[0] - self.padding[0]
    }

    /// Input column of output column `ox` at tap `kx` (only call inside [`Self::cols`]).
    fn in_col(&self, ox: usize, kx: usize) -> usize {
        ox * self.stride[1] + kx * self.dilation[1] - self.padding[1]
    }

    fn weight_index(&self, oc: usize, icl: usize, ky: usize, kx: usize) -> usize {
        ((oc * self.cin_g + icl) * self.kh + ky) * self.kw + kx
    }
}

/// 2-D convolution, mirroring `torch.nn.functional.conv2d(x, weight, bias, stride, padding,
/// dilation, groups)` (`aclnnConvolution` with `transposed = false`).
///
/// * `x`: `[n, cin, h, w]` given by `x_shape`.
/// * `weight`: `[cout, cin/groups, kh, kw]` given by `w_shape`.
/// * `bias`: `[cout]` or `None`.
/// * `stride = [sh, sw]`, `padding = [ph, pw]` (symmetric zeros), `dilation = [dh, dw]`.
/// * `groups`: input and output channels are split into `groups` equal groups; output channel
///   `oc` of group `g = oc / (cout/groups)` sees input channels `g*cin/groups ..`.
///
/// Returns `(y, [n, cout, oh, ow])` with `oh = (h + 2ph - dh*(kh-1) - 1)/sh + 1` (same for `ow`)
/// and, writing `cin_g = cin/groups`,
///
/// ```text
/// y[b,oc,oy,ox] = bias[oc] + Σ_{icl,ky,kx} weight[oc,icl,ky,kx]
///                 * x[b, g*cin_g + icl, oy*sh + ky*dh - ph, ox*sw + kx*dw - pw]
/// ```
///
/// out-of-range input positions reading as zero. Each output element is accumulated in `f32`; the
/// bias is added to the accumulated sum (in `f32`, as the cube adds a FLOAT bias).
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f32],
    x_shape: [usize; 4],
    weight: &[f32],
    w_shape: [usize; 4],
    bias: Option<&[f32]>,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> RefResult<(Vec<f32>, [usize; 4])> {
    let g = Geometry::new(
        x.len(),
        x_shape,
        weight.len(),
        w_shape,
        stride,
        padding,
        dilation,
        groups,
    )?;
    if let Some(b) = bias {
        check_len("conv2d bias", b.len(), g.cout)?;
    }
    let out_shape = g.out_shape();
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    let mut y = vec![0f32; numel(&out_shape)?];
    let mut acc = vec![0f32; out_plane];
    for b in 0..g.n {
        for oc in 0..g.cout {
            let group = oc / g.cout_g;
            acc.fill(0.0);
            for icl in 0..g.cin_g {
                let ic = group * g.cin_g + icl;
                let xp = &x[(b * g.cin + ic) * in_plane..][..in_plane];
                for ky in 0..g.kh {
                    let (oy0, oy1) = g.rows(ky);
                    for kx in 0..g.kw {
                        let (ox0, ox1) = g.cols(kx);
                        if ox0 >= ox1 {
                            continue;
                        }
                        let wv = weight[g.weight_index(oc, icl, ky, kx)];
                        for oy in oy0..oy1 {
                            let xrow = &xp[g.in_row(oy, ky) * g.w..][..g.w];
                            let arow = &mut acc[oy * g.ow..][..g.ow];
                            if g.stride[1] == 1 {
                                let ix0 = g.in_col(ox0, kx);
                                axpy_f32(&mut arow[ox0..ox1], wv, &xrow[ix0..ix0 + (ox1 - ox0)]);
                            } else {
                                let taps = xrow[g.in_col(ox0, kx)..].iter().step_by(g.stride[1]);
                                for (a, xv) in arow[ox0..ox1].iter_mut().zip(taps) {
                                    *a += wv * *xv;
                                }
                            }
                        }
                    }
                }
            }
            let yp = &mut y[(b * g.cout + oc) * out_plane..][..out_plane];
            let bv = bias.map_or(0.0, |bv| bv[oc]);
            for (o, a) in yp.iter_mut().zip(&acc) {
                *o = *a + bv;
            }
        }
    }
    Ok((y, out_shape))
}

/// Gradients of [`conv2d`], mirroring `aten::convolution_backward` (`aclnnConvolutionBackward`)
/// for a non-transposed 2-D convolution.
///
/// * `grad_out`: `[n, cout, oh, ow]`, the gradient of the loss with respect to `y`; its shape must
///   be the one [`conv2d`] produces for this geometry.
/// * `x`, `x_shape`, `weight`, `w_shape`, `stride`, `padding`, `dilation`, `groups`: as in
///   [`conv2d`] (the bias does not enter any gradient).
/// * `output_mask = [input, weight, bias]` selects which gradients to compute; unselected ones
///   come back as `None`.
///
/// Returns `(grad_input [n,cin,h,w], grad_weight [cout,cin/groups,kh,kw], grad_bias [cout])`:
/// `grad_input` is the transposed convolution of `grad_out` with `weight`, `grad_weight[oc,icl,
/// ky,kx] = Σ_{b,oy,ox} grad_out[b,oc,oy,ox] * x[b,ic,oy*sh+ky*dh-ph,ox*sw+kx*dw-pw]` and
/// `grad_bias[oc] = Σ_{b,oy,ox} grad_out[b,oc,oy,ox]`. All sums are in `f32`.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn conv2d_backward(
    grad_out: &[f32],
    x: &[f32],
    x_shape: [usize; 4],
    weight: &[f32],
    w_shape: [usize; 4],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    output_mask: [bool; 3],
) -> RefResult<(Option<Vec<f32>>, Option<Vec<f32>>, Option<Vec<f32>>)> {
    let g = Geometry::new(
        x.len(),
        x_shape,
        weight.len(),
        w_shape,
        stride,
        padding,
        dilation,
        groups,
    )?;
    check_shape("conv2d_backward grad_out", grad_out.len(), &g.out_shape())?;
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);

    let grad_input = if output_mask[0] {
        let mut dx = vec![0f32; x.len()];
        let mut acc = vec![0f32; in_plane];
        for b in 0..g.n {
            for ic in 0..g.cin {
                let group = ic / g.cin_g;
                let icl = ic % g.cin_g;
                acc.fill(0.0);
                for ocl in 0..g.cout_g {
                    let oc = group * g.cout_g + ocl;
                    let gp = &grad_out[(b * g.cout + oc) * out_plane..][..out_plane];
                    for ky in 0..g.kh {
                        let (oy0, oy1) = g.rows(ky);
                        for kx in 0..g.kw {
                            let (ox0, ox1) = g.cols(kx);
                            if ox0 >= ox1 {
                                continue;
                            }
                            let wv = weight[g.weight_index(oc, icl, ky, kx)];
                            for oy in oy0..oy1 {
                                let grow = &gp[oy * g.ow..][..g.ow];
                                let arow = &mut acc[g.in_row(oy, ky) * g.w..][..g.w];
                                if g.stride[1] == 1 {
                                    let ix0 = g.in_col(ox0, kx);
                                    axpy_f32(
                                        &mut arow[ix0..ix0 + (ox1 - ox0)],
                                        wv,
                                        &grow[ox0..ox1],
                                    );
                                } else {
                                    let taps =
                                        arow[g.in_col(ox0, kx)..].iter_mut().step_by(g.stride[1]);
                                    for (a, gv) in taps.zip(&grow[ox0..ox1]) {
                                        *a += wv * *gv;
                                    }
                                }
                            }
                        }
                    }
                }
                dx[(b * g.cin + ic) * in_plane..][..in_plane].copy_from_slice(&acc);
            }
        }
        Some(dx)
    } else {
        None
    };

    let grad_weight = if output_mask[1] {
        let mut dw = vec![0f32; weight.len()];
        for oc in 0..g.cout {
            let group = oc / g.cout_g;
            for icl in 0..g.cin_g {
                let ic = group * g.cin_g + icl;
                for ky in 0..g.kh {
                    let (oy0, oy1) = g.rows(ky);
                    for kx in 0..g.kw {
                        let (ox0, ox1) = g.cols(kx);
                        let mut sum = 0f32;
                        if ox0 < ox1 {
                            for b in 0..g.n {
                                let gp = &grad_out[(b * g.cout + oc) * out_plane..][..out_plane];
                                let xp = &x[(b * g.cin + ic) * in_plane..][..in_plane];
                                for oy in oy0..oy1 {
                                    let grow = &gp[oy * g.ow..][..g.ow];
                                    let xrow = &xp[g.in_row(oy, ky) * g.w..][..g.w];
                                    if g.stride[1] == 1 {
                                        let ix0 = g.in_col(ox0, kx);
                                        sum = dot_f32(
                                            sum,
                                            &grow[ox0..ox1],
                                            &xrow[ix0..ix0 + (ox1 - ox0)],
                                        );
                                    } else {
                                        let taps =
                                            xrow[g.in_col(ox0, kx)..].iter().step_by(g.stride[1]);
                                        for (gv, xv) in grow[ox0..ox1].iter().zip(taps) {
                                            sum += *gv * *xv;
                                        }
                                    }
                                }
                            }
                        }
                        dw[g.weight_index(oc, icl, ky, kx)] = sum;
                    }
                }
            }
        }
        Some(dw)
    } else {
        None
    };

    let grad_bias = if output_mask[2] {
        let mut db = vec![0f32; g.cout];
        for (oc, d) in db.iter_mut().enumerate() {
            let mut sum = 0f32;
            for b in 0..g.n {
                for v in &grad_out[(b * g.cout + oc) * out_plane..][..out_plane] {
                    sum += *v;
                }
            }
            *d = sum;
        }
        Some(db)
    } else {
        None
    };

    Ok((grad_input, grad_weight, grad_bias))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{assert_close, fd_check, weighted_sum, Lcg};
    use super::*;

    /// Direct definition, one output element at a time (the most literal reading of the
    /// formula), used to cross-check the plane-wise loops.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_literal(
        x: &[f32],
        xs: [usize; 4],
        wt: &[f32],
        ws: [usize; 4],
        bias: Option<&[f32]>,
        s: [usize; 2],
        p: [usize; 2],
        d: [usize; 2],
        groups: usize,
    ) -> Vec<f32> {
        let [n, cin, h, w] = xs;
        let [cout, cin_g, kh, kw] = ws;
        let [oh, ow] = conv2d_output_hw([h, w], [kh, kw], s, p, d).unwrap();
        let cout_g = cout / groups;
        let mut y = vec![0f32; n * cout * oh * ow];
        for b in 0..n {
            for oc in 0..cout {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = bias.map_or(0.0, |bv| f64::from(bv[oc]));
                        for icl in 0..cin_g {
                            let ic = (oc / cout_g) * cin_g + icl;
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * s[0] + ky * d[0]) as i64 - p[0] as i64;
                                    let ix = (ox * s[1] + kx * d[1]) as i64 - p[1] as i64;
                                    if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                        continue;
                                    }
                                    let xv =
                                        x[((b * cin + ic) * h + iy as usize) * w + ix as usize];
                                    let wv = wt[((oc * cin_g + icl) * kh + ky) * kw + kx];
                                    sum += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        y[((b * cout + oc) * oh + oy) * ow + ox] = sum as f32;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn output_size() {
        assert_eq!(
            conv2d_output_hw([224, 224], [7, 7], [2, 2], [3, 3], [1, 1]).unwrap(),
            [112, 112]
        );
        assert_eq!(
            conv2d_output_hw([56, 56], [3, 3], [1, 1], [1, 1], [1, 1]).unwrap(),
            [56, 56]
        );
        assert_eq!(
            conv2d_output_hw([5, 5], [3, 3], [1, 1], [0, 0], [2, 2]).unwrap(),
            [1, 1]
        );
        assert!(conv2d_output_hw([4, 4], [3, 3], [1, 1], [0, 0], [2, 2]).is_err());
        assert!(conv2d_output_hw([4, 4], [3, 3], [0, 1], [0, 0], [1, 1]).is_err());
    }

    #[test]
    fn hand_computed_3x3_input_2x2_kernel() {
        // x = [[1,2,3],[4,5,6],[7,8,9]], w = [[1,0],[0,-1]], bias 10
        // y[i][j] = x[i][j] - x[i+1][j+1] + 10 = -4 + 10 = 6 everywhere.
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let w = [1.0, 0.0, 0.0, -1.0];
        let (y, s) = conv2d(
            &x,
            [1, 1, 3, 3],
            &w,
            [1, 1, 2, 2],
            Some(&[10.0]),
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        )
        .unwrap();
        assert_eq!(s, [1, 1, 2, 2]);
        assert_eq!(y, vec![6.0; 4]);
    }

    #[test]
    fn hand_computed_padding_stride() {
        // 3x3 all-ones kernel over the same x, padding 1, stride 2: output 2x2 at the corners
        // (0,0),(0,2),(2,0),(2,2) of the "same" convolution.
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let w = [1.0f32; 9];
        let (y, s) = conv2d(
            &x,
            [1, 1, 3, 3],
            &w,
            [1, 1, 3, 3],
            None,
            [2, 2],
            [1, 1],
            [1, 1],
            1,
        )
        .unwrap();
        assert_eq!(s, [1, 1, 2, 2]);
        // top-left: 1+2+4+5 = 12, top-right: 2+3+5+6 = 16, bottom-left: 4+5+7+8 = 24,
        // bottom-right: 5+6+8+9 = 28
        assert_eq!(y, vec![12.0, 16.0, 24.0, 28.0]);
    }

    #[test]
    fn hand_computed_groups_and_dilation() {
        // Two groups, one channel each: channel 0 scaled by 2, channel 1 by -1 (1x1 kernels).
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let w = [2.0, -1.0];
        let (y, s) = conv2d(
            &x,
            [1, 2, 2, 2],
            &w,
            [2, 1, 1, 1],
            None,
            [1, 1],
            [0, 0],
            [1, 1],
            2,
        )
        .unwrap();
        assert_eq!(s, [1, 2, 2, 2]);
        assert_eq!(y, vec![2.0, 4.0, 6.0, 8.0, -5.0, -6.0, -7.0, -8.0]);
        // Dilation 2, kernel [1, 1] (1x2) on a 1x3 row: y = x0 + x2.
        let (y, s) = conv2d(
            &[1.0, 10.0, 100.0],
            [1, 1, 1, 3],
            &[1.0, 1.0],
            [1, 1, 1, 2],
            None,
            [1, 1],
            [0, 0],
            [1, 2],
            1,
        )
        .unwrap();
        assert_eq!(s, [1, 1, 1, 1]);
        assert_eq!(y, vec![101.0]);
    }

    #[test]
    fn shape_errors() {
        let x = vec![0f32; 2 * 4 * 5 * 5];
        let w = vec![0f32; 6 * 2 * 3 * 3];
        // The (2,4,5,5) input and (6,2,3,3) weight, stride/dilation 1, no padding.
        let conv = |x: &[f32], bias: Option<&[f32]>, groups| {
            conv2d(
                x,
                [2, 4, 5, 5],
                &w,
                [6, 2, 3, 3],
                bias,
                [1, 1],
                [0, 0],
                [1, 1],
                groups,
            )
        };
        // wrong groups for the weight
        assert!(conv(&x, None, 1).is_err());
        assert!(conv(&x, None, 2).is_ok());
        // bias length
        assert!(conv(&x, Some(&[0.0; 5]), 2).is_err());
        // slice length
        assert!(conv(&x[1..], None, 2).is_err());
        // groups = 0
        assert!(conv(&x, None, 0).is_err());
        // grad_out shape
        assert!(conv2d_backward(
            &[0.0; 3],
            &x,
            [2, 4, 5, 5],
            &w,
            [6, 2, 3, 3],
            [1, 1],
            [0, 0],
            [1, 1],
            2,
            [true; 3]
        )
        .is_err());
    }

    /// Geometries exercised by the randomised tests: (x_shape, w_shape, stride, padding,
    /// dilation, groups).
    #[allow(clippy::type_complexity)]
    fn geometries() -> Vec<(
        [usize; 4],
        [usize; 4],
        [usize; 2],
        [usize; 2],
        [usize; 2],
        usize,
    )> {
        vec![
            ([2, 3, 5, 6], [4, 3, 3, 3], [1, 1], [1, 1], [1, 1], 1),
            ([1, 4, 7, 6], [6, 2, 3, 2], [2, 1], [1, 0], [1, 2], 2),
            ([2, 2, 6, 7], [2, 1, 3, 3], [2, 2], [2, 1], [2, 1], 2),
            ([1, 3, 5, 5], [2, 3, 1, 1], [2, 2], [0, 0], [1, 1], 1),
            ([1, 2, 4, 4], [3, 2, 5, 5], [1, 3], [2, 2], [1, 1], 1),
        ]
    }

    #[test]
    fn matches_literal_definition() {
        let mut rng = Lcg::new(1);
        for (xs, ws, s, p, d, groups) in geometries() {
            let x = rng.vec(numel(&xs).unwrap());
            let w = rng.vec(numel(&ws).unwrap());
            let bias = rng.vec(ws[0]);
            let (y, _) = conv2d(&x, xs, &w, ws, Some(&bias), s, p, d, groups).unwrap();
            let expected = conv2d_literal(&x, xs, &w, ws, Some(&bias), s, p, d, groups);
            assert_close(&y, &expected, 1e-6, 1e-6);
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = Lcg::new(2);
        for (xs, ws, s, p, d, groups) in geometries() {
            let x = rng.vec(numel(&xs).unwrap());
            let w = rng.vec(numel(&ws).unwrap());
            let bias = rng.vec(ws[0]);
            let (y, ys) = conv2d(&x, xs, &w, ws, Some(&bias), s, p, d, groups).unwrap();
            let r = rng.vec(numel(&ys).unwrap());
            assert_eq!(y.len(), r.len());
            let (dx, dw, db) =
                conv2d_backward(&r, &x, xs, &w, ws, s, p, d, groups, [true; 3]).unwrap();
            let (dx, dw, db) = (dx.unwrap(), dw.unwrap(), db.unwrap());
            // The loss is linear in each argument, so central differences are exact up to the
            // f32 rounding of the forward outputs.
            let eps = 0.25;
            fd_check(&x, &dx, eps, 1e-5, 1e-4, |xp| {
                weighted_sum(
                    &conv2d(xp, xs, &w, ws, Some(&bias), s, p, d, groups)
                        .unwrap()
                        .0,
                    &r,
                )
            });
            fd_check(&w, &dw, eps, 1e-5, 1e-4, |wp| {
                weighted_sum(
                    &conv2d(&x, xs, wp, ws, Some(&bias), s, p, d, groups)
                        .unwrap()
                        .0,
                    &r,
                )
            });
            fd_check(&bias, &db, eps, 1e-5, 1e-4, |bp| {
                weighted_sum(
                    &conv2d(&x, xs, &w, ws, Some(bp), s, p, d, groups).unwrap().0,
                    &r,
                )
            });
            // The mask selects the outputs.
            let (a, b, c) =
                conv2d_backward(&r, &x, xs, &w, ws, s, p, d, groups, [false, true, false]).unwrap();
            assert!(a.is_none() && c.is_none());
            assert_eq!(b.unwrap(), dw);
        }
    }

    #[test]
    fn hand_computed_backward() {
        // x = [[1,2],[3,4]], 1x1 kernel 3 (weight), grad_out = ones.
        let (dx, dw, db) = conv2d_backward(
            &[1.0; 4],
            &[1.0, 2.0, 3.0, 4.0],
            [1, 1, 2, 2],
            &[3.0],
            [1, 1, 1, 1],
            [1, 1],
            [0, 0],
            [1, 1],
            1,
            [true; 3],
        )
        .unwrap();
        assert_eq!(dx.unwrap(), vec![3.0; 4]);
        assert_eq!(dw.unwrap(), vec![10.0]);
        assert_eq!(db.unwrap(), vec![4.0]);
    }
}
