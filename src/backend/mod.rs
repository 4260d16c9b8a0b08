//! The op trait every device implements ([`Backend`]), and its implementations: [`cpu`] (f32,
//! GEMM from the `gemm` crate, native kernels in `kernels/cpu/`, threads from rayon) and
//! [`ascend`] (Huawei NPUs through CANN's aclnn operators, loaded at run time from `sys/`).
//!
//! Tensors cross this boundary as flat device buffers plus an explicit NCHW [`Shape4`] (or
//! (N, features) for dense ops). Buffers may be larger than the shape needs (they are allocated
//! once at their largest size and reused layer after layer); ops read and write only the
//! leading `shape.numel()` elements. Inference ops come first; the training ops
//! (conv2d data/filter gradients, batch_norm training and backward, pooling and loss
//! gradients) are added beside them with the same conventions.
pub mod ascend;
pub mod cpu;
mod params;

use crate::Result;
pub(crate) use params::{check_len, check_se_scale_add_relu};
pub use params::{
    same_pool_geometry, symmetric_pool_out, BatchNormBackward, BatchNormForward, BatchNormGrads,
    BatchStats, BufferLen, Conv2dForward, Conv2dParams, Conv2dShape, CrossEntropyParams,
    LinearForward, LinearGrads, LinearShape, MaxPool2dParams, MomentumParams, MomentumSlot,
    MovingStats, PoolGeometry, PoolPadding, SavedStats, SeGrads,
};
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

/// The host-side cost of the device work a backend issued since it was created: what one
/// training step costs the host, read before and after it ([`Backend::counters`]). Counted by
/// the backend itself at its calls into the device runtime, so the figures are the same on real
/// hardware and on the emulator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeviceCounters {
    /// Operators launched (aclnn phase-2 calls).
    pub launches: u64,
    /// Waits of the host for the device (stream, event or device synchronises).
    pub synchronizes: u64,
    /// Blocking host<->device copies (`aclrtMemcpy`).
    pub blocking_copies: u64,
    /// Device allocations (`aclrtMalloc`; blocks reused from the backend's cache do not count).
    pub allocations: u64,
    /// Bytes copied host to device (blocking or not).
    pub h2d_bytes: u64,
    /// Bytes copied device to host.
    pub d2h_bytes: u64,
    /// Replays of a captured graph (`aclmdlRIExecuteAsync`).
    pub replays: u64,
}

impl DeviceCounters {
    /// The counts of the work between `earlier` and `self` (each field `self - earlier`,
    /// saturating at 0).
    pub fn since(&self, earlier: &DeviceCounters) -> DeviceCounters {
        DeviceCounters {
            launches: self.launches.saturating_sub(earlier.launches),
            synchronizes: self.synchronizes.saturating_sub(earlier.synchronizes),
            blocking_copies: self.blocking_copies.saturating_sub(earlier.blocking_copies),
            allocations: self.allocations.saturating_sub(earlier.allocations),
            h2d_bytes: self.h2d_bytes.saturating_sub(earlier.h2d_bytes),
            d2h_bytes: self.d2h_bytes.saturating_sub(earlier.d2h_bytes),
            replays: self.replays.saturating_sub(earlier.replays),
        }
    }
}

/// The check of [`Backend::softmax_cross_entropy_and_logits`]'s host buffer.
pub(crate) fn check_logits_out(p: CrossEntropyParams, logits_out: &[f32]) -> Result<()> {
    if logits_out.len() != p.n * p.classes {
        return Err(crate::Error::Shape(format!(
            "logits_out holds {} values, not {} x {}",
            logits_out.len(),
            p.n,
            p.classes
        )));
    }
    Ok(())
}

/// Activation applied in an op's epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Identity.
    None,
    /// max(0, x); NaN stays NaN on the CPU backend (MindSpore's and PyTorch's ReLU).
    Relu,
    /// 1 / (1 + exp(-x)).
    Sigmoid,
}

/// The ops of SENet on one device. f32 everywhere at this boundary; a device may compute in
/// another precision inside (Ascend: fp16 with fp32 accumulation).
pub trait Backend: Send + Sync {
    /// A device buffer of f32 values.
    type Buffer: BufferLen + Send + Sync;

