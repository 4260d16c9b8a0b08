//! The backward pass of [`TrainNet`], module by module in reverse, the Momentum step and the
//! accessors for gradients, parameters and optimizer state.
use super::layers::{conv_bn_backward, dense_backward};
use super::{index_of, Acts, ConvBn, Dense, DeviceParam, StepStats, TrainNet};
use crate::backend::{Backend, MaxPool2dParams, MomentumParams, MomentumSlot, SeGrads};
use crate::dist::{Communicator, GradBuffer, GradientReducer};
use crate::model::Params;
use crate::{Error, Result, Tensor};

impl<B: Backend> TrainNet<B> {
    /// Backward from the loss gradient at the logits down to the stem, leaving every trainable
    /// parameter's gradient on the device; each layer's gradients are handed to `red` as soon
    /// as they are final ([`GradientReducer::gradients_ready`]), in the order produced.
    pub(super) fn backward(&mut self, mut red: Option<&mut dyn GradientReducer<B>>) -> Result<()> {
        let be = &self.backend;
        let frozen = self.frozen_bn;
        let names = &self.names;
        let p = &mut self.params;
        let mut ready = |p: &mut [DeviceParam<B>], idx: &[usize]| match red.as_deref_mut() {
            Some(r) => report_ready(r, be, p, names, idx),
            None => Ok(()),
        };
        let Acts {
            input,
            stem,
            pooled,
            blocks: block_acts,
            features,
            g,
            g_small,
            ..
        } = self.acts.as_mut().expect("allocated");
        let [g0, g1, g2, g3, g4, _] = g;
        let [gs0, gs1, gs2] = g_small;
        let n = stem.out_shape.n;
        // Head: classifier, then the global average pool, into g0 = d(last block's output).
        let last_shape = block_acts
            .last()
            .expect("blocks")
            .convs
            .last()
            .expect("convs")
            .out_shape;
        dense_backward(be, p, &self.classifier, features, n, gs0, Some(&mut *gs1))?;
        ready(p, &dense_params(&self.classifier))?;
        be.global_avg_pool_backward(gs1, last_shape, g0)?;
        for (i, (b, ba)) in self.blocks.iter().zip(block_acts.iter()).enumerate().rev() {
            let input_buf = if i == 0 {
                &*pooled
            } else {
                &block_acts[i - 1].out
            };
            let last = ba.convs.last().expect("convs");
            let shape = last.out_shape;
            // SE scale + residual + ReLU: g1 = d(last bn_out) via the scale, gs0 = d(gate),
            // g2 = d(shortcut).
            let grads = SeGrads {
                dx: &mut *g1,
                dgate: &mut *gs0,
                dshortcut: &mut *g2,
            };
            be.se_scale_add_relu_backward(&last.bn_out, shape, &ba.gate, &ba.out, g0, grads)?;
            // The activation gradients go into another scratch buffer (no copy back).
            be.sigmoid_backward_into(&ba.gate, gs0, gs2, n * shape.c)?;
            dense_backward(be, p, &b.se_expand, &ba.hidden, n, gs2, Some(&mut *gs1))?;
            ready(p, &dense_params(&b.se_expand))?;
            be.relu_backward(&ba.hidden, gs1, n * b.se_reduce.out_features)?;
            dense_backward(be, p, &b.se_reduce, &ba.squeeze, n, gs1, Some(&mut *gs2))?;
            ready(p, &dense_params(&b.se_reduce))?;
            be.global_avg_pool_backward_add(gs2, shape, g1, g3)?;
            // Residual branch, last conv first: g1 = d(bn_out) in, d(conv input) out.
            for j in (0..b.convs.len()).rev() {
                let src = if j == 0 {
                    input_buf
                } else {
                    &ba.convs[j - 1].bn_out
                };
                conv_bn_backward(
                    be,
                    p,
                    &b.convs[j],
                    &ba.convs[j],
                    src,
                    g1,
                    g3,
                    Some(&mut *g4),
                    frozen,
                )?;
                ready(p, &conv_bn_params(&b.convs[j]))?;
                std::mem::swap(g1, g4);
            }
            // Shortcut.
            let in_len = ba.convs[0].in_shape.numel();
            match (&b.downsample, &ba.downsample) {
                (Some(d), Some(da)) => {
                    conv_bn_backward(be, p, d, da, input_buf, g2, g3, Some(&mut *g4), frozen)?;
                    ready(p, &conv_bn_params(d))?;
                    be.add_assign(g1, g4, in_len)?;
                }
                _ => be.add_assign(g1, g2, in_len)?,
            }
            std::mem::swap(g0, g1);
        }
        // Stem: the 'same' max pool, then conv + BN + ReLU (no gradient for the image).
        let stem_pool = MaxPool2dParams::same(3, 2);
        be.max_pool2d_backward(stem_pool, &stem.bn_out, stem.out_shape, g0, g1)?;
        conv_bn_backward(be, p, &self.stem, stem, input, g1, g3, None, frozen)?;
        ready(p, &conv_bn_params(&self.stem))
    }

