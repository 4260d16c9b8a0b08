//! The Ascend NPU backend: [`Backend`] on Huawei's CANN C API (ACL runtime + aclnn single
//! operators), loaded at run time through `senet-cann-sys` (`shared/reference/cann.md`).
//!
//! Layers, after cudarc: `sys` (raw bindgen structs) → `error` (codes to [`Error`]s) →
//! RAII types (`runtime`: context, [`Stream`], [`Event`]; `memory`: caching allocator and
//! blocks; `tensor`: aclnn argument objects) → `op` (the two-phase aclnn call, once; `cube`:
//! the FLOAT `cubeMathType` choice) → the op files by family (`conv`, `pool`, `dense`, `norm`,
//! `elementwise`, `loss`, `optim`; the buffer entry points in `buffer`, stream capture in
//! `graph`), each op a function named as the [`Backend`] method it implements →
//! [`AscendBackend`], whose trait impl only calls them. The modules are private; what the rest
//! of senet and its users need is re-exported here ([`AscendBackend`], [`AscendBuffer`],
//! [`Precision`], [`CubeMath`], [`DType`], [`Event`], [`Stream`], [`HcclComm`], [`devices`]).
//!
//! Everything runs on one stream per backend, in order; host reads (`download`, the loss)
//! synchronise it. The backend may be shared between threads (`Send + Sync`): each entry point
//! locks the device and makes its context current on the calling thread.
//!
//! Precision ([`Precision`]): `Fp32` computes everything in float32 (the mode the golden files
//! check); `Fp16` is MindSpore's AMP level O2 as MindCV trains with it (see [`Precision::Fp16`]).
mod buffer;
mod conv;
mod cube;
mod dense;
mod device;
mod elementwise;
mod error;
mod geometry;
mod graph;
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
pub use cube::CubeMath;
pub(crate) use hccl::ROOT_INFO_BYTES;
pub use hccl::{CommStream, HcclComm};
pub use runtime::{devices, DevicesReport, Event, Stream};
pub use tensor::DType;

use super::{
    Backend, BatchNormBackward, BatchNormForward, BatchNormGrads, BatchStats, Conv2dForward,
    Conv2dShape, CrossEntropyParams, LinearForward, LinearGrads, LinearShape, MaxPool2dParams,
    MomentumParams, MovingStats, SavedStats, SeGrads, Shape4,
};
use crate::{Error, Result};
use device::DeviceShared;
use pool::PoolOp;
use runtime::Product;

/// The arithmetic the backend computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Every tensor in float32 (MindSpore `amp_level: O0`), computed as the vendor documents
    /// FLOAT cube work on each product (`shared/reference/aclnn-contract.md`):
    ///
    /// * Convolutions (forward and both gradients) on A2/A3 pass `cubeMathType` USE_HF32 by
    ///   default, as torch_npu does (`torch.npu.conv.allow_hf32` defaults to True; Part A 1,
    ///   Part E; [`CubeMath::conv_allow_hf32`]). KEEP_DTYPE is documented unsupported for a FLOAT
    ///   forward convolution there (aclnnConvolution.md:436-439; the backward's doc allows it,
    ///   Part F 5, but one mode for both directions keeps the gradient the derivative of the
    ///   forward that ran), so turning the switch off is refused on A2/A3. HF32 rounds each
    ///   operand to 11 mantissa bits (relative error <= 2^-12 instead of fp32's 2^-24),
    ///   multiplies exactly and accumulates in fp32: a convolution output is off by at most about
    ///   `2^-11 * Σ|x||w|` over its taps, against `k * 2^-24 * Σ|x||w|` in true fp32.
    /// * Matrix products (Dense) on A2/A3 pass KEEP_DTYPE by default: true fp32 (Part A 2;
    ///   torch_npu's default, `matmul.allow_hf32 = False`); [`CubeMath::matmul_allow_hf32`]
    ///   asks for USE_HF32 instead (the same HF32 rounding as the convolutions).
    /// * First-generation 910: the cube has no FP32; ALLOW_FP32_DOWN_PRECISION (switch on) or
    ///   USE_FP16 (switch off, torch_npu's mapping) make the convolutions and the matrix
    ///   products compute in FLOAT16 either way (Part A 3; KEEP_DTYPE and USE_HF32 are errors
    ///   there), and the forward convolution exists only in CANN 8.0. So on that product `Fp32`
    ///   is fp16 arithmetic in the cube with fp32 tensors, the rest (BatchNorm, the loss, the
    ///   optimizer) fp32.
    Fp32,
    /// MindSpore AMP O2 (`amp_level: "O2"`, MindCV's recipes; `mindcv.md` §5): convolutions,
    /// Dense layers, pooling and activations in fp16 (weights cast from the fp32 master copy
    /// with `aclnnCast`, once per write of the master copy: the fp16 copy is kept with the
    /// buffer and serves the backward too); BatchNorm computing in fp32 (MindSpore's
    /// `keep_batchnorm_fp32`: fp32 per-channel tensors, the fp16 activations given to
    /// `aclnnBatchNorm` itself, which rounds its fp32 result once, as the cast after an fp32
    /// BatchNorm did; its backward in fp32); logits cast to fp32 for the loss;
    /// parameters, their gradients and the optimizer stay fp32 (so checkpoints are fp32). The
    /// fixed loss scale is the trainer's (`loss_scale`).
    Fp16,
}

