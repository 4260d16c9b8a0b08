//! Declarations of the C kernels in `kernels/cpu/` and safe wrappers that check slice lengths
//! before calling them: the forward kernels of `senet_kernels.h` (im2col and its adjoint,
//! subsampling, pooling, bias + activation, the SE scale) and the training kernels of
//! `senet_train_kernels.h` (`batch_norm_train.c`, `backward_elementwise.c`: BatchNorm statistics
//! and gradients, element-wise backwards, the Momentum step; reductions return f64; in
//! `train.rs`).

mod ffi {
    extern "C" {
        pub fn senet_im2col_f32(
            x: *const f32,
            c: usize,
            h: usize,
            w: usize,
            kh: usize,
            kw: usize,
            stride: usize,
            pad: usize,
            oh: usize,
            ow: usize,
            col: *mut f32,
            ldcol: usize,
        );
        pub fn senet_subsample_f32(
            x: *const f32,
            c: usize,
            h: usize,
            w: usize,
            stride: usize,
            oh: usize,
            ow: usize,
            y: *mut f32,
            ldy: usize,
        );
        pub fn senet_col2im_f32(
            col: *const f32,
            c: usize,
            h: usize,
            w: usize,
            kh: usize,
            kw: usize,
            stride: usize,
            pad: usize,
            oh: usize,
            ow: usize,
            x: *mut f32,
        );
        pub fn senet_subsample_backward_f32(
            dy: *const f32,
            c: usize,
            h: usize,
            w: usize,
            stride: usize,
            oh: usize,
            ow: usize,
            dx: *mut f32,
        );
        pub fn senet_max_pool2d_backward_f32(
            x: *const f32,
            dy: *const f32,
            c: usize,
            h: usize,
            w: usize,
            k: usize,
            s: usize,
            pad_top: usize,
            pad_left: usize,
            oh: usize,
            ow: usize,
            dx: *mut f32,
        );
        #[cfg(target_arch = "x86_64")]
        pub fn senet_max_pool2d_backward_avx512(
            x: *const f32,
            dy: *const f32,
            c: usize,
            h: usize,
            w: usize,
            k: usize,
            s: usize,
            pad_top: usize,
            pad_left: usize,
            oh: usize,
            ow: usize,
            dx: *mut f32,
        );
        pub fn senet_bias_act_f32(y: *mut f32, bias: *const f32, c: usize, hw: usize, act: i32);
        pub fn senet_max_pool2d_f32(
            x: *const f32,
            c: usize,
            h: usize,
            w: usize,
            k: usize,
            s: usize,
            pad_top: usize,
            pad_left: usize,
            oh: usize,
            ow: usize,
            y: *mut f32,
        );
        #[cfg(target_arch = "x86_64")]
        pub fn senet_max_pool2d_avx512(
            x: *const f32,
            c: usize,
            h: usize,
            w: usize,
            k: usize,
            s: usize,
            pad_top: usize,
            pad_left: usize,
            oh: usize,
            ow: usize,
            y: *mut f32,
        );
        pub fn senet_global_avg_pool_f32(x: *const f32, c: usize, hw: usize, y: *mut f32);
        pub fn senet_scale_add_relu_into_f32(
            x: *const f32,
            gate: *const f32,
            shortcut: *const f32,
            c: usize,
            hw: usize,
            out: *mut f32,
        );
        pub fn senet_scale_add_relu_f32(
            x: *mut f32,
            gate: *const f32,
            shortcut: *const f32,
            c: usize,
            hw: usize,
        );
    }
}

use crate::backend::{Activation, MaxPool2dParams, PoolGeometry, Shape4};

fn act_code(a: Activation) -> i32 {
    match a {
        Activation::None => 0,
        Activation::Relu => 1,
        Activation::Sigmoid => 2,
    }
}

