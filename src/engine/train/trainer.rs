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
mod setup;

use self::fault::FaultInjection;
use self::setup::{LrList, StartModel, TrainData};
use super::log::{self, EpochRecord, MetricsLog};
use super::state::{best_ckpt_name, prune_checkpoints, save_state, step_ckpt_name};
use super::{check_supported, StopReason, TrainEvent, TrainOptions, TrainReport};
use crate::config::{CkptSavePolicy, Recipe};
use crate::data::Batch;
use crate::dist::{self, Communicator, GradientReducer};
use crate::engine::device::{self, BackendFactory, Device, DeviceJob};
use crate::engine::validate::evaluate;
use crate::model::inference::InferenceNet;
use crate::model::metrics::Accumulator;
use crate::model::{Arch, SeNet};
use crate::optim::{StepStats, TrainNet};
use crate::{Error, Result};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Exit status of a data-parallel rank that failed and aborted the job.
const EXIT_RANK_FAILED: i32 = 1;

/// Runs a training job (see [`TrainOptions`]): checks the recipe ([`check_supported`],
/// [`Recipe::validate`]), opens `data_dir/train_split` (and `val_split` when `val_while_train`),
/// builds the model (MindCV's initialisation from `seed`, or `ckpt_path`'s weights, or the
/// `resume` checkpoint's full state), then trains:
///
/// - epoch `e` (0-based) visits the training images in `epoch_order(seed, e)`
///   (dataset order without `shuffle`), cut into `steps_per_epoch` batches of `batch_size`
///   (`drop_remainder` drops the incomplete last one);
/// - step `s` (global, 0-based) uses `lr_schedule(recipe, steps_per_epoch, epoch_size)[s]`;
/// - after epoch `e+1` divisible by `val_interval` (and the last), with `val_while_train`,
///   the current weights are evaluated on `val_split` (eval transform) and `<model>_best.ckpt`
///   is written when Top-1 improves;
/// - after epoch `e+1` divisible by `ckpt_save_interval` (and the last),
///   `<model>-<e+1>_<steps_per_epoch>.ckpt` is written (see [`super::state`]) and, with
///   `ckpt_save_policy: latest_k`, only the newest `keep_checkpoint_max` step checkpoints stay;
/// - at `max_steps` or when `stop` is set, `<model>-<epoch>_<batch>.ckpt` is written at the
///   current position (unless the epoch end just wrote it) and the run returns.
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
/// state; both `ckpt_path` and `resume` given; a non-finite loss (naming the step); I/O errors
/// writing checkpoints or logs.
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
    /// Notes for the user, reported once the run is set up.
    notes: Vec<String>,
    /// `ckpt_save_dir`.
    save_dir: PathBuf,
    /// `metrics.jsonl` (rank 0 only).
    metrics: Option<MetricsLog>,
    /// What [`run`] returns, kept up to date; `best_val_top1` is the best Top-1 so far.
    report: TrainReport,
}

/// The figures of one step's global batch (every rank's images).
struct BatchFigures {
    /// Mean loss over the global batch.
    loss: f64,
    /// Top-1 hits in the global batch.
    correct: usize,
    /// Images in the global batch.
    images: usize,
    /// A rank was asked to stop.
    stop_requested: bool,
}

/// What an epoch's steps add up to.
struct EpochProgress {
    /// When the epoch's steps began.
    t0: Instant,
    /// Batches done in the epoch (those before a resume included).
    batch_no: usize,
    /// Sum of the steps' losses, and the number of steps run.
    loss_sum: f64,
    steps: usize,
    /// Top-1 hits and images over those steps.
    correct: usize,
    images: usize,
    /// The learning rate of the last step.
    last_lr: f32,
    /// When the last log line was reported.
    last_log: Instant,
}

impl EpochProgress {
    fn new(first_batch: usize, lr: f32) -> EpochProgress {
        EpochProgress {
            t0: Instant::now(),
            batch_no: first_batch,
            loss_sum: 0.0,
            steps: 0,
            correct: 0,
            images: 0,
            last_lr: lr,
            last_log: Instant::now(),
        }
    }

    /// Counts a step at learning rate `lr`.
    fn add(&mut self, batch: &BatchFigures, lr: f32) {
        self.batch_no += 1;
        self.last_lr = lr;
        self.loss_sum += batch.loss;
        self.steps += 1;
        self.correct += batch.correct;
        self.images += batch.images;
    }

    /// Training images per second so far.
    fn images_per_second(&self, seconds: f64) -> f64 {
        self.images as f64 / seconds.max(1e-9)
    }

    /// The record of epoch `epoch_no`, finished at global step `step` (not validated yet).
    fn record(&self, epoch_no: u64, step: u64) -> EpochRecord {
        let seconds = self.t0.elapsed().as_secs_f64();
        EpochRecord {
            epoch: epoch_no,
            step,
            loss: self.loss_sum / self.steps.max(1) as f64,
            lr: self.last_lr as f64,
            train_top1: 100.0 * self.correct as f64 / self.images.max(1) as f64,
            val_top1: None,
            val_top5: None,
            val_loss: None,
            seconds,
            images_per_second: self.images_per_second(seconds),
        }
    }
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
        let (tn, step) = start.train_net(&factory, opts)?;
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
            notes: start.notes,
            save_dir: PathBuf::from(&r.ckpt_save_dir),
            metrics: None,
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

