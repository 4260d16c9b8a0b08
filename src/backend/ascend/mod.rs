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

/// The float32 cube switches, named after torch_npu's (`torch.npu.conv.allow_hf32`, default
/// True; `torch.npu.matmul.allow_hf32`, default False: torch_npu's `torch_npu/npu/backends.py`
/// getters and `EnvVariables.cpp:328,345`, `aclnn-contract.md` Part E). They choose the
/// `cubeMathType` of FLOAT convolutions (`aclnnConvolution`, `aclnnConvolutionBackward`) and
/// FLOAT matrix products (`aclnnMm`, `aclnnAddmm`) as torch_npu does, `map[(allow_hf32 << 1) |
/// cube_lacks_fp32]` (Part E; [`Precision::Fp32`] says what each computes):
///
/// | switch | A2 / A3 / 950 | first-generation 910 |
/// |---|---|---|
/// | on | USE_HF32 (3): HFLOAT32 | ALLOW_FP32_DOWN_PRECISION (1): FLOAT16 |
/// | off | KEEP_DTYPE (0): FLOAT | USE_FP16 (2): FLOAT16 |
///
/// They apply to [`Precision::Fp32`] only (O2 computes FLOAT16, where every mode is plain
/// FLOAT16). A mode the contract documents as unsupported on the device's product is refused
/// when the backend is created ([`AscendBackend::with_cube_math`]), never replaced: today that
/// is `conv_allow_hf32 = false` on A2/A3 (KEEP_DTYPE + FLOAT, aclnnConvolution.md:436).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CubeMath {
    /// HFLOAT32 for float32 convolutions (default true, torch_npu's `conv.allow_hf32`).
    pub conv_allow_hf32: bool,
    /// HFLOAT32 for float32 matrix products (default false, torch_npu's `matmul.allow_hf32`).
    pub matmul_allow_hf32: bool,
}

impl Default for CubeMath {
    fn default() -> CubeMath {
        CubeMath {
            conv_allow_hf32: true,
            matmul_allow_hf32: false,
        }
    }
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

/// `cubeMathType` values (aclnnConvolution.md:205-213).
const KEEP_DTYPE: i8 = 0;
const ALLOW_FP32_DOWN_PRECISION: i8 = 1;
const USE_FP16: i8 = 2;
const USE_HF32: i8 = 3;

/// The name of a `cubeMathType` value, for messages.
fn cube_name(mode: i8) -> &'static str {
    match mode {
        KEEP_DTYPE => "KEEP_DTYPE (0)",
        ALLOW_FP32_DOWN_PRECISION => "ALLOW_FP32_DOWN_PRECISION (1)",
        USE_FP16 => "USE_FP16 (2)",
        _ => "USE_HF32 (3)",
    }
}

/// torch_npu's `cubeMathType` for a FLOAT cube op given its `allow_hf32` switch on `product`
/// (`CalcuOpUtil.cpp:416-451`, `aclnn-contract.md` Part E): the first-generation 910 (no FP32
/// in the cube) takes the "allow FP32 to FP16" half of the table.
fn fp32_cube(product: Product, allow_hf32: bool) -> i8 {
    match (product == Product::Ascend910, allow_hf32) {
        (false, false) => KEEP_DTYPE,
        (true, false) => USE_FP16,
        (false, true) => USE_HF32,
        (true, true) => ALLOW_FP32_DOWN_PRECISION,
    }
}

/// The FLOAT `cubeMathType` cells `aclnn-contract.md` Part B marks `error`, per operator and
/// product, with the vendor doc lines that say so. Products not listed accept every mode the
/// backend can produce (950's KEEP_DTYPE forward cell is "doc silent", read as accepted).
const FLOAT_CUBE_ERRORS: &[(&str, Product, &[i8], &str)] = &[
    (
        "aclnnConvolution",
        Product::A2,
        &[KEEP_DTYPE],
        "aclnnConvolution.md:436-439 (Part A 1, Part F 5)",
    ),
    (
        "aclnnConvolution",
        Product::A3,
        &[KEEP_DTYPE],
        "aclnnConvolution.md:436-439 (Part A 1, Part F 5)",
    ),
    (
        "aclnnConvolution",
        Product::Ascend910,
        &[KEEP_DTYPE, USE_HF32],
        "aclnnConvolution legacy 910 row (Part A 3)",
    ),
    (
        "aclnnConvolutionBackward",
        Product::Ascend910,
        &[KEEP_DTYPE, USE_HF32],
        "aclnnConvolutionBackward.md:586-589 (Part A 3)",
    ),
    (
        "aclnnMm/aclnnAddmm",
        Product::Ascend910,
        &[KEEP_DTYPE, USE_HF32],
        "aclnnMm.md:150-155, aclnnAddmm&aclnnInplaceAddmm.md:219-223 (Part A 3)",
    ),
];

