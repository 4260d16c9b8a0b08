//! The CPU backend: f32 NCHW, convolutions as im2col (or a direct 1x1) + GEMM from the `gemm`
//! crate, memory-bound loops in the C kernels of `kernels/cpu/`, threads from a rayon pool.
//! On x86_64 CPUs with AVX-512, convolutions run instead on the native GEMM of
//! `kernels/cpu/sgemm_avx512.c` with the im2col fused into its packing (`conv/avx512.rs`), and
//! 3x3 stride-1 convs by Winograd F(4x4, 3x3) (`conv/winograd/`) unless
//! [`Backend::set_fast_conv`] turned it off.
//!
//! Files by op family, each op a function named as the [`Backend`] method it implements:
//! `conv` (forward, fused conv + pool, `conv/backward.rs`), `pool`, `dense`, `norm`,
//! `elementwise` (SE, activation backwards, buffer arithmetic), `loss`, `optim`; below them the
//! C kernel wrappers (`kernels`), the `gemm`-crate products (`matmul`) and the AVX-512 GEMM
//! (`sgemm`).
//!
//! Parallel axis: a batch of several images is split across threads image by image (each
//! GEMM then runs single-threaded on its image); a single image is split inside its GEMMs.
//! A pooling that follows a conv (`conv2d_avg_pool`, `conv2d_max_pool`) runs on each image in
//! the task that computed it, while the image is still in L2/L3 rather than after the whole batch.
//! Scratch space (im2col columns) is one growing buffer per worker thread, reused across
//! layers and batches, so the steady state allocates nothing.
mod conv;
mod dense;
mod elementwise;
mod kernels;
mod loss;
mod matmul;
mod norm;
mod optim;
mod pool;
#[cfg(target_arch = "x86_64")]
mod sgemm;
mod switches;

/// Whether the batch-1 kernels run: the AVX-512 max pool (`kernels::max_pool2d`) and the
/// transposed product of small planes (`conv/batch1.rs`, through [`Backend::prepare_conv2d`]).
/// Needs the AVX-512 GEMM ([`sgemm::available`]); `SENET_CPU_B1=old` keeps the previous paths
/// (the scalar max pool, no prepared weights), for A/B runs of `cargo bench --bench layers` and
/// `senet bench`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn batch1_kernels() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| sgemm::available() && !batch1_path_off("old"))
}

/// Whether `SENET_CPU_B1` (a comma-separated list, read once) names `word`: batch-1 paths
/// turned off for A/B runs (`old`: all of them; `nowino`: `conv/winograd_b1.rs`; `nolocal`:
/// `dense.rs`'s single rows on the calling thread).
pub(crate) fn batch1_path_off(word: &str) -> bool {
    static OFF: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    OFF.get_or_init(|| {
        let v = std::env::var("SENET_CPU_B1").unwrap_or_default();
        v.split(',').map(|w| w.trim().to_string()).collect()
    })
    .iter()
    .any(|w| w == word)
}

/// Deterministic test values in [-1, 1) (xorshift of `seed`).
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

use super::{
    check_len, Backend, BatchNormBackward, BatchNormForward, BatchNormGrads, BatchStats,
    Conv2dForward, Conv2dShape, CrossEntropyParams, LinearForward, LinearGrads, LinearShape,
    MaxPool2dParams, MomentumParams, MovingStats, SavedStats, SeGrads, Shape4,
};
use crate::{Error, Result};

/// The CPU backend. Owns its rayon thread pool.
pub struct CpuBackend {
    pool: rayon::ThreadPool,
    threads: usize,
    /// 3x3 stride-1 convs by Winograd F(4x4, 3x3) ([`Backend::set_fast_conv`]).
    winograd: bool,
    /// The Winograd-transformed weights of the conv running (one buffer, reused).
    winograd_weights: std::sync::Mutex<Vec<f32>>,
    /// Conv data gradients by im2col GEMM + col2im only
    /// ([`CpuBackend::set_legacy_conv_backward`]).
    legacy_conv_backward: bool,
    /// Data gradients of 3x3 stride-1 convs by Winograd, whatever [`Backend::set_fast_conv`]
    /// says ([`CpuBackend::set_winograd_data_gradient`]).
    winograd_data_gradient: bool,
    /// Conv filter gradients on the `gemm` crate rather than senet's AVX-512 GEMM
    /// ([`CpuBackend::set_legacy_filter_gradient`]).
    legacy_filter_gradient: bool,
    /// Filter gradients on senet's GEMM with each image's columns gathered, then copied beside
    /// the others ([`CpuBackend::set_legacy_filter_gather`]).
    legacy_filter_gather: bool,
    /// The training step's non-GEMM ops on their previous kernels
    /// ([`CpuBackend::set_legacy_train_kernels`]).
    legacy_train_kernels: bool,
    /// 3x3 stride-1 convs by Winograd F(2x2, 3x3) when [`Backend::set_fast_conv`] keeps
    /// F(4x4, 3x3) off ([`CpuBackend::set_winograd_training_forward`]).
    winograd_training_forward: bool,
    /// [`Backend::run_ops`] runs its closure on a pool thread ([`CpuBackend::set_ops_in_pool`]).
    ops_in_pool: bool,
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBackend")
            .field("threads", &self.threads)
            .finish()
    }
}