    /// The update after a backward pass, as MindCV runs it: MindSpore's Momentum on every
    /// trainable parameter with learning rate `lr`, then the EMA update when enabled.
    ///
    /// Without gradient clipping and EMA, MindCV trains through `mindspore.Model` with a fixed
    /// loss scale that the optimizer divides out (`loss_scale` of `nn.Momentum`). With either,
    /// it uses its own `TrainStep`: gradients are divided by the loss scale first, clipped to the
    /// global norm `clip_value` (`ops.clip_by_global_norm`: times
    /// `clip_value / max(norm, clip_value)`), and the optimizer runs with loss scale 1.
    ///
    /// A loss-scale manager that checks overflow ([`TrainNet::set_loss_scaler`]) runs the step
    /// as MindSpore's `TrainOneStepWithLossScaleCell`: gradients divided by the scale first, and
    /// the optimizer with loss scale 1.
    ///
    /// The parameters are updated as MindSpore's two groups (weight decay, none), one
    /// [`Backend::momentum_update_group`] each: on Ascend A2/A3 one `aclnnFusedSgd` per group.
    pub fn apply_momentum(&mut self, lr: f32) -> Result<()> {
        let cfg = self.cfg.clone();
        let be = &self.backend;
        let loss_scale = self.scaler.scale();
        let custom_step =
            cfg.clip_value.is_some() || cfg.ema_decay.is_some() || self.scaler.checks_overflow();
        let optimizer_scale = if custom_step {
            if loss_scale != 1.0 {
                for dp in &mut self.params {
                    if let Some((grad, _)) = &mut dp.train {
                        be.scale(grad, dp.len, 1.0 / loss_scale)?;
                    }
                }
            }
            if let Some(clip) = cfg.clip_value {
                let mut total = 0.0f64;
                for dp in &self.params {
                    if let Some((grad, _)) = &dp.train {
                        total += be.sum_squares(grad, dp.len)?;
                    }
                }
                let norm = total.sqrt() as f32;
                let factor = clip / norm.max(clip);
                if factor != 1.0 {
                    for dp in &mut self.params {
                        if let Some((grad, _)) = &mut dp.train {
                            be.scale(grad, dp.len, factor)?;
                        }
                    }
                }
            }
            1.0
        } else {
            loss_scale
        };
        // MindSpore's two parameter groups (weight decay or none), one group update each.
        let (mut decayed, mut plain) = (Vec::new(), Vec::new());
        for dp in &mut self.params {
            if let Some((grad, moment)) = &mut dp.train {
                let slot = MomentumSlot {
                    param: &mut dp.value,
                    grad,
                    moment,
                    len: dp.len,
                };
                if dp.decay {
                    decayed.push(slot);
                } else {
                    plain.push(slot);
                }
            }
        }
        for (wd, group) in [(cfg.weight_decay, &mut decayed), (0.0, &mut plain)] {
            if group.is_empty() {
                continue;
            }
            let p = MomentumParams {
                lr,
                momentum: cfg.momentum,
                weight_decay: wd,
                loss_scale: optimizer_scale,
                nesterov: cfg.nesterov,
            };
            be.momentum_update_group(p, group)?;
        }
        if let (Some(decay), Some(ema)) = (cfg.ema_decay, self.ema.as_mut()) {
            self.ema_updates += 1.0;
            // In float32, as MindCV's `ema_decay * (1 - exp(-updates / 2000))`.
            let d = decay * (1.0 - (-self.ema_updates / 2000.0).exp());
            for (e, dp) in ema.iter_mut().zip(&self.params) {
                be.axpby(e, &dp.value, dp.len, d, 1.0 - d)?;
            }
        }
        Ok(())
    }

