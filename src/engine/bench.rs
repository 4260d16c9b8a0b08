//! `senet bench`: forward throughput (images/s) and peak memory on random input.
use super::device::{self, BackendFactory, Device, DeviceJob, DeviceRequest};
use crate::backend::{Backend, DeviceCounters};
use crate::config::{AmpLevel, DeviceTarget};
use crate::model::inference::InferenceNet;
use crate::model::init::Rng;
use crate::model::{Arch, SeNet};
use crate::optim::{TrainConfig, TrainNet, NPU_GRAPH_ENV};
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
    /// With `train` on Ascend: capture the step once and replay it
    /// ([`TrainNet::step_staged`]; the CLI takes it from `SENET_NPU_GRAPH`, default on);
    /// off, the op-by-op [`TrainNet::step`].
    pub npu_graph: bool,
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
    /// The device work of one steady-state iteration (the mean over every iteration after the
    /// first, warm-up ones included; with the NPU graph, after the one that captured), as the
    /// backend counted it; None on the CPU or with fewer than two iterations in all.
    pub per_step: Option<StepCost>,
    /// With `--train` on Ascend: how the steps ran ("replayed (NPU graph)", "op by op: <why>").
    pub npu_graph: Option<String>,
}

/// The host-side device work of one steady-state iteration, the mean of
/// [`DeviceCounters`] over `iterations` iterations (the backend's own counts at its calls into
/// the runtime: the same on an NPU and on the emulator).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StepCost {
    /// Iterations the mean is over.
    pub iterations: usize,
    /// Operator launches (aclnn phase-2 calls).
    pub launches: f64,
    /// Synchronises (stream, event or device).
    pub synchronizes: f64,
    /// Blocking copies (`aclrtMemcpy`).
    pub blocking_copies: f64,
    /// Device allocations (`aclrtMalloc`).
    pub allocations: f64,
    /// Bytes copied host to device.
    pub h2d_bytes: f64,
    /// Bytes copied device to host.
    pub d2h_bytes: f64,
    /// Replays of the captured step (`aclmdlRIExecuteAsync`).
    pub replays: f64,
}

impl StepCost {
    /// The mean per iteration of `total`, counted over `iterations` iterations (> 0).
    pub fn mean(total: DeviceCounters, iterations: usize) -> StepCost {
        let per = |v: u64| v as f64 / iterations as f64;
        StepCost {
            iterations,
            launches: per(total.launches),
            synchronizes: per(total.synchronizes),
            blocking_copies: per(total.blocking_copies),
            allocations: per(total.allocations),
            h2d_bytes: per(total.h2d_bytes),
            d2h_bytes: per(total.d2h_bytes),
            replays: per(total.replays),
        }
    }
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
    let (times, per_step, npu_graph) = device::run_on(dev, BenchJob { opts, progress })?;
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
        per_step,
        npu_graph,
    })
}

/// The timed loop on one backend; returns the sorted iteration times in seconds and the device
/// work per iteration after the first.
struct BenchJob<'a, P> {
    opts: &'a BenchOptions,
    progress: P,
}

impl<P: FnMut(usize)> DeviceJob for BenchJob<'_, P> {
    type Output = (Vec<f64>, Option<StepCost>, Option<String>);
    fn run<F: BackendFactory>(mut self, factory: F) -> Result<Self::Output> {
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
        // One closure per mode: a forward pass, or a training step with MindCV's SENet settings;
        // each returns the backend's counters after it, and whether the iterations after it
        // are the steady state (after the first; with the NPU graph, after the capture).
        type Once<'a> = Box<dyn FnMut() -> Result<(Option<DeviceCounters>, bool)> + 'a>;
        let graph_state = std::rc::Rc::new(std::cell::RefCell::new(None::<String>));
        let mut run_once: Once = if opts.train {
            let cfg = TrainConfig::mindcv_senet();
            let mut tn = TrainNet::new(&net, backend, cfg, |_| true)?;
            let on_ascend = tn.backend().loss_on_device();
            tn.set_step_graph(opts.npu_graph && on_ascend)?;
            let graph = opts.npu_graph && on_ascend;
            let state = std::rc::Rc::clone(&graph_state);
            // The first step runs op by op (the warm-up), the second is captured.
            let warm_up = if graph { 2 } else { 1 };
            let mut done = 0;
            Box::new(move || {
                // Off: today's op-by-op step, whose counts the README's table gives.
                if graph {
                    tn.step_staged(&x, &labels, 0.01, true)?;
                } else {
                    tn.step(&x, &labels, 0.01)?;
                }
                done += 1;
                if on_ascend {
                    let mut st = state.borrow_mut();
                    let notes = tn.take_graph_notes();
                    if tn.replaying() {
                        *st = Some("replayed (NPU graph)".into());
                    } else if let Some(n) = notes.into_iter().next() {
                        *st = Some(n);
                    } else if !graph {
                        *st = Some(format!("op by op ({NPU_GRAPH_ENV}=0)"));
                    }
                }
                Ok((tn.backend().counters(), done >= warm_up))
            })
        } else {
            let mut inf = InferenceNet::new(&net, backend)?;
            Box::new(move || {
                inf.forward(&x)?;
                Ok((inf.backend().counters(), true))
            })
        };
        drop(net);
        // The counters when the steady state starts and after the last iteration, and the
        // iterations in between.
        let mut first = None;
        let mut last = None;
        let mut steady = 0usize;
        let mut note = |(c, steady_after): (Option<DeviceCounters>, bool)| {
            if first.is_some() {
                steady += 1;
            } else if steady_after {
                first = Some(c);
            }
            last = c;
        };
        for _ in 0..opts.warmup {
            note(run_once()?);
        }
        let mut times = Vec::with_capacity(opts.iters);
        for i in 0..opts.iters.max(1) {
            let t0 = Instant::now();
            let c = run_once()?;
            times.push(t0.elapsed().as_secs_f64());
            note(c);
            (self.progress)(i + 1);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let per_step = match (first.flatten(), last) {
            (Some(a), Some(b)) if steady > 0 => Some(StepCost::mean(b.since(&a), steady)),
            _ => None,
        };
        let npu_graph = graph_state.borrow().clone();
        Ok((times, per_step, npu_graph))
    }
}