/// The Ascend backend: one NPU, one stream, a caching allocator, aclnn operators.
pub struct AscendBackend {
    dev: Arc<DeviceShared>,
    precision: Precision,
    soc: String,
    product: Product,
    pool_op: PoolOp,
    /// `cubeMathType` of FLOAT convolutions, both directions ([`CubeMath`]).
    conv_fp32_cube: i8,
    /// `cubeMathType` of FLOAT matrix products ([`CubeMath`]).
    mm_fp32_cube: i8,
    /// Whether the product has `aclnnFusedSgd` (A2, A3, 950: aclnnFusedSgd.md:6-21).
    fused_sgd: bool,
    /// The loss scale on the device for `aclnnFusedSgd`'s `gradScaleOptional` (a FLOAT tensor
    /// of shape [1]), uploaded when it changes: (the scale, NaN before the first upload; its
    /// block).
    grad_scale: std::sync::Mutex<Option<(f32, memory::Block)>>,
    /// Whether the product has the foreach lists of device-lr mode (`aclnnForeachAddList`,
    /// `...AddListV2`, `...MulScalarV2`: A2, A3, 950; `aclnn-contract.md` "### aclnnForeach*").
    foreach: bool,
    /// The learning rate in device memory for a captured step ([`Backend::set_device_lr`]).
    device_lr: std::sync::Mutex<optim::DeviceLr>,
    /// The captured graph, if one lives (`graph.rs`; destroyed before the backend).
    graph: std::sync::Mutex<Option<graph::Graph>>,
}

impl Drop for AscendBackend {
    fn drop(&mut self) {
        // The graph's memory and argument objects are released with it (errors can only be
        // reported by CANN's log here).
        let _ = graph::destroy(self);
    }
}

