//! The arguments of the max pool ops: the window, where it falls on an input, and the checks.
use super::check_len;
use crate::backend::{BufferLen, Shape4};
use crate::{Error, Result};

/// MindSpore `MaxPool2d(pad_mode="same")` output size and padding: `out = ceil(in/stride)`,
/// total padding `max(0, (out-1)*stride + k - in)`, the smaller half at the top/left.
/// Returns (out, pad_before).
pub fn same_pool_geometry(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (out, total / 2)
}

/// A max pool's window: MindSpore `MaxPool2d(kernel_size, stride, pad_mode="same")` (TF
/// 'SAME', see [`same_pool_geometry`]), square kernel and stride. Where the windows fall on an
/// input is [`MaxPool2dParams::geometry`]'s answer alone, so another padding rule changes that
/// one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2dParams {
    /// Kernel side.
    pub kernel: usize,
    /// Stride, both directions.
    pub stride: usize,
}

/// Where the windows of a max pool fall on its input: window (oy, ox) covers rows
/// `oy*stride - pad_top ..` and columns `ox*stride - pad_left ..` (`kernel` of each), clipped
/// to the input; padded positions never win.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    /// The output shape (N, C, OH, OW).
    pub ys: Shape4,
    /// Padding rows above the input.
    pub pad_top: usize,
    /// Padding columns left of the input.
    pub pad_left: usize,
}

impl MaxPool2dParams {
    /// MindSpore `MaxPool2d(kernel, stride, pad_mode="same")`.
    pub const fn same(kernel: usize, stride: usize) -> MaxPool2dParams {
        MaxPool2dParams { kernel, stride }
    }

    /// The windows over an input of shape `xs` ([`same_pool_geometry`] per axis). Errors
    /// ([`Error::Shape`]): a zero kernel, stride, height or width.
    pub fn geometry(self, xs: Shape4) -> Result<PoolGeometry> {
        self.geometry_of("max_pool2d", xs)
    }

    /// The checks of [`Backend::max_pool2d_same`](crate::backend::Backend::max_pool2d_same): the
    /// geometry of `xs`, and room in `x` and `y`. Returns the geometry.
    pub(crate) fn check_forward(
        self,
        x: &(impl BufferLen + ?Sized),
        xs: Shape4,
        y: &(impl BufferLen + ?Sized),
    ) -> Result<PoolGeometry> {
        let g = self.geometry(xs)?;
        check_len("max_pool2d input", x, xs.numel())?;
        check_len("max_pool2d output", y, g.ys.numel())?;
        Ok(g)
    }

    /// The checks of
    /// [`Backend::max_pool2d_same_backward`](crate::backend::Backend::max_pool2d_same_backward): the
    /// geometry of `xs`, and room in `x`, `dy` and `dx`. Returns the geometry.
    pub(crate) fn check_backward(
        self,
        x: &(impl BufferLen + ?Sized),
        xs: Shape4,
        dy: &(impl BufferLen + ?Sized),
        dx: &(impl BufferLen + ?Sized),
    ) -> Result<PoolGeometry> {
        let what = "max_pool2d_same_backward";
        let g = self.geometry_of(what, xs)?;
        check_len(&format!("{what} x"), x, xs.numel())?;
        check_len(&format!("{what} dy"), dy, g.ys.numel())?;
        check_len(&format!("{what} dx"), dx, xs.numel())?;
        Ok(g)
    }

    /// [`MaxPool2dParams::geometry`], the error naming the op `what`.
    pub(crate) fn geometry_of(self, what: &str, xs: Shape4) -> Result<PoolGeometry> {
        let (kernel, stride) = (self.kernel, self.stride);
        if kernel == 0 || stride == 0 || xs.h == 0 || xs.w == 0 {
            return Err(Error::Shape(format!(
                "{what}: kernel {kernel}, stride {stride}, input {xs:?}"
            )));
        }
        let (oh, pad_top) = same_pool_geometry(xs.h, kernel, stride);
        let (ow, pad_left) = same_pool_geometry(xs.w, kernel, stride);
        Ok(PoolGeometry {
            ys: Shape4::new(xs.n, xs.c, oh, ow),
            pad_top,
            pad_left,
        })
    }
}
