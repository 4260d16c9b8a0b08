//! The CPU backend: f32 NCHW, convolutions as im2col (or a direct 1x1) + GEMM from the `gemm`
//! crate, memory-bound loops in the C kernels of `kernels/cpu/`, threads from a rayon pool.
//! On x86_64 CPUs with AVX-512, convolutions run instead on the native GEMM of
//! `kernels/cpu/sgemm_avx512.c` with the im2col fused into its packing (`conv/avx512.rs`), and
//! 3x3 stride-1 convs by Winograd F(4x4, 3x3) (`conv/winograd.rs`) unless
//! [`Backend::set_fast_conv`] turned it off.
//!
//! Parallel axis: a batch of several images is split across threads image by image (each
//! GEMM then runs single-threaded on its image); a single image is split inside its GEMMs.
//! A pooling that follows a conv (`conv2d_avg_pool`, `conv2d_max_pool`) runs on each image in
//! the task that computed it, while the image is still in L2/L3 rather than after the whole batch.
//! Scratch space (im2col columns) is one growing buffer per worker thread, reused across
//! layers and batches, so the steady state allocates nothing.
mod accumulate;
mod conv;
mod dense;
mod elementwise;
pub mod kernels;
mod loss;
pub mod matmul;
mod norm;
mod optim;
mod pool;
#[cfg(target_arch = "x86_64")]
pub mod sgemm;
mod train_kernels;

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

use super::{same_pool_geometry, Activation, Backend, Conv2dParams, Shape4};
use crate::{Error, Result};
use rayon::prelude::*;

