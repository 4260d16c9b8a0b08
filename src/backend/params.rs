//! The arguments of the [`Backend`](super::Backend) ops, bundled per op family (the way candle
//! passes `ParamsConv2D`), and the argument checks that do not depend on the device: every
//! backend calls these, so an op refuses the same input with the same message on the CPU and on
//! Ascend.
//!
//! Plain-data structs (shapes and scalars) are `Copy`; the structs that hold the buffers of an
//! op (a layer's weights, a group of outputs) borrow them for one call.
use super::{Activation, Shape4};
use crate::{Error, Result};

/// Room of a device buffer, in f32 values (what [`Backend::alloc`](super::Backend::alloc) was
/// asked for), as the shared argument checks read it.
pub trait BufferLen {
    /// Values the buffer has room for.
    fn buffer_len(&self) -> usize;
}

impl BufferLen for [f32] {
    fn buffer_len(&self) -> usize {
        self.len()
    }
}

impl BufferLen for Vec<f32> {
    fn buffer_len(&self) -> usize {
        self.len()
    }
}

/// [`Error::Shape`] unless `buf` has room for `need` values, naming `what`.
pub(crate) fn check_len(what: &str, buf: &(impl BufferLen + ?Sized), need: usize) -> Result<()> {
    let have = buf.buffer_len();
    if have < need {
        return Err(Error::Shape(format!(
            "{what}: buffer of {have} values, {need} needed"
        )));
    }
    Ok(())
}

// ---- convolution

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

    /// The checks of [`Backend::conv2d_backward_data`](super::Backend::conv2d_backward_data):
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

    /// The checks of [`Backend::conv2d_backward_filter`](super::Backend::conv2d_backward_filter):
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

/// A convolution forward as [`Backend::conv2d`](super::Backend::conv2d) and the fused conv +
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

// ---- pooling

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

    /// The checks of [`Backend::max_pool2d_same`](super::Backend::max_pool2d_same): the
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
    /// [`Backend::max_pool2d_same_backward`](super::Backend::max_pool2d_same_backward): the
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

// ---- dense

/// The shapes of a dense layer (MindSpore `nn.Dense`): `n` rows of `in_features` in,
/// `out_features` out, the weight (out_features, in_features).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearShape {
    /// Rows (the batch).
    pub n: usize,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
}

impl LinearShape {
    /// The checks of [`Backend::linear_backward`](super::Backend::linear_backward): every
    /// buffer has room for its shape.
    pub(crate) fn check_backward<B: BufferLen + ?Sized>(
        self,
        x: &(impl BufferLen + ?Sized),
        w: &(impl BufferLen + ?Sized),
        dy: &(impl BufferLen + ?Sized),
        grads: &LinearGrads<'_, B>,
    ) -> Result<()> {
        let LinearShape {
            n,
            in_features: i,
            out_features: o,
        } = self;
        check_len("linear_backward x", x, n * i)?;
        check_len("linear_backward weight", w, o * i)?;
        check_len("linear_backward dy", dy, n * o)?;
        check_len("linear_backward dw", &*grads.dw, o * i)?;
        check_len("linear_backward db", &*grads.db, o)?;
        if let Some(dx) = grads.dx.as_deref() {
            check_len("linear_backward dx", dx, n * i)?;
        }
        Ok(())
    }
}

/// A dense layer's forward as [`Backend::linear`](super::Backend::linear) applies it:
/// `y = act(x · wᵀ + b)`.
#[derive(Debug)]
pub struct LinearForward<'a, B: ?Sized> {
    /// Rows and features.
    pub shape: LinearShape,
    /// The weight (out_features, in_features), as MindSpore `nn.Dense` stores it.
    pub w: &'a B,
    /// The bias (out_features).
    pub b: &'a B,
    /// The activation applied last.
    pub act: Activation,
}

impl<B: ?Sized> Clone for LinearForward<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: ?Sized> Copy for LinearForward<'_, B> {}

impl<B: BufferLen + ?Sized> LinearForward<'_, B> {
    /// The checks of a forward from `x` into `y`: every buffer has room for its shape.
    pub(crate) fn check(
        &self,
        x: &(impl BufferLen + ?Sized),
        y: &(impl BufferLen + ?Sized),
    ) -> Result<()> {
        let LinearShape {
            n,
            in_features: i,
            out_features: o,
        } = self.shape;
        check_len("linear input", x, n * i)?;
        check_len("linear weight", self.w, o * i)?;
        check_len("linear bias", self.b, o)?;
        check_len("linear output", y, n * o)
    }
}