    /// Short name for logs ("cpu", "ascend").
    fn name(&self) -> &'static str;

    /// Whether [`Backend::conv2d`] (and the fused conv + pool ops) may use an algorithm with
    /// fewer multiplications whose float32 rounding differs from the direct sum's (the CPU
    /// backend: Winograd F(4x4, 3x3) for 3x3 stride-1 convs, whose error scales with the
    /// largest inputs of each 6x6 tile; see `backend/cpu/conv/winograd/`). On by default, for
    /// inference; [`crate::optim::TrainNet`] turns it off so that a training forward rounds like
    /// the direct convolution MindSpore computes (the CPU backend then takes Winograd F(2x2, 3x3),
    /// which does: `CpuBackend::set_winograd_training_forward`; its data gradients keep
    /// F(4x4, 3x3): `CpuBackend::set_winograd_data_gradient`). Backends with a single algorithm
    /// ignore it.
    fn set_fast_conv(&mut self, _allowed: bool) {}

    /// The device work issued so far ([`DeviceCounters`]), or None on a backend that has no
    /// separate device (the CPU).
    fn counters(&self) -> Option<DeviceCounters> {
        None
    }

    /// Runs `f`, a sequence of this backend's ops issued by the caller (a whole forward pass),
    /// and returns its result; the ops compute the same results either way. The default calls
    /// `f` on the calling thread. The CPU backend can run it on one of its pool's threads
    /// (`CpuBackend::set_ops_in_pool`, `SENET_CPU_FORWARD=pool`; off by default), so that the
    /// ops inside it enter the pool without a hand-over from the calling thread and back.
    fn run_ops<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R
    where
        Self: Sized,
    {
        f()
    }

    /// A zero-filled buffer of `len` f32.
    fn alloc(&self, len: usize) -> Result<Self::Buffer>;

    /// Copies host values into a new device buffer.
    fn upload(&self, host: &[f32]) -> Result<Self::Buffer>;

    /// Copies the first `out.len()` values of `buf` to the host.
    fn download(&self, buf: &Self::Buffer, out: &mut [f32]) -> Result<()>;

    /// Copies host values into the start of an existing buffer (no allocation).
    fn write(&self, buf: &mut Self::Buffer, host: &[f32]) -> Result<()>;