/// Ok if `ops` accept `mode` with FLOAT inputs on `product` per [`FLOAT_CUBE_ERRORS`].
/// `switch` is the [`CubeMath`] field that chose `mode`, `default` its default.
/// Errors: [`Error::Invalid`] naming the SoC, its product line, the operator, the mode, the
/// switch and the contract section.
fn check_fp32_cube(
    soc: &str,
    product: Product,
    ops: &[&str],
    mode: i8,
    (switch, default): (&str, bool),
) -> Result<()> {
    for &(op, p, modes, src) in FLOAT_CUBE_ERRORS {
        if p == product && modes.contains(&mode) && ops.contains(&op) {
            return Err(Error::Invalid(format!(
                "{switch} = {set} asks {op} for cubeMathType {mode} with FLOAT inputs, which \
                 {soc} (product line {product:?}) does not support \
                 (shared/reference/aclnn-contract.md, Part B {op} cubeMathType table; {src}). \
                 Keep the default ({switch} = {default}), or compute in float16 with amp_level O2",
                set = !default,
                mode = cube_name(mode),
            )));
        }
    }
    Ok(())
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
        let conv_fp32_cube = fp32_cube(product, math.conv_allow_hf32);
        let mm_fp32_cube = fp32_cube(product, math.matmul_allow_hf32);
        if precision == Precision::Fp32 {
            let conv_ops = ["aclnnConvolution", "aclnnConvolutionBackward"];
            let conv_switch = ("conv_allow_hf32", CubeMath::default().conv_allow_hf32);
            check_fp32_cube(&soc, product, &conv_ops, conv_fp32_cube, conv_switch)?;
            let mm_ops = ["aclnnMm/aclnnAddmm"];
            let mm_switch = ("matmul_allow_hf32", CubeMath::default().matmul_allow_hf32);
            check_fp32_cube(&soc, product, &mm_ops, mm_fp32_cube, mm_switch)?;
        }
        let dev = DeviceShared::new(device_id)?;
        let fused_sgd = matches!(product, Product::A2 | Product::A3 | Product::Ascend950);
        // The loss scale's device block is allocated here, before any other: taken from the
        // cache during the first step, it would make the second step allocate.
        let grad_scale = if fused_sgd {
            Some(dev.enter()?.alloc(4)?)
        } else {
            None
        };
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

    /// `cubeMathType` for a convolution (either direction) computing in `dtype`: the
    /// [`CubeMath`] choice for FLOAT ([`Precision::Fp32`] says why), KEEP_DTYPE otherwise.
    fn conv_cube(&self, dtype: DType) -> i8 {
        match dtype {
            DType::F32 => self.conv_fp32_cube,
            _ => KEEP_DTYPE,
        }
    }

    /// `cubeMathType` for a matrix product (`aclnnMm`, `aclnnAddmm`) computing in `dtype`.
    fn mm_cube(&self, dtype: DType) -> i8 {
        match dtype {
            DType::F32 => self.mm_fp32_cube,
            _ => KEEP_DTYPE,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp32_cube_follows_torch_npus_table() {
        // CalcuOpUtil.cpp:416-451 (aclnn-contract.md Part E): (allow_hf32 << 1) | no_fp32_cube.
        for p in [Product::A2, Product::A3, Product::Ascend950] {
            assert_eq!(fp32_cube(p, true), USE_HF32);
            assert_eq!(fp32_cube(p, false), KEEP_DTYPE);
        }
        assert_eq!(
            fp32_cube(Product::Ascend910, true),
            ALLOW_FP32_DOWN_PRECISION
        );
        assert_eq!(fp32_cube(Product::Ascend910, false), USE_FP16);
    }

    #[test]
    fn only_the_documented_float_cube_errors_are_refused() {
        let conv = ["aclnnConvolution", "aclnnConvolutionBackward"];
        let mm = ["aclnnMm/aclnnAddmm"];
        let sw = ("conv_allow_hf32", true);
        for p in [Product::A2, Product::A3] {
            let err = check_fp32_cube("Ascend910B1", p, &conv, KEEP_DTYPE, sw).unwrap_err();
            let text = err.to_string();
            for part in [
                "conv_allow_hf32 = false",
                "aclnnConvolution for cubeMathType KEEP_DTYPE (0)",
                "Ascend910B1",
                "aclnnConvolution.md:436-439",
            ] {
                assert!(text.contains(part), "{part} not in {text}");
            }
            // The backward alone, and the matrix products, accept FLOAT + KEEP_DTYPE there.
            check_fp32_cube("x", p, &conv[1..], KEEP_DTYPE, sw).unwrap();
            check_fp32_cube("x", p, &mm, KEEP_DTYPE, sw).unwrap();
            check_fp32_cube("x", p, &conv, USE_HF32, sw).unwrap();
            check_fp32_cube("x", p, &mm, USE_HF32, sw).unwrap();
        }
        check_fp32_cube("x", Product::Ascend950, &conv, KEEP_DTYPE, sw).unwrap();
        // The 910's error cells (KEEP_DTYPE, USE_HF32) are never what its switches produce.
        for allow in [true, false] {
            let mode = fp32_cube(Product::Ascend910, allow);
            check_fp32_cube("x", Product::Ascend910, &conv, mode, sw).unwrap();
            check_fp32_cube("x", Product::Ascend910, &mm, mode, sw).unwrap();
            for bad in [KEEP_DTYPE, USE_HF32] {
                assert!(check_fp32_cube("x", Product::Ascend910, &mm, bad, sw).is_err());
            }
        }
    }
}
