//! What a training run reports: the per-epoch record (the summary line and one JSON object per
//! line of `<ckpt_save_dir>/metrics.jsonl`), and MindCV's log-line formats.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the metrics log in `ckpt_save_dir`.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// One finished epoch, or the part of an epoch run before `--max_steps` stopped a run that then
/// validated (its `step` falls inside the epoch): a line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, 1-based.
    pub epoch: u64,
    /// Global step (optimizer steps done) at the end of the epoch (or at the stop).
    pub step: u64,
    /// Mean training loss over all the epoch's steps (unscaled, with label smoothing; a resumed
    /// epoch includes the steps before the resume, whose sums its checkpoint carries — or, from
    /// a checkpoint without them, only the steps after the resume, with a note; steps skipped
    /// for a non-finite loss under a dynamic loss scale are left out).
    pub loss: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Training Top-1 accuracy over all the epoch's images, percent (train mode, augmented
    /// inputs; a resumed epoch as `loss`).
    pub train_top1: f64,
    /// Validation Top-1 accuracy, percent, when validated after this epoch.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_top1: Option<f64>,
    /// Validation Top-5 accuracy, percent, when validated.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_top5: Option<f64>,
    /// Validation loss (the recipe's cross entropy), when validated.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
    /// Wall time of the epoch's training steps run by this process, seconds (validation and
    /// saving excluded; a resumed epoch: the steps after the resume).
    pub seconds: f64,
    /// Training images per second over those steps, decoding included.
    pub images_per_second: f64,
}

impl EpochRecord {
    /// MindCV's epoch summary line:
    /// `Epoch: [e/E], loss: x.xxxxxx, lr: x.xxxxxx, time: x.xxxxxxs, xx.xx images/s`.
    pub fn summary_line(&self, num_epochs: u64) -> String {
        format!(
            "Epoch: [{}/{}], loss: {:.6}, lr: {:.6}, train_top1: {:.4}%, time: {:.6}s, {:.2} images/s",
            self.epoch,
            num_epochs,
            self.loss,
            self.lr,
            self.train_top1,
            self.seconds,
            self.images_per_second
        )
    }
}

/// MindCV's per-`log_interval` line:
/// `Epoch: [e/E], batch: [b/B], loss: x.xxxxxx, lr: x.xxxxxx, time: x.xxxxxxs`.
pub fn step_line(
    epoch: u64,
    num_epochs: u64,
    batch: usize,
    steps_per_epoch: usize,
    loss: f64,
    lr: f64,
    seconds: f64,
) -> String {
    format!(
        "Epoch: [{epoch}/{num_epochs}], batch: [{batch}/{steps_per_epoch}], loss: {loss:.6}, \
         lr: {lr:.6}, time: {seconds:.6}s"
    )
}

/// MindCV's validation line:
/// `Validation Top_1_Accuracy: xx.xxxx%, Top_5_Accuracy: xx.xxxx%, time: x.xxxxxxs`.
pub fn validation_line(top1: f64, top5: f64, seconds: f64) -> String {
    format!(
        "Validation Top_1_Accuracy: {top1:.4}%, Top_5_Accuracy: {top5:.4}%, time: {seconds:.6}s"
    )
}

/// Appends records to `<dir>/metrics.jsonl`, one JSON object per line, flushed per record.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens (creating, appending) `<dir>/metrics.jsonl`. Errors: [`Error::Io`] naming it.
    pub fn open(dir: &Path) -> Result<MetricsLog> {
        let path = dir.join(METRICS_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(MetricsLog { path, file })
    }

    /// Appends one record. Errors: [`Error::Io`] naming the file.
    pub fn append(&mut self, rec: &EpochRecord) -> Result<()> {
        let mut line = serde_json::to_string(rec).expect("a record always serialises");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// The best `val_top1` among the records of `<dir>/metrics.jsonl` at or before `global_step`
/// (to keep `<model>_best.ckpt` meaningful across a resume). Missing file or unreadable lines
/// are skipped: None when nothing was validated.
pub fn best_val_top1(dir: &Path, global_step: u64) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(METRICS_FILE)).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<EpochRecord>(l).ok())
        .filter(|r| r.step <= global_step)
        .filter_map(|r| r.val_top1)
        .reduce(f64::max)
}
