//! The Ascend NPU backend: [`Backend`] on Huawei's CANN C API (ACL runtime + aclnn single
//! operators), loaded at run time through `senet-cann-sys` (`shared/reference/cann.md`).
//!
//! Layers, after cudarc: `sys` (raw bindgen structs) → `error` (codes to [`Error`]s) →
//! RAII types (`runtime`: context, [`Stream`], [`Event`]; `memory`: caching allocator and
//! blocks; `tensor`: aclnn argument objects) → `op` (the two-phase aclnn call, once) → the op
//! files by family (`conv`, `pool`, `dense`, `norm`, `elementwise`, `loss`, `optim`; the buffer
//! entry points in `buffer`), each op a function named as the [`Backend`] method it implements →
//! [`AscendBackend`], whose trait impl only calls them. The modules are private; what the rest
//! of senet and its users need is re-exported here ([`AscendBackend`], [`AscendBuffer`],
//! [`Precision`], [`DType`], [`Event`], [`Stream`], [`HcclComm`], [`devices`]).
//!
//! Everything runs on one stream per backend, in order; host reads (`download`, the loss)
//! synchronise it. The backend may be shared between threads (`Send + Sync`): each entry point
//! locks the device and makes its context current on the calling thread.
//!
//! Precision ([`Precision`]): `Fp32` computes everything in float32 (the mode the golden files
//! check); `Fp16` is MindSpore's AMP level O2 as MindCV trains with it (see [`Precision::Fp16`]).
mod buffer;
mod conv;
mod dense;
mod device;
mod elementwise;
mod error;
mod geometry;
mod hccl;
mod loss;
mod memory;
mod norm;
mod op;
mod optim;
mod pool;
mod runtime;
mod tensor;

use std::sync::Arc;

pub use buffer::AscendBuffer;
pub use hccl::HcclComm;
pub(crate) use hccl::ROOT_INFO_BYTES;
pub use runtime::{devices, DevicesReport, Event, Stream};
pub use tensor::DType;

use super::{
    Backend, BatchNormBackward, BatchNormForward, BatchNormGrads, BatchStats, Conv2dForward,
    Conv2dShape, CrossEntropyParams, LinearForward, LinearGrads, LinearShape, MaxPool2dParams,
    MomentumParams, MovingStats, SavedStats, SeGrads, Shape4,
};
use crate::{Error, Result};
use device::DeviceShared;
use runtime::Product;

/// The arithmetic the backend computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Every tensor in float32 (MindSpore `amp_level: O0`), computed as the vendor documents
    /// FLOAT cube work on each product (`shared/reference/aclnn-contract.md`):
    ///
    /// * Convolutions (forward and both gradients) on A2/A3 pass `cubeMathType` USE_HF32, as
    ///   torch_npu does by default (`torch.npu.conv.allow_hf32` defaults to True; Part A 1,
    ///   Part E). KEEP_DTYPE is documented unsupported for a FLOAT forward convolution there
    ///   (aclnnConvolution.md:436-439; the backward's doc allows it, Part F, but one mode for
    ///   both directions keeps the gradient the derivative of the forward that ran). HF32 rounds
    ///   each operand to 11 mantissa bits (relative error <= 2^-12 instead of fp32's 2^-24),
    ///   multiplies exactly and accumulates in fp32: a convolution output is off by at most about
    ///   `2^-11 * Σ|x||w|` over its taps, against `k * 2^-24 * Σ|x||w|` in true fp32.
    /// * Matrix products (Dense) on A2/A3 pass KEEP_DTYPE: true fp32 (Part A 2; torch_npu's
    ///   default, `matmul.allow_hf32 = False`).
    /// * First-generation 910: the cube has no FP32; ALLOW_FP32_DOWN_PRECISION makes the
    ///   convolution gradients and the matrix products compute in FLOAT16 (Part A 3;
    ///   KEEP_DTYPE and USE_HF32 are errors there), and the forward convolution exists only in
    ///   CANN 8.0, FLOAT16 as well. So on that product `Fp32` is fp16 arithmetic in the cube
    ///   with fp32 tensors, the rest (BatchNorm, the loss, the optimizer) fp32.
    Fp32,
    /// MindSpore AMP O2 (`amp_level: "O2"`, MindCV's recipes; `mindcv.md` §5): convolutions,
    /// Dense layers, pooling and activations in fp16 (weights cast from the fp32 master copy
    /// with `aclnnCast` before each use); BatchNorm in fp32 (its input cast up and its output
    /// cast back to fp16, MindSpore's `keep_batchnorm_fp32`); logits cast to fp32 for the loss;
    /// parameters, their gradients and the optimizer stay fp32 (so checkpoints are fp32). The
    /// fixed loss scale is the trainer's (`loss_scale`).
    Fp16,
}

