//! The op trait every device implements ([`Backend`]), and its implementations: [`cpu`] (f32,
//! GEMM from the `gemm` crate, native kernels in `kernels/cpu/`, threads from rayon). The Ascend
//! backend (aclnn through `sys/`) implements the same trait.
//!
//! Tensors cross this boundary as flat device buffers plus an explicit NCHW [`Shape4`] (or
//! (N, features) for dense ops). Buffers may be larger than the shape needs (they are allocated
//! once at their largest size and reused layer after layer); ops read and write only the
//! leading `shape.numel()` elements. Inference ops come first; the training ops
//! (conv2d data/filter gradients, batch_norm training and backward, pooling and loss
//! gradients) are added beside them with the same conventions.
pub mod cpu;

use crate::Result;

/// Shape of an NCHW activation: batch, channels, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape4 {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height in pixels.
    pub h: usize,
    /// Width in pixels.
    pub w: usize,
}

impl Shape4 {
    /// A shape.
    pub fn new(n: usize, c: usize, h: usize, w: usize) -> Shape4 {
        Shape4 { n, c, h, w }
    }

    /// Number of elements.
    pub fn numel(self) -> usize {
        self.n * self.c * self.h * self.w
    }

    /// Elements of one image (C*H*W).
    pub fn image_len(self) -> usize {
        self.c * self.h * self.w
    }
}

/// Geometry of a 2-D convolution (PyTorch `conv2d` / MindSpore `Conv2d(pad_mode="pad")`):
/// symmetric zero padding, no dilation.
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
    /// Output (height, width) for an input of `h`x`w` and a `kh`x`kw` kernel.
    pub fn out_hw(self, h: usize, w: usize, kh: usize, kw: usize) -> (usize, usize) {
        (
            (h + 2 * self.padding - kh) / self.stride + 1,
            (w + 2 * self.padding - kw) / self.stride + 1,
        )
    }
}

/// Activation applied in an op's epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Identity.
    None,
    /// max(0, x).
    Relu,
    /// 1 / (1 + exp(-x)).
    Sigmoid,
}

/// MindSpore `MaxPool2d(pad_mode="same")` output size and padding: `out = ceil(in/stride)`,
/// total padding `max(0, (out-1)*stride + k - in)`, the smaller half at the top/left.
/// Returns (out, pad_before).
pub fn same_pool_geometry(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (out, total / 2)
}

/// The ops of SENet on one device. f32 everywhere at this boundary; a device may compute in
/// another precision inside (Ascend: fp16 with fp32 accumulation).
pub trait Backend: Send + Sync {
    /// A device buffer of f32 values.
    type Buffer: Send + Sync;

    /// Short name for logs ("cpu", "ascend").
    fn name(&self) -> &'static str;

    /// A zero-filled buffer of `len` f32.
    fn alloc(&self, len: usize) -> Result<Self::Buffer>;

    /// Copies host values into a new device buffer.
    fn upload(&self, host: &[f32]) -> Result<Self::Buffer>;

    /// Copies the first `out.len()` values of `buf` to the host.
    fn download(&self, buf: &Self::Buffer, out: &mut [f32]) -> Result<()>;

    /// Copies host values into the start of an existing buffer (no allocation).
    fn write(&self, buf: &mut Self::Buffer, host: &[f32]) -> Result<()>;

    /// `y = act(conv2d(x, w) + bias[c])`, NCHW. `w` is (Cout, Cin/groups, kh, kw) as in MindSpore;
    /// `bias` (Cout) is where a folded BatchNorm goes. Returns the output shape.
    /// Errors if the channels do not match `w_shape` and `groups`.
    #[allow(clippy::too_many_arguments)]
    fn conv2d(
        &self,
        x: &Self::Buffer,
        xs: Shape4,
        w: &Self::Buffer,
        w_shape: [usize; 4],
        bias: Option<&Self::Buffer>,
        p: Conv2dParams,
        act: Activation,
        y: &mut Self::Buffer,
    ) -> Result<Shape4>;

    /// MindSpore `MaxPool2d(kernel, stride, pad_mode="same")` (TF 'SAME'; see
    /// [`same_pool_geometry`]); padded positions never win. Returns the output shape.
    fn max_pool2d_same(
        &self,
        x: &Self::Buffer,
        xs: Shape4,
        kernel: usize,
        stride: usize,
        y: &mut Self::Buffer,
    ) -> Result<Shape4>;

    /// Mean over H and W: `y[n, c]` (N, C) (MindCV `GlobalAvgPooling`).
    fn global_avg_pool(&self, x: &Self::Buffer, xs: Shape4, y: &mut Self::Buffer) -> Result<()>;