/// Geometry of an im2col gather: input (c, h, w), kernel kh x kw, stride, padding, output oh x ow.
#[derive(Debug, Clone, Copy)]
pub struct Im2col {
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride, both directions.
    pub stride: usize,
    /// Zero padding on each side.
    pub pad: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

/// `col` (c*kh*kw, oh*ow) from `x` (c, h, w).
pub fn im2col(x: &[f32], g: Im2col, col: &mut [f32]) {
    im2col_rows(x, g, col, g.oh * g.ow);
}

/// Panics unless `ld >= plane` and `len` floats hold `rows` rows of `plane` at stride `ld`.
fn assert_rows(len: usize, rows: usize, plane: usize, ld: usize) {
    assert!(ld >= plane && (rows == 0 || len >= (rows - 1) * ld + plane));
}

/// [`im2col`] into the rows of a wider matrix: row r of the columns (c*kh*kw rows of oh*ow) at
/// `col[r*ld ..]`, the floats between them untouched (several images side by side). Panics if
/// `ld < oh*ow` or a slice is shorter than the geometry needs.
pub fn im2col_rows(x: &[f32], g: Im2col, col: &mut [f32], ld: usize) {
    assert!(x.len() >= g.c * g.h * g.w);
    assert_rows(col.len(), g.c * g.kh * g.kw, g.oh * g.ow, ld);
    // SAFETY: lengths checked above; the kernel reads/writes only within them.
    unsafe {
        ffi::senet_im2col_f32(
            x.as_ptr(),
            g.c,
            g.h,
            g.w,
            g.kh,
            g.kw,
            g.stride,
            g.pad,
            g.oh,
            g.ow,
            col.as_mut_ptr(),
            ld,
        )
    }
}

/// `y[c, oy, ox] = x[c, oy*stride, ox*stride]`: the columns of a 1x1 unpadded kernel (`g.kh`,
/// `g.kw` 1, `g.pad` 0, else a panic), gathered without the im2col copy of every pixel.
pub fn subsample(x: &[f32], g: Im2col, y: &mut [f32]) {
    subsample_rows(x, g, y, g.oh * g.ow);
}

/// [`subsample`] into the rows of a wider matrix, channel c at `y[c*ld ..]` (as
/// [`im2col_rows`]). Panics as [`subsample`], or if `ld < oh*ow`.
pub fn subsample_rows(x: &[f32], g: Im2col, y: &mut [f32], ld: usize) {
    let (c, h, w, stride, oh, ow) = (g.c, g.h, g.w, g.stride, g.oh, g.ow);
    assert!(
        g.kh == 1 && g.kw == 1 && g.pad == 0,
        "subsample of a {g:?} gather"
    );
    assert!(x.len() >= c * h * w);
    assert_rows(y.len(), c, oh * ow, ld);
    assert!((oh - 1) * stride < h && (ow - 1) * stride < w);
    // SAFETY: lengths and index ranges checked above.
    unsafe { ffi::senet_subsample_f32(x.as_ptr(), c, h, w, stride, oh, ow, y.as_mut_ptr(), ld) }
}

/// The adjoint of [`im2col`]: `x` (c, h, w) is overwritten with the scatter-add of `col`
/// (c*kh*kw, oh*ow) back onto the pixels each entry was gathered from (padding entries are
/// dropped). The summation order is fixed, so the result is deterministic.
/// Panics if a slice is shorter than the geometry needs.
pub fn col2im(col: &[f32], g: Im2col, x: &mut [f32]) {
    assert!(x.len() >= g.c * g.h * g.w && col.len() >= g.c * g.kh * g.kw * g.oh * g.ow);
    // SAFETY: lengths checked above; the kernel reads/writes only within them.
    unsafe {
        ffi::senet_col2im_f32(
            col.as_ptr(),
            g.c,
            g.h,
            g.w,
            g.kh,
            g.kw,
            g.stride,
            g.pad,
            g.oh,
            g.ow,
            x.as_mut_ptr(),
        )
    }
}

/// The adjoint of [`subsample`] (same geometry `g`): `dx` (c, h, w) is zeroed, then
/// `dx[c, oy*stride, ox*stride] = dy[c, oy, ox]` for `dy` (c, oh, ow).
/// Panics if a slice is too short, the strided grid leaves the image or `g` is not a 1x1
/// unpadded kernel.
pub fn subsample_backward(dy: &[f32], g: Im2col, dx: &mut [f32]) {
    let (c, h, w, stride, oh, ow) = (g.c, g.h, g.w, g.stride, g.oh, g.ow);
    assert!(
        g.kh == 1 && g.kw == 1 && g.pad == 0,
        "subsample of a {g:?} gather"
    );
    assert!(dx.len() >= c * h * w && dy.len() >= c * oh * ow);
    assert!(oh == 0 || ow == 0 || ((oh - 1) * stride < h && (ow - 1) * stride < w));
    // SAFETY: lengths and index ranges checked above.
    unsafe {
        ffi::senet_subsample_backward_f32(dy.as_ptr(), c, h, w, stride, oh, ow, dx.as_mut_ptr())
    }
}

/// Geometry of a max pool over `c` planes (an image, or a block of planes of one): input
/// (c, h, w), square window `k` with stride `s`, windows placed from `pad` (top, left), output
/// (c, out.0, out.1).
#[derive(Debug, Clone, Copy)]
pub struct PoolWindows {
    /// Planes.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride.
    pub s: usize,
    /// Padding (top, left).
    pub pad: (usize, usize),
    /// Output (height, width).
    pub out: (usize, usize),
}

impl PoolWindows {
    /// The windows of `pool`, placed by `g` (its input of `xs`'s height and width), over `c`
    /// planes.
    pub fn new(c: usize, xs: Shape4, pool: MaxPool2dParams, g: PoolGeometry) -> PoolWindows {
        PoolWindows {
            c,
            h: xs.h,
            w: xs.w,
            k: pool.kernel,
            s: pool.stride,
            pad: (g.pad_top, g.pad_left),
            out: (g.ys.h, g.ys.w),
        }
    }
}

/// Whether [`max_pool2d_backward`] takes the AVX-512 kernel for windows `g`: strides 1 and 2,
/// plane indices within an `i32`, and a CPU with AVX-512.
pub fn max_pool2d_backward_vector(g: PoolWindows) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        (g.s == 1 || g.s == 2)
            && g.h.checked_mul(g.w).is_some_and(|p| p <= i32::MAX as usize)
            && super::sgemm::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = g;
        false
    }
}