/// Which max-pool operator pair the backend uses (`aclnn-contract.md` Part A 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoolOp {
    /// `aclnnMaxPool2dWithIndices` (+`Backward`) with INT32 indices: Ascend 950, where the
    /// mask pair is not supported (aclnnMaxPool2dWithMask.md:8) and the indices backward takes
    /// FLOAT16 too (aclnnMaxPool2dWithIndicesBackward.md:214-217).
    WithIndices,
    /// `aclnnMaxPool2dWithMask` (+`Backward`): first-generation 910 (which has no
    /// WithIndices), A2 and A3, whose WithIndices backward takes only FLOAT with INT32 indices
    /// (aclnnMaxPool2dWithIndicesBackward.md:221-224), so O2 could not train through it. The
    /// mask pair takes FLOAT and FLOAT16 in both directions there; torch_npu uses it on these
    /// SoCs too (MaxPool2dWithIndicesKernelNpuOpApi.cpp:130-143).
    WithMask,
}

/// The Ascend backend: one NPU, one stream, a caching allocator, aclnn operators.
pub struct AscendBackend {
    dev: Arc<DeviceShared>,
    precision: Precision,
    soc: String,
    product: Product,
    pool_op: PoolOp,
}

impl std::fmt::Debug for AscendBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AscendBackend")
            .field("device", &self.dev.device_id())
            .field("soc", &self.soc)
            .field("precision", &self.precision)
            .finish()
    }
}

/// `cubeMathType` values (aclnnConvolution.md:205-213).
const KEEP_DTYPE: i8 = 0;
const ALLOW_FP32_DOWN_PRECISION: i8 = 1;
const USE_HF32: i8 = 3;

impl AscendBackend {
    /// Opens NPU `device_id` (0-based) computing in `precision`: loads CANN (`SENET_CANN_LIB`,
    /// `ASCEND_HOME_PATH`, the standard install paths, then the dynamic linker), runs `aclInit`
    /// once per process, binds the device with a new context and stream, and picks the operators
    /// and cube modes the SoC's product line is documented to support (`aclrtGetSocName`;
    /// [`PoolOp`], [`Precision::Fp32`]).
    ///
    /// Errors: [`Error::DeviceUnavailable`] when CANN cannot be loaded (the message lists every
    /// place tried and says to source `set_env.sh`) or lacks a runtime symbol;
    /// [`Error::Invalid`] for a negative id or one not below the device count;
    /// [`Error::Device`] when CANN refuses a call (e.g. `aclrtSetDevice`).
    pub fn new(device_id: i32, precision: Precision) -> Result<AscendBackend> {
        runtime::init()?;
        let count = runtime::device_count()?;
        if device_id < 0 || device_id as u32 >= count {
            return Err(Error::Invalid(format!(
                "Ascend device {device_id} does not exist ({count} device(s) visible)"
            )));
        }
        let soc = runtime::soc_name()?;
        let dev = DeviceShared::new(device_id)?;
        let product = runtime::product(&soc);
        let pool_op = if product == Product::Ascend950 {
            PoolOp::WithIndices
        } else {
            PoolOp::WithMask
        };
        Ok(AscendBackend {
            dev,
            precision,
            soc,
            product,
            pool_op,
        })
    }

    /// The SoC name CANN reports (`aclrtGetSocName`), e.g. `Ascend910B1`.
    pub fn soc_name(&self) -> &str {
        &self.soc
    }

    /// The device id.
    pub fn device_id(&self) -> i32 {
        self.dev.device_id()
    }

    /// The precision the backend computes in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Device memory held: (blocks in use, bytes in use, bytes cached for reuse).
    pub fn memory_stats(&self) -> (usize, usize, usize) {
        self.dev.memory_stats()
    }

    /// Waits for all work queued on the backend's stream. Errors: a failure of queued work.
    pub fn synchronize(&self) -> Result<()> {
        self.dev.enter()?.sync()
    }

    /// A new event in the backend's context, for timing its work: [`AscendBackend::record`]
    /// two events around the work, [`Event::synchronize`] the second, then
    /// [`Event::elapsed_ms`]. The event does not keep the device open: drop it before the
    /// backend and its buffers. Errors: `aclrtCreateEvent` failing.
    pub fn event(&self) -> Result<Event> {
        let _ctx = self.dev.enter()?;
        Event::new(self.dev.context())
    }

    /// Records `event` at the current end of the backend's stream (`aclrtRecordEvent`).
    /// Errors: the call failing (e.g. an event of another context).
    pub fn record(&self, event: &Event) -> Result<()> {
        let ctx = self.dev.enter()?;
        event.record(ctx.stream_ref())
    }

