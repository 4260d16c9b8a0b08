//! The figures of a step's global batch and what an epoch's steps add up to (the sums a
//! checkpoint carries, the throughput, the epoch's record).
use super::super::log::EpochRecord;
use super::super::state::EpochSums;
use std::time::Instant;

/// The figures of one step's global batch (every rank's images).
pub(super) struct BatchFigures {
    /// Mean loss over the global batch.
    pub(super) loss: f64,
    /// Top-1 hits in the global batch.
    pub(super) correct: usize,
    /// Images in the global batch.
    pub(super) images: usize,
    /// A rank was asked to stop.
    pub(super) stop_requested: bool,
}

/// What an epoch's steps add up to.
pub(super) struct EpochProgress {
    /// When this run's steps of the epoch began.
    pub(super) t0: Instant,
    /// Batches done in the epoch (those before a resume included).
    pub(super) batch_no: usize,
    /// The sums over all the epoch's steps, from those carried by the checkpoint of a resumed
    /// epoch on (added to in the same order as an uninterrupted run, so the same bits).
    pub(super) sums: EpochSums,
    /// Images of this run's steps of the epoch (for the throughput).
    pub(super) images_here: u64,
    /// The learning rate of the last step.
    pub(super) last_lr: f32,
    /// When the last log line was reported.
    pub(super) last_log: Instant,
}

impl EpochProgress {
    /// An epoch starting at batch `first_batch` at learning rate `lr`; `before` the sums of its
    /// steps done before this run.
    pub(super) fn new(first_batch: usize, lr: f32, before: EpochSums) -> EpochProgress {
        EpochProgress {
            t0: Instant::now(),
            batch_no: first_batch,
            sums: before,
            images_here: 0,
            last_lr: lr,
            last_log: Instant::now(),
        }
    }

    /// Counts a step at learning rate `lr`; a non-finite loss (a step skipped as an overflow)
    /// is left out of the loss average.
    pub(super) fn add(&mut self, batch: &BatchFigures, lr: f32) {
        self.batch_no += 1;
        self.last_lr = lr;
        if batch.loss.is_finite() {
            self.sums.loss_sum += batch.loss;
            self.sums.loss_steps += 1;
        }
        self.sums.top1_hits += batch.correct as u64;
        self.sums.images += batch.images as u64;
        self.images_here += batch.images as u64;
    }

    /// Training images per second over this run's steps of the epoch.
    pub(super) fn images_per_second(&self, seconds: f64) -> f64 {
        self.images_here as f64 / seconds.max(1e-9)
    }

    /// The record of epoch `epoch_no`, finished at global step `step` (not validated yet): the
    /// loss and training accuracy over all the epoch's steps, those before a resume included;
    /// the wall time and throughput over this run's steps of it.
    pub(super) fn record(&self, epoch_no: u64, step: u64) -> EpochRecord {
        let all = self.sums;
        let seconds = self.t0.elapsed().as_secs_f64();
        EpochRecord {
            epoch: epoch_no,
            step,
            loss: all.loss_sum / all.loss_steps.max(1) as f64,
            lr: self.last_lr as f64,
            train_top1: 100.0 * all.top1_hits as f64 / all.images.max(1) as f64,
            val_top1: None,
            val_top5: None,
            val_loss: None,
            seconds,
            images_per_second: self.images_per_second(seconds),
        }
    }
}