/// The gradients [`Backend::linear_backward`](super::Backend::linear_backward) writes, each
/// overwritten.
#[derive(Debug)]
pub struct LinearGrads<'a, B: ?Sized> {
    /// ∂L/∂x (n, in_features), or None when no input gradient is needed (the first layer).
    pub dx: Option<&'a mut B>,
    /// ∂L/∂w (out_features, in_features).
    pub dw: &'a mut B,
    /// ∂L/∂b (out_features).
    pub db: &'a mut B,
}

// ---- batch normalisation

/// Values per channel `M = N*H*W` of a BatchNorm on batch statistics. Errors
/// ([`Error::Shape`]): no channel, or `M < 2` (the unbiased variance needs two values; PyTorch
/// refuses the same case).
fn values_per_channel(what: &str, xs: Shape4) -> Result<usize> {
    let m = xs.n * xs.h * xs.w;
    if xs.c == 0 || m < 2 {
        return Err(Error::Shape(format!(
            "{what}: input {xs:?} has {m} value(s) per channel, training BatchNorm needs >= 2"
        )));
    }
    Ok(m)
}

/// [`Error::Shape`] for an empty input of a BatchNorm on the moving statistics.
fn not_empty(what: &str, xs: Shape4) -> Result<()> {
    if xs.numel() == 0 {
        return Err(Error::Shape(format!("{what}: empty input {xs:?}")));
    }
    Ok(())
}

/// A BatchNorm2d forward (MindSpore `nn.BatchNorm2d`) as
/// [`Backend::batch_norm_train`](super::Backend::batch_norm_train) and
/// [`Backend::batch_norm_frozen`](super::Backend::batch_norm_frozen) apply it:
/// `y = act(gamma*(x-mean)*invstd + beta)` per channel, the statistics given beside it
/// ([`BatchStats`] or [`MovingStats`]).
#[derive(Debug)]
pub struct BatchNormForward<'a, B: ?Sized> {
    /// The input and output, NCHW.
    pub xs: Shape4,
    /// Scale, C values.
    pub gamma: &'a B,
    /// Shift, C values.
    pub beta: &'a B,
    /// The fused activation: None or Relu ([`Error::Invalid`] for Sigmoid).
    pub act: Activation,
}

impl<B: ?Sized> Clone for BatchNormForward<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: ?Sized> Copy for BatchNormForward<'_, B> {}

/// The statistics of a training-mode BatchNorm: the batch's, with the moving ones updated and
/// the batch mean and invstd saved for the backward (C values each). MindSpore's convention:
/// `moving = momentum*moving + (1-momentum)*batch` (MindSpore momentum 0.9 = PyTorch 0.1), the
/// variance with the unbiased batch variance.
#[derive(Debug)]
pub struct BatchStats<'a, B: ?Sized> {
    /// `invstd = 1/sqrt(var + eps)`.
    pub eps: f32,
    /// Weight of the old moving statistics.
    pub momentum: f32,
    /// Moving mean, updated in place.
    pub moving_mean: &'a mut B,
    /// Moving variance, updated in place.
    pub moving_var: &'a mut B,
    /// The batch mean, written.
    pub saved_mean: &'a mut B,
    /// The batch `invstd`, written.
    pub saved_invstd: &'a mut B,
}

/// The moving statistics a frozen BatchNorm (MindSpore
/// `nn.BatchNorm2d(use_batch_statistics=False)`) normalises with, read only (C values each),
/// and its epsilon: `invstd = 1/sqrt(var + eps)`.
#[derive(Debug)]
pub struct MovingStats<'a, B: ?Sized> {
    /// Moving mean.
    pub mean: &'a B,
    /// Moving variance.
    pub var: &'a B,
    /// Epsilon added to the variance.
    pub eps: f32,
}

impl<B: ?Sized> Clone for MovingStats<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: ?Sized> Copy for MovingStats<'_, B> {}

/// The batch statistics a training-mode forward saved ([`BatchStats::saved_mean`] and
/// [`BatchStats::saved_invstd`]), for its backward (C values each).
#[derive(Debug)]
pub struct SavedStats<'a, B: ?Sized> {
    /// The batch mean.
    pub mean: &'a B,
    /// The batch `1/sqrt(var + eps)`.
    pub invstd: &'a B,
}

impl<B: ?Sized> Clone for SavedStats<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: ?Sized> Copy for SavedStats<'_, B> {}