    /// The EMA weights as MindCV saves them (`ema.<name>` for every parameter, model order),
    /// or None when EMA is off.
    pub fn ema_params(&self) -> Result<Option<Vec<(String, Tensor)>>> {
        let Some(ema) = &self.ema else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(ema.len());
        for (i, e) in ema.iter().enumerate() {
            out.push((format!("ema.{}", self.names[i]), self.download(e, i)?));
        }
        Ok(Some(out))
    }

    /// Copies the EMA weights (instead of the trained ones) into `params`, e.g. to validate
    /// them. Errors: EMA off, `params` of another model.
    pub fn read_ema_params(&self, params: &mut Params) -> Result<()> {
        let ema = self
            .ema
            .as_ref()
            .ok_or_else(|| Error::Invalid("EMA is not enabled".into()))?;
        for (i, name) in self.names.iter().enumerate() {
            let dst = params
                .get_mut(name)
                .ok_or_else(|| Error::Invalid(format!("parameter set has no '{name}'")))?;
            self.backend.download(&ema[i], &mut dst.data)?;
        }
        Ok(())
    }

    /// EMA updates done so far (MindCV's `updates`); 0 when EMA is off.
    pub fn ema_updates(&self) -> f32 {
        self.ema_updates
    }

    /// Restores the EMA state when resuming: `values` by parameter name (every parameter) and
    /// the update count. Errors: EMA off, an unknown or missing name, a wrong shape.
    pub fn set_ema(&mut self, values: &[(String, Tensor)], updates: f32) -> Result<()> {
        let Some(ema) = self.ema.as_mut() else {
            return Err(Error::Invalid("EMA is not enabled".into()));
        };
        for (i, name) in self.names.iter().enumerate() {
            let (_, t) = values
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| Error::Invalid(format!("no EMA value for '{name}'")))?;
            if t.shape != self.shapes[i] {
                return Err(Error::Shape(format!(
                    "ema.{name}: shape {:?}, expected {:?}",
                    t.shape, self.shapes[i]
                )));
            }
            self.backend.write(&mut ema[i], &t.data)?;
        }
        self.ema_updates = updates;
        Ok(())
    }

    /// One training step: [`TrainNet::forward_backward`] then [`TrainNet::apply_update`].
    pub fn step(&mut self, x: &Tensor, labels: &[usize], lr: f32) -> Result<StepStats> {
        let mut stats = self.forward_backward(x, labels)?;
        stats.overflow = !self.apply_update(lr)?;
        Ok(stats)
    }

    /// The update after a backward pass under the loss-scale manager: with one that checks
    /// overflow, a step whose gradients hold an Inf or NaN is skipped (parameters, moments and
    /// EMA unchanged) and the manager records the outcome (a dynamic scale shrinks or grows);
    /// otherwise [`TrainNet::apply_momentum`]. Returns whether the update was applied.
    /// Errors: the backend's.
    pub fn apply_update(&mut self, lr: f32) -> Result<bool> {
        if !self.scaler.checks_overflow() {
            self.apply_momentum(lr)?;
            return Ok(true);
        }
        let overflow = !self.gradients_finite()?;
        if !overflow {
            self.apply_momentum(lr)?;
        }
        self.scaler.record(overflow);
        Ok(!overflow)
    }

    /// Whether every gradient of the last backward is finite (MindSpore's overflow check): see
    /// [`TrainNet::first_non_finite_gradient`]. Errors: the backend's.
    pub fn gradients_finite(&self) -> Result<bool> {
        Ok(self.first_non_finite_gradient()?.is_none())
    }

    /// The name of the first trainable parameter (model order) whose gradient of the last
    /// backward holds a NaN or an infinity, or None: the sum of squares of each gradient, in
    /// f64 (finite for any finite f32 gradient), is finite. Errors: the backend's.
    pub fn first_non_finite_gradient(&self) -> Result<Option<&str>> {
        for (dp, name) in self.params.iter().zip(&self.names) {
            if let Some((grad, _)) = &dp.train {
                if !self.backend.sum_squares(grad, dp.len)?.is_finite() {
                    return Ok(Some(name));
                }
            }
        }
        Ok(None)
    }

    /// Skips the update of the last backward as an overflow: parameters, moments and EMA stay
    /// as they are, and the loss-scale manager records the overflow (a dynamic scale shrinks),
    /// as MindSpore's loss-scale cell does when its overflow flag is set.
    pub fn skip_update(&mut self) {
        self.scaler.record(true);
    }

    /// Replaces the loss-scale manager (default: fixed at the config's `loss_scale`, no overflow
    /// check), e.g. with MindCV's dynamic one ([`crate::optim::LossScaler::from_recipe`]).
    pub fn set_loss_scaler(&mut self, scaler: crate::optim::LossScaler) {
        self.scaler = scaler;
    }

    /// The loss-scale manager and its state (saved in checkpoints for an exact resume).
    pub fn loss_scaler(&self) -> &crate::optim::LossScaler {
        &self.scaler
    }

    /// One data-parallel training step: [`TrainNet::forward_backward`] on this rank's batch,
    /// the gradients averaged over the ranks by `reducer`
    /// ([`TrainNet::reduce_gradients`]), then [`TrainNet::apply_update`] (every rank holds the
    /// same averaged gradients, so every rank makes the same overflow decision). The returned
    /// statistics are this rank's.
    pub fn step_reduced(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        lr: f32,
        reducer: &mut dyn GradientReducer<B>,
    ) -> Result<StepStats> {
        let mut stats = self.forward_backward_reduced(x, labels, reducer)?;
        stats.overflow = !self.apply_update(lr)?;
        Ok(stats)
    }

    /// The backend and every trainable parameter's gradient buffer (model order, names as
    /// MindCV's), for a [`GradientReducer`] or any other in-place treatment of the gradients
    /// between [`TrainNet::forward_backward`] and [`TrainNet::apply_momentum`]. The gradients
    /// are those of the last backward: of the mean loss over the local batch, times the loss
    /// scale.
    pub fn gradients_mut(&mut self) -> (&B, Vec<GradBuffer<'_, B>>) {
        (&self.backend, grad_buffers(&mut self.params, &self.names))
    }

    /// Averages the gradients of the last backward over the ranks with `reducer`
    /// (MindSpore `gradients_mean=True`). Each rank's loss is the mean over its own batch of
    /// `b`, so the average over `N` ranks is the gradient of the mean loss over the `N*b`
    /// images, loss scale and label smoothing included (both are per-sample linear factors).
    /// Errors: the reducer's.
    pub fn reduce_gradients(&mut self, reducer: &mut dyn GradientReducer<B>) -> Result<()> {
        let (be, mut grads) = self.gradients_mut();
        reducer.all_reduce_mean(be, &mut grads)
    }

    /// Makes this rank's training state rank `root`'s: every parameter (BN moving statistics
    /// included), the Momentum accumulators and, with EMA, the averaged weights and the update
    /// count, through the host with `comm.broadcast_f32`. Run once at the start of a
    /// data-parallel job, so that all ranks start from the same state whatever each read.
    /// Errors: `root` outside the job, backend transfer errors.
    pub fn broadcast_state(&mut self, comm: &dyn Communicator, root: usize) -> Result<()> {
        if comm.size() == 1 {
            return crate::dist::SingleProcess.broadcast_f32(&mut [], root);
        }
        let be = &self.backend;
        let mut host = Vec::new();
        let mut bcast = |buf: &mut B::Buffer, len: usize| -> Result<()> {
            host.resize(len, 0.0f32);
            be.download(buf, &mut host)?;
            comm.broadcast_f32(&mut host, root)?;
            be.write(buf, &host)
        };
        for dp in &mut self.params {
            bcast(&mut dp.value, dp.len)?;
            if let Some((_, m)) = &mut dp.train {
                bcast(m, dp.len)?;
            }
        }
        if let Some(ema) = &mut self.ema {
            for (e, dp) in ema.iter_mut().zip(&self.params) {
                bcast(e, dp.len)?;
            }
            let mut updates = [self.ema_updates];
            comm.broadcast_f32(&mut updates, root)?;
            self.ema_updates = updates[0];
        }
        Ok(())
    }

    fn position(&self, name: &str) -> Result<usize> {
        index_of(&self.names, name)
    }

    fn download(&self, buf: &B::Buffer, i: usize) -> Result<Tensor> {
        let mut t = Tensor::zeros(&self.shapes[i]);
        self.backend.download(buf, &mut t.data)?;
        Ok(t)
    }

    /// The gradient of the trainable parameter `name` from the last backward (times the loss
    /// scale), read before the update (a fused optimizer leaves the unscaled gradient behind,
    /// [`Backend::momentum_update_group`]). Errors: unknown or non-trainable name.
    pub fn gradient(&self, name: &str) -> Result<Tensor> {
        let i = self.position(name)?;
        match &self.params[i].train {
            Some((g, _)) => self.download(g, i),
            None => Err(Error::Invalid(format!("'{name}' is not trainable"))),
        }
    }

    /// Copies the current values (BN moving statistics included) into `params`.
    /// Errors: `params` of another model.
    pub fn read_params(&self, params: &mut Params) -> Result<()> {
        for (i, name) in self.names.iter().enumerate() {
            let dst = params
                .get_mut(name)
                .ok_or_else(|| Error::Invalid(format!("parameter set has no '{name}'")))?;
            let mut host = vec![0.0f32; self.params[i].len];
            self.backend.download(&self.params[i].value, &mut host)?;
            dst.data = host;
        }
        Ok(())
    }

    /// The Momentum accumulators as MindSpore names them (`moments.<name>`), in model order.
    pub fn moments(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (i, dp) in self.params.iter().enumerate() {
            if let Some((_, m)) = &dp.train {
                out.push((format!("moments.{}", self.names[i]), self.download(m, i)?));
            }
        }
        Ok(out)
    }

    /// Sets the Momentum accumulator of `name` (e.g. when resuming). Errors: unknown or
    /// non-trainable name, wrong shape.
    pub fn set_moment(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let i = self.position(name)?;
        if value.shape != self.shapes[i] {
            return Err(Error::Shape(format!(
                "moments.{name}: shape {:?}, expected {:?}",
                value.shape, self.shapes[i]
            )));
        }
        match &mut self.params[i].train {
            Some((_, m)) => self.backend.write(m, &value.data),
            None => Err(Error::Invalid(format!("'{name}' is not trainable"))),
        }
    }
}

