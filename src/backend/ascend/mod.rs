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

/// The arithmetic the backend computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Everything in float32 (MindSpore `amp_level: O0`). Convolutions and matrix products use
    /// `cubeMathType` KEEP_DTYPE on Ascend 910B and later; first-generation 910 cubes have no
    /// fp32 mode, so there ALLOW_FP32_DOWN_PRECISION is passed (cann.md §2.3, §2.5).
    Fp32,
    /// MindSpore AMP O2 (`amp_level: "O2"`, MindCV's recipes; `mindcv.md` §5): convolutions,
    /// Dense layers, pooling and activations in fp16 (weights cast from the fp32 master copy
    /// with `aclnnCast` before each use); BatchNorm in fp32 (its input cast up and its output
    /// cast back to fp16, MindSpore's `keep_batchnorm_fp32`); logits cast to fp32 for the loss;
    /// parameters, their gradients and the optimizer stay fp32 (so checkpoints are fp32). The
    /// fixed loss scale is the trainer's (`loss_scale`).
    Fp16,
}

/// Which max-pool operator the SoC has (cann.md §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoolOp {
    /// `aclnnMaxPool2dWithIndices` (+`Backward`): Ascend 910B (A2), 910_93 (A3) and later.
    WithIndices,
    /// `aclnnMaxPool2dWithMask` (+`Backward`): first-generation Ascend 910 too.
    WithMask,
}

/// The Ascend backend: one NPU, one stream, a caching allocator, aclnn operators.
pub struct AscendBackend {
    dev: Arc<DeviceShared>,
    precision: Precision,
    soc: String,
    pool_op: PoolOp,
    /// `cubeMathType` for fp32 convolutions and matrix products.
    cube_fp32: i8,
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

/// `cubeMathType` values (cann.md §2.3).
const KEEP_DTYPE: i8 = 0;
const ALLOW_FP32_DOWN_PRECISION: i8 = 1;

impl AscendBackend {
    /// Opens NPU `device_id` (0-based) computing in `precision`: loads CANN (`SENET_CANN_LIB`,
    /// `ASCEND_HOME_PATH`, the standard install paths, then the dynamic linker), runs `aclInit`
    /// once per process, binds the device with a new context and stream, and picks the operators
    /// the SoC supports (`aclrtGetSocName`: `MaxPool2dWithMask` on first-generation 910,
    /// `MaxPool2dWithIndices` elsewhere).
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
        let cann = runtime::init()?;
        let first_gen = runtime::is_first_gen_910(&soc);
        let has_indices = cann.opapi.aclnnMaxPool2dWithIndices.is_ok()
            && cann.opapi.aclnnMaxPool2dWithIndicesGetWorkspaceSize.is_ok();
        let pool_op = if first_gen || !has_indices {
            PoolOp::WithMask
        } else {
            PoolOp::WithIndices
        };
        Ok(AscendBackend {
            dev,
            precision,
            soc,
            pool_op,
            cube_fp32: if first_gen {
                ALLOW_FP32_DOWN_PRECISION
            } else {
                KEEP_DTYPE
            },
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

    /// `cubeMathType` for a cube op computing in `dtype`.
    fn cube(&self, dtype: DType) -> i8 {
        match dtype {
            DType::F32 => self.cube_fp32,
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

    fn max_pool2d_same(
        &self,
        pool: MaxPool2dParams,
        x: &AscendBuffer,
        xs: Shape4,
        y: &mut AscendBuffer,
    ) -> Result<Shape4> {
        pool::max_pool2d_same(self, pool, x, xs, y)
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

    fn max_pool2d_same_backward(
        &self,
        pool: MaxPool2dParams,
        x: &AscendBuffer,
        xs: Shape4,
        dy: &AscendBuffer,
        dx: &mut AscendBuffer,
    ) -> Result<()> {
        pool::max_pool2d_same_backward(self, pool, x, xs, dy, dx)
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
