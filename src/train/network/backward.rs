//! The backward pass of [`TrainNet`], module by module in reverse, the Momentum step and the
//! accessors for gradients, parameters and optimizer state.
use super::layers::{conv_bn_backward, dense_backward};
use super::{index_of, Acts, StepStats, TrainNet};
use crate::backend::Backend;
use crate::model::Params;
use crate::{Error, Result, Tensor};

impl<B: Backend> TrainNet<B> {
    /// Backward from the loss gradient at the logits down to the stem, leaving every trainable
    /// parameter's gradient on the device.
    pub(super) fn backward(&mut self) -> Result<()> {
        let be = &self.backend;
        let p = &mut self.params;
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
            be.se_scale_add_relu_backward(&last.bn_out, shape, &ba.gate, &ba.out, g0, g1, gs0, g2)?;
            be.sigmoid_backward(&ba.gate, gs0, n * shape.c)?;
            dense_backward(be, p, &b.se_expand, &ba.hidden, n, gs0, Some(&mut *gs1))?;
            be.relu_backward(&ba.hidden, gs1, n * b.se_reduce.out_features)?;
            dense_backward(be, p, &b.se_reduce, &ba.squeeze, n, gs1, Some(&mut *gs2))?;
            be.global_avg_pool_backward(gs2, shape, g3)?;
            be.add_assign(g1, g3, shape.numel())?;
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
                )?;
                std::mem::swap(g1, g4);
            }
            // Shortcut.
            let in_len = ba.convs[0].in_shape.numel();
            match (&b.downsample, &ba.downsample) {
                (Some(d), Some(da)) => {
                    conv_bn_backward(be, p, d, da, input_buf, g2, g3, Some(&mut *g4))?;
                    be.add_assign(g1, g4, in_len)?;
                }
                _ => be.add_assign(g1, g2, in_len)?,
            }
            std::mem::swap(g0, g1);
        }
        // Stem: the 'same' max pool, then conv + BN + ReLU (no gradient for the image).
        be.max_pool2d_same_backward(&stem.bn_out, stem.out_shape, 3, 2, g0, g1)?;
        conv_bn_backward(be, p, &self.stem, stem, input, g1, g3, None)
    }

    /// MindSpore's Momentum step on every trainable parameter with learning rate `lr`, using
    /// the gradients of the last [`TrainNet::forward_backward`].
    pub fn apply_momentum(&mut self, lr: f32) -> Result<()> {
        let cfg = &self.cfg;
        for dp in &mut self.params {
            if let Some((grad, moment)) = &mut dp.train {
                let wd = if dp.decay { cfg.weight_decay } else { 0.0 };
                self.backend.momentum_update(
                    &mut dp.value,
                    grad,
                    moment,
                    dp.len,
                    lr,
                    cfg.momentum,
                    wd,
                    cfg.loss_scale,
                    cfg.nesterov,
                )?;
            }
        }
        Ok(())
    }

    /// One training step: [`TrainNet::forward_backward`] then [`TrainNet::apply_momentum`].
    pub fn step(&mut self, x: &Tensor, labels: &[usize], lr: f32) -> Result<StepStats> {
        let stats = self.forward_backward(x, labels)?;
        self.apply_momentum(lr)?;
        Ok(stats)
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
    /// scale). Errors: unknown or non-trainable name.
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
