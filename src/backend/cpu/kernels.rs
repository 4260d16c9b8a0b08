//! Declarations of the C kernels in `kernels/cpu/` (see `senet_kernels.h`) and safe wrappers that
//! check slice lengths before calling them.

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
        pub fn senet_global_avg_pool_f32(x: *const f32, c: usize, hw: usize, y: *mut f32);
        pub fn senet_scale_add_relu_f32(
            x: *mut f32,
            gate: *const f32,
            shortcut: *const f32,
            c: usize,
            hw: usize,
        );
    }
}

use crate::backend::Activation;

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
    assert!(x.len() >= g.c * g.h * g.w && col.len() >= g.c * g.kh * g.kw * g.oh * g.ow);
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
        )
    }
}

/// `y[c, oy, ox] = x[c, oy*stride, ox*stride]`.
#[allow(clippy::too_many_arguments)]
pub fn subsample(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    stride: usize,
    oh: usize,
    ow: usize,
    y: &mut [f32],
) {
    assert!(x.len() >= c * h * w && y.len() >= c * oh * ow);
    assert!((oh - 1) * stride < h && (ow - 1) * stride < w);
    // SAFETY: lengths and index ranges checked above.
    unsafe { ffi::senet_subsample_f32(x.as_ptr(), c, h, w, stride, oh, ow, y.as_mut_ptr()) }
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

/// The adjoint of [`subsample`]: `dx` (c, h, w) is zeroed, then
/// `dx[c, oy*stride, ox*stride] = dy[c, oy, ox]` for `dy` (c, oh, ow).
/// Panics if a slice is too short or the strided grid leaves the image.
#[allow(clippy::too_many_arguments)]
pub fn subsample_backward(
    dy: &[f32],
    c: usize,
    h: usize,
    w: usize,
    stride: usize,
    oh: usize,
    ow: usize,
    dx: &mut [f32],
) {
    assert!(dx.len() >= c * h * w && dy.len() >= c * oh * ow);
    assert!(oh == 0 || ow == 0 || ((oh - 1) * stride < h && (ow - 1) * stride < w));
    // SAFETY: lengths and index ranges checked above.
    unsafe {
        ffi::senet_subsample_backward_f32(dy.as_ptr(), c, h, w, stride, oh, ow, dx.as_mut_ptr())
    }
}

/// Backward of [`max_pool2d`] with the same geometry: `dx` (c, h, w) is zeroed, then each
/// `dy[c, oy, ox]` is added at the argmax of its window in `x` (first maximum in row-major window
/// order on ties, matching the forward's strict `>` scan). Panics if a slice is too short.
#[allow(clippy::too_many_arguments)]
pub fn max_pool2d_backward(
    x: &[f32],
    dy: &[f32],
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    pad: (usize, usize),
    out: (usize, usize),
    dx: &mut [f32],
) {
    assert!(x.len() >= c * h * w && dx.len() >= c * h * w && dy.len() >= c * out.0 * out.1);
    // Every window must overlap the image (true for the 'same' geometry with pad < k).
    assert!(k > 0 && s > 0 && pad.0 < k && pad.1 < k);
    assert!(out.0 == 0 || (out.0 - 1) * s < h + pad.0);
    assert!(out.1 == 0 || (out.1 - 1) * s < w + pad.1);
    // SAFETY: lengths checked above; windows are clipped to the image by the kernel and never
    // empty (checked above), so the argmax index is inside the plane.
    unsafe {
        ffi::senet_max_pool2d_backward_f32(
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

/// 'same' max pool of (c, h, w) into (c, oh, ow).
#[allow(clippy::too_many_arguments)]
pub fn max_pool2d(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    pad: (usize, usize),
    out: (usize, usize),
    y: &mut [f32],
) {
    assert!(x.len() >= c * h * w && y.len() >= c * out.0 * out.1);
    // SAFETY: lengths checked above; windows are clipped to the image by the kernel.
    unsafe {
        ffi::senet_max_pool2d_f32(
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