    /// The dtype convolutions, Dense layers, pooling and activations compute in.
    fn cd(&self) -> DType {
        match self.precision {
            Precision::Fp32 => DType::F32,
            Precision::Fp16 => DType::F16,
        }
    }

    /// `err` from `aclnnConvolution`, with the CANN release a first-generation 910 needs named
    /// when that is the likely cause: the forward convolution is documented on this product
    /// only up to CANN 8.0 (the CANN 8.0.0 page lists it; the current aclnnConvolution.md:23
    /// says 「Atlas 训练系列产品：不支持」; `aclnn-contract.md` Part A 3, Part F), and a newer
    /// CANN refuses it with ACLNN_ERR_PARAM_INVALID. senet does not refuse it itself: the
    /// vendor implementation may still accept the FLOAT16 convolution (Part A 3), and the
    /// installed CANN's version is not reliably readable (`aclrtGetVersion` is the ACL API
    /// version, not the release).
    fn first_gen_conv_hint(&self, err: Error) -> Error {
        match err {
            Error::Device {
                call,
                code: code @ 161002,
                name,
                message,
            } if self.product == Product::Ascend910 => Error::Device {
                call,
                code,
                name,
                message: format!(
                    "{message} [{soc} is a first-generation Ascend 910: aclnnConvolution is \
                     documented for it only up to CANN 8.0 (later releases list it as \
                     unsupported, aclnnConvolution.md:23); install CANN 8.0 to run senet on \
                     this NPU]",
                    soc = self.soc
                ),
            },
            e => e,
        }
    }

    /// `cubeMathType` for a convolution (either direction) computing in `dtype`
    /// ([`Precision::Fp32`] says why).
    fn conv_cube(&self, dtype: DType) -> i8 {
        match (dtype, self.product) {
            (DType::F32, Product::Ascend910) => ALLOW_FP32_DOWN_PRECISION,
            (DType::F32, _) => USE_HF32,
            _ => KEEP_DTYPE,
        }
    }

    /// `cubeMathType` for a matrix product (`aclnnMm`, `aclnnAddmm`) computing in `dtype`.
    fn mm_cube(&self, dtype: DType) -> i8 {
        match (dtype, self.product) {
            (DType::F32, Product::Ascend910) => ALLOW_FP32_DOWN_PRECISION,
            _ => KEEP_DTYPE,
        }
    }
}

impl Backend for AscendBackend {
    type Buffer = AscendBuffer;