impl std::fmt::Debug for AscendBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AscendBackend")
            .field("device", &self.dev.device_id())
            .field("soc", &self.soc)
            .field("precision", &self.precision)
            .field("conv_fp32_cube", &self.conv_fp32_cube)
            .field("mm_fp32_cube", &self.mm_fp32_cube)
            .finish()
    }
}

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
        AscendBackend::with_cube_math(device_id, precision, CubeMath::default())
    }

    /// [`AscendBackend::new`] with the float32 cube switches `math` ([`CubeMath`]).
    ///
    /// Errors: those of [`AscendBackend::new`], and [`Error::Invalid`] when `precision` is
    /// [`Precision::Fp32`] and a switch asks an operator for a `cubeMathType` the contract
    /// documents as unsupported with FLOAT on the device's product (the message names the SoC,
    /// the operator, the mode and the contract section).
    pub fn with_cube_math(
        device_id: i32,
        precision: Precision,
        math: CubeMath,
    ) -> Result<AscendBackend> {
        runtime::init()?;
        let count = runtime::device_count()?;
        if device_id < 0 || device_id as u32 >= count {
            return Err(Error::Invalid(format!(
                "Ascend device {device_id} does not exist ({count} device(s) visible)"
            )));
        }
        let soc = runtime::soc_name()?;
        let product = runtime::product(&soc);
        let (conv_fp32_cube, mm_fp32_cube) = cube::fp32_cubes(&soc, product, precision, math)?;
        let dev = DeviceShared::new(device_id)?;
        let fused_sgd = matches!(product, Product::A2 | Product::A3 | Product::Ascend950);
        // The loss scale's device block is allocated here, before any other: taken from the
        // cache during the first step, it would make the second step allocate.
        let grad_scale = if fused_sgd {
            Some(dev.enter()?.alloc(4)?)
        } else {
            None
        };
        Ok(AscendBackend {
            dev,
            precision,
            soc,
            product,
            pool_op: PoolOp::for_product(product),
            conv_fp32_cube,
            mm_fp32_cube,
            fused_sgd,
            grad_scale: std::sync::Mutex::new(grad_scale.map(|b| (f32::NAN, b))),
            foreach: fused_sgd,
            device_lr: std::sync::Mutex::new(optim::DeviceLr::default()),
            graph: std::sync::Mutex::new(None),
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
}

impl Backend for AscendBackend {
    type Buffer = AscendBuffer;

    fn name(&self) -> &'static str {
        "ascend"
    }

    fn counters(&self) -> Option<crate::backend::DeviceCounters> {
        Some(self.dev.counters())
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

    fn se_scale_add_relu_into(
        &self,
        x: &AscendBuffer,
        xs: Shape4,
        gate: &AscendBuffer,
        shortcut: &AscendBuffer,
        out: &mut AscendBuffer,
    ) -> Result<()> {
        elementwise::se_scale_add_relu_into(self, x, xs, gate, shortcut, out)
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

    fn sigmoid_backward_into(
        &self,
        s: &AscendBuffer,
        dy: &AscendBuffer,
        dx: &mut AscendBuffer,
        len: usize,
    ) -> Result<()> {
        elementwise::sigmoid_backward_into(self, s, dy, dx, len)
    }

    fn softmax_cross_entropy(
        &self,
        p: CrossEntropyParams,
        logits: &AscendBuffer,
        labels: &[usize],
        dlogits: &mut AscendBuffer,
    ) -> Result<f64> {
        loss::softmax_cross_entropy(self, p, logits, labels, dlogits, None)
    }

    fn softmax_cross_entropy_and_logits(
        &self,
        p: CrossEntropyParams,
        logits: &AscendBuffer,
        labels: &[usize],
        dlogits: &mut AscendBuffer,
        logits_out: &mut [f32],
    ) -> Result<f64> {
        crate::backend::check_logits_out(p, logits_out)?;
        loss::softmax_cross_entropy(self, p, logits, labels, dlogits, Some(logits_out))
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

    fn set_device_lr(&self, enabled: bool) -> Result<()> {
        optim::set_device_lr(self, enabled)
    }

    fn stage_lr(&self, lr: f32, momentum: f32) -> Result<()> {
        optim::stage_lr(self, lr, momentum)
    }

    fn momentum_update_group(
        &self,
        p: MomentumParams,
        group: &mut [crate::backend::MomentumSlot<'_, AscendBuffer>],
    ) -> Result<()> {
        optim::momentum_update_group(self, p, group)
    }

    fn loss_on_device(&self) -> bool {
        true
    }

    fn softmax_cross_entropy_on_device(
        &self,
        p: CrossEntropyParams,
        logits: &AscendBuffer,
        targets: (&AscendBuffer, usize),
        dlogits: &mut AscendBuffer,
        out: &mut AscendBuffer,
    ) -> Result<()> {
        loss::softmax_cross_entropy_on_device(self, p, logits, targets, dlogits, out)
    }

    fn capture_begin(&self) -> Result<()> {
        graph::capture_begin(self)
    }

    fn capture_end(&self) -> Result<()> {
        graph::capture_end(self)
    }

    fn graph_replay(&self) -> Result<()> {
        graph::replay(self)
    }

    fn graph_destroy(&self) -> Result<()> {
        graph::destroy(self)
    }

    fn graph_live(&self) -> bool {
        graph::live(self)
    }
}
