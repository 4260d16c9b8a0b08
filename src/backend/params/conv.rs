//! The arguments of the convolution ops: hyper-parameters, shapes and the forward's weights
//! and epilogue, with the shape and length checks every backend runs.
use super::check_len;
use crate::backend::{Activation, BufferLen, Shape4};
use crate::{Error, Result};

/// Hyper-parameters of a 2-D convolution (PyTorch `conv2d` / MindSpore
/// `Conv2d(pad_mode="pad")`): symmetric zero padding, no dilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Stride, both directions.
    pub stride: usize,
    /// Zero padding on each side, both directions.
    pub padding: usize,
    /// Groups (1 for a dense conv; 32 for ResNeXt's 3x3).
    pub groups: usize,
}

impl Conv2dParams {
    /// Output (height, width) for an input of `h`x`w` and a `kh`x`kw` kernel. Assumes the kernel
    /// fits the padded input and the stride is not 0 ([`Conv2dShape::out_shape`] checks both).
    pub fn out_hw(self, h: usize, w: usize, kh: usize, kw: usize) -> (usize, usize) {
        (
            (h + 2 * self.padding - kh) / self.stride + 1,
            (w + 2 * self.padding - kw) / self.stride + 1,
        )
    }
}

/// The shapes of one 2-D convolution: its input, its weight and its hyper-parameters. The conv
/// ops' shape checks are its methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dShape {
    /// The input, NCHW (N, Cin, H, W).
    pub xs: Shape4,
    /// The weight (Cout, Cin/groups, kh, kw), as MindSpore stores it.
    pub w_shape: [usize; 4],
    /// Stride, padding, groups.
    pub p: Conv2dParams,
}

impl Conv2dShape {
    /// The output shape (N, Cout, OH, OW). Errors ([`Error::Shape`]): the input channels are not
    /// `Cin/groups * groups`, `Cout` is not a multiple of the groups, a zero stride, groups or
    /// kernel side, or a kernel larger than the padded input.
    pub fn out_shape(&self) -> Result<Shape4> {
        self.out_shape_of("conv2d")
    }

    /// [`Conv2dShape::out_shape`], the errors naming the op `what`.
    pub(crate) fn out_shape_of(&self, what: &str) -> Result<Shape4> {
        let (xs, p) = (self.xs, self.p);
        let [cout, cin_g, kh, kw] = self.w_shape;
        if p.groups == 0 || xs.c != cin_g * p.groups || cout % p.groups != 0 {
            return Err(Error::Shape(format!(
                "{what}: input {xs:?} does not fit weight {:?} with {} groups",
                self.w_shape, p.groups
            )));
        }
        if p.stride == 0
            || kh == 0
            || kw == 0
            || xs.h + 2 * p.padding < kh
            || xs.w + 2 * p.padding < kw
        {
            return Err(Error::Shape(format!(
                "{what}: input {xs:?} does not fit kernel {kh}x{kw} with {p:?}"
            )));
        }
        let (oh, ow) = p.out_hw(xs.h, xs.w, kh, kw);
        Ok(Shape4::new(xs.n, cout, oh, ow))
    }

    /// Values of the weight.
    pub fn w_len(&self) -> usize {
        self.w_shape.iter().product()
    }

    /// The checks of [`Backend::conv2d_backward_data`](crate::backend::Backend::conv2d_backward_data):
    /// [`Conv2dShape::check_grad`], and every buffer has room.
    pub(crate) fn check_backward_data(
        &self,
        w: &(impl BufferLen + ?Sized),
        dy: &(impl BufferLen + ?Sized),
        ys: Shape4,
        dx: &(impl BufferLen + ?Sized),
    ) -> Result<()> {
        let what = "conv2d_backward_data";
        self.check_grad(what, ys)?;
        check_len(&format!("{what} dy"), dy, ys.numel())?;
        check_len(&format!("{what} weight"), w, self.w_len())?;
        check_len(&format!("{what} dx"), dx, self.xs.numel())
    }

    /// The checks of [`Backend::conv2d_backward_filter`](crate::backend::Backend::conv2d_backward_filter):
    /// [`Conv2dShape::check_grad`], and every buffer has room.
    pub(crate) fn check_backward_filter(
        &self,
        x: &(impl BufferLen + ?Sized),
        dy: &(impl BufferLen + ?Sized),
        ys: Shape4,
        dw: &(impl BufferLen + ?Sized),
    ) -> Result<()> {
        let what = "conv2d_backward_filter";
        self.check_grad(what, ys)?;
        check_len(&format!("{what} x"), x, self.xs.numel())?;
        check_len(&format!("{what} dy"), dy, ys.numel())?;
        check_len(&format!("{what} dw"), dw, self.w_len())
    }

    /// The checks of a gradient op `what`: the shapes fit ([`Conv2dShape::out_shape`]) and `ys`,
    /// the shape the caller gives the output gradient, is the forward's output shape.
    pub(crate) fn check_grad(&self, what: &str, ys: Shape4) -> Result<()> {
        let expect = self.out_shape_of(what)?;
        if ys != expect {
            return Err(Error::Shape(format!(
                "{what}: output gradient {ys:?}, but conv of {:?} by {:?} with {:?} gives {expect:?}",
                self.xs, self.w_shape, self.p
            )));
        }
        Ok(())
    }
}

/// A convolution forward as [`Backend::conv2d`](crate::backend::Backend::conv2d) and the fused conv +
/// pool ops apply it: `y = act(conv2d(x, w) + bias[c])`, the bias being where a folded BatchNorm
/// goes.
#[derive(Debug)]
pub struct Conv2dForward<'a, B: ?Sized> {
    /// Input, weight and hyper-parameters.
    pub shape: Conv2dShape,
    /// The weight, `shape.w_shape`.
    pub w: &'a B,
    /// The bias, Cout values, if any.
    pub bias: Option<&'a B>,
    /// The epilogue's activation.
    pub act: Activation,
    /// The weight as [`Backend::prepare_conv2d`](crate::backend::Backend::prepare_conv2d) of
    /// the same backend prepared it for this convolution, if it did; backends use it only where
    /// it fits the shapes (else they compute from `w`), so None is always correct.
    pub prepared: Option<&'a B>,
}

impl<B: ?Sized> Clone for Conv2dForward<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: ?Sized> Copy for Conv2dForward<'_, B> {}

impl<B: BufferLen + ?Sized> Conv2dForward<'_, B> {
    /// The checks of a forward from `x` into `y`: the shapes fit and every buffer has room.
    /// Returns the output shape.
    pub(crate) fn check(
        &self,
        x: &(impl BufferLen + ?Sized),
        y: &(impl BufferLen + ?Sized),
    ) -> Result<Shape4> {
        let s = &self.shape;
        let ys = s.out_shape()?;
        check_len("conv2d input", x, s.xs.numel())?;
        check_len("conv2d weight", self.w, s.w_len())?;
        check_len("conv2d output", y, ys.numel())?;
        if let Some(b) = self.bias {
            check_len("conv2d bias", b, s.w_shape[0])?;
        }
        Ok(ys)
    }
}
