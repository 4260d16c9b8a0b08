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

/// PyTorch `nn.MaxPool2d(kernel, stride, padding, ceil_mode)` output size along one axis of
/// `input` positions (also aclnn's `MaxPool2dWithIndices`/`WithMask`, whose docs give the same
/// formulas): `floor((input + 2*pad - kernel) / stride) + 1`, or with `ceil_mode` the ceiling,
/// minus one when that last window would start at or beyond `input + pad` (in the right
/// padding). None when the padded input is shorter than the kernel or the stride is zero.
pub fn symmetric_pool_out(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    ceil_mode: bool,
) -> Option<usize> {
    let padded = input + 2 * pad;
    if padded < kernel || stride == 0 {
        return None;
    }
    let span = padded - kernel;
    if !ceil_mode {
        return Some(span / stride + 1);
    }
    let out = span.div_ceil(stride) + 1;
    Some(if (out - 1) * stride >= input + pad {
        out - 1
    } else {
        out
    })
}

/// How a max pool's windows meet the border of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolPadding {
    /// MindSpore `pad_mode="same"` (TF 'SAME', [`same_pool_geometry`]): `ceil(in / stride)`
    /// outputs, the padding split with the odd position after (bottom/right).
    Same,
    /// PyTorch `nn.MaxPool2d(kernel, stride, padding=pad, ceil_mode)` ([`symmetric_pool_out`]):
    /// `pad` positions of -inf before and after on both axes, `pad <= kernel / 2` (PyTorch's and
    /// aclnn's limit).
    Symmetric {
        /// Padding on every side.
        pad: usize,
        /// Output size rounded up (a last, partial window kept) rather than down.
        ceil_mode: bool,
    },
}

