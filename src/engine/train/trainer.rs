//! The training loop: epochs of shuffled batches, one `TrainNet::step` per batch at the
//! schedule's learning rate, validation and checkpoints at epoch ends, a checkpoint when stopped.
//!
//! A run is a [`Trainer`] going through named steps: the set-up ([`Trainer::new`], with the
//! helpers of [`setup`]), the data-parallel handshake ([`handshake`]), rank 0's outputs
//! ([`Trainer::open_outputs`]), then the epochs ([`Trainer::train`]): each one's steps
//! ([`Trainer::train_step`]), its end ([`Trainer::end_epoch`]: validation, checkpoints,
//! `metrics.jsonl`) and, when the run stops inside it, the stop ([`Trainer::stop`]).
mod fault;
mod handshake;
mod progress;
mod setup;
mod staged;

use self::fault::FaultInjection;
use self::progress::{BatchFigures, EpochProgress};
use self::setup::{LrList, StartModel, TrainData};
use super::log::{self, EpochRecord, MetricsLog};
use super::state::{
    best_ckpt_name, optim_ckpt_name, prune_checkpoints, save_optimizer, save_state, step_ckpt_name,
    EpochSums, OptimizerState,
};
use super::{check_supported, StopReason, TrainEvent, TrainOptions, TrainReport};
use crate::config::{CkptSavePolicy, Recipe};
use crate::data::Batch;
use crate::dist::{self, Communicator, GradientReducer};
use crate::engine::device::{self, BackendFactory, Device, DeviceJob};
use crate::engine::validate::evaluate;
use crate::fsutil::DirLock;
use crate::model::inference::InferenceNet;
use crate::model::metrics::Accumulator;
use crate::model::{Arch, SeNet};
use crate::optim::{StepStats, TrainNet};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Exit status of a data-parallel rank that failed and aborted the job.
const EXIT_RANK_FAILED: i32 = 1;