/// Every trainable parameter's gradient of `p` (model order, named from `names`), as a
/// [`GradientReducer`] takes them.
fn grad_buffers<'a, B: Backend>(
    p: &'a mut [DeviceParam<B>],
    names: &'a [String],
) -> Vec<GradBuffer<'a, B>> {
    p.iter_mut()
        .zip(names)
        .filter_map(|(dp, name)| {
            let len = dp.len;
            dp.train.as_mut().map(|(g, _)| GradBuffer {
                name: name.as_str(),
                grad: g,
                len,
            })
        })
        .collect()
}

/// Tells `red` that the gradients of the parameters `idx` (indices into `p`) are final: their
/// positions in [`grad_buffers`]'s list, in the order given.
fn report_ready<B: Backend>(
    red: &mut dyn GradientReducer<B>,
    be: &B,
    p: &mut [DeviceParam<B>],
    names: &[String],
    idx: &[usize],
) -> Result<()> {
    let ready: Vec<usize> = idx
        .iter()
        .filter(|&&i| p[i].train.is_some())
        .map(|&i| p[..i].iter().filter(|d| d.train.is_some()).count())
        .collect();
    let mut grads = grad_buffers(p, names);
    red.gradients_ready(be, &mut grads, &ready)
}

/// The trainable parameters of a conv + BN in the order its backward finishes them.
fn conv_bn_params(c: &ConvBn) -> [usize; 3] {
    [c.gamma, c.beta, c.weight]
}

/// The parameters of a Dense layer.
fn dense_params(d: &Dense) -> [usize; 2] {
    [d.weight, d.bias]
}