    /// Rank 0's outputs: creates `ckpt_save_dir`, writes the args dump `<model>.yaml` (the
    /// recipe) and opens `metrics.jsonl`; a resumed run takes the best validation Top-1 logged
    /// before its start step. Nothing on the other ranks.
    fn open_outputs(&mut self) -> Result<()> {
        if !self.root() {
            return Ok(());
        }
        let dir = &self.save_dir;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let args_dump = dir.join(format!("{}.yaml", self.model));
        std::fs::write(&args_dump, self.r.to_yaml()).map_err(|e| Error::io(&args_dump, e))?;
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
        let mut progress = EpochProgress::new(first_batch, self.lrs.at(self.step));
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
            Some(reason) => self.stop(epoch_no, batch_no, saved_here, reason).map(Some),
            None if batch_no != spe => Err(Error::Invalid(format!(
                "epoch {epoch_no} ended after {batch_no} of {spe} batches"
            ))),
            None => Ok(None),
        }
    }

    /// One step on `batch` at the schedule's learning rate ([`Trainer::optimizer_step`]), its
    /// global figures, and its report. Returns the stop reason when the run stops after it
    /// (a stop request on any rank, or `--max_steps`).
    /// Errors: as the step; a non-finite loss (naming the step).
    fn train_step(
        &mut self,
        epoch_no: u64,
        batch: &Batch,
        progress: &mut EpochProgress,
    ) -> Result<Option<StopReason>> {
        let lr = self.lrs.at(self.step);
        let local = self.optimizer_step(batch, lr)?;
        if let Some(fault) = &self.fault {
            fault.check(self.step + 1, self.comm.rank());
        }
        let figures = self.global_batch(&local, batch.len())?;
        if !figures.loss.is_finite() {
            return Err(Error::Invalid(format!(
                "the loss became {} at global step {} (epoch {epoch_no}, batch {}): lower lr",
                figures.loss,
                self.step + 1,
                progress.batch_no + 1
            )));
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

    /// Forward, backward, (data parallel) the gradient all-reduce, and the update at `lr`.
    /// Returns this rank's figures.
    fn optimizer_step(&mut self, batch: &Batch, lr: f32) -> Result<StepStats> {
        match self.reducer.as_mut() {
            Some(red) => self
                .tn
                .step_reduced(&batch.images, &batch.labels, lr, red.as_mut()),
            None => self.tn.step(&batch.images, &batch.labels, lr),
        }
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
            self.validate_epoch(&mut rec)?;
        }
        let save = epoch_no.is_multiple_of(self.r.ckpt_save_interval as u64) || last_epoch;
        if save && self.root() {
            let path = self.save_step_ckpt(epoch_no, self.data.steps_per_epoch())?;
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

    /// Stops the run after batch `batch_no` of epoch `epoch_no`: (rank 0) writes the step
    /// checkpoint of this position unless the epoch end just did (`saved_here`). Returns the
    /// reason to report ([`StopReason::Finished`] when the last step is done anyway).
    fn stop(
        &mut self,
        epoch_no: u64,
        batch_no: usize,
        saved_here: bool,
        reason: StopReason,
    ) -> Result<StopReason> {
        if !saved_here && self.root() {
            let path = self.save_step_ckpt(epoch_no, batch_no)?;
            self.report.last_checkpoint = Some(path);
        }
        let total_steps = self.num_epochs() * self.data.steps_per_epoch() as u64;
        Ok(if self.step >= total_steps {
            StopReason::Finished
        } else {
            reason
        })
    }

    /// Validates the current weights ([`Trainer::validate`]), reports the figures and puts
    /// them in `rec`; (rank 0) saves `<model>_best.ckpt` when Top-1 beats the best so far.
    fn validate_epoch(&mut self, rec: &mut EpochRecord) -> Result<()> {
        let Some((acc, seconds)) = self.validate()? else {
            return Ok(());
        };
        let line = log::validation_line(acc.top1(), acc.top5(), seconds);
        self.events.emit(&TrainEvent::Validated(line));
        rec.val_top1 = Some(acc.top1());
        rec.val_top5 = Some(acc.top5());
        rec.val_loss = Some(acc.loss());
        if self.root() && self.report.best_val_top1.is_none_or(|b| acc.top1() > b) {
            self.report.best_val_top1 = Some(acc.top1());
            self.save(best_ckpt_name(self.model))?;
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

    /// Writes the training state (weights, optimizer state, `global_step`, the next step's
    /// learning rate) to `ckpt_save_dir/<name>` ([`save_state`]) and reports it.
    fn save(&mut self, name: String) -> Result<PathBuf> {
        let path = self.save_dir.join(name);
        let lr = self.lrs.at(self.step);
        save_state(&path, &self.tn, &mut self.scratch.params, self.step, lr)?;
        self.events.emit(&TrainEvent::Saved(&path));
        Ok(path)
    }

    /// Saves the step checkpoint `<model>-<epoch_no>_<batch>.ckpt`, then applies the retention
    /// policy (`ckpt_save_policy: latest_k` keeps the newest `keep_checkpoint_max`).
    fn save_step_ckpt(&mut self, epoch_no: u64, batch: usize) -> Result<PathBuf> {
        let path = self.save(step_ckpt_name(self.model, epoch_no, batch))?;
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