/// What a BatchNorm backward reads of its forward: the input, the output gradient and, when the
/// forward fused a ReLU, its output (`dy` is then masked by `y > 0` first).
#[derive(Debug)]
pub struct BatchNormBackward<'a, B: ?Sized> {
    /// The shape of `x`, `dy` and `y_relu`, NCHW.
    pub xs: Shape4,
    /// The forward's input.
    pub x: &'a B,
    /// ∂L/∂y.
    pub dy: &'a B,
    /// The forward's output when it fused a ReLU, else None.
    pub y_relu: Option<&'a B>,
    /// Scale, C values.
    pub gamma: &'a B,
}

impl<B: ?Sized> Clone for BatchNormBackward<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: ?Sized> Copy for BatchNormBackward<'_, B> {}

/// The gradients a BatchNorm backward writes, each overwritten.
#[derive(Debug)]
pub struct BatchNormGrads<'a, B: ?Sized> {
    /// ∂L/∂x, NCHW.
    pub dx: &'a mut B,
    /// ∂L/∂gamma, C values.
    pub dgamma: &'a mut B,
    /// ∂L/∂beta, C values.
    pub dbeta: &'a mut B,
}

impl<B: BufferLen + ?Sized> BatchNormForward<'_, B> {
    /// The checks of [`Backend::batch_norm_train`](super::Backend::batch_norm_train): at least
    /// two values per channel, a fusable activation, room in every buffer. Returns the values
    /// per channel `M = N*H*W`.
    pub(crate) fn check_train(
        &self,
        x: &(impl BufferLen + ?Sized),
        stats: &BatchStats<'_, B>,
        y: &(impl BufferLen + ?Sized),
    ) -> Result<usize> {
        let what = "batch_norm_train";
        let m = values_per_channel(what, self.xs)?;
        self.check(what, x, y)?;
        let per_channel: [(&str, &B); 4] = [
            ("moving_mean", stats.moving_mean),
            ("moving_variance", stats.moving_var),
            ("saved_mean", stats.saved_mean),
            ("saved_invstd", stats.saved_invstd),
        ];
        for (name, b) in per_channel {
            check_len(&format!("{what} {name}"), b, self.xs.c)?;
        }
        Ok(m)
    }

    /// The checks of [`Backend::batch_norm_frozen`](super::Backend::batch_norm_frozen): a
    /// fusable activation, a non-empty input, room in every buffer.
    pub(crate) fn check_frozen(
        &self,
        x: &(impl BufferLen + ?Sized),
        moving: MovingStats<'_, B>,
        y: &(impl BufferLen + ?Sized),
    ) -> Result<()> {
        let what = "batch_norm_frozen";
        self.fused_relu(what)?;
        not_empty(what, self.xs)?;
        self.check(what, x, y)?;
        check_len(&format!("{what} moving_mean"), moving.mean, self.xs.c)?;
        check_len(&format!("{what} moving_variance"), moving.var, self.xs.c)
    }

    /// Whether the forward fuses a ReLU. Errors ([`Error::Invalid`]): Sigmoid, which cannot be
    /// fused.
    pub(crate) fn fused_relu(&self, what: &str) -> Result<bool> {
        match self.act {
            Activation::None => Ok(false),
            Activation::Relu => Ok(true),
            Activation::Sigmoid => Err(Error::Invalid(format!(
                "{what}: only Activation::None or Relu can be fused"
            ))),
        }
    }

    /// The checks both forwards share: the activation, then room in `x`, `y`, `gamma`, `beta`.
    fn check(
        &self,
        what: &str,
        x: &(impl BufferLen + ?Sized),
        y: &(impl BufferLen + ?Sized),
    ) -> Result<()> {
        self.fused_relu(what)?;
        check_len(&format!("{what} input"), x, self.xs.numel())?;
        check_len(&format!("{what} output"), y, self.xs.numel())?;
        check_len(&format!("{what} gamma"), self.gamma, self.xs.c)?;
        check_len(&format!("{what} beta"), self.beta, self.xs.c)
    }
}