/// Runs a training job (see [`TrainOptions`]): checks the recipe ([`check_supported`],
/// [`Recipe::validate`]), opens `data_dir/train_split` (and `val_split` when `val_while_train`),
/// builds the model (MindCV's initialisation from `seed`; `ckpt_path`'s weights; with
/// `pretrained: True` too, fine-tuning: all of them but a classifier of another class count,
/// which keeps MindCV's initialisation; the `resume` checkpoint's full state; or MindCV's resume,
/// `ckpt_path` with `resume_opt: True`: its weights and the optimizer state of
/// `<ckpt_save_dir>/optim_<model>.ckpt`, else `optim_<model>.ckpt` beside it, else its own),
/// then trains:
///
/// - epoch `e` (0-based) visits the training images in `epoch_order(seed, e)`
///   (dataset order without `shuffle`), cut into `steps_per_epoch` batches of `batch_size`
///   (`drop_remainder` drops the incomplete last one);
/// - step `s` (global, 0-based) uses `lr_schedule(recipe, steps_per_epoch, epoch_size)[s]`;
/// - after epoch `e+1` divisible by `val_interval` (and the last), with `val_while_train`,
///   the current weights are evaluated on `val_split` (eval transform) and `<model>_best.ckpt`
///   is written when Top-1 improves;
/// - after epoch `e+1` divisible by `ckpt_save_interval` (and the last),
///   `<model>-<e+1>_<steps_per_epoch>.ckpt` and MindCV's `optim_<model>.ckpt` are written (see
///   [`super::state`]) and, with `ckpt_save_policy: latest_k`, only the newest
///   `keep_checkpoint_max` step checkpoints stay;
/// - at `max_steps` or when `stop` is set, `<model>-<epoch>_<batch>.ckpt` (and
///   `optim_<model>.ckpt`) is written at the current position (unless the epoch end just wrote
///   it) and the run returns; at `max_steps` with `val_while_train`, the weights are validated
///   first (unless the epoch end just did) and `<model>_best.ckpt` written when Top-1 improves.
///
/// A resumed run continues this recipe's schedule from the stored `global_step` to the end of
/// epoch `epoch_size` (MindCV 0.3's `train.py` instead runs `epoch_size` more epochs and, on
/// MindSpore 2.10, stops with an index error once `global_step` passes the end of its
/// learning-rate list).
///
/// Also writes `<ckpt_save_dir>/<model>.yaml` (the recipe, MindCV's args dump) and appends one
/// [`EpochRecord`] per finished epoch to `<ckpt_save_dir>/metrics.jsonl`.
///
/// **Data parallel** (`distribute: True`, N processes started by `mpirun`; see
/// [`crate::dist`]), as MindCV's `train.py` with `parallel_mode="data_parallel",
/// gradients_mean=True`:
/// - every rank builds the model from the same `seed`, then takes rank 0's parameters and
///   optimizer state (a broadcast), and checks that all ranks agree on the run's layout
///   (steps per epoch, start step, model, ...);
/// - every rank shuffles each epoch with the same seed and trains on its shard of it
///   (`Shard::of_order`, MindSpore's `DistributedSampler`: interleaved, padded to
///   `ceil(images/N)` per rank so that all ranks run the same steps); `batch_size` is per rank
///   and `steps_per_epoch` counts one shard's batches;
/// - each sample's augmentation is drawn from `(seed, epoch, dataset index)`, whichever rank
///   takes it (MindCV seeds Python/NumPy with `seed + rank` instead; ours makes the N-rank run
///   see the very inputs of one process with batch `N*batch_size`);
/// - after each backward the gradients are averaged over the ranks in fused buckets
///   ([`BackendFactory::gradient_reducer`]) before the Momentum update; BatchNorm statistics
///   stay per rank, as in MindCV;
/// - the logged loss and training accuracy are those of the global batch (a small all-reduce
///   per step), and a stop request on any rank stops all of them after the same step;
/// - validation runs on every rank over its share of `val_split` (`Shard::of_items`) with its
///   own BatchNorm statistics; the Top-1/Top-5 hits, sample counts and loss sums are summed over
///   the ranks, so the figures cover every validation image exactly once;
/// - only rank 0 reports events, writes the args dump, `metrics.jsonl` and checkpoints (its
///   own BatchNorm statistics);
/// - an error on any rank after MPI is set up is printed with the rank and ends the whole job
///   through [`Communicator::abort`] (exit status 1): returning it would leave the other ranks
///   waiting forever.
///
/// Errors: unsupported or invalid recipe values (naming the key); `distribute` without a
/// launcher (with the `mpirun` command to use) or a launch problem ([`crate::dist::init`]);
/// unreadable data folders or images (named); labels outside `num_classes`; `ckpt_path` /
/// `resume` files that are missing, do not match the model, or (resume) hold no optimizer
/// state, or hold NaN or infinite weights or optimizer state (naming the file and entries);
/// both `ckpt_path` and `resume` given; `ckpt_save_dir` locked by another run (naming its
/// PID, see [`DirLock`]); a non-finite loss or gradient (naming the step and the parameter;
/// skipped instead under an overflow-checking loss scale, as MindSpore's loss-scale cell); a
/// weight or Momentum accumulator that became non-finite, at the save that would write it;
/// I/O errors writing checkpoints or logs.
pub fn run(opts: &TrainOptions, on_event: impl FnMut(&TrainEvent)) -> Result<TrainReport> {
    let r = &opts.recipe;
    check_supported(r)?;
    r.validate()?;
    let comm = match &opts.comm {
        Some(c) if !r.distribute && c.size() > 1 => {
            return Err(Error::Config(format!(
                "distribute is False but the communicator given spans {} ranks: set \
                 distribute: True (--distribute) for data-parallel training",
                c.size()
            )))
        }
        Some(c) => Arc::clone(c),
        None => dist::init(r.distribute)?,
    };
    let job = || {
        let (dev, device_note) = device::resolve(&opts.device, r.device_target, r.amp_level)?;
        device::run_on(
            dev,
            TrainJob {
                opts,
                dev,
                device_note,
                on_event,
                comm: Arc::clone(&comm),
            },
        )
    };
    match job() {
        Err(e) if comm.size() > 1 => {
            eprintln!(
                "senet rank {} of {}: error: {e}\nsenet rank {}: aborting the job (the other \
                 ranks would wait for this one forever)",
                comm.rank(),
                comm.size(),
                comm.rank()
            );
            comm.abort(EXIT_RANK_FAILED)
        }
        result => result,
    }
}