    fn name(&self) -> &'static str {
        "ascend"
    }

    fn alloc(&self, len: usize) -> Result<AscendBuffer> {
        buffer::alloc(self, len)
    }

    fn upload(&self, host: &[f32]) -> Result<AscendBuffer> {
        buffer::upload(self, host)
    }

    fn download(&self, buf: &AscendBuffer, out: &mut [f32]) -> Result<()> {
        buffer::download(self, buf, out)
    }

    fn write(&self, buf: &mut AscendBuffer, host: &[f32]) -> Result<()> {
        buffer::write(self, buf, host)
    }

    fn conv2d(
        &self,
        f: Conv2dForward<'_, AscendBuffer>,
        x: &AscendBuffer,
        y: &mut AscendBuffer,
    ) -> Result<Shape4> {
        conv::conv2d(self, f, x, y)
    }

    fn max_pool2d(
        &self,
        pool: MaxPool2dParams,
        x: &AscendBuffer,
        xs: Shape4,
        y: &mut AscendBuffer,
    ) -> Result<Shape4> {
        pool::max_pool2d(self, pool, x, xs, y)
    }

    fn global_avg_pool(&self, x: &AscendBuffer, xs: Shape4, y: &mut AscendBuffer) -> Result<()> {
        pool::global_avg_pool(self, x, xs, y)
    }

    fn linear(
        &self,
        f: LinearForward<'_, AscendBuffer>,
        x: &AscendBuffer,
        y: &mut AscendBuffer,
    ) -> Result<()> {
        dense::linear(self, f, x, y)
    }

    fn se_scale_add_relu(
        &self,
        x: &mut AscendBuffer,
        xs: Shape4,
        gate: &AscendBuffer,
        shortcut: &AscendBuffer,
    ) -> Result<()> {
        elementwise::se_scale_add_relu(self, x, xs, gate, shortcut)
    }

    fn conv2d_backward_data(
        &self,
        conv: Conv2dShape,
        w: &AscendBuffer,
        dy: &AscendBuffer,
        ys: Shape4,
        dx: &mut AscendBuffer,
    ) -> Result<()> {
        conv::conv2d_backward_data(self, conv, w, dy, ys, dx)
    }

    fn conv2d_backward_filter(
        &self,
        conv: Conv2dShape,
        x: &AscendBuffer,
        dy: &AscendBuffer,
        ys: Shape4,
        dw: &mut AscendBuffer,
        accumulate: bool,
    ) -> Result<()> {
        conv::conv2d_backward_filter(self, conv, x, dy, ys, dw, accumulate)
    }

    fn linear_backward(
        &self,
        shape: LinearShape,
        x: &AscendBuffer,
        w: &AscendBuffer,
        dy: &AscendBuffer,
        grads: LinearGrads<'_, AscendBuffer>,
    ) -> Result<()> {
        dense::linear_backward(self, shape, x, w, dy, grads)
    }

    fn max_pool2d_backward(
        &self,
        pool: MaxPool2dParams,
        x: &AscendBuffer,
        xs: Shape4,
        dy: &AscendBuffer,
        dx: &mut AscendBuffer,
    ) -> Result<()> {
        pool::max_pool2d_backward(self, pool, x, xs, dy, dx)
    }

    fn global_avg_pool_backward(
        &self,
        dy: &AscendBuffer,
        xs: Shape4,
        dx: &mut AscendBuffer,
    ) -> Result<()> {
        pool::global_avg_pool_backward(self, dy, xs, dx)
    }

    fn add_assign(&self, dst: &mut AscendBuffer, src: &AscendBuffer, len: usize) -> Result<()> {
        elementwise::add_assign(self, dst, src, len)
    }

    fn axpby(
        &self,
        y: &mut AscendBuffer,
        x: &AscendBuffer,
        len: usize,
        a: f32,
        b: f32,
    ) -> Result<()> {
        elementwise::axpby(self, y, x, len, a, b)
    }

    fn scale(&self, x: &mut AscendBuffer, len: usize, factor: f32) -> Result<()> {
        elementwise::scale(self, x, len, factor)
    }

    fn sum_squares(&self, x: &AscendBuffer, len: usize) -> Result<f64> {
        elementwise::sum_squares(self, x, len)
    }

    fn copy(&self, src: &AscendBuffer, dst: &mut AscendBuffer, len: usize) -> Result<()> {
        elementwise::copy(self, src, dst, len)
    }

    fn batch_norm_train(
        &self,
        bn: BatchNormForward<'_, AscendBuffer>,
        x: &AscendBuffer,
        stats: BatchStats<'_, AscendBuffer>,
        y: &mut AscendBuffer,
    ) -> Result<()> {
        norm::batch_norm_train(self, bn, x, stats, y)
    }

    fn batch_norm_backward(
        &self,
        bn: BatchNormBackward<'_, AscendBuffer>,
        saved: SavedStats<'_, AscendBuffer>,
        grads: BatchNormGrads<'_, AscendBuffer>,
    ) -> Result<()> {
        norm::batch_norm_backward(self, bn, saved, grads)
    }

    fn batch_norm_frozen(
        &self,
        bn: BatchNormForward<'_, AscendBuffer>,
        x: &AscendBuffer,
        moving: MovingStats<'_, AscendBuffer>,
        y: &mut AscendBuffer,
    ) -> Result<()> {
        norm::batch_norm_frozen(self, bn, x, moving, y)
    }

    fn batch_norm_frozen_backward(
        &self,
        bn: BatchNormBackward<'_, AscendBuffer>,
        moving: MovingStats<'_, AscendBuffer>,
        grads: BatchNormGrads<'_, AscendBuffer>,
    ) -> Result<()> {
        norm::batch_norm_frozen_backward(self, bn, moving, grads)
    }

    fn relu_backward(&self, y: &AscendBuffer, dy: &mut AscendBuffer, len: usize) -> Result<()> {
        elementwise::relu_backward(self, y, dy, len)
    }

    fn se_scale_add_relu_backward(
        &self,
        x: &AscendBuffer,
        xs: Shape4,
        gate: &AscendBuffer,
        out: &AscendBuffer,
        dout: &AscendBuffer,
        grads: SeGrads<'_, AscendBuffer>,
    ) -> Result<()> {
        elementwise::se_scale_add_relu_backward(self, x, xs, gate, out, dout, grads)
    }

    fn sigmoid_backward(&self, s: &AscendBuffer, dy: &mut AscendBuffer, len: usize) -> Result<()> {
        elementwise::sigmoid_backward(self, s, dy, len)
    }

    fn softmax_cross_entropy(
        &self,
        p: CrossEntropyParams,
        logits: &AscendBuffer,
        labels: &[usize],
        dlogits: &mut AscendBuffer,
    ) -> Result<f64> {
        loss::softmax_cross_entropy(self, p, logits, labels, dlogits)
    }

    fn momentum_update(
        &self,
        p: MomentumParams,
        param: &mut AscendBuffer,
        grad: &AscendBuffer,
        moment: &mut AscendBuffer,
        len: usize,
    ) -> Result<()> {
        optim::momentum_update(self, p, param, grad, moment, len)
    }
}
