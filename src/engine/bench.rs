//! `senet bench`: forward throughput (images/s) and peak memory on random input.
use super::device::{self, BackendFactory, Device, DeviceJob, DeviceRequest};
use crate::config::{AmpLevel, DeviceTarget};
use crate::model::inference::InferenceNet;
use crate::model::init::Rng;
use crate::model::{Arch, SeNet};
use crate::optim::{TrainConfig, TrainNet};
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
    /// The device (`--device`, `--device_id`, `--threads`); `auto` is the CPU here.
    pub device: DeviceRequest,
    /// Precision on Ascend (`--amp_level`: O0 float32, O2 float16 compute).
    pub amp_level: AmpLevel,
    /// Untimed iterations first.
    pub warmup: usize,
    /// Timed iterations.
    pub iters: usize,
    /// Time training steps (train-mode forward, backward, Momentum update) instead of
    /// eval-mode forward passes.
    pub train: bool,
}

/// Measured throughput: images per second from the median and the best iteration, and the
/// process's peak resident memory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// MindCV model name.
    pub model: String,
    /// "eval" or "train".
    pub mode: String,
    /// Images per forward pass.
    pub batch_size: usize,
    /// The device (`cpu`, `ascend:0 (float32)`).
    pub device: String,
    /// CPU threads the backend ran on (0 on Ascend).
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

/// Runs eval-mode forward passes (or training steps with `opts.train`) of `opts.arch` (MindCV's
/// random init, 1000 classes) on random N(0,1) input of shape (batch, 3, size, size) on the
/// requested device. Wall-clock times include the device synchronisation that returning the
/// logits (or the loss) implies.
/// Errors if the device cannot start or the shape is invalid.
pub fn run(opts: &BenchOptions, progress: impl FnMut(usize)) -> Result<BenchReport> {
    let (dev, _) = device::resolve(&opts.device, Some(DeviceTarget::Cpu), opts.amp_level)?;
    let times = device::run_on(dev, BenchJob { opts, progress })?;
    let median = times[times.len() / 2];
    Ok(BenchReport {
        model: opts.arch.name().to_string(),
        mode: if opts.train { "train" } else { "eval" }.to_string(),
        batch_size: opts.batch_size,
        device: dev.describe(),
        threads: match dev {
            Device::Cpu { threads } => crate::backend::cpu::CpuBackend::new(threads)?.threads(),
            Device::Ascend { .. } => 0,
        },
        image_size: opts.image_size,
        iters: times.len(),
        median_s: median,
        images_per_second: opts.batch_size as f64 / median,
        images_per_second_best: opts.batch_size as f64 / times[0],
        peak_rss_mib: peak_rss_mib(),
    })
}

/// The timed loop on one backend; returns the sorted iteration times in seconds.
struct BenchJob<'a, P> {
    opts: &'a BenchOptions,
    progress: P,
}

impl<P: FnMut(usize)> DeviceJob for BenchJob<'_, P> {
    type Output = Vec<f64>;
    fn run<F: BackendFactory>(mut self, factory: F) -> Result<Vec<f64>> {
        let opts = self.opts;
        let net = SeNet::new(opts.arch, 1000, 0)?;
        let backend = factory.create()?;
        let shape = [opts.batch_size, 3, opts.image_size, opts.image_size];
        let mut rng = Rng::new(42);
        let x = Tensor::from_vec(
            &shape,
            (0..shape.iter().product())
                .map(|_| rng.normal() as f32)
                .collect(),
        )?;
        let labels: Vec<usize> = (0..opts.batch_size).map(|i| (i * 37) % 1000).collect();
        // One closure per mode: a forward pass, or a training step with MindCV's SENet settings.
        let mut run_once: Box<dyn FnMut() -> Result<()>> = if opts.train {
            let cfg = TrainConfig {
                label_smoothing: 0.1,
                momentum: 0.9,
                weight_decay: 1e-4,
                nesterov: false,
                loss_scale: 1024.0,
                clip_value: None,
                ema_decay: None,
            };
            let mut tn = TrainNet::new(&net, backend, cfg, |_| true)?;
            Box::new(move || tn.step(&x, &labels, 0.01).map(|_| ()))
        } else {
            let mut inf = InferenceNet::new(&net, backend)?;
            Box::new(move || inf.forward(&x).map(|_| ()))
        };
        drop(net);
        for _ in 0..opts.warmup {
            run_once()?;
        }
        let mut times = Vec::with_capacity(opts.iters);
        for i in 0..opts.iters.max(1) {
            let t0 = Instant::now();
            run_once()?;
            times.push(t0.elapsed().as_secs_f64());
            (self.progress)(i + 1);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        Ok(times)
    }
}