impl CpuBackend {
    /// A backend running on `threads` threads (0 = one per available core).
    /// Errors: more than [`crate::MAX_THREADS`] threads, the pool cannot be created, or a
    /// `SENET_CPU_*` environment variable senet does not know or with a value its switch does
    /// not accept (`switches.rs`: e.g. `SENET_CPU_DGRAD=direct`, `SENET_CPU_WGRAD=gemm-crate`).
    pub fn new(threads: usize) -> Result<CpuBackend> {
        switches::check_env()?;
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        if threads > crate::MAX_THREADS {
            return Err(Error::Invalid(format!(
                "{threads} CPU threads asked for; at most {} are allowed",
                crate::MAX_THREADS
            )));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("senet-cpu-{i}"))
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start {threads} CPU threads: {e}")))?;
        let wgrad = std::env::var("SENET_CPU_WGRAD");
        Ok(CpuBackend {
            pool,
            threads,
            winograd: true,
            winograd_weights: std::sync::Mutex::new(Vec::new()),
            legacy_conv_backward: false,
            winograd_data_gradient: std::env::var("SENET_CPU_DGRAD").as_deref() != Ok("direct"),
            legacy_filter_gradient: wgrad.as_deref() == Ok("gemm-crate"),
            legacy_filter_gather: wgrad.as_deref() == Ok("sgemm-copy"),
            legacy_train_kernels: std::env::var("SENET_CPU_TRAIN").as_deref() == Ok("legacy"),
            winograd_training_forward: std::env::var("SENET_CPU_TRAIN_FWD").as_deref()
                != Ok("direct"),
            ops_in_pool: std::env::var("SENET_CPU_FORWARD").as_deref() == Ok("pool"),
        })
    }

    /// Takes every conv data gradient on the `gemm` crate as `Wᵀ·dY` + col2im (`true`), the
    /// only path before stride-1 data gradients became forward convs (`conv/backward.rs`); for
    /// benchmarks and tests that compare the two in one run (`benches/layers.rs`). Off by
    /// default.
    pub fn set_legacy_conv_backward(&mut self, on: bool) {
        self.legacy_conv_backward = on;
    }

    /// Takes the data gradient of 3x3 stride-1 convs, a forward conv of `dy`
    /// (`conv/backward.rs`), by Winograd F(4x4, 3x3) wherever its kernels compute the conv
    /// (`true`, the default; `SENET_CPU_DGRAD=direct` starts a backend with direct sums, for
    /// A/B runs), even when [`Backend::set_fast_conv`] keeps the forward direct as training
    /// does. Its rounding moves one training step's gradients by about 1e-5 relative against
    /// MindSpore's, inside the golden step's 1e-3 (`tests/train_step.rs`; the forward through
    /// Winograd moves them by 2e-3 to 5e-3). An image's data gradient is the same bits in any
    /// batch on any thread count, either way (`tests/batch_split.rs`); 2 data-parallel ranks
    /// of batch b stay within 1.1e-4 of one process of batch 2b after 3 steps (`tests/dist.rs`,
    /// `winograd_steps` in `tests/common/dist.rs` derives that bound), within 1e-5 with direct
    /// sums.
    pub fn set_winograd_data_gradient(&mut self, on: bool) {
        self.winograd_data_gradient = on;
    }