/// The CPU backend. Owns its rayon thread pool.
pub struct CpuBackend {
    pool: rayon::ThreadPool,
    threads: usize,
    /// 3x3 stride-1 convs by Winograd F(4x4, 3x3) ([`Backend::set_fast_conv`]).
    winograd: bool,
    /// The Winograd-transformed weights of the conv running (one buffer, reused).
    winograd_weights: std::sync::Mutex<Vec<f32>>,
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
    /// Errors: more than [`crate::MAX_THREADS`] threads, or the pool cannot be created.
    pub fn new(threads: usize) -> Result<CpuBackend> {
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
        Ok(CpuBackend {
            pool,
            threads,
            winograd: true,
            winograd_weights: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether a batch of `n` images is split image by image across threads.
    fn split_batch(&self, n: usize) -> bool {
        n > 1 && self.threads > 1
    }

    /// [`Backend::conv2d`], then `post` on each output image by the task that computed it
    /// (`post.out` holds `post.len` values per image; checked by the caller).
    #[allow(clippy::too_many_arguments)]
    fn conv2d_post(
        &self,
        x: &[f32],
        xs: Shape4,
        w: &[f32],
        w_shape: [usize; 4],
        bias: Option<&Vec<f32>>,
        p: Conv2dParams,
        act: Activation,
        y: &mut [f32],
        post: Option<conv::PerImage>,
    ) -> Result<Shape4> {
        let [cout, _, kh, kw] = w_shape;
        let ys = conv_shape(xs, w_shape, p)?;
        check_len("conv2d input", x, xs.numel())?;
        check_len("conv2d weight", w, w_shape.iter().product())?;
        check_len("conv2d output", y, ys.numel())?;
        if let Some(b) = bias {
            check_len("conv2d bias", b, cout)?;
        }
        let geom = conv::ConvGeometry { xs, ys, kh, kw, p };
        let bias = bias.map(|b| &b[..cout]);
        #[cfg(target_arch = "x86_64")]
        if self.winograd && conv::winograd::supports(act, &geom, self.threads) {
            let threads = self.threads;
            // A panic in another conv leaves the buffer in a state that is overwritten anyway.
            let mut guard = (self.winograd_weights.lock()).unwrap_or_else(|e| e.into_inner());
            let u: &mut Vec<f32> = &mut guard;
            self.pool
                .install(|| conv::winograd::conv2d(u, x, w, bias, &geom, act, y, post, threads));
            return Ok(ys);
        }
        #[cfg(target_arch = "x86_64")]
        if conv::avx512::supports(act, &geom) {
            let threads = self.threads;
            self.pool
                .install(|| conv::avx512::conv2d(x, w, bias, &geom, act, y, post, threads));
            return Ok(ys);
        }
        let (xi, yi) = (xs.image_len(), ys.image_len());
        let image = |x1: &[f32], y1: &mut [f32], par| {
            conv::conv2d_image(x1, w, bias, &geom, act, y1, par);
        };
        self.pool.install(|| {
            if self.split_batch(xs.n) {
                // Image by image across the pool, `post` on each while it is in cache.
                conv::image_tasks(x, xi, y, yi, xs.n, 1, post, |x1, y1| {
                    image(x1, y1, matmul::Par::Seq)
                });
            } else {
                // One image at a time, each GEMM split across the pool.
                let (x, y) = (&x[..xs.numel()], &mut y[..ys.numel()]);
                let mut post = post;
                for (i, (y1, x1)) in y.chunks_mut(yi).zip(x.chunks(xi)).enumerate() {
                    image(x1, y1, matmul::Par::Rayon);
                    if let Some(p) = post.as_mut() {
                        (p.f)(y1, &mut p.out[i * p.len..(i + 1) * p.len]);
                    }
                }
            }
        });
        Ok(ys)
    }
}

/// The output shape of a conv2d, or an error if `xs`, `w_shape` and `p` do not fit together.
fn conv_shape(xs: Shape4, w_shape: [usize; 4], p: Conv2dParams) -> Result<Shape4> {
    let [cout, cin_g, kh, kw] = w_shape;
    if p.groups == 0 || xs.c != cin_g * p.groups || cout % p.groups != 0 {
        return Err(Error::Shape(format!(
            "conv2d: input {xs:?} does not fit weight {w_shape:?} with {} groups",
            p.groups
        )));
    }
    if xs.h + 2 * p.padding < kh || xs.w + 2 * p.padding < kw || p.stride == 0 {
        return Err(Error::Shape(format!(
            "conv2d: input {xs:?} smaller than kernel {kh}x{kw}"
        )));
    }
    let (oh, ow) = p.out_hw(xs.h, xs.w, kh, kw);
    Ok(Shape4::new(xs.n, cout, oh, ow))
}

fn check_len(what: &str, buf: &[f32], need: usize) -> Result<()> {
    if buf.len() < need {
        return Err(Error::Shape(format!(
            "{what}: buffer of {} values, {need} needed",
            buf.len()
        )));
    }
    Ok(())
}

impl Backend for CpuBackend {
    type Buffer = Vec<f32>;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn set_fast_conv(&mut self, allowed: bool) {
        self.winograd = allowed;
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
        x: &Vec<f32>,
        xs: Shape4,
        w: &Vec<f32>,
        w_shape: [usize; 4],
        bias: Option<&Vec<f32>>,
        p: Conv2dParams,
        act: Activation,
        y: &mut Vec<f32>,
    ) -> Result<Shape4> {
        self.conv2d_post(x, xs, w, w_shape, bias, p, act, y, None)
    }

    fn conv2d_avg_pool(
        &self,
        x: &Vec<f32>,
        xs: Shape4,
        w: &Vec<f32>,
        w_shape: [usize; 4],
        bias: Option<&Vec<f32>>,
        p: Conv2dParams,
        act: Activation,
        y: &mut Vec<f32>,
        pooled: &mut Vec<f32>,
    ) -> Result<Shape4> {
        let ys = conv_shape(xs, w_shape, p)?;
        let (cout, plane) = (ys.c, ys.h * ys.w);
        check_len("conv2d_avg_pool pooled", pooled, xs.n * cout)?;
        let f = move |y1: &[f32], p1: &mut [f32]| kernels::global_avg_pool(y1, cout, plane, p1);
        let post = conv::PerImage {
            out: pooled,
            len: cout,
            f: &f,
        };
        self.conv2d_post(x, xs, w, w_shape, bias, p, act, y, Some(post))
    }

    fn conv2d_max_pool(
        &self,
        x: &Vec<f32>,
        xs: Shape4,
        w: &Vec<f32>,
        w_shape: [usize; 4],
        bias: Option<&Vec<f32>>,
        p: Conv2dParams,
        act: Activation,
        y: &mut Vec<f32>,
        (kernel, stride): (usize, usize),
        pooled: &mut Vec<f32>,
    ) -> Result<Shape4> {
        let ys = conv_shape(xs, w_shape, p)?;
        let (cout, oh, ow) = (ys.c, ys.h, ys.w);
        if !self.split_batch(xs.n) || kernel == 0 || stride == 0 || oh == 0 || ow == 0 {
            // One image: max_pool2d_same splits it across threads by channels.
            let ys = self.conv2d(x, xs, w, w_shape, bias, p, act, y)?;
            return self.max_pool2d_same(y, ys, kernel, stride, pooled);
        }
        let (poh, pt) = same_pool_geometry(oh, kernel, stride);
        let (pow, pl) = same_pool_geometry(ow, kernel, stride);
        let ps = Shape4::new(xs.n, cout, poh, pow);
        check_len("conv2d_max_pool pooled", pooled, ps.numel())?;
        let f = move |y1: &[f32], p1: &mut [f32]| {
            kernels::max_pool2d(y1, cout, oh, ow, kernel, stride, (pt, pl), (poh, pow), p1)
        };
        let post = conv::PerImage {
            out: pooled,
            len: ps.image_len(),
            f: &f,
        };
        self.conv2d_post(x, xs, w, w_shape, bias, p, act, y, Some(post))?;
        Ok(ps)
    }

    fn max_pool2d_same(
        &self,
        x: &Vec<f32>,
        xs: Shape4,
        kernel: usize,
        stride: usize,
        y: &mut Vec<f32>,
    ) -> Result<Shape4> {
        if kernel == 0 || stride == 0 || xs.h == 0 || xs.w == 0 {
            return Err(Error::Shape(format!(
                "max_pool2d: kernel {kernel}, stride {stride}, input {xs:?}"
            )));
        }
        let (oh, pt) = same_pool_geometry(xs.h, kernel, stride);
        let (ow, pl) = same_pool_geometry(xs.w, kernel, stride);
        let ys = Shape4::new(xs.n, xs.c, oh, ow);
        check_len("max_pool2d input", x, xs.numel())?;
        check_len("max_pool2d output", y, ys.numel())?;
        // One task per (image, channel block) keeps both threads busy at batch 1.
        let plane_in = xs.h * xs.w;
        let plane_out = oh * ow;
        self.pool.install(|| {
            y[..ys.numel()]
                .par_chunks_mut(plane_out * 8)
                .zip(x[..xs.numel()].par_chunks(plane_in * 8))
                .for_each(|(y1, x1)| {
                    let c = x1.len() / plane_in;
                    kernels::max_pool2d(x1, c, xs.h, xs.w, kernel, stride, (pt, pl), (oh, ow), y1)
                });
        });
        Ok(ys)
    }

    fn global_avg_pool(&self, x: &Vec<f32>, xs: Shape4, y: &mut Vec<f32>) -> Result<()> {
        check_len("global_avg_pool input", x, xs.numel())?;
        check_len("global_avg_pool output", y, xs.n * xs.c)?;
        let hw = xs.h * xs.w;
        self.pool.install(|| {
            y[..xs.n * xs.c]
                .par_chunks_mut(xs.c)
                .zip(x[..xs.numel()].par_chunks(xs.image_len()))
                .for_each(|(y1, x1)| kernels::global_avg_pool(x1, xs.c, hw, y1));
        });
        Ok(())
    }

    fn linear(
        &self,
        x: &Vec<f32>,
        n: usize,
        w: &Vec<f32>,
        out_features: usize,
        in_features: usize,
        b: &Vec<f32>,
        act: Activation,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        check_len("linear input", x, n * in_features)?;
        check_len("linear weight", w, out_features * in_features)?;
        check_len("linear bias", b, out_features)?;
        check_len("linear output", y, n * out_features)?;
        // y (n, out) = x (n, in) · wᵀ (in, out), then bias + activation per row.
        self.pool.install(|| {
            matmul::matmul(
                x,
                matmul::MatLayout::row_major(n, in_features),
                w,
                matmul::MatLayout::transposed(in_features, out_features),
                y,
                false,
                matmul::Par::Rayon,
            );
        });
        // Per row: bias per feature (a "channel" of one element) and the activation.
        for row in y[..n * out_features].chunks_mut(out_features) {
            kernels::bias_act(row, Some(b), out_features, 1, act);
        }
        Ok(())
    }

    fn se_scale_add_relu(
        &self,
        x: &mut Vec<f32>,
        xs: Shape4,
        gate: &Vec<f32>,
        shortcut: &Vec<f32>,
    ) -> Result<()> {
        check_len("se_scale_add_relu input", x, xs.numel())?;
        check_len("se_scale_add_relu shortcut", shortcut, xs.numel())?;
        check_len("se_scale_add_relu gate", gate, xs.n * xs.c)?;
        let hw = xs.h * xs.w;
        let c = xs.c;
        self.pool.install(|| {
            // Tasks of (image, block of channels) so that batch 1 uses every thread.
            let block = c.div_ceil(8).max(1);
            x[..xs.numel()]
                .par_chunks_mut(block * hw)
                .zip(shortcut[..xs.numel()].par_chunks(block * hw))
                .enumerate()
                .for_each(|(i, (x1, s1))| {
                    let first = i * block; // global channel index over n*c
                    let cc = x1.len() / hw;
                    kernels::scale_add_relu(x1, &gate[first..first + cc], s1, cc, hw);
                });
        });
        Ok(())
    }

    // ---- training: convolution, dense, pooling ----

    fn conv2d_backward_data(
        &self,
        dy: &Vec<f32>,
        ys: Shape4,
        w: &Vec<f32>,
        w_shape: [usize; 4],
        p: Conv2dParams,
        xs: Shape4,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        conv::backward::conv2d_backward_data(self, dy, ys, w, w_shape, p, xs, dx)
    }

    fn conv2d_backward_filter(
        &self,
        x: &Vec<f32>,
        xs: Shape4,
        dy: &Vec<f32>,
        ys: Shape4,
        p: Conv2dParams,
        w_shape: [usize; 4],
        dw: &mut Vec<f32>,
        accumulate: bool,
    ) -> Result<()> {
        conv::backward::conv2d_backward_filter(self, x, xs, dy, ys, p, w_shape, dw, accumulate)
    }

    fn linear_backward(
        &self,
        x: &Vec<f32>,
        n: usize,
        w: &Vec<f32>,
        out_features: usize,
        in_features: usize,
        dy: &Vec<f32>,
        dx: Option<&mut Vec<f32>>,
        dw: &mut Vec<f32>,
        db: &mut Vec<f32>,
    ) -> Result<()> {
        let dx = dx.map(|d| d.as_mut_slice());
        dense::linear_backward(self, x, n, w, out_features, in_features, dy, dx, dw, db)
    }

    fn max_pool2d_same_backward(
        &self,
        x: &Vec<f32>,
        xs: Shape4,
        kernel: usize,
        stride: usize,
        dy: &Vec<f32>,
        dx: &mut Vec<f32>,
    ) -> Result<()> {
        pool::max_pool2d_same_backward(self, x, xs, kernel, stride, dy, dx)
    }

    fn global_avg_pool_backward(&self, dy: &Vec<f32>, xs: Shape4, dx: &mut Vec<f32>) -> Result<()> {
        pool::global_avg_pool_backward(self, dy, xs, dx)
    }

    fn axpby(&self, y: &mut Vec<f32>, x: &Vec<f32>, len: usize, a: f32, b: f32) -> Result<()> {
        check_len("axpby y", y, len)?;
        check_len("axpby x", x, len)?;
        for (y, x) in y[..len].iter_mut().zip(&x[..len]) {
            *y = a * *y + b * *x;
        }
        Ok(())
    }

    fn scale(&self, x: &mut Vec<f32>, len: usize, factor: f32) -> Result<()> {
        check_len("scale", x, len)?;
        x[..len].iter_mut().for_each(|v| *v *= factor);
        Ok(())
    }

    fn sum_squares(&self, x: &Vec<f32>, len: usize) -> Result<f64> {
        check_len("sum_squares", x, len)?;
        Ok(x[..len].iter().map(|&v| (v as f64) * (v as f64)).sum())
    }

    fn copy(&self, src: &Vec<f32>, dst: &mut Vec<f32>, len: usize) -> Result<()> {
        check_len("copy source", src, len)?;
        check_len("copy destination", dst, len)?;
        dst[..len].copy_from_slice(&src[..len]);
        Ok(())
    }

    fn add_assign(&self, dst: &mut Vec<f32>, src: &Vec<f32>, len: usize) -> Result<()> {
        accumulate::add_assign(self, dst, src, len)
    }

    // ---- training: normalisation, activations, SE, loss, optimizer ----

    fn batch_norm_train(
        &self,
        x: &Vec<f32>,
        xs: Shape4,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        eps: f32,
        momentum: f32,
        moving_mean: &mut Vec<f32>,
        moving_var: &mut Vec<f32>,
        saved_mean: &mut Vec<f32>,
        saved_invstd: &mut Vec<f32>,
        act: Activation,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        norm::train(
            &self.pool,
            x,
            xs,
            gamma,
            beta,
            eps,
            momentum,
            moving_mean,
            moving_var,
            saved_mean,
            saved_invstd,
            act,
            y,
        )
    }

    fn batch_norm_backward(
        &self,
        x: &Vec<f32>,
        xs: Shape4,
        dy: &Vec<f32>,
        y_relu: Option<&Vec<f32>>,
        gamma: &Vec<f32>,
        saved_mean: &Vec<f32>,
        saved_invstd: &Vec<f32>,
        dx: &mut Vec<f32>,
        dgamma: &mut Vec<f32>,
        dbeta: &mut Vec<f32>,
    ) -> Result<()> {
        norm::backward(
            &self.pool,
            x,
            xs,
            dy,
            y_relu.map(|v| v.as_slice()),
            gamma,
            saved_mean,
            saved_invstd,
            dx,
            dgamma,
            dbeta,
        )
    }

    fn batch_norm_frozen(
        &self,
        x: &Vec<f32>,
        xs: Shape4,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        moving_mean: &Vec<f32>,
        moving_var: &Vec<f32>,
        eps: f32,
        act: Activation,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        norm::frozen(
            &self.pool,
            x,
            xs,
            gamma,
            beta,
            moving_mean,
            moving_var,
            eps,
            act,
            y,
        )
    }

    fn batch_norm_frozen_backward(
        &self,
        x: &Vec<f32>,
        xs: Shape4,
        dy: &Vec<f32>,
        y_relu: Option<&Vec<f32>>,
        gamma: &Vec<f32>,
        moving_mean: &Vec<f32>,
        moving_var: &Vec<f32>,
        eps: f32,
        dx: &mut Vec<f32>,
        dgamma: &mut Vec<f32>,
        dbeta: &mut Vec<f32>,
    ) -> Result<()> {
        norm::frozen_backward(
            &self.pool,
            x,
            xs,
            dy,
            y_relu.map(|v| v.as_slice()),
            gamma,
            moving_mean,
            moving_var,
            eps,
            dx,
            dgamma,
            dbeta,
        )
    }

    fn relu_backward(&self, y: &Vec<f32>, dy: &mut Vec<f32>, len: usize) -> Result<()> {
        elementwise::relu_backward(&self.pool, y, dy, len)
    }

    fn se_scale_add_relu_backward(
        &self,
        x: &Vec<f32>,
        xs: Shape4,
        gate: &Vec<f32>,
        out: &Vec<f32>,
        dout: &Vec<f32>,
        dx: &mut Vec<f32>,
        dgate: &mut Vec<f32>,
        dshortcut: &mut Vec<f32>,
    ) -> Result<()> {
        elementwise::se_scale_add_relu_backward(
            &self.pool, x, xs, gate, out, dout, dx, dgate, dshortcut,
        )
    }

    fn sigmoid_backward(&self, s: &Vec<f32>, dy: &mut Vec<f32>, len: usize) -> Result<()> {
        elementwise::sigmoid_backward(&self.pool, s, dy, len)
    }

    fn softmax_cross_entropy(
        &self,
        logits: &Vec<f32>,
        n: usize,
        classes: usize,
        labels: &[usize],
        label_smoothing: f32,
        scale: f32,
        dlogits: &mut Vec<f32>,
    ) -> Result<f64> {
        loss::softmax_cross_entropy(logits, n, classes, labels, label_smoothing, scale, dlogits)
    }

    fn momentum_update(
        &self,
        param: &mut Vec<f32>,
        grad: &Vec<f32>,
        moment: &mut Vec<f32>,
        len: usize,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        loss_scale: f32,
        nesterov: bool,
    ) -> Result<()> {
        optim::momentum_update(
            &self.pool,
            param,
            grad,
            moment,
            len,
            lr,
            momentum,
            weight_decay,
            loss_scale,
            nesterov,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `conv2d_avg_pool` (`conv2d_max_pool`) gives bit for bit `conv2d` then `global_avg_pool`
    /// (`max_pool2d_same`), on the AVX-512 path
    /// and the `gemm`-crate path (thin groups), for one and several images, on 1 and 2 threads.
    #[test]
    fn conv2d_avg_pool_matches_conv_then_pool() {
        // (n, cin, h, cout, k, stride, pad, groups)
        let cases = [
            (1, 8, 20, 24, 3, 1, 1, 1),
            (3, 8, 20, 24, 3, 1, 1, 1),
            (5, 16, 7, 40, 1, 1, 0, 1),
            (2, 16, 9, 32, 3, 2, 1, 4),
            (1, 16, 9, 32, 3, 1, 1, 4),
        ];
        for threads in [1, 2] {
            let be = CpuBackend::new(threads).unwrap();
            for &(n, cin, h, cout, k, s, pad, groups) in &cases {
                let p = Conv2dParams {
                    stride: s,
                    padding: pad,
                    groups,
                };
                let xs = Shape4::new(n, cin, h, h);
                let fill = |len: usize, seed: usize| -> Vec<f32> {
                    (0..len)
                        .map(|i| ((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5 - 1.0)
                        .collect()
                };
                let x = fill(xs.numel(), 1);
                let w_shape = [cout, cin / groups, k, k];
                let w = fill(w_shape.iter().product(), 2);
                let b = fill(cout, 3);
                let (oh, ow) = p.out_hw(h, h, k, k);
                let len = n * cout * oh * ow;
                let (mut y1, mut y2) = (vec![0.0; len], vec![0.0; len]);
                let (mut p1, mut p2) = (vec![0.0; n * cout], vec![0.0; n * cout]);
                let act = Activation::Relu;
                let ys = be
                    .conv2d(&x, xs, &w, w_shape, Some(&b), p, act, &mut y1)
                    .unwrap();
                be.global_avg_pool(&y1, ys, &mut p1).unwrap();
                let ys2 = be
                    .conv2d_avg_pool(&x, xs, &w, w_shape, Some(&b), p, act, &mut y2, &mut p2)
                    .unwrap();
                assert_eq!(ys, ys2);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&y1), bits(&y2));
                assert_eq!(bits(&p1), bits(&p2));
                // The same with the max pool of the stem (3x3, stride 2, "same").
                let mut m1 = vec![0.0; len];
                let ms = be.max_pool2d_same(&y1, ys, 3, 2, &mut m1).unwrap();
                let mut m2 = vec![0.0; len];
                let ms2 = be
                    .conv2d_max_pool(
                        &x,
                        xs,
                        &w,
                        w_shape,
                        Some(&b),
                        p,
                        act,
                        &mut y2,
                        (3, 2),
                        &mut m2,
                    )
                    .unwrap();
                assert_eq!(ms, ms2);
                assert_eq!(bits(&y1), bits(&y2));
                assert_eq!(bits(&m1[..ms.numel()]), bits(&m2[..ms.numel()]));
            }
        }
    }
}
