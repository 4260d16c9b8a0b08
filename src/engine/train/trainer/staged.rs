//! The training step as one captured graph ([`TrainNet::step_staged`](crate::optim::TrainNet::step_staged)), where the run allows it.
use super::progress::BatchFigures;
use super::{TrainEvent, Trainer};
use crate::data::Batch;
use crate::engine::device::BackendFactory;
use crate::{Error, Result};

impl<F: BackendFactory, E: FnMut(&TrainEvent)> Trainer<'_, F, E> {
    /// The step as one captured graph where it can be ([`TrainNet::step_staged`](crate::optim::TrainNet::step_staged)): one
    /// process, a backend that keeps the loss on the device (Ascend), a fixed loss scale, and
    /// either the learning rate on the device ([`TrainNet::lr_on_device`](crate::optim::TrainNet::lr_on_device): any schedule) or
    /// the learning rate of the previous step (a captured update with the learning rate as an
    /// argument replays it: with a schedule that moves every step, the op-by-op step and its
    /// guard run instead). The figures are read back every step (the log and the epoch means need
    /// them: one synchronise). The update is inside the step, so the NaN/Inf guard comes
    /// after it: a non-finite loss stops the run before anything is saved (and
    /// `state::save_state` refuses non-finite weights), where the op-by-op step stops before
    /// the update. None when the step is not for this path.
    pub(super) fn staged_step(
        &mut self,
        batch: &Batch,
        lr: f32,
        at: &str,
    ) -> Result<Option<BatchFigures>> {
        // A learning rate kept on the device serves every step; otherwise only a repeated one.
        let steady_lr =
            self.tn.lr_on_device() || (self.step > 0 && self.lrs.at(self.step - 1) == lr);
        if self.reducer.is_some()
            || !steady_lr
            || !self.tn.loss_on_device()
            || self.tn.loss_scaler().checks_overflow()
            || self.r.clip_grad
            || self.r.ema
        {
            return Ok(None);
        }
        let Some(local) = self
            .tn
            .step_staged(&batch.images, &batch.labels, lr, true)?
        else {
            return Err(Error::Invalid("a read step returned no figures".into()));
        };
        for n in self.tn.take_graph_notes() {
            self.events.emit(&TrainEvent::Note(n));
        }
        let figures = self.global_batch(&local, batch.len())?;
        if !figures.loss.is_finite() {
            return Err(Error::Invalid(format!(
                "the loss became {} {at}: stopped before any checkpoint holds the step's \
                 update (lower lr, set clip_grad, or use loss_scale_type: dynamic to skip such \
                 steps)",
                figures.loss
            )));
        }
        Ok(Some(figures))
    }
}