/// The training run on one kind of backend (see [`run`]).
struct TrainJob<'a, E> {
    opts: &'a TrainOptions,
    dev: Device,
    device_note: Option<String>,
    on_event: E,
    comm: Arc<dyn Communicator>,
}

impl<E: FnMut(&TrainEvent)> DeviceJob for TrainJob<'_, E> {
    type Output = TrainReport;
    fn run<F: BackendFactory>(self, factory: F) -> Result<TrainReport> {
        let mut trainer = Trainer::new(self, factory)?;
        trainer.handshake()?;
        trainer.open_outputs()?;
        trainer.announce();
        trainer.train()?;
        Ok(trainer.report)
    }
}

/// The caller's event callback; only rank 0 reports.
struct Events<E> {
    root: bool,
    on_event: E,
}

impl<E: FnMut(&TrainEvent)> Events<E> {
    /// Reports `ev` on rank 0.
    fn emit(&mut self, ev: &TrainEvent) {
        if self.root {
            (self.on_event)(ev)
        }
    }
}

/// A training run on one backend: what the set-up step decided, and what the loop carries
/// from step to step.
struct Trainer<'a, F: BackendFactory, E> {
    opts: &'a TrainOptions,
    /// The recipe (`opts.recipe`).
    r: &'a Recipe,
    dev: Device,
    factory: F,
    comm: Arc<dyn Communicator>,
    events: Events<E>,
    fault: Option<FaultInjection>,
    /// The model's name.
    model: &'static str,
    data: TrainData,
    lrs: LrList,
    tn: TrainNet<F::Backend>,
    /// Parameter scratch for saving and validation.
    scratch: SeNet,
    /// The gradient all-reduce of a data-parallel job (made by the handshake).
    reducer: Option<Box<dyn GradientReducer<F::Backend>>>,
    /// Optimizer steps done since the start of training (a resumed run included).
    step: u64,
    /// The global step this run started at.
    start_step: u64,
    /// The global step of the last validation.
    validated_at: Option<u64>,
    /// Notes for the user, reported once the run is set up.
    notes: Vec<String>,
    /// `ckpt_save_dir`.
    save_dir: PathBuf,
    /// `metrics.jsonl` (rank 0 only).
    metrics: Option<MetricsLog>,
    /// The lock on `ckpt_save_dir` (rank 0 only), held until the run ends.
    lock: Option<DirLock>,
    /// The sums of the resumed epoch's steps before the resume, from the `--resume`
    /// checkpoint (used up by the first epoch).
    resumed_sums: Option<EpochSums>,
    /// What [`run`] returns, kept up to date; `best_val_top1` is the best Top-1 so far.
    report: TrainReport,
}