    /// Takes the conv filter gradients on the `gemm` crate, image by image (`true`; the path
    /// before `conv/wgrad.rs`; `SENET_CPU_WGRAD=gemm-crate` starts a backend with it), rather than
    /// on senet's AVX-512 GEMM (`false`, the default where the CPU has AVX-512). Both are direct
    /// f32 sums of the same products in different orders (within the same rounding bound); for
    /// A/B runs and tests.
    pub fn set_legacy_filter_gradient(&mut self, on: bool) {
        self.legacy_filter_gradient = on;
    }

    /// Where the filter gradient on senet's GEMM lays several images side by side (7x7 and
    /// 14x14 planes), gathers each image's columns into a buffer of their own and copies them
    /// beside the others (`true`: the path before the gather wrote them in place;
    /// `SENET_CPU_WGRAD=sgemm-copy` starts a backend with it) rather than gathering them
    /// straight into place (`false`, the default). The same values either way; for A/B runs.
    pub fn set_legacy_filter_gather(&mut self, on: bool) {
        self.legacy_filter_gather = on;
    }

    /// Runs the training step's non-GEMM ops on their previous kernels (`true`;
    /// `SENET_CPU_TRAIN=legacy` starts a backend with it): the scalar max-pool backward, which
    /// recomputes each window's argmax one window at a time, and the SE block's end into another
    /// buffer as a copy then the in-place op ([`Backend::se_scale_add_relu_into`]'s default),
    /// and the SE squeeze's gradient added through a buffer
    /// ([`Backend::global_avg_pool_backward_add`]'s default). Same results bit for bit either
    /// way; for A/B runs of `cargo bench --bench layers` and `senet bench --train`.
    pub fn set_legacy_train_kernels(&mut self, on: bool) {
        self.legacy_train_kernels = on;
    }

    /// Computes the forward of 3x3 stride-1 convs (at least 16 channels in and out, no groups)
    /// by Winograd F(2x2, 3x3) while [`Backend::set_fast_conv`] keeps F(4x4, 3x3) off, as
    /// [`crate::optim::TrainNet`] does (`true`, the default; `SENET_CPU_TRAIN_FWD=direct`
    /// starts a backend with direct sums, for A/B runs). 16 multiplications per 2x2 output
    /// tile and channel pair instead of 36; its transforms' coefficients are 0, ±1 and 1/2, so
    /// it rounds close to the direct sum: one seresnet18 training step's gradients are 1.2e-5
    /// relative from MindSpore's with it (1.1e-5 direct; 1e-3 allowed, `tests/train_step.rs`),
    /// where F(4x4, 3x3) in the forward moves them by 2e-3 to 5e-3. Chosen by the conv alone,
    /// so an image's output does not depend on its batch or the thread count.
    pub fn set_winograd_training_forward(&mut self, on: bool) {
        self.winograd_training_forward = on;
    }

    /// Where a forward conv may take Winograd: F(4x4, 3x3) where it pays
    /// ([`Backend::set_fast_conv`] on), else F(2x2, 3x3) by the conv alone
    /// ([`Self::set_winograd_training_forward`]), else nowhere.
    fn forward_winograd(&self) -> conv::WinogradUse {
        if self.winograd {
            conv::WinogradUse::Fast
        } else if self.winograd_training_forward {
            conv::WinogradUse::ByConv(conv::Tile::F2)
        } else {
            conv::WinogradUse::Off
        }
    }

    /// Whether [`Backend::run_ops`] runs its closure on one of the pool's threads (`true`;
    /// `SENET_CPU_FORWARD=pool` starts a backend so) or on the calling thread (`false`, the
    /// default), each op inside then handing its work to the pool and waiting for it. The same
    /// results either way. Off by default: on the loaded 2-core development machine the pass
    /// inside the pool measured slower than op by op (`benches/layers.rs`, `model`), though it
    /// halves the process's system time; to be decided on an idle machine.
    pub fn set_ops_in_pool(&mut self, on: bool) {
        self.ops_in_pool = on;
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether a batch of `n` images is split image by image across threads.
    fn split_batch(&self, n: usize) -> bool {
        n > 1 && self.threads > 1
    }
}

impl Backend for CpuBackend {
    type Buffer = Vec<f32>;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn set_fast_conv(&mut self, allowed: bool) {
        self.winograd = allowed;
    }

    fn run_ops<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        if self.ops_in_pool {
            // From a thread of the pool, every op's own `pool.install` runs in place.
            self.pool.install(f)
        } else {
            f()
        }
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn upload(&self, host: &[f32]) -> Result<Vec<f32>> {
        Ok(host.to_vec())
    }

