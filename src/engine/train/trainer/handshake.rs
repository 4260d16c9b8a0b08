//! The handshake of a data-parallel job, before the first step: the ranks check that they run
//! the same job, take rank 0's state, and get the gradient all-reduce.
use super::{TrainEvent, Trainer};
use crate::dist;
use crate::engine::device::{BackendFactory, Device};
use crate::Result;
use std::sync::Arc;

impl<F: BackendFactory, E: FnMut(&TrainEvent)> Trainer<'_, F, E> {
    /// In a data-parallel job: checks that every rank has the same run layout and recipe
    /// ([`dist::agree_on`]) and, on Ascend, its own device; gives every rank rank 0's
    /// parameters and optimizer state (a broadcast); makes the gradient reducer
    /// ([`BackendFactory::gradient_reducer`]); notes how the job is split. Nothing in a single
    /// process. Errors: ranks that disagree (each naming what it has); a collective failure.
    pub(super) fn handshake(&mut self) -> Result<()> {
        if self.comm.size() == 1 {
            return Ok(());
        }
        dist::agree_on(&*self.comm, "the run", &self.layout())?;
        dist::agree_on(&*self.comm, "the recipe", &self.update_settings())?;
        if let Device::Ascend { id, .. } = self.dev {
            dist::check_distinct_devices(&*self.comm, id)?;
        }
        self.tn.broadcast_state(&*self.comm, 0)?;
        self.reducer = Some(self.factory.gradient_reducer(Arc::clone(&self.comm))?);
        let note = self.data_parallel_note();
        self.notes.push(note);
        Ok(())
    }

    /// The run's layout: what makes the ranks' collectives line up (steps, epochs, start step,
    /// validation, stopping).
    fn layout(&self) -> String {
        let r = self.r;
        let d = &self.data;
        format!(
            "{} ({} classes), {} training images, {} steps per epoch, {} epochs, start step {}, \
             {}, max_steps {}, ema {}, frozen BatchNorm {}",
            self.model,
            d.num_classes,
            d.train_samples,
            d.steps_per_epoch(),
            self.num_epochs(),
            self.start_step,
            d.val
                .as_ref()
                .map_or("no validation".to_string(), |v| format!(
                    "validation of {} images every {} epoch(s)",
                    v.total, r.val_interval
                )),
            self.opts
                .max_steps
                .map_or("none".to_string(), |m| m.to_string()),
            r.ema,
            self.opts.frozen_batch_norm
        )
    }

    /// What changes the update or the data order without changing the layout, and the
    /// device's arithmetic (precision and, in float32 on Ascend, the cube switches: ranks
    /// that round their convolutions differently would drift apart without an error).
    fn update_settings(&self) -> String {
        let r = self.r;
        let lr_bits: String = self
            .lrs
            .per_step()
            .iter()
            .map(|v| format!("{:08x}", v.to_bits()))
            .collect();
        format!(
            "seed {}, shuffle {}, image_resize {}, lr schedule {:016x}, momentum {}, \
             weight_decay {} ({:?}), nesterov {}, label_smoothing {}, loss_scale {} ({}, \
             drop_overflow_update {}), amp_level {}, clip {:?}, ema_decay {}, device {} ({})",
            r.seed,
            r.shuffle,
            r.image_resize,
            dist::fingerprint(&lr_bits),
            r.momentum,
            r.weight_decay,
            r.weight_decay_filter,
            r.use_nesterov,
            r.label_smoothing,
            r.loss_scale,
            r.loss_scale_type.as_str(),
            r.drop_overflow_update,
            r.amp_level.as_str(),
            r.clip_grad.then_some(r.clip_value),
            r.ema_decay,
            match self.dev {
                Device::Cpu { .. } => "cpu",
                Device::Ascend { .. } => "ascend",
            },
            self.dev.arithmetic()
        )
    }

    /// How the job is split, for the user.
    fn data_parallel_note(&self) -> String {
        let size = self.comm.size();
        let total = self.data.train_samples;
        let per_rank = self.data.plan.shard.samples_per_shard(total);
        let batch_size = self.r.batch_size;
        format!(
            "data parallel over {size} ranks ({}): each rank trains on {per_rank} of the \
             {total} images per epoch{}, batch {batch_size} per rank = global batch {}; \
             gradients averaged over the ranks before each update; BatchNorm statistics per \
             rank; rank 0 logs and saves",
            match self.dev {
                Device::Ascend { .. } if self.comm.name() != "hccl" => {
                    format!("{}; gradients over hccl", self.comm.name())
                }
                _ => self.comm.name().to_string(),
            },
            if per_rank * size > total {
                format!(
                    " (padded with {} repeated images, as MindSpore's DistributedSampler)",
                    per_rank * size - total
                )
            } else {
                String::new()
            },
            batch_size * size
        )
    }
}