impl<B: BufferLen + ?Sized> BatchNormBackward<'_, B> {
    /// The checks of [`Backend::batch_norm_backward`](super::Backend::batch_norm_backward): at
    /// least two values per channel, room in every buffer. Returns `M = N*H*W`.
    pub(crate) fn check_batch(
        &self,
        saved: SavedStats<'_, B>,
        grads: &BatchNormGrads<'_, B>,
    ) -> Result<usize> {
        let what = "batch_norm_backward";
        let m = values_per_channel(what, self.xs)?;
        self.check(
            what,
            [("saved_mean", saved.mean), ("saved_invstd", saved.invstd)],
            grads,
        )?;
        Ok(m)
    }

    /// The checks of
    /// [`Backend::batch_norm_frozen_backward`](super::Backend::batch_norm_frozen_backward): a
    /// non-empty input, room in every buffer.
    pub(crate) fn check_frozen(
        &self,
        moving: MovingStats<'_, B>,
        grads: &BatchNormGrads<'_, B>,
    ) -> Result<()> {
        let what = "batch_norm_frozen_backward";
        not_empty(what, self.xs)?;
        let stats = [
            ("moving_mean", moving.mean),
            ("moving_variance", moving.var),
        ];
        self.check(what, stats, grads)
    }

    /// Room in the NCHW buffers, then in `gamma`, the two `stats` and the parameter gradients.
    fn check(
        &self,
        what: &str,
        stats: [(&str, &B); 2],
        grads: &BatchNormGrads<'_, B>,
    ) -> Result<()> {
        let (numel, c) = (self.xs.numel(), self.xs.c);
        check_len(&format!("{what} input"), self.x, numel)?;
        check_len(&format!("{what} dy"), self.dy, numel)?;
        check_len(&format!("{what} dx"), &*grads.dx, numel)?;
        if let Some(y) = self.y_relu {
            check_len(&format!("{what} y_relu"), y, numel)?;
        }
        check_len(&format!("{what} gamma"), self.gamma, c)?;
        for (name, b) in stats {
            check_len(&format!("{what} {name}"), b, c)?;
        }
        check_len(&format!("{what} dgamma"), &*grads.dgamma, c)?;
        check_len(&format!("{what} dbeta"), &*grads.dbeta, c)
    }
}

// ---- element-wise: the end of an SE block

/// The checks of [`Backend::se_scale_add_relu`](super::Backend::se_scale_add_relu): room in `x`
/// and `shortcut` (`xs`) and `gate` (N, C).
pub(crate) fn check_se_scale_add_relu(
    xs: Shape4,
    x: &(impl BufferLen + ?Sized),
    gate: &(impl BufferLen + ?Sized),
    shortcut: &(impl BufferLen + ?Sized),
) -> Result<()> {
    check_len("se_scale_add_relu input", x, xs.numel())?;
    check_len("se_scale_add_relu shortcut", shortcut, xs.numel())?;
    check_len("se_scale_add_relu gate", gate, xs.n * xs.c)
}

/// The gradients
/// [`Backend::se_scale_add_relu_backward`](super::Backend::se_scale_add_relu_backward) writes,
/// each overwritten.
#[derive(Debug)]
pub struct SeGrads<'a, B: ?Sized> {
    /// ∂L/∂x, NCHW.
    pub dx: &'a mut B,
    /// ∂L/∂gate, (N, C).
    pub dgate: &'a mut B,
    /// ∂L/∂shortcut, NCHW.
    pub dshortcut: &'a mut B,
}

impl<B: BufferLen + ?Sized> SeGrads<'_, B> {
    /// The checks of
    /// [`Backend::se_scale_add_relu_backward`](super::Backend::se_scale_add_relu_backward): room
    /// in the NCHW buffers (`xs`), then in the (N, C) ones.
    pub(crate) fn check(
        &self,
        xs: Shape4,
        x: &(impl BufferLen + ?Sized),
        gate: &(impl BufferLen + ?Sized),
        out: &(impl BufferLen + ?Sized),
        dout: &(impl BufferLen + ?Sized),
    ) -> Result<()> {
        let what = "se_scale_add_relu_backward";
        let (numel, planes) = (xs.numel(), xs.n * xs.c);
        check_len(&format!("{what} x"), x, numel)?;
        check_len(&format!("{what} out"), out, numel)?;
        check_len(&format!("{what} dout"), dout, numel)?;
        check_len(&format!("{what} dx"), &*self.dx, numel)?;
        check_len(&format!("{what} dshortcut"), &*self.dshortcut, numel)?;
        check_len(&format!("{what} gate"), gate, planes)?;
        check_len(&format!("{what} dgate"), &*self.dgate, planes)
    }
}

// ---- loss

/// Softmax cross entropy with label smoothing (MindCV `CrossEntropySmooth` = PyTorch
/// `cross_entropy(label_smoothing=eps)`) over `n` rows of `classes` logits, the gradient scaled
/// by `scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropyParams {
    /// Rows (the batch).
    pub n: usize,
    /// Classes per row.
    pub classes: usize,
    /// Label smoothing `eps`, in [0, 1).
    pub label_smoothing: f32,
    /// Factor of the logit gradient: the loss scale's sens (1.0 normally).
    pub scale: f32,
}