/// Backward of [`max_pool2d`] with the same geometry: `dx` (c, h, w) is zeroed, then each
/// `dy[c, oy, ox]` is added at the argmax of its window in `x` (first maximum in row-major window
/// order on ties, matching the forward's strict `>` scan; the last NaN of a window holding any).
/// `vector` takes the AVX-512 kernel (16 windows at a time, the scalar kernel's results bit for
/// bit), which the caller has checked with [`max_pool2d_backward_vector`].
/// Panics if a slice is too short, or `vector` where that check fails.
pub fn max_pool2d_backward(x: &[f32], dy: &[f32], g: PoolWindows, dx: &mut [f32], vector: bool) {
    let PoolWindows {
        c,
        h,
        w,
        k,
        s,
        pad,
        out,
    } = g;
    assert!(x.len() >= c * h * w && dx.len() >= c * h * w && dy.len() >= c * out.0 * out.1);
    // Every window must overlap the image (true for every MaxPool2dParams geometry: pad < k,
    // and no window starts at or beyond the input's end).
    assert!(k > 0 && s > 0 && pad.0 < k && pad.1 < k);
    assert!(out.0 == 0 || (out.0 - 1) * s < h + pad.0);
    assert!(out.1 == 0 || (out.1 - 1) * s < w + pad.1);
    type Kernel = unsafe extern "C" fn(
        *const f32,
        *const f32,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        *mut f32,
    );
    #[cfg(target_arch = "x86_64")]
    let kernel: Kernel = if vector {
        assert!(
            max_pool2d_backward_vector(g),
            "vector max-pool backward of {g:?}"
        );
        ffi::senet_max_pool2d_backward_avx512
    } else {
        ffi::senet_max_pool2d_backward_f32
    };
    #[cfg(not(target_arch = "x86_64"))]
    let kernel: Kernel = {
        assert!(!vector, "no vector max-pool backward on this target");
        ffi::senet_max_pool2d_backward_f32
    };
    // SAFETY: lengths checked above; windows are clipped to the image by the kernels (the
    // vector one's masked loads read only positions inside each input row) and never empty
    // (checked above), so every argmax index is inside the plane; the vector kernel runs only
    // on a CPU with AVX-512 and planes whose indices fit its int32 lanes (asserted above).
    unsafe {
        kernel(
            x.as_ptr(),
            dy.as_ptr(),
            c,
            h,
            w,
            k,
            s,
            pad.0,
            pad.1,
            out.0,
            out.1,
            dx.as_mut_ptr(),
        )
    }
}

/// `y[c, i] = act(y[c, i] + bias[c])` over (c, hw).
pub fn bias_act(y: &mut [f32], bias: Option<&[f32]>, c: usize, hw: usize, act: Activation) {
    assert!(y.len() >= c * hw);
    if let Some(b) = bias {
        assert!(b.len() >= c);
    }
    let bp = bias.map_or(std::ptr::null(), |b| b.as_ptr());
    // SAFETY: lengths checked above; bias may be null (handled by the kernel).
    unsafe { ffi::senet_bias_act_f32(y.as_mut_ptr(), bp, c, hw, act_code(act)) }
}