impl<'a, F: BackendFactory, E: FnMut(&TrainEvent)> Trainer<'a, F, E> {
    /// The set-up step: reads the fault-injection variables, checks the model name and that
    /// `ckpt_path` and `--resume` are not both given, opens the data ([`TrainData::open`]),
    /// computes the learning rates, loads the start model ([`StartModel`]) and builds the
    /// training network on a backend from `factory`.
    fn new(job: TrainJob<'a, E>, factory: F) -> Result<Self> {
        let TrainJob {
            opts,
            dev,
            device_note,
            on_event,
            comm,
        } = job;
        let (rank, size) = (comm.rank(), comm.size());
        let fault = FaultInjection::from_env()?;
        let r = &opts.recipe;
        let arch = Arch::from_name(&r.model)?;
        if opts.resume.is_some() && !r.ckpt_path.is_empty() {
            return Err(Error::Config(format!(
                "ckpt_path '{}' and --resume both given: --resume restores the weights itself \
                 (drop ckpt_path)",
                r.ckpt_path
            )));
        }
        let data = TrainData::open(opts, rank, size)?;
        let lrs = LrList::new(r, data.steps_per_epoch())?;
        let mut start = StartModel::load(opts, arch, data.num_classes, &lrs)?;
        start.note_device(dev, device_note, r.amp_level);
        let resumed_sums = start.resume.as_ref().and_then(|st| st.epoch_sums);
        let (mut tn, step) = start.train_net(&factory, opts)?;
        // The captured step serves one process (HCCL inside a capture is not documented).
        tn.set_step_graph(size == 1 && crate::optim::npu_graph_from_env()?)?;
        let report = TrainReport {
            model: arch.name().to_string(),
            global_step: step,
            steps_per_epoch: data.steps_per_epoch(),
            stop: StopReason::Finished,
            last_checkpoint: None,
            best_val_top1: None,
            epochs: Vec::new(),
            rank,
            world_size: size,
        };
        Ok(Trainer {
            opts,
            r,
            dev,
            factory,
            comm,
            events: Events {
                root: rank == 0,
                on_event,
            },
            fault,
            model: arch.name(),
            data,
            lrs,
            tn,
            scratch: start.net,
            reducer: None,
            step,
            start_step: step,
            validated_at: None,
            notes: start.notes,
            save_dir: PathBuf::from(&r.ckpt_save_dir),
            metrics: None,
            lock: None,
            resumed_sums,
            report,
        })
    }

    /// This process is rank 0, the one that reports and writes.
    fn root(&self) -> bool {
        self.events.root
    }

    /// Epochs of the whole run (`epoch_size`).
    fn num_epochs(&self) -> u64 {
        self.r.epoch_size as u64
    }

    /// The `--max_steps` limit is reached.
    fn at_max_steps(&self) -> bool {
        self.opts.max_steps.is_some_and(|m| self.step >= m)
    }

    /// Rank 0's outputs: creates `ckpt_save_dir` and locks it ([`DirLock`]: a second run into
    /// it is refused, naming this one's PID), writes the args dump `<model>.yaml` (the recipe)
    /// and opens `metrics.jsonl`; a resumed run takes the best validation Top-1 logged before
    /// its start step. Nothing on the other ranks.
    fn open_outputs(&mut self) -> Result<()> {
        if !self.root() {
            return Ok(());
        }
        let dir = &self.save_dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        self.lock = Some(DirLock::acquire(dir, "training run")?);
        let args_dump = dir.join(format!("{}.yaml", self.model));
        crate::fsutil::write_atomic(&args_dump, self.r.to_yaml().as_bytes())?;
        self.metrics = Some(MetricsLog::open(dir)?);
        if self.start_step > 0 {
            self.report.best_val_top1 = log::best_val_top1(dir, self.start_step);
        }
        Ok(())
    }

    /// Reports that the run is set up, then the set-up's notes.
    fn announce(&mut self) {
        let started = TrainEvent::Started {
            model: self.model,
            num_classes: self.data.num_classes,
            train_samples: self.data.train_samples,
            val_samples: self.data.val.as_ref().map(|v| v.total),
            steps_per_epoch: self.data.steps_per_epoch(),
            num_epochs: self.num_epochs(),
            start_step: self.start_step,
        };
        self.events.emit(&started);
        for n in std::mem::take(&mut self.notes) {
            self.events.emit(&TrainEvent::Note(n));
        }
    }

    /// The epochs, from the one holding the start step (from its batch, when resuming inside
    /// it) to the last, unless the run stops earlier; sets the report's stop reason.
    fn train(&mut self) -> Result<()> {
        if self.at_max_steps() {
            self.report.stop = StopReason::MaxSteps;
            return Ok(());
        }
        let spe = self.data.steps_per_epoch() as u64;
        let first_epoch = self.step / spe;
        for epoch in first_epoch..self.num_epochs() {
            let first_batch = if epoch == first_epoch {
                (self.step % spe) as usize
            } else {
                0
            };
            if let Some(reason) = self.run_epoch(epoch, first_batch)? {
                self.report.stop = reason;
                break;
            }
        }
        Ok(())
    }