    fn download(&self, buf: &Vec<f32>, out: &mut [f32]) -> Result<()> {
        check_len("download", buf, out.len())?;
        out.copy_from_slice(&buf[..out.len()]);
        Ok(())
    }

    fn write(&self, buf: &mut Vec<f32>, host: &[f32]) -> Result<()> {
        check_len("write", buf, host.len())?;
        buf[..host.len()].copy_from_slice(host);
        Ok(())
    }

    fn conv2d(
        &self,
        f: Conv2dForward<'_, Vec<f32>>,
        x: &Vec<f32>,
        y: &mut Vec<f32>,
    ) -> Result<Shape4> {
        conv::conv2d(self, f, x, y)
    }

    fn prepare_conv2d(&self, f: Conv2dForward<'_, Vec<f32>>) -> Result<Option<Vec<f32>>> {
        conv::prepare_conv2d(self, f)
    }

    fn max_pool2d(
        &self,
        pool: MaxPool2dParams,
        x: &Vec<f32>,
        xs: Shape4,
        y: &mut Vec<f32>,
    ) -> Result<Shape4> {
        pool::max_pool2d(self, pool, x, xs, y)
    }

    fn conv2d_max_pool(
        &self,
        f: Conv2dForward<'_, Vec<f32>>,
        x: &Vec<f32>,
        y: &mut Vec<f32>,
        pool: MaxPool2dParams,
        pooled: &mut Vec<f32>,
    ) -> Result<Shape4> {
        conv::conv2d_max_pool(self, f, x, y, pool, pooled)
    }

    fn global_avg_pool(&self, x: &Vec<f32>, xs: Shape4, y: &mut Vec<f32>) -> Result<()> {
        pool::global_avg_pool(self, x, xs, y)
    }

    fn conv2d_avg_pool(
        &self,
        f: Conv2dForward<'_, Vec<f32>>,
        x: &Vec<f32>,
        y: &mut Vec<f32>,
        pooled: &mut Vec<f32>,
    ) -> Result<Shape4> {
        conv::conv2d_avg_pool(self, f, x, y, pooled)
    }

    fn linear(&self, f: LinearForward<'_, Vec<f32>>, x: &Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        dense::linear(self, f, x, y)
    }

    fn se_scale_add_relu(
        &self,
        x: &mut Vec<f32>,
        xs: Shape4,
        gate: &Vec<f32>,
        shortcut: &Vec<f32>,
    ) -> Result<()> {
        elementwise::se_scale_add_relu(self, x, xs, gate, shortcut)
    }

    fn se_scale_add_relu_into(
        &self,
        x: &Vec<f32>,
        xs: Shape4,
        gate: &Vec<f32>,
        shortcut: &Vec<f32>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        if self.legacy_train_kernels {
            check_len("se_scale_add_relu output", out, xs.numel())?;
            elementwise::copy(x, out, xs.numel())?;
            return elementwise::se_scale_add_relu(self, out, xs, gate, shortcut);
        }
        elementwise::se_scale_add_relu_into(self, x, xs, gate, shortcut, out)
    }

    // ---- training: convolution, dense, pooling ----

    fn conv2d_backward_data(
        &self,
        conv: Conv2dShape,
        w: &Vec<f32>,
        dy: &Vec<f32>,
        ys: Shape4,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        conv::backward::conv2d_backward_data(self, conv, w, dy, ys, dx)
    }

    fn conv2d_backward_filter(
        &self,
        conv: Conv2dShape,
        x: &Vec<f32>,
        dy: &Vec<f32>,
        ys: Shape4,
        dw: &mut Vec<f32>,
        accumulate: bool,
    ) -> Result<()> {
        conv::backward::conv2d_backward_filter(self, conv, x, dy, ys, dw, accumulate)
    }

    fn linear_backward(
        &self,
        shape: LinearShape,
        x: &Vec<f32>,
        w: &Vec<f32>,
        dy: &Vec<f32>,
        grads: LinearGrads<'_, Vec<f32>>,
    ) -> Result<()> {
        dense::linear_backward(self, shape, x, w, dy, grads)
    }

    fn max_pool2d_backward(
        &self,
        pool: MaxPool2dParams,
        x: &Vec<f32>,
        xs: Shape4,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        pool::max_pool2d_backward(self, pool, x, xs, dy, dx)
    }