    /// Dense layer `y = act(x · wᵀ + b)`: x (n, in), w (out, in) as MindSpore `nn.Dense`, b (out).
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        x: &Self::Buffer,
        n: usize,
        w: &Self::Buffer,
        out_features: usize,
        in_features: usize,
        b: &Self::Buffer,
        act: Activation,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// The end of an SE block, in place: `x = relu(x * gate[n, c] + shortcut)` (the SE scale of
    /// Hu et al. §3.2, the residual add and the block's final ReLU, fused). `gate` is (N, C).
    fn se_scale_add_relu(
        &self,
        x: &mut Self::Buffer,
        xs: Shape4,
        gate: &Self::Buffer,
        shortcut: &Self::Buffer,
    ) -> Result<()>;

    // ---- training: convolution, dense, pooling ----

    /// dx = ∂L/∂x of y = conv2d(x, w) (no bias; BN follows every conv), overwriting dx (N,Cin,H,W).
    ///
    /// `dy` is ∂L/∂y (N, Cout, OH, OW) with `ys` the forward's output shape, `w` the forward's
    /// weight (Cout, Cin/groups, kh, kw). Standard conv-as-GEMM formulation: per image and group
    /// `dcol = Wᵀ·dY`, then col2im (the scatter-add adjoint of im2col) into dx.
    /// Errors if `ys` is not the forward output of `xs`, `w_shape` and `p`, or a buffer is short.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward_data(
        &self,
        dy: &Self::Buffer,
        ys: Shape4,
        w: &Self::Buffer,
        w_shape: [usize; 4],
        p: Conv2dParams,
        xs: Shape4,
        dx: &mut Self::Buffer,
    ) -> Result<()>;

    /// dw (+)= ∂L/∂w (Cout,Cin/g,kh,kw); `accumulate` false overwrites.
    ///
    /// The gradient is summed over the batch of `x` (N, Cin, H, W) and `dy` (N, Cout, OH, OW):
    /// per image and group `dW += dY·colᵀ` with `col = im2col(x)`. The batch reduction has a fixed
    /// order, so results are reproducible run to run. Errors as
    /// [`conv2d_backward_data`](Backend::conv2d_backward_data).
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward_filter(
        &self,
        x: &Self::Buffer,
        xs: Shape4,
        dy: &Self::Buffer,
        ys: Shape4,
        p: Conv2dParams,
        w_shape: [usize; 4],
        dw: &mut Self::Buffer,
        accumulate: bool,
    ) -> Result<()>;

    /// Dense backward for y = x·wᵀ + b: dx (n,in) overwritten when Some, dw (out,in) and db (out) overwritten.
    ///
    /// Given `dy` (n, out): `dx = dy·w`, `dw = dyᵀ·x`, `db = Σ_rows dy`. `dx` is `None` for the
    /// first layer (no input gradient needed). Errors if a buffer is too short.
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        &self,
        x: &Self::Buffer,
        n: usize,
        w: &Self::Buffer,
        out_features: usize,
        in_features: usize,
        dy: &Self::Buffer,
        dx: Option<&mut Self::Buffer>,
        dw: &mut Self::Buffer,
        db: &mut Self::Buffer,
    ) -> Result<()>;

    /// Backward of max_pool2d_same: routes each dy to the argmax of its window in x (first max in row-major window order on ties, like the forward's strict '>' scan), dx overwritten.
    ///
    /// `x` (N, C, H, W) is the forward's input, `dy` (N, C, OH, OW) with OH, OW from
    /// [`same_pool_geometry`] (MindSpore `MaxPool2d(pad_mode="same")`); windows overlap when
    /// stride < kernel, so dx sums every window's contribution. Errors on a zero kernel, stride
    /// or plane, or a short buffer.
    fn max_pool2d_same_backward(
        &self,
        x: &Self::Buffer,
        xs: Shape4,
        kernel: usize,
        stride: usize,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;

    /// Backward of global_avg_pool: `dx[n,c,h,w] = dy[n,c] / (H*W)`, dx overwritten.
    ///
    /// `dy` is (N, C), `dx` has shape `xs`. Errors if a buffer is too short.
    fn global_avg_pool_backward(
        &self,
        dy: &Self::Buffer,
        xs: Shape4,
        dx: &mut Self::Buffer,
    ) -> Result<()>;

    /// Element-wise dst += src over `len` values (gradient accumulation, residual branches).
    ///
    /// Errors if either buffer is shorter than `len`.
    fn add_assign(&self, dst: &mut Self::Buffer, src: &Self::Buffer, len: usize) -> Result<()>;
}