    /// Epoch `epoch` (0-based) from batch `first_batch`: its steps, then the end-of-epoch work
    /// when all its batches ran, or the stop. Returns the stop reason when the run stops here.
    /// Errors: as the steps; an epoch whose data ends before its last batch.
    fn run_epoch(&mut self, epoch: u64, first_batch: usize) -> Result<Option<StopReason>> {
        let epoch_no = epoch + 1;
        let spe = self.data.steps_per_epoch();
        self.events.emit(&TrainEvent::EpochStart {
            epoch: epoch_no,
            first_batch,
            steps_per_epoch: spe,
        });
        let loader = self
            .data
            .plan
            .loader(epoch, first_batch, &self.data.transform)?;
        let before = self.sums_before(epoch_no, first_batch);
        let mut progress = EpochProgress::new(first_batch, self.lrs.at(self.step), before);
        let mut stop = None;
        for batch in loader {
            stop = self.train_step(epoch_no, &batch?, &mut progress)?;
            if stop.is_some() {
                break;
            }
        }
        self.report.global_step = self.step;
        let batch_no = progress.batch_no;
        let saved_here = if batch_no == spe {
            self.end_epoch(epoch_no, &progress)?
        } else {
            false
        };
        match stop {
            Some(reason) => self.stop(epoch_no, &progress, saved_here, reason).map(Some),
            None if batch_no != spe => Err(Error::Invalid(format!(
                "epoch {epoch_no} ended after {batch_no} of {spe} batches"
            ))),
            None => Ok(None),
        }
    }

    /// One step on `batch` at the schedule's learning rate: forward and backward (and the
    /// gradient all-reduce), the global figures, the NaN/Inf guard and the update
    /// ([`Trainer::guarded_update`]), and its report. Returns the stop reason when the run stops
    /// after it (a stop request on any rank, or `--max_steps`).
    /// Errors: as the step; a non-finite loss or gradient without an overflow-checking loss
    /// scale (naming the step, and the parameter).
    fn train_step(
        &mut self,
        epoch_no: u64,
        batch: &Batch,
        progress: &mut EpochProgress,
    ) -> Result<Option<StopReason>> {
        let lr = self.lrs.at(self.step);
        let at = format!(
            "at global step {} (epoch {epoch_no}, batch {})",
            self.step + 1,
            progress.batch_no + 1
        );
        let figures = match self.staged_step(batch, lr, &at)? {
            Some(figures) => figures,
            None => {
                let local = self.forward_backward(batch)?;
                let figures = self.global_batch(&local, batch.len())?;
                self.guarded_update(&figures, lr, &at)?;
                figures
            }
        };
        if let Some(fault) = &self.fault {
            fault.check(self.step + 1, self.comm.rank());
        }
        self.step += 1;
        progress.add(&figures, lr);
        self.report_step(epoch_no, &figures, lr, progress);
        Ok(if figures.stop_requested {
            Some(StopReason::Interrupted)
        } else if self.at_max_steps() {
            Some(StopReason::MaxSteps)
        } else {
            None
        })
    }

    /// Forward, backward and (data parallel) the gradient all-reduce. Returns this rank's
    /// figures.
    fn forward_backward(&mut self, batch: &Batch) -> Result<StepStats> {
        match self.reducer.as_mut() {
            Some(red) => {
                self.tn
                    .forward_backward_reduced(&batch.images, &batch.labels, red.as_mut())
            }
            None => self.tn.forward_backward(&batch.images, &batch.labels),
        }
    }

