//! `senet bench`: forward throughput (images/s) and peak memory on random input.
use crate::backend::cpu::CpuBackend;
use crate::model::inference::InferenceNet;
use crate::model::init::Rng;
use crate::model::{Arch, SeNet};
use crate::{Result, Tensor};
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The variant.
    pub arch: Arch,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Image side in pixels (224 for MindCV's recipes).
    pub image_size: usize,
    /// CPU threads (0 = one per core).
    pub threads: usize,
    /// Untimed iterations first.
    pub warmup: usize,
    /// Timed iterations.
    pub iters: usize,
}

/// Measured throughput: images per second from the median and the best iteration, and the
/// process's peak resident memory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// MindCV model name.
    pub model: String,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Threads the backend ran on.
    pub threads: usize,
    /// Image side in pixels.
    pub image_size: usize,
    /// Timed iterations.
    pub iters: usize,
    /// Median time of one forward pass, seconds.
    pub median_s: f64,
    /// batch_size / median_s.
    pub images_per_second: f64,
    /// batch_size / fastest iteration.
    pub images_per_second_best: f64,
    /// Peak resident set size of the process (VmHWM), MiB; None where /proc is unavailable.
    pub peak_rss_mib: Option<f64>,
}

/// Peak resident set size of this process in MiB (`VmHWM` of /proc/self/status).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs eval-mode forward passes of `opts.arch` (random MindCV-style init, 1000 classes) on
/// random N(0,1) input of shape (batch, 3, size, size) on the CPU backend.
/// Errors if the backend cannot start or the shape is invalid.
pub fn run(opts: &BenchOptions, mut progress: impl FnMut(usize)) -> Result<BenchReport> {
    let net = SeNet::new(opts.arch, 1000, 0)?;
    let backend = CpuBackend::new(opts.threads)?;
    let threads = backend.threads();
    let mut inf = InferenceNet::new(&net, backend)?;
    drop(net);
    let shape = [opts.batch_size, 3, opts.image_size, opts.image_size];
    let mut rng = Rng::new(42);
    let x = Tensor::from_vec(
        &shape,
        (0..shape.iter().product())
            .map(|_| rng.normal() as f32)
            .collect(),
    )?;
    for _ in 0..opts.warmup {
        inf.forward(&x)?;
    }
    let mut times = Vec::with_capacity(opts.iters);
    for i in 0..opts.iters.max(1) {
        let t0 = Instant::now();
        inf.forward(&x)?;
        times.push(t0.elapsed().as_secs_f64());
        progress(i + 1);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    Ok(BenchReport {
        model: opts.arch.name().to_string(),
        batch_size: opts.batch_size,
        threads,
        image_size: opts.image_size,
        iters: times.len(),
        median_s: median,
        images_per_second: opts.batch_size as f64 / median,
        images_per_second_best: opts.batch_size as f64 / times[0],
        peak_rss_mib: peak_rss_mib(),
    })
}