/// Max pool of (c, h, w) into (c, out.0, out.1) over the windows `g` (padded positions never
/// win; a window holding a NaN gives NaN, as PyTorch's and MindSpore's max pools). Strides 1 and
/// 2 run 16 outputs at a time where the CPU has AVX-512 ([`super::batch1_kernels`]), with the
/// scalar kernel's results bit for bit.
pub fn max_pool2d(x: &[f32], g: PoolWindows, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let vector = (g.s == 1 || g.s == 2) && super::batch1_kernels();
    #[cfg(not(target_arch = "x86_64"))]
    let vector = false;
    max_pool2d_with(x, g, y, vector)
}

/// [`max_pool2d`] by the AVX-512 kernel (`vector`, which the caller has checked the CPU runs)
/// or the portable scalar one.
pub fn max_pool2d_with(x: &[f32], g: PoolWindows, y: &mut [f32], vector: bool) {
    let PoolWindows {
        c,
        h,
        w,
        k,
        s,
        pad,
        out,
    } = g;
    assert!(x.len() >= c * h * w && y.len() >= c * out.0 * out.1);
    type Kernel = unsafe extern "C" fn(
        *const f32,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        *mut f32,
    );
    #[cfg(target_arch = "x86_64")]
    let kernel: Kernel = if vector {
        assert!(s == 1 || s == 2, "vector max pool of stride {s}");
        ffi::senet_max_pool2d_avx512
    } else {
        ffi::senet_max_pool2d_f32
    };
    #[cfg(not(target_arch = "x86_64"))]
    let kernel: Kernel = {
        assert!(!vector, "no vector max pool on this target");
        ffi::senet_max_pool2d_f32
    };
    // SAFETY: lengths checked above; windows are clipped to the image by the kernels (the
    // vector one's masked loads read only positions inside each input row); the vector kernel
    // runs only where the caller has checked AVX-512.
    unsafe {
        kernel(
            x.as_ptr(),
            c,
            h,
            w,
            k,
            s,
            pad.0,
            pad.1,
            out.0,
            out.1,
            y.as_mut_ptr(),
        )
    }
}

/// `y[c] = mean(x[c, :])` over (c, hw).
pub fn global_avg_pool(x: &[f32], c: usize, hw: usize, y: &mut [f32]) {
    assert!(x.len() >= c * hw && y.len() >= c && hw > 0);
    // SAFETY: lengths checked above.
    unsafe { ffi::senet_global_avg_pool_f32(x.as_ptr(), c, hw, y.as_mut_ptr()) }
}

/// `x = relu(x * gate[c] + shortcut)` over (c, hw).
pub fn scale_add_relu(x: &mut [f32], gate: &[f32], shortcut: &[f32], c: usize, hw: usize) {
    assert!(x.len() >= c * hw && shortcut.len() >= c * hw && gate.len() >= c);
    // SAFETY: lengths checked above.
    unsafe {
        ffi::senet_scale_add_relu_f32(x.as_mut_ptr(), gate.as_ptr(), shortcut.as_ptr(), c, hw)
    }
}

/// `out = relu(x * gate[c] + shortcut)` over (c, hw), `x` unchanged: [`scale_add_relu`]'s
/// arithmetic bit for bit.
pub fn scale_add_relu_into(
    x: &[f32],
    gate: &[f32],
    shortcut: &[f32],
    c: usize,
    hw: usize,
    out: &mut [f32],
) {
    assert!(x.len() >= c * hw && shortcut.len() >= c * hw && out.len() >= c * hw);
    assert!(gate.len() >= c);
    // SAFETY: lengths checked above; `out` is a distinct mutable slice.
    unsafe {
        ffi::senet_scale_add_relu_into_f32(
            x.as_ptr(),
            gate.as_ptr(),
            shortcut.as_ptr(),
            c,
            hw,
            out.as_mut_ptr(),
        )
    }
}