    fn global_avg_pool_backward(&self, dy: &Vec<f32>, xs: Shape4, dx: &mut Vec<f32>) -> Result<()> {
        pool::global_avg_pool_backward(self, dy, xs, dx)
    }

    fn global_avg_pool_backward_add(
        &self,
        dy: &Vec<f32>,
        xs: Shape4,
        dx: &mut Vec<f32>,
        scratch: &mut Vec<f32>,
    ) -> Result<()> {
        if self.legacy_train_kernels {
            self.global_avg_pool_backward(dy, xs, scratch)?;
            return self.add_assign(dx, scratch, xs.numel());
        }
        pool::global_avg_pool_backward_add(self, dy, xs, dx)
    }

    fn add_assign(&self, dst: &mut Vec<f32>, src: &Vec<f32>, len: usize) -> Result<()> {
        elementwise::add_assign(self, dst, src, len)
    }

    fn axpby(&self, y: &mut Vec<f32>, x: &Vec<f32>, len: usize, a: f32, b: f32) -> Result<()> {
        elementwise::axpby(y, x, len, a, b)
    }

    fn scale(&self, x: &mut Vec<f32>, len: usize, factor: f32) -> Result<()> {
        elementwise::scale(x, len, factor)
    }

    fn sum_squares(&self, x: &Vec<f32>, len: usize) -> Result<f64> {
        elementwise::sum_squares(x, len)
    }

    fn copy(&self, src: &Vec<f32>, dst: &mut Vec<f32>, len: usize) -> Result<()> {
        elementwise::copy(src, dst, len)
    }

    // ---- training: normalisation, activations, SE, loss, optimizer ----

    fn batch_norm_train(
        &self,
        bn: BatchNormForward<'_, Vec<f32>>,
        x: &Vec<f32>,
        stats: BatchStats<'_, Vec<f32>>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        norm::batch_norm_train(self, bn, x, stats, y)
    }

    fn batch_norm_backward(
        &self,
        bn: BatchNormBackward<'_, Vec<f32>>,
        saved: SavedStats<'_, Vec<f32>>,
        grads: BatchNormGrads<'_, Vec<f32>>,
    ) -> Result<()> {
        norm::batch_norm_backward(self, bn, saved, grads)
    }

    fn batch_norm_frozen(
        &self,
        bn: BatchNormForward<'_, Vec<f32>>,
        x: &Vec<f32>,
        moving: MovingStats<'_, Vec<f32>>,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        norm::batch_norm_frozen(self, bn, x, moving, y)
    }

    fn batch_norm_frozen_backward(
        &self,
        bn: BatchNormBackward<'_, Vec<f32>>,
        moving: MovingStats<'_, Vec<f32>>,
        grads: BatchNormGrads<'_, Vec<f32>>,
    ) -> Result<()> {
        norm::batch_norm_frozen_backward(self, bn, moving, grads)
    }

    fn relu_backward(&self, y: &Vec<f32>, dy: &mut Vec<f32>, len: usize) -> Result<()> {
        elementwise::relu_backward(self, y, dy, len)
    }

    fn se_scale_add_relu_backward(
        &self,
        x: &Vec<f32>,
        xs: Shape4,
        gate: &Vec<f32>,
        out: &Vec<f32>,
        dout: &Vec<f32>,
        grads: SeGrads<'_, Vec<f32>>,
    ) -> Result<()> {
        elementwise::se_scale_add_relu_backward(self, x, xs, gate, out, dout, grads)
    }

    fn sigmoid_backward(&self, s: &Vec<f32>, dy: &mut Vec<f32>, len: usize) -> Result<()> {
        elementwise::sigmoid_backward(self, s, dy, len)
    }

    fn softmax_cross_entropy(
        &self,
        p: CrossEntropyParams,
        logits: &Vec<f32>,
        labels: &[usize],
        dlogits: &mut Vec<f32>,
    ) -> Result<f64> {
        loss::softmax_cross_entropy(p, logits, labels, dlogits)
    }

    fn momentum_update(
        &self,
        p: MomentumParams,
        param: &mut Vec<f32>,
        grad: &Vec<f32>,
        moment: &mut Vec<f32>,
        len: usize,
    ) -> Result<()> {
        optim::momentum_update(self, p, param, grad, moment, len)
    }
}