impl CrossEntropyParams {
    /// The checks of [`Backend::softmax_cross_entropy`](super::Backend::softmax_cross_entropy):
    /// `n` and `classes` non-zero, one label per row and room in `logits` and `dlogits`
    /// ([`Error::Shape`]), every label below `classes` and `label_smoothing` in [0, 1)
    /// ([`Error::Invalid`]).
    pub(crate) fn check(
        &self,
        labels: &[usize],
        logits: &(impl BufferLen + ?Sized),
        dlogits: &(impl BufferLen + ?Sized),
    ) -> Result<()> {
        let (n, classes, eps) = (self.n, self.classes, self.label_smoothing);
        if n == 0 || classes == 0 {
            return Err(Error::Shape(format!(
                "softmax_cross_entropy: {n} rows of {classes} classes"
            )));
        }
        if labels.len() != n {
            return Err(Error::Shape(format!(
                "softmax_cross_entropy: {} labels for {n} rows",
                labels.len()
            )));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
            return Err(Error::Invalid(format!(
                "softmax_cross_entropy: label {l} of row {i} is not below {classes} classes"
            )));
        }
        if !(0.0..1.0).contains(&eps) {
            return Err(Error::Invalid(format!(
                "softmax_cross_entropy: label smoothing {eps} not in [0, 1)"
            )));
        }
        check_len("softmax_cross_entropy logits", logits, n * classes)?;
        check_len("softmax_cross_entropy dlogits", dlogits, n * classes)
    }

    /// The smoothed one-hot target, in f64: (the label's, every other class's) =
    /// `(1 - eps + eps/C, eps/C)`.
    pub(crate) fn targets(&self) -> (f64, f64) {
        let eps = self.label_smoothing as f64;
        let off = eps / self.classes as f64;
        (1.0 - eps + off, off)
    }
}

// ---- optimizer

/// The settings of one MindSpore `nn.Momentum` update of one parameter. The step's
/// hyper-parameters are the same for every parameter; `weight_decay` is the parameter's own
/// (0 for those excluded from decay, see `train::decays`), as MindSpore's parameter groups
/// set it. An update of many parameters at once takes one of these per group of equal
/// settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MomentumParams {
    /// Learning rate of this step.
    pub lr: f32,
    /// Momentum coefficient.
    pub momentum: f32,
    /// Weight decay of this parameter, >= 0.
    pub weight_decay: f32,
    /// The loss scale the gradient still carries (1.0 when it was divided out), > 0.
    pub loss_scale: f32,
    /// Nesterov momentum (`use_nesterov`).
    pub nesterov: bool,
}

impl MomentumParams {
    /// The checks of [`Backend::momentum_update`](super::Backend::momentum_update): room for
    /// `len` values in every buffer ([`Error::Shape`]), a finite loss scale > 0 and a weight
    /// decay >= 0 ([`Error::Invalid`]).
    pub(crate) fn check(
        &self,
        param: &(impl BufferLen + ?Sized),
        grad: &(impl BufferLen + ?Sized),
        moment: &(impl BufferLen + ?Sized),
        len: usize,
    ) -> Result<()> {
        check_len("momentum_update param", param, len)?;
        check_len("momentum_update grad", grad, len)?;
        check_len("momentum_update moment", moment, len)?;
        let (ls, wd) = (self.loss_scale, self.weight_decay);
        if !(ls > 0.0 && ls.is_finite()) {
            return Err(Error::Invalid(format!(
                "momentum_update: loss scale {ls} must be > 0"
            )));
        }
        if wd.is_nan() || wd < 0.0 {
            return Err(Error::Invalid(format!(
                "momentum_update: weight decay {wd} must be >= 0"
            )));
        }
        Ok(())
    }

    /// The weight decay multiplied by the loss scale, formed in f64 and stored as f32 (MindSpore
    /// pre-scales it: `_preprocess_weight_decay`); 0 = no decay.
    pub(crate) fn scaled_weight_decay(&self) -> f32 {
        (self.weight_decay as f64 * self.loss_scale as f64) as f32
    }

    /// `1 / loss_scale` as f32, the factor that unscales the gradient.
    pub(crate) fn inverse_loss_scale(&self) -> f32 {
        (1.0 / self.loss_scale as f64) as f32
    }

    /// Whether the gradient is unscaled (the loss scale is not 1).
    pub(crate) fn unscales(&self) -> bool {
        self.loss_scale != 1.0
    }
}