    /// The NaN/Inf guard, then the update at `lr` (`at` names the step for messages). Every
    /// rank decides alike: the loss is the global batch's and the gradients are all-reduced.
    ///
    /// - With a loss-scale manager that checks overflow (`dynamic`, or `drop_overflow_update`),
    ///   as MindSpore's `TrainOneStepWithLossScaleCell`: a non-finite loss or gradient is an
    ///   overflow, the update is skipped (weights, moments and EMA unchanged) and the scale
    ///   shrinks ([`TrainNet::apply_update`]).
    /// - Otherwise the run stops here with an error, before the update: the weights, and every
    ///   checkpoint written so far, stay finite.
    fn guarded_update(&mut self, figures: &BatchFigures, lr: f32, at: &str) -> Result<()> {
        if self.tn.loss_scaler().checks_overflow() {
            if figures.loss.is_finite() {
                self.tn.apply_update(lr)?;
            } else {
                self.tn.skip_update();
            }
            return Ok(());
        }
        let stop = |what: String| {
            Error::Invalid(format!(
                "{what} {at}: stopped before the update, so no checkpoint holds a non-finite \
                 value (lower lr, set clip_grad, or use loss_scale_type: dynamic to skip such \
                 steps)"
            ))
        };
        if !figures.loss.is_finite() {
            return Err(stop(format!("the loss became {}", figures.loss)));
        }
        if let Some(name) = self.tn.first_non_finite_gradient()? {
            return Err(stop(format!(
                "the gradient of '{name}' holds NaN or infinite values"
            )));
        }
        self.tn.apply_update(lr)?;
        Ok(())
    }

    /// The sums of epoch `epoch_no`'s steps before this run: those the `--resume` checkpoint
    /// carries when the run resumes inside the epoch (at `first_batch` > 0); with a checkpoint
    /// that holds none, zero, and a note that the epoch's line averages only the steps after
    /// the resume.
    fn sums_before(&mut self, epoch_no: u64, first_batch: usize) -> EpochSums {
        let carried = self.resumed_sums.take();
        if first_batch == 0 {
            return EpochSums::default();
        }
        carried.unwrap_or_else(|| {
            self.events.emit(&TrainEvent::Note(format!(
                "note: the checkpoint holds no sums of epoch {epoch_no}'s first {first_batch} \
                 steps: its metrics.jsonl line averages the steps after the resume only"
            )));
            EpochSums::default()
        })
    }