    /// `y = act(conv2d(x, w) + bias[c])`, NCHW: `x` of shape `f.shape.xs`, `y` of the returned
    /// output shape. Errors ([`crate::Error::Shape`]): the shapes do not fit
    /// ([`Conv2dShape::out_shape`]) or a buffer is too short.
    fn conv2d(
        &self,
        f: Conv2dForward<'_, Self::Buffer>,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<Shape4>;

    /// A backend-specific form of the weight `f.w` of the convolution `f` (input shape
    /// `f.shape.xs`) with which [`Backend::conv2d`] and the fused conv + pool ops compute that
    /// convolution faster, when passed as [`Conv2dForward::prepared`] beside `f.w`; None when the
    /// backend has none for it (the default). It stays valid while `f.w` is unchanged. The CPU
    /// backend (x86_64, AVX-512): for a single image with an output plane of at most 64 pixels
    /// (the 7x7 stage of a 224x224 image, batch 1) the weights transposed into panels of
    /// 48 output channels, about as many floats as `f.w`. Errors ([`crate::Error::Shape`]): the
    /// shapes do not fit ([`Conv2dShape::out_shape`]) or the weight buffer is too short.
    fn prepare_conv2d(&self, f: Conv2dForward<'_, Self::Buffer>) -> Result<Option<Self::Buffer>> {
        f.shape.out_shape()?;
        check_len("prepare_conv2d weight", f.w, f.shape.w_len())?;
        Ok(None)
    }

    /// Max pool of `x` (`xs`) into `y` with the window and border rule of `pool`: MindSpore
    /// `MaxPool2d(kernel, stride, pad_mode="same")` (TF 'SAME'; see [`same_pool_geometry`]) or
    /// PyTorch `nn.MaxPool2d(kernel, stride, padding, ceil_mode)` ([`PoolPadding::Symmetric`]);
    /// padded positions never win (-inf); on the CPU backend a window holding a NaN gives NaN
    /// (MindSpore's and PyTorch's rule; aclnn's max pools on 910B/910_93 take no NaN input,
    /// `aclnn-contract.md` MaxPool2dWithIndices). Returns the output shape. Errors
    /// ([`crate::Error::Shape`]): a zero kernel, stride or plane
    /// ([`MaxPool2dParams::geometry`]), a buffer too short.
    fn max_pool2d(
        &self,
        pool: MaxPool2dParams,
        x: &Self::Buffer,
        xs: Shape4,
        y: &mut Self::Buffer,
    ) -> Result<Shape4>;

    /// [`Backend::conv2d`] (output `y`), then [`Backend::max_pool2d`] of `y` into `pooled`,
    /// with the same results; returns the pooled shape. Backends may interleave the two (the CPU
    /// pools each image right after its convolution, while the output is still in cache).
    fn conv2d_max_pool(
        &self,
        f: Conv2dForward<'_, Self::Buffer>,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
        pool: MaxPool2dParams,
        pooled: &mut Self::Buffer,
    ) -> Result<Shape4> {
        let ys = self.conv2d(f, x, y)?;
        self.max_pool2d(pool, y, ys, pooled)
    }

    /// Mean over H and W: `y[n, c]` (N, C) (MindCV `GlobalAvgPooling`).
    fn global_avg_pool(&self, x: &Self::Buffer, xs: Shape4, y: &mut Self::Buffer) -> Result<()>;

    /// [`Backend::conv2d`], then [`Backend::global_avg_pool`] of its output `y` into `pooled`
    /// (N, Cout), with the same results. Backends may interleave the two (the CPU pools each
    /// image right after its convolution, while the output is still in cache).
    fn conv2d_avg_pool(
        &self,
        f: Conv2dForward<'_, Self::Buffer>,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
        pooled: &mut Self::Buffer,
    ) -> Result<Shape4> {
        let ys = self.conv2d(f, x, y)?;
        self.global_avg_pool(y, ys, pooled)?;
        Ok(ys)
    }

    /// Dense layer `y = act(x · wᵀ + b)` (MindSpore `nn.Dense`): x (n, in), `f.w` (out, in),
    /// `f.b` (out), y (n, out). Errors ([`crate::Error::Shape`]): a buffer too short.
    fn linear(
        &self,
        f: LinearForward<'_, Self::Buffer>,
        x: &Self::Buffer,
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

    /// [`Backend::se_scale_add_relu`] into another buffer: `out = relu(x * gate[n, c] +
    /// shortcut)`, `x` unchanged. The default copies `x` into `out` and works in place there;
    /// a backend with an out-of-place multiply saves that copy. Errors as
    /// [`Backend::se_scale_add_relu`], also for `out` too short.
    fn se_scale_add_relu_into(
        &self,
        x: &Self::Buffer,
        xs: Shape4,
        gate: &Self::Buffer,
        shortcut: &Self::Buffer,
        out: &mut Self::Buffer,
    ) -> Result<()> {
        check_se_scale_add_relu(xs, x, gate, shortcut)?;
        self.copy(x, out, xs.numel())?;
        self.se_scale_add_relu(out, xs, gate, shortcut)
    }

    // ---- training: convolution, dense, pooling ----

    /// dx = ∂L/∂x of y = conv2d(x, w) (no bias; BN follows every conv), overwriting dx
    /// (`conv.xs`).
    ///
    /// `dy` is ∂L/∂y (N, Cout, OH, OW) with `ys` the forward's output shape, `w` the forward's
    /// weight (`conv.w_shape`). Standard conv-as-GEMM formulation: per image and group
    /// `dcol = Wᵀ·dY`, then col2im (the scatter-add adjoint of im2col) into dx.
    /// Errors ([`crate::Error::Shape`]): the shapes do not fit, `ys` is not the forward output
    /// shape of `conv`, or a buffer is short.
    fn conv2d_backward_data(
        &self,
        conv: Conv2dShape,
        w: &Self::Buffer,
        dy: &Self::Buffer,
        ys: Shape4,
        dx: &mut Self::Buffer,
    ) -> Result<()>;

    /// dw (+)= ∂L/∂w (`conv.w_shape`); `accumulate` false overwrites.
    ///
    /// The gradient is summed over the batch of `x` (`conv.xs`) and `dy` (`ys`, the forward's
    /// output shape): per image and group `dW += dY·colᵀ` with `col = im2col(x)`. The batch
    /// reduction has a fixed order, so results are reproducible run to run. Errors as
    /// [`conv2d_backward_data`](Backend::conv2d_backward_data).
    fn conv2d_backward_filter(
        &self,
        conv: Conv2dShape,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        ys: Shape4,
        dw: &mut Self::Buffer,
        accumulate: bool,
    ) -> Result<()>;

    /// Dense backward for y = x·wᵀ + b, given `dy` (n, out) and the forward's `x` (n, in) and
    /// `w` (out, in): `grads.dx = dy·w` when wanted (None for the first layer: no input
    /// gradient needed), `grads.dw = dyᵀ·x`, `grads.db = Σ_rows dy`, each overwritten.
    /// Errors ([`crate::Error::Shape`]): a buffer too short.
    fn linear_backward(
        &self,
        shape: LinearShape,
        x: &Self::Buffer,
        w: &Self::Buffer,
        dy: &Self::Buffer,
        grads: LinearGrads<'_, Self::Buffer>,
    ) -> Result<()>;

    /// Backward of [`Backend::max_pool2d`]: routes each dy to the argmax of its window in x (first max
    /// in row-major window order on ties, like the forward's strict '>' scan), dx overwritten.
    ///
    /// `x` (`xs`, N, C, H, W) is the forward's input, `dy` (N, C, OH, OW) with OH, OW from
    /// [`MaxPool2dParams::geometry`] (the forward's); windows overlap when
    /// stride < kernel, so dx sums every window's contribution. Errors
    /// ([`crate::Error::Shape`]): a zero kernel, stride or plane, or a short buffer.
    fn max_pool2d_backward(
        &self,
        pool: MaxPool2dParams,
        x: &Self::Buffer,
        xs: Shape4,
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

    /// [`Backend::global_avg_pool_backward`] added into `dx`: `dx[n,c,h,w] += dy[n,c] / (H*W)`
    /// (the SE squeeze's gradient joining the scale's in the training backward). The default
    /// writes the pool's gradient into `scratch` (at least `xs.numel()` values, overwritten)
    /// and adds it ([`Backend::add_assign`]); a backend may do both in one pass with the same
    /// results. Errors if a buffer is too short.
    fn global_avg_pool_backward_add(
        &self,
        dy: &Self::Buffer,
        xs: Shape4,
        dx: &mut Self::Buffer,
        scratch: &mut Self::Buffer,
    ) -> Result<()> {
        self.global_avg_pool_backward(dy, xs, scratch)?;
        self.add_assign(dx, scratch, xs.numel())
    }

    /// Element-wise dst += src over `len` values (gradient accumulation, residual branches).
    ///
    /// Errors if either buffer is shorter than `len`.
    fn add_assign(&self, dst: &mut Self::Buffer, src: &Self::Buffer, len: usize) -> Result<()>;

    /// `y = a*y + b*x` element-wise over `len` values (the EMA of the weights:
    /// `ema = d*ema + (1-d)*w`). Errors: a buffer shorter than `len`.
    fn axpby(
        &self,
        y: &mut Self::Buffer,
        x: &Self::Buffer,
        len: usize,
        a: f32,
        b: f32,
    ) -> Result<()>;

    /// `x *= factor` in place over `len` values (unscaling and clipping gradients).
    /// Errors: a buffer shorter than `len`.
    fn scale(&self, x: &mut Self::Buffer, len: usize, factor: f32) -> Result<()>;

    /// `Σ x²` over `len` values, accumulated in f64 in a fixed order (global gradient norm).
    /// Errors: a buffer shorter than `len`.
    fn sum_squares(&self, x: &Self::Buffer, len: usize) -> Result<f64>;

    /// Copies the first `len` values of `src` into `dst` (device to device).
    /// Errors: a buffer shorter than `len`.
    fn copy(&self, src: &Self::Buffer, dst: &mut Self::Buffer, len: usize) -> Result<()>;

    // ---- training: normalisation, activations, SE, loss, optimizer ----

    /// Train-mode BatchNorm2d (MindSpore `nn.BatchNorm2d` in training = PyTorch
    /// `batch_norm(training=True)`) of `x` into `y` (both `bn.xs`): per-channel batch mean and
    /// *biased* variance over (N, H, W); `y = gamma*(x-mean)*invstd + beta` with
    /// `invstd = 1/sqrt(var+stats.eps)`, then `bn.act` (None or Relu). Saves two per-channel
    /// statistics (C each) in `stats.saved_mean` and `stats.saved_invstd` for
    /// [`Backend::batch_norm_backward`] of the same backend: they are backend-defined and
    /// opaque to callers, whatever their names (the CPU backend saves the mean and
    /// `1/sqrt(var+eps)`; the Ascend backend what aclnnBatchNorm writes, whose second value is
    /// the biased variance on 910/A2/A3, `aclnn-contract.md` Part A 4). Updates the moving statistics (C) in
    /// place, MindSpore-style: `m = momentum*m + (1-momentum)*batch` (MindSpore momentum 0.9 =
    /// PyTorch momentum 0.1), the variance with the *unbiased* batch variance (`var*M/(M-1)`,
    /// `M = N*H*W`). Errors: a buffer too short ([`crate::Error::Shape`]), fewer than 2 values
    /// per channel ([`crate::Error::Shape`]), `act = Sigmoid` ([`crate::Error::Invalid`]); on
    /// Ascend an `eps` other than 1e-5 ([`crate::Error::Invalid`]: its backward must be told
    /// the forward's epsilon and the trait does not carry it).
    fn batch_norm_train(
        &self,
        bn: BatchNormForward<'_, Self::Buffer>,
        x: &Self::Buffer,
        stats: BatchStats<'_, Self::Buffer>,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// Backward of [`Backend::batch_norm_train`] (batch statistics, so the gradient flows
    /// through the mean and variance), from the statistics the same backend's forward saved
    /// (`saved`, passed unchanged; `mean`, `invstd` and `M = N*H*W` below are the batch's):
    /// `grads.dx`
    /// (`bn.xs`), `grads.dgamma`, `grads.dbeta` (C) overwritten. With `g = dy`:
    /// `dbeta = Σg`, `dgamma = Σ g*(x-mean)*invstd`,
    /// `dx = gamma*invstd*(g - dbeta/M - (x-mean)*invstd*dgamma/M)`. If `bn.y_relu` is `Some(y)`
    /// the forward fused a ReLU and `y` is its output: `dy` is first masked by `y > 0`.
    /// Errors: a buffer too short or fewer than 2 values per channel ([`crate::Error::Shape`]).
    fn batch_norm_backward(
        &self,
        bn: BatchNormBackward<'_, Self::Buffer>,
        saved: SavedStats<'_, Self::Buffer>,
        grads: BatchNormGrads<'_, Self::Buffer>,
    ) -> Result<()>;

    /// BatchNorm2d normalising with its moving statistics while training ("frozen" BatchNorm,
    /// MindSpore `nn.BatchNorm2d(use_batch_statistics=False)`): per channel
    /// `y = gamma*(x-moving_mean)*invstd + beta`, `invstd = 1/sqrt(moving_var+eps)` — the
    /// inference formula, but kept unfolded so that `gamma` and `beta` get gradients
    /// ([`Backend::batch_norm_frozen_backward`]). The moving statistics are read, never updated.
    /// `bn.act = Relu` fuses the following ReLU. `x`, `y`: `bn.xs`; gamma, beta and the moving
    /// statistics: C values. Errors: a buffer too short or a zero dimension
    /// ([`crate::Error::Shape`]), `act = Sigmoid` or a negative `moving_var + eps`
    /// ([`crate::Error::Invalid`]).
    fn batch_norm_frozen(
        &self,
        bn: BatchNormForward<'_, Self::Buffer>,
        x: &Self::Buffer,
        moving: MovingStats<'_, Self::Buffer>,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// Backward of [`Backend::batch_norm_frozen`]: the statistics are constants, so with
    /// `g = dy` (masked by `y > 0` when `bn.y_relu` is `Some(y)`, the forward's fused-ReLU
    /// output) and `invstd = 1/sqrt(moving_var+eps)`: `dx = g*gamma*invstd` (`bn.xs`,
    /// overwritten), `dgamma = Σ g*(x-moving_mean)*invstd`, `dbeta = Σ g` (C, overwritten; sums
    /// over N, H, W). Errors: as [`Backend::batch_norm_frozen`].
    fn batch_norm_frozen_backward(
        &self,
        bn: BatchNormBackward<'_, Self::Buffer>,
        moving: MovingStats<'_, Self::Buffer>,
        grads: BatchNormGrads<'_, Self::Buffer>,
    ) -> Result<()>;

    /// ReLU backward from its output, in place: `dy *= (y > 0)` over the first `len` values.
    /// Errors if a buffer is shorter than `len` ([`crate::Error::Shape`]).
    fn relu_backward(&self, y: &Self::Buffer, dy: &mut Self::Buffer, len: usize) -> Result<()>;

    /// Backward of [`Backend::se_scale_add_relu`], `out = relu(x*gate[n,c] + shortcut)`, given
    /// the forward's result `out` and `dout` (all `xs`): with `dpre = dout*(out > 0)` writes
    /// `grads.dx = dpre*gate` (`xs`), `grads.dgate[n,c] = Σ_hw dpre*x` ((N, C), summed in f64)
    /// and `grads.dshortcut = dpre` (`xs`). Errors if a buffer is too short
    /// ([`crate::Error::Shape`]).
    fn se_scale_add_relu_backward(
        &self,
        x: &Self::Buffer,
        xs: Shape4,
        gate: &Self::Buffer,
        out: &Self::Buffer,
        dout: &Self::Buffer,
        grads: SeGrads<'_, Self::Buffer>,
    ) -> Result<()>;

    /// Sigmoid backward from its output (the SE gate), in place: `dy *= s*(1-s)` over the
    /// first `len` values. Errors if a buffer is shorter than `len` ([`crate::Error::Shape`]).
    fn sigmoid_backward(&self, s: &Self::Buffer, dy: &mut Self::Buffer, len: usize) -> Result<()>;

    /// [`Backend::sigmoid_backward`] into another buffer: `dx = dy * s*(1-s)` over the first
    /// `len` values, `dy` unchanged. The default copies `dy` into `dx` and works in place there.
    fn sigmoid_backward_into(
        &self,
        s: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
        len: usize,
    ) -> Result<()> {
        self.copy(dy, dx, len)?;
        self.sigmoid_backward(s, dx, len)
    }

    /// Mean softmax cross entropy with label smoothing `eps = p.label_smoothing` over
    /// (p.n, p.classes) logits (MindCV `CrossEntropySmooth` = PyTorch
    /// `cross_entropy(label_smoothing=eps)`):
    /// `loss_i = (1-eps)*-log p[label] + eps/C*Σ_c -log p[c]`. Returns the mean loss
    /// (accumulated in f64) and writes `dlogits` (n, classes)
    /// `= (softmax - ((1-eps)*onehot + eps/C)) / n * p.scale` (`scale` = the loss scale's sens;
    /// 1.0 normally). Errors: `n` or `classes` 0 or a buffer too short or `labels.len() != n`
    /// ([`crate::Error::Shape`]); a label `>= classes` or `eps` outside [0, 1)
    /// ([`crate::Error::Invalid`]).
    fn softmax_cross_entropy(
        &self,
        p: CrossEntropyParams,
        logits: &Self::Buffer,
        labels: &[usize],
        dlogits: &mut Self::Buffer,
    ) -> Result<f64>;

    /// [`Backend::softmax_cross_entropy`], and the logits (the first `logits_out.len()` =
    /// `p.n * p.classes` values) copied to the host, in one device-to-host transfer where the
    /// backend can (Ascend: one synchronise and one blocking copy for both). Errors: as
    /// `softmax_cross_entropy`; `logits_out` of another length ([`crate::Error::Shape`]).
    fn softmax_cross_entropy_and_logits(
        &self,
        p: CrossEntropyParams,
        logits: &Self::Buffer,
        labels: &[usize],
        dlogits: &mut Self::Buffer,
        logits_out: &mut [f32],
    ) -> Result<f64> {
        check_logits_out(p, logits_out)?;
        let loss = self.softmax_cross_entropy(p, logits, labels, dlogits)?;
        self.download(logits, logits_out)?;
        Ok(loss)
    }

    /// MindSpore `nn.Momentum` (`ApplyMomentum`) on the first `len` values of one parameter, in
    /// MindSpore's order of operations: `g = grad + (weight_decay*loss_scale)*param` (decay
    /// added to the still scaled gradient, skipped when `weight_decay` is 0), then
    /// `g *= 1/loss_scale` (when `loss_scale != 1`), i.e. `g = grad/loss_scale +
    /// weight_decay*param`; `moment = momentum*moment + g`; `param -= lr*moment` (Nesterov:
    /// `param -= lr*(g + momentum*moment)`). `p.weight_decay` is the parameter's own (0 for the
    /// parameters excluded from decay, see `optim::decays`). Errors: a buffer too short
    /// ([`crate::Error::Shape`]); `loss_scale <= 0` or `weight_decay < 0`
    /// ([`crate::Error::Invalid`]).
    fn momentum_update(
        &self,
        p: MomentumParams,
        param: &mut Self::Buffer,
        grad: &Self::Buffer,
        moment: &mut Self::Buffer,
        len: usize,
    ) -> Result<()>;

    /// Device-lr mode, for a step captured once and replayed (issue 14 item 6): with `enabled`,
    /// [`Backend::momentum_update_group`] reads the learning rate from device memory the
    /// backend owns, set before each step by [`Backend::stage_lr`], instead of taking `p.lr` as
    /// a launch argument (which a replayed graph would freeze at the captured step's value).
    /// Turn it on before the first step (it may allocate). Eager steps leave it off: their
    /// update takes fewer launches. Default (backends that cannot capture, the CPU): nothing to
    /// do, the update always uses `p.lr`. Ascend: errors on a product without the
    /// `aclnnForeach*` operators (the first-generation 910) with [`crate::Error::Invalid`].
    fn set_device_lr(&self, _enabled: bool) -> Result<()> {
        Ok(())
    }

    /// In device-lr mode, sets the learning rate `lr` (and the `momentum` its Nesterov term
    /// multiplies it by) that updates queued from now on read, without waiting for the device
    /// (Ascend: an asynchronous copy from pinned staging memory, ordered on the stream before
    /// the updates, or the replayed graph, that follow). The next group update must then be
    /// called with the same `lr` and `momentum` (checked). Call it outside a stream capture.
    /// Default: nothing to do. Errors: device-lr mode is off ([`crate::Error::Invalid`]).
    fn stage_lr(&self, _lr: f32, _momentum: f32) -> Result<()> {
        Ok(())
    }

    /// [`Backend::momentum_update`] of every parameter of `group`, all with the settings `p`
    /// (one MindSpore parameter group: the same learning rate, momentum, weight decay and loss
    /// scale). Afterwards each gradient holds what it held or a value derived from it (a fused
    /// optimizer overwrites it with the unscaled gradient, the device-lr path with
    /// `grad/loss_scale + weight_decay*param`): read it only before the update. Default: one
    /// `momentum_update` per parameter; Ascend A2/A3/950: one `aclnnFusedSgd` for the whole
    /// group, or in device-lr mode ([`Backend::set_device_lr`]) 3-6 `aclnnForeach*` launches per
    /// 48 parameters. Errors: as `momentum_update`; in device-lr mode also `p.lr`/`p.momentum`
    /// differing from the last [`Backend::stage_lr`] ([`crate::Error::Invalid`]).
    fn momentum_update_group(
        &self,
        p: MomentumParams,
        group: &mut [MomentumSlot<'_, Self::Buffer>],
    ) -> Result<()> {
        for s in group.iter_mut() {
            self.momentum_update(p, s.param, s.grad, s.moment, s.len)?;
        }
        Ok(())
    }

    /// Whether [`Backend::softmax_cross_entropy_on_device`] is implemented (Ascend: yes; the
    /// CPU reads its loss where it computes it, so it has no use for it).
    fn loss_on_device(&self) -> bool {
        false
    }

    /// [`Backend::softmax_cross_entropy_and_logits`] that leaves its results on the device, so
    /// that a step reads them only when it logs and can be captured: the smoothed targets
    /// (n x classes f32, [`CrossEntropyParams::smoothed_targets`]) are read from `targets.0`
    /// at value offset `targets.1` (a multiple of 8), and `out` receives the per-row losses
    /// and the f32 logits as [`CrossEntropyParams::on_device_layout`] says
    /// ([`CrossEntropyParams::read_on_device`] reads its host copy). `dlogits` as
    /// `softmax_cross_entropy`. Ascend: the same aclnn ops, in the same order, as
    /// `softmax_cross_entropy_and_logits`, so the same bits. Errors: a buffer too short or a
    /// misaligned offset ([`crate::Error::Shape`]); a backend without it (see
    /// [`Backend::loss_on_device`], [`crate::Error::Invalid`]).
    fn softmax_cross_entropy_on_device(
        &self,
        _p: CrossEntropyParams,
        _logits: &Self::Buffer,
        _targets: (&Self::Buffer, usize),
        _dlogits: &mut Self::Buffer,
        _out: &mut Self::Buffer,
    ) -> Result<()> {
        Err(crate::Error::Invalid(format!(
            "the {} backend keeps no loss on the device",
            self.name()
        )))
    }

    /// Starts recording the backend's device work into a graph instead of running it
    /// (stream capture: CANN's `aclmdlRICaptureBegin` on the backend's stream, as torch_npu's
    /// `NPUGraph`; CUDA's `cudaStreamBeginCapture`). Until [`Backend::capture_end`] nothing
    /// may synchronise or copy blockingly (a download fails and invalidates the capture). One
    /// graph per backend. Ascend: A2/A3 (and 950) with CANN >= 8.1; sources and error codes
    /// in `backend/ascend/graph.rs`. Errors: the backend or device cannot capture (CPU: no
    /// graphs; first-generation 910, CANN 8.0: `ACL_ERROR_RT_FEATURE_NOT_SUPPORT`); a graph
    /// already lives.
    fn capture_begin(&self) -> Result<()> {
        Err(crate::Error::Invalid(format!(
            "the {} backend cannot capture its work into a graph",
            self.name()
        )))
    }

    /// Ends the capture and keeps the recorded graph for [`Backend::graph_replay`]. The
    /// capture is over whatever the result; on an error nothing recorded ran, and the backend
    /// is ready to run the same work op by op. Errors: an invalidated capture (Ascend:
    /// `ACL_ERROR_RT_STREAM_CAPTURE_INVALIDATED`, after a synchronise or blocking copy during
    /// it), no capture begun.
    fn capture_end(&self) -> Result<()> {
        Err(crate::Error::Invalid(format!(
            "the {} backend cannot capture its work into a graph",
            self.name()
        )))
    }

    /// Queues the recorded graph once more (Ascend: `aclmdlRIExecuteAsync`), with the
    /// addresses and host values it was recorded with, on the current contents of its
    /// buffers; the host does not wait. Errors: no graph.
    fn graph_replay(&self) -> Result<()> {
        Err(crate::Error::Invalid(format!(
            "the {} backend holds no captured graph",
            self.name()
        )))
    }

    /// Destroys the graph, if any, after the replays queued before it have run; the memory it
    /// used may then serve other work. Must be called before freeing a buffer the graph uses.
    fn graph_destroy(&self) -> Result<()> {
        Ok(())
    }

    /// Whether a captured graph lives on the backend.
    fn graph_live(&self) -> bool {
        false
    }
}