/// A max pool's window: square kernel and stride, and how the windows meet the border
/// ([`PoolPadding`]). Where the windows fall on an input is [`MaxPool2dParams::geometry`]'s
/// answer alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2dParams {
    /// Kernel side.
    pub kernel: usize,
    /// Stride, both directions.
    pub stride: usize,
    /// The border rule.
    pub padding: PoolPadding,
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
    /// MindSpore `MaxPool2d(kernel, stride, pad_mode="same")` (MindCV's stem pool: 3, 2).
    pub const fn same(kernel: usize, stride: usize) -> MaxPool2dParams {
        MaxPool2dParams {
            kernel,
            stride,
            padding: PoolPadding::Same,
        }
    }

    /// PyTorch `nn.MaxPool2d(kernel, stride, padding=pad, ceil_mode=ceil_mode)`: timm's
    /// resnet.py stem pool is (3, 2, 1, false), its senet.py (legacy) one (3, 2, 0, true).
    pub const fn symmetric(
        kernel: usize,
        stride: usize,
        pad: usize,
        ceil_mode: bool,
    ) -> MaxPool2dParams {
        MaxPool2dParams {
            kernel,
            stride,
            padding: PoolPadding::Symmetric { pad, ceil_mode },
        }
    }

    /// The windows over an input of shape `xs` ([`same_pool_geometry`] or
    /// [`symmetric_pool_out`] per axis). Errors ([`Error::Shape`]): a zero kernel, stride,
    /// height or width; a symmetric padding above `kernel / 2`, or a padded input smaller than
    /// the kernel.
    pub fn geometry(self, xs: Shape4) -> Result<PoolGeometry> {
        self.geometry_of("max_pool2d", xs)
    }

    /// The checks of [`Backend::max_pool2d`](crate::backend::Backend::max_pool2d): the
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
    /// [`Backend::max_pool2d_backward`](crate::backend::Backend::max_pool2d_backward): the
    /// geometry of `xs`, and room in `x`, `dy` and `dx`. Returns the geometry.
    pub(crate) fn check_backward(
        self,
        x: &(impl BufferLen + ?Sized),
        xs: Shape4,
        dy: &(impl BufferLen + ?Sized),
        dx: &(impl BufferLen + ?Sized),
    ) -> Result<PoolGeometry> {
        let what = "max_pool2d_backward";
        let g = self.geometry_of(what, xs)?;
        check_len(&format!("{what} x"), x, xs.numel())?;
        check_len(&format!("{what} dy"), dy, g.ys.numel())?;
        check_len(&format!("{what} dx"), dx, xs.numel())?;
        Ok(g)
    }

    /// [`MaxPool2dParams::geometry`], the error naming the op `what`.
    pub(crate) fn geometry_of(self, what: &str, xs: Shape4) -> Result<PoolGeometry> {
        let (kernel, stride) = (self.kernel, self.stride);
        let bad = |why: &str| {
            Error::Shape(format!(
                "{what}: kernel {kernel}, stride {stride}, padding {:?}, input {xs:?}: {why}",
                self.padding
            ))
        };
        if kernel == 0 || stride == 0 || xs.h == 0 || xs.w == 0 {
            return Err(bad("zero kernel, stride, height or width"));
        }
        let ((oh, pad_top), (ow, pad_left)) = match self.padding {
            PoolPadding::Same => (
                same_pool_geometry(xs.h, kernel, stride),
                same_pool_geometry(xs.w, kernel, stride),
            ),
            PoolPadding::Symmetric { pad, ceil_mode } => {
                if 2 * pad > kernel {
                    return Err(bad("padding above kernel / 2"));
                }
                let out = |n| symmetric_pool_out(n, kernel, stride, pad, ceil_mode);
                match (out(xs.h), out(xs.w)) {
                    (Some(oh), Some(ow)) => ((oh, pad), (ow, pad)),
                    _ => return Err(bad("the padded input is smaller than the kernel")),
                }
            }
        };
        Ok(PoolGeometry {
            ys: Shape4::new(xs.n, xs.c, oh, ow),
            pad_top,
            pad_left,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(p: MaxPool2dParams, h: usize, w: usize) -> Result<(usize, usize, usize, usize)> {
        let g = p.geometry(Shape4::new(1, 1, h, w))?;
        Ok((g.ys.h, g.ys.w, g.pad_top, g.pad_left))
    }

    #[test]
    fn symmetric_padding_follows_pytorch() {
        // nn.MaxPool2d(3, 2, padding=1) on 112x113: floor((112 + 2 - 3) / 2) + 1 = 56,
        // floor((113 + 2 - 3) / 2) + 1 = 57; windows start one position before the input.
        let timm = MaxPool2dParams::symmetric(3, 2, 1, false);
        assert_eq!(geometry(timm, 112, 113).unwrap(), (56, 57, 1, 1));
        // nn.MaxPool2d(3, 2, ceil_mode=True) on 112x113: ceil(109 / 2) + 1 = 56,
        // ceil(110 / 2) + 1 = 56; no padding before.
        let legacy = MaxPool2dParams::symmetric(3, 2, 0, true);
        assert_eq!(geometry(legacy, 112, 113).unwrap(), (56, 56, 0, 0));
        // MindCV's 'same' on the same input: ceil(n / 2), the odd padding after.
        let same = MaxPool2dParams::same(3, 2);
        assert_eq!(geometry(same, 112, 113).unwrap(), (56, 57, 0, 1));
        // ceil mode drops a last window that would start in the right padding:
        // nn.MaxPool2d(2, 2, padding=1, ceil_mode=True) on 5 gives 3 (windows at -1, 1, 3), not
        // ceil((5 + 2 - 2) / 2) + 1 = 4 (a window at 5).
        let drop = MaxPool2dParams::symmetric(2, 2, 1, true);
        assert_eq!(geometry(drop, 5, 5).unwrap(), (3, 3, 1, 1));
    }

    #[test]
    fn symmetric_padding_limits_are_errors() {
        let e = geometry(MaxPool2dParams::symmetric(3, 2, 2, false), 8, 8).unwrap_err();
        assert!(e.to_string().contains("padding above kernel / 2"), "{e}");
        let e = geometry(MaxPool2dParams::symmetric(5, 1, 1, false), 2, 8).unwrap_err();
        assert!(e.to_string().contains("smaller than the kernel"), "{e}");
        let e = geometry(MaxPool2dParams::symmetric(3, 0, 1, false), 8, 8).unwrap_err();
        assert!(e.to_string().contains("zero kernel, stride"), "{e}");
    }
}