mod train;
pub use train::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented order of the BatchNorm reductions (kernels/cpu/batch_norm_train.c): value
    /// `i` goes to lane `i % 16` in index order, and the 16 lanes are summed as a balanced tree in
    /// lane order.
    fn lanes(values: impl Iterator<Item = f64>) -> f64 {
        let mut s = [0.0f64; 16];
        for (i, v) in values.enumerate() {
            s[i % 16] += v;
        }
        let mut w: Vec<f64> = s.to_vec();
        while w.len() > 1 {
            w = w.chunks(2).map(|p| p[0] + p[1]).collect();
        }
        w[0]
    }

    /// Data with a wide range of magnitudes (so that any other order of the sums would round
    /// differently), a NaN-free x and dy, and a mask with positive, negative, zero and NaN values.
    fn data(len: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = (0..len)
            .map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 10f32.powi((i % 7) as i32 - 3))
            .collect();
        let dy = (0..len)
            .map(|i| ((i * 104_729 % 997) as f32 - 498.0) * 10f32.powi((i % 5) as i32 - 2))
            .collect();
        let mask = (0..len)
            .map(|i| match i % 4 {
                0 => 1.0,
                1 => -1.0,
                2 => 0.0,
                _ if i % 8 == 3 => f32::NAN,
                _ => 2.0,
            })
            .collect();
        (x, dy, mask)
    }

    /// `im2col_rows` and `subsample_rows` write exactly what `im2col` and `subsample` write, row r
    /// at `r*ld` of a wider matrix (two images side by side: the second's rows at an offset), and
    /// leave every float between the rows untouched: 3x3 padded strides 1 and 2, 1x1 stride 2.
    #[test]
    fn gathers_into_rows_of_a_wider_matrix() {
        let (c, h, w) = (3, 7, 6);
        let x: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
        for (k, stride, pad) in [(3, 1, 1), (3, 2, 1), (1, 2, 0)] {
            let (oh, ow) = (
                (h + 2 * pad - k) / stride + 1,
                (w + 2 * pad - k) / stride + 1,
            );
            let g = Im2col {
                c,
                h,
                w,
                kh: k,
                kw: k,
                stride,
                pad,
                oh,
                ow,
            };
            let (rows, plane) = (c * k * k, oh * ow);
            let mut want = vec![0.0; rows * plane];
            let gather = if k == 1 { subsample_rows } else { im2col_rows };
            if k == 1 {
                subsample(&x, g, &mut want);
            } else {
                im2col(&x, g, &mut want);
            }
            let ld = 2 * plane + 3;
            let mut wide = vec![-7.0f32; rows * ld];
            gather(&x, g, &mut wide[plane + 1..], ld);
            for (r, row) in wide.chunks(ld).enumerate() {
                assert_eq!(
                    &row[plane + 1..2 * plane + 1],
                    &want[r * plane..(r + 1) * plane]
                );
                assert!(row[..plane + 1]
                    .iter()
                    .chain(&row[2 * plane + 1..])
                    .all(|v| *v == -7.0));
            }
        }
    }

    /// The SE backward's plane (whichever build this CPU runs): the masked gradient into
    /// `dshortcut`, times the gate into `dx`, and `Σ d·x` in the documented order, exactly.
    #[test]
    fn se_backward_sums_in_the_documented_order() {
        for len in 0..=53 {
            let (x, dout, out) = data(len);
            let gate = 0.8125f32;
            let d: Vec<f32> = (0..len)
                .map(|i| if out[i] > 0.0 { dout[i] } else { 0.0 })
                .collect();
            let (mut dx, mut dshort) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            let sum = se_scale_add_relu_backward(&x, gate, &out, &dout, &mut dx, &mut dshort);
            let want = lanes((0..len).map(|i| d[i] as f64 * x[i] as f64));
            assert_eq!(sum.to_bits(), want.to_bits(), "len {len}");
            assert_eq!(dshort, d, "len {len}");
            let dx_want: Vec<f32> = d.iter().map(|v| v * gate).collect();
            assert_eq!(dx, dx_want, "len {len}");
        }
    }

    /// Every length up to three blocks of 16 plus a tail: the kernels (whichever build this CPU
    /// runs, baseline or AVX-512) return exactly the sums in the documented order.
    #[test]
    fn batch_norm_reductions_sum_in_the_documented_order() {
        for len in 0..=53 {
            let (x, dy, mask) = data(len);
            let mean = 0.375f32;
            let sum = lanes(x.iter().map(|&v| v as f64));
            assert_eq!(sum_f64(&x).to_bits(), sum.to_bits(), "sum, len {len}");
            let m64 = mean as f64;
            let ss = lanes(x.iter().map(|&v| (v as f64 - m64) * (v as f64 - m64)));
            assert_eq!(
                sum_sq_dev_f64(&x, m64).to_bits(),
                ss.to_bits(),
                "sum of squares, len {len}"
            );
            for masked in [false, true] {
                let g: Vec<f64> = (0..len)
                    .map(|i| {
                        let keep = !masked || mask[i] > 0.0;
                        (if keep { dy[i] } else { 0.0 }) as f64
                    })
                    .collect();
                let want = [
                    lanes(g.iter().copied()),
                    lanes((0..len).map(|i| g[i] * (x[i] - mean) as f64)),
                ];
                let mut got = [0.0f64; 2];
                bn_bwd_reduce(&x, &dy, masked.then_some(&mask[..]), mean, &mut got);
                assert_eq!(
                    got.map(f64::to_bits),
                    want.map(f64::to_bits),
                    "backward reduce, len {len}, masked {masked}"
                );
            }
        }
    }
}