    /// The stop flag of [`TrainOptions::stop`] is set.
    fn interrupted(&self) -> bool {
        self.opts
            .stop
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// The global batch's loss and hits from this rank's (`local`, over `images` images), and
    /// whether any rank was asked to stop: a small all-reduce in a data-parallel job.
    fn global_batch(&self, local: &StepStats, images: usize) -> Result<BatchFigures> {
        let stop_requested = self.interrupted();
        if self.comm.size() == 1 {
            return Ok(BatchFigures {
                loss: local.loss,
                correct: local.correct,
                images,
                stop_requested,
            });
        }
        let n = images as f64;
        let mut v = [
            local.loss * n,
            local.correct as f64,
            n,
            stop_requested as u8 as f64,
        ];
        self.comm.all_reduce_sum_f64(&mut v)?;
        Ok(BatchFigures {
            loss: v[0] / v[2],
            correct: v[1] as usize,
            images: v[2] as usize,
            stop_requested: v[3] > 0.0,
        })
    }

    /// Reports the step just done, and MindCV's log line every `log_interval` batches.
    fn report_step(
        &mut self,
        epoch_no: u64,
        figures: &BatchFigures,
        lr: f32,
        progress: &mut EpochProgress,
    ) {
        let seconds = progress.t0.elapsed().as_secs_f64();
        self.events.emit(&TrainEvent::Step {
            epoch: epoch_no,
            batch: progress.batch_no,
            global_step: self.step,
            loss: figures.loss,
            lr,
            images_per_second: progress.images_per_second(seconds),
        });
        let log_interval = self.r.log_interval as usize;
        if log_interval > 0 && progress.batch_no.is_multiple_of(log_interval) {
            let line = log::step_line(
                epoch_no,
                self.num_epochs(),
                progress.batch_no,
                self.data.steps_per_epoch(),
                figures.loss,
                lr as f64,
                progress.last_log.elapsed().as_secs_f64(),
            );
            self.events.emit(&TrainEvent::Log(line));
            progress.last_log = Instant::now();
        }
    }

    /// The end of epoch `epoch_no`, after all its batches: its record; validation after every
    /// `val_interval`-th epoch and the last ([`Trainer::validate_epoch`]); (rank 0) the step
    /// checkpoint after every `ckpt_save_interval`-th epoch and the last; the record appended
    /// to `metrics.jsonl` (and `curves.png`/`.svg` redrawn from it) and reported. Returns whether the step checkpoint was due.
    fn end_epoch(&mut self, epoch_no: u64, progress: &EpochProgress) -> Result<bool> {
        let mut rec = progress.record(epoch_no, self.step);
        let last_epoch = epoch_no == self.num_epochs();
        if self.data.val.is_some()
            && (epoch_no.is_multiple_of(self.r.val_interval as u64) || last_epoch)
        {
            self.validate_epoch(&mut rec, &progress.sums)?;
        }
        let save = epoch_no.is_multiple_of(self.r.ckpt_save_interval as u64) || last_epoch;
        if save && self.root() {
            let spe = self.data.steps_per_epoch();
            let path = self.save_step_ckpt(epoch_no, spe, &progress.sums)?;
            self.report.last_checkpoint = Some(path);
        }
        if let Some(m) = self.metrics.as_mut() {
            m.append(&rec)?;
            crate::engine::curves::redraw_run(&self.save_dir)?;
        }
        self.events.emit(&TrainEvent::Epoch(&rec));
        self.report.epochs.push(rec);
        Ok(save)
    }

    /// Stops the run after batch `batch_no` of epoch `epoch_no`: at `--max_steps`, a final
    /// validation unless the epoch end just validated ([`Trainer::final_validation`]); (rank 0)
    /// the step checkpoint of this position unless the epoch end just wrote it (`saved_here`).
    /// Returns the reason to report ([`StopReason::Finished`] when the last step is done
    /// anyway).
    fn stop(
        &mut self,
        epoch_no: u64,
        progress: &EpochProgress,
        saved_here: bool,
        reason: StopReason,
    ) -> Result<StopReason> {
        if reason == StopReason::MaxSteps && self.validated_at != Some(self.step) {
            self.final_validation(epoch_no, progress)?;
        }
        if !saved_here && self.root() {
            let path = self.save_step_ckpt(epoch_no, progress.batch_no, &progress.sums)?;
            self.report.last_checkpoint = Some(path);
        }
        let total_steps = self.num_epochs() * self.data.steps_per_epoch() as u64;
        Ok(if self.step >= total_steps {
            StopReason::Finished
        } else {
            reason
        })
    }

    /// The validation of a run that `--max_steps` stops where no epoch end validated: as at an
    /// epoch end (figures reported, `<model>_best.ckpt` when Top-1 improves), and (rank 0) the
    /// record of the epoch's steps so far appended to `metrics.jsonl` (its `step` inside the
    /// epoch), so that a resumed run knows the best Top-1. Nothing without a validation split.
    fn final_validation(&mut self, epoch_no: u64, progress: &EpochProgress) -> Result<()> {
        if self.data.val.is_none() {
            return Ok(());
        }
        let mut rec = progress.record(epoch_no, self.step);
        self.validate_epoch(&mut rec, &progress.sums)?;
        if let Some(m) = self.metrics.as_mut() {
            m.append(&rec)?;
        }
        Ok(())
    }

    /// Validates the current weights ([`Trainer::validate`]), reports the figures and puts
    /// them in `rec`; (rank 0) saves `<model>_best.ckpt` when Top-1 beats the best so far.
    fn validate_epoch(&mut self, rec: &mut EpochRecord, sums: &EpochSums) -> Result<()> {
        let Some((acc, seconds)) = self.validate()? else {
            return Ok(());
        };
        self.validated_at = Some(self.step);
        let line = log::validation_line(acc.top1(), acc.top5(), seconds);
        self.events.emit(&TrainEvent::Validated(line));
        rec.val_top1 = Some(acc.top1());
        rec.val_top5 = Some(acc.top5());
        rec.val_loss = Some(acc.loss());
        if self.root() && self.report.best_val_top1.is_none_or(|b| acc.top1() > b) {
            self.report.best_val_top1 = Some(acc.top1());
            self.save(best_ckpt_name(self.model), sums)?;
        }
        Ok(())
    }

    /// Evaluates the current weights (the EMA weights with `ema`) on this rank's share of the
    /// validation split with the validate engine, then sums the counts and loss over the
    /// ranks. Returns the whole split's accumulator and the wall time (until every rank is
    /// done); None without a validation split.
    fn validate(&mut self) -> Result<Option<(Accumulator, f64)>> {
        let Some(val) = &self.data.val else {
            return Ok(None);
        };
        let t0 = Instant::now();
        let r = self.r;
        let mut acc = Accumulator::default();
        if !val.samples.is_empty() {
            // With EMA on, the averaged weights are the ones validated (and kept as the best).
            if r.ema {
                self.tn.read_ema_params(&mut self.scratch.params)?;
            } else {
                self.tn.read_params(&mut self.scratch.params)?;
            }
            let mut inf = InferenceNet::new(&self.scratch, self.factory.create()?)?;
            let events = &mut self.events;
            acc = evaluate(
                &mut inf,
                val.samples.clone(),
                val.transform.clone(),
                r.batch_size,
                r.num_parallel_workers,
                r.label_smoothing,
                &mut |done, total| events.emit(&TrainEvent::Validating { done, total }),
            )?
            .0;
        }
        if self.comm.size() > 1 {
            let mut v = [
                acc.samples as f64,
                acc.top1_hits as f64,
                acc.top5_hits as f64,
                acc.loss_sum,
            ];
            self.comm.all_reduce_sum_f64(&mut v)?;
            acc = Accumulator {
                samples: v[0] as usize,
                top1_hits: v[1] as usize,
                top5_hits: v[2] as usize,
                loss_sum: v[3],
            };
        }
        Ok(Some((acc, t0.elapsed().as_secs_f64())))
    }

    /// Writes the training state ([`save_state`]: weights, optimizer state, `global_step`, the
    /// learning-rate list, the epoch's `sums` so far) or, with `optimizer_only`, MindCV's optimizer file
    /// ([`save_optimizer`]) to `path`.
    fn write_state(&mut self, path: &Path, optimizer_only: bool, sums: &EpochSums) -> Result<()> {
        let opt = OptimizerState {
            global_step: self.step,
            momentum: self.r.momentum as f32,
            learning_rate: self.lrs.per_step(),
        };
        let params = &mut self.scratch.params;
        if optimizer_only {
            save_optimizer(path, &self.tn, params, &opt)
        } else {
            save_state(path, &self.tn, params, &opt, sums)
        }
    }

    /// Writes the training state to `ckpt_save_dir/<name>` ([`save_state`]) and reports it.
    fn save(&mut self, name: String, sums: &EpochSums) -> Result<PathBuf> {
        let path = self.save_dir.join(name);
        self.write_state(&path, false, sums)?;
        self.events.emit(&TrainEvent::Saved(&path));
        Ok(path)
    }

    /// Saves MindCV's `optim_<model>.ckpt` ([`save_optimizer`], overwritten each time as MindCV
    /// does) and the step checkpoint `<model>-<epoch_no>_<batch>.ckpt`, then applies the
    /// retention policy (`ckpt_save_policy: latest_k` keeps the newest `keep_checkpoint_max`).
    fn save_step_ckpt(&mut self, epoch_no: u64, batch: usize, sums: &EpochSums) -> Result<PathBuf> {
        let optim = self.save_dir.join(optim_ckpt_name(self.model));
        self.write_state(&optim, true, sums)?;
        let path = self.save(step_ckpt_name(self.model, epoch_no, batch), sums)?;
        if self.r.ckpt_save_policy == Some(CkptSavePolicy::LatestK) {
            prune_checkpoints(
                &self.save_dir,
                self.model,
                self.r.keep_checkpoint_max as usize,
            )?;
        }
        Ok(path)
    }
}
