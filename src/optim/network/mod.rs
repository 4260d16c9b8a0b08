//! The SENet in training mode on any [`Backend`]: forward with batch statistics, keeping what the
//! backward needs, then an explicit backward module by module, and MindSpore's Momentum update.
//!
//! Follows MindCV `senet.py` (the same network as [`crate::model::inference`]) with
//! `nn.BatchNorm2d` in training mode (eps 1e-5, momentum 0.9), MindCV's `CrossEntropySmooth`
//! loss and `nn.Momentum` (`mindcv.md` sections 1 and 5). Activations live in buffers allocated
//! once per batch shape; gradient buffers are reused from block to block.
use crate::backend::{
    Activation, Backend, Conv2dParams, CrossEntropyParams, MaxPool2dParams, Shape4,
};
use crate::dist::GradientReducer;
use crate::model::arch::{blocks, BlockKind, BlockSpec};
use crate::model::{Arch, SeNet};
use crate::{Error, Result, Tensor};

mod backward;
mod graph;
mod layers;

use graph::StepGraph;
pub use graph::{npu_graph_from_env, NPU_GRAPH_ENV};

use layers::{conv_bn_forward, dense_forward};

/// BatchNorm epsilon (MindSpore `nn.BatchNorm2d` default).
const BN_EPS: f32 = 1e-5;
/// BatchNorm momentum in MindSpore's convention: moving = 0.9 * moving + 0.1 * batch.
const BN_MOMENTUM: f32 = 0.9;

/// Loss and optimizer settings of a run (MindCV `CrossEntropySmooth` and
/// `create_optimizer(opt="momentum", ...)`).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Label smoothing of the cross entropy (0.1 in the SENet recipes).
    pub label_smoothing: f32,
    /// Momentum coefficient (0.9 in the SENet recipes).
    pub momentum: f32,
    /// Weight decay applied to the parameters `decay` selects.
    pub weight_decay: f32,
    /// Nesterov momentum (`use_nesterov`).
    pub nesterov: bool,
    /// Fixed loss scale (`loss_scale`): the loss gradient is multiplied by it and the update
    /// divides it back out, as MindSpore's FixedLossScaleManager + optimizer `loss_scale` do.
    /// [`TrainNet::set_loss_scaler`] replaces it with another manager (drop-overflow, dynamic).
    pub loss_scale: f32,
    /// `clip_grad` with `clip_value`: gradients (unscaled) are clipped to this global L2 norm
    /// (MindSpore `ops.clip_by_global_norm`) before the update.
    pub clip_value: Option<f32>,
    /// `ema` with `ema_decay`: an exponential moving average of every parameter (BN moving
    /// statistics included) is kept, updated after each step with the decay
    /// `ema_decay * (1 - exp(-t / 2000))` at update `t` (MindCV `TrainStep.ema_update`).
    pub ema_decay: Option<f32>,
}

impl TrainConfig {
    /// The loss and optimizer settings of MindCV's SENet ImageNet recipes
    /// (`configs/senet/*_ascend.yaml`): label smoothing 0.1, momentum 0.9 (not Nesterov),
    /// weight decay 1e-4, fixed loss scale 1024, no gradient clipping, no EMA. What
    /// `senet bench --train` steps with; a recipe file's own values come from
    /// `senet train`'s recipe reader instead.
    pub fn mindcv_senet() -> TrainConfig {
        TrainConfig {
            label_smoothing: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            nesterov: false,
            loss_scale: 1024.0,
            clip_value: None,
            ema_decay: None,
        }
    }
}

/// One tensor of the model on the device, with its gradient and optimizer state when trainable.
struct DeviceParam<B: Backend> {
    value: B::Buffer,
    /// Gradient and Momentum accumulator (`moments.<name>`); None for BN moving statistics.
    train: Option<(B::Buffer, B::Buffer)>,
    len: usize,
    /// Whether weight decay applies to it.
    decay: bool,
}

/// Indices (into the parameter list) of a conv followed by its BatchNorm.
#[derive(Debug, Clone, Copy)]
struct ConvBn {
    weight: usize,
    gamma: usize,
    beta: usize,
    mean: usize,
    var: usize,
    w_shape: [usize; 4],
    p: Conv2dParams,
    relu: bool,
}

/// Indices of a Dense layer's weight and bias.
#[derive(Debug, Clone, Copy)]
struct Dense {
    weight: usize,
    bias: usize,
    out_features: usize,
    in_features: usize,
}

/// One residual block's layers.
struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
    se_reduce: Dense,
    se_expand: Dense,
}

/// What the forward keeps for one conv + BN: the conv output, the BN (+ReLU) output and the
/// batch statistics.
struct ConvBnActs<B: Backend> {
    conv_out: B::Buffer,
    bn_out: B::Buffer,
    saved_mean: B::Buffer,
    saved_invstd: B::Buffer,
    in_shape: Shape4,
    out_shape: Shape4,
}

/// What the forward keeps for one block.
struct BlockActs<B: Backend> {
    convs: Vec<ConvBnActs<B>>,
    downsample: Option<ConvBnActs<B>>,
    squeeze: B::Buffer,
    hidden: B::Buffer,
    gate: B::Buffer,
    out: B::Buffer,
}

/// Activations of a whole forward pass for one input shape.
struct Acts<B: Backend> {
    input_shape: Shape4,
    /// The images, then (from [`targets_at`]) room for the smoothed targets of a step whose
    /// loss stays on the device: one upload fills both.
    input: B::Buffer,
    /// The per-row losses and f32 logits of such a step
    /// ([`CrossEntropyParams::on_device_layout`]).
    readback: B::Buffer,
    stem: ConvBnActs<B>,
    pooled: B::Buffer,
    blocks: Vec<BlockActs<B>>,
    features: B::Buffer,
    logits: B::Buffer,
    /// Gradient scratch, each as large as the largest activation.
    g: [B::Buffer; 6],
    /// Small (N, C) gradient scratch for the SE path and the head.
    g_small: [B::Buffer; 3],
}

/// The result of one forward + backward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Mean loss over the batch (unscaled).
    pub loss: f64,
    /// Samples whose top-1 prediction equals the label.
    pub correct: usize,
    /// The step's gradients held an Inf or NaN and the update was skipped (only with a
    /// loss-scale manager that checks overflow, see [`crate::optim::LossScaler`]).
    pub overflow: bool,
}

/// A SENet being trained on backend `B`.
pub struct TrainNet<B: Backend> {
    backend: B,
    arch: Arch,
    num_classes: usize,
    names: Vec<String>,
    params: Vec<DeviceParam<B>>,
    stem: ConvBn,
    blocks: Vec<Block>,
    classifier: Dense,
    cfg: TrainConfig,
    shapes: Vec<Vec<usize>>,
    /// EMA copies of every parameter, in parameter order, when `cfg.ema_decay` is set.
    ema: Option<Vec<B::Buffer>>,
    /// EMA updates done (MindCV's `updates`, a float32 counter).
    ema_updates: f32,
    /// The loss-scale manager (fixed `cfg.loss_scale` unless replaced).
    scaler: crate::optim::LossScaler,
    acts: Option<Acts<B>>,
    /// BatchNorm normalises with the moving statistics and leaves them unchanged
    /// ([`TrainNet::set_frozen_batch_norm`]).
    frozen_bn: bool,
    /// The captured step, its switch and its fallback notes ([`TrainNet::step_staged`]).
    graph: StepGraph,
}

/// Where the smoothed targets start in [`Acts::input`] for input shape `xs`: after the images,
/// on a 32-byte boundary.
fn targets_at(xs: Shape4) -> usize {
    xs.numel().div_ceil(8) * 8
}

fn index_of(names: &[String], name: &str) -> Result<usize> {
    names
        .iter()
        .position(|n| n == name)
        .ok_or_else(|| Error::Invalid(format!("model has no parameter '{name}'")))
}

impl<B: Backend> TrainNet<B> {
    /// Uploads `net`'s parameters to `backend`, with zero Momentum accumulators. `decay(name)`
    /// says which parameters get weight decay (see [`crate::optim::decays`]). The backend's
    /// fast forward convolutions are switched off ([`Backend::set_fast_conv`]), so that a step
    /// matches MindSpore's (the CPU's Winograd F(2x2, 3x3) forward and F(4x4, 3x3) data
    /// gradients stay within the golden step's tolerance:
    /// `CpuBackend::set_winograd_training_forward`, `CpuBackend::set_winograd_data_gradient`).
    /// Errors: a parameter missing from `net`, a backend allocation failure.
    pub fn new(
        net: &SeNet,
        mut backend: B,
        cfg: TrainConfig,
        decay: impl Fn(&str) -> bool,
    ) -> Result<Self> {
        backend.set_fast_conv(false);
        let names: Vec<String> = net.params.specs().iter().map(|s| s.name.clone()).collect();
        let params = net
            .params
            .iter()
            .map(|(spec, t)| {
                let train = if spec.kind.trainable() {
                    Some((backend.alloc(t.numel())?, backend.alloc(t.numel())?))
                } else {
                    None
                };
                Ok(DeviceParam {
                    value: backend.upload(&t.data)?,
                    train,
                    len: t.numel(),
                    decay: spec.kind.trainable() && decay(&spec.name),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let conv_bn = |conv: &str, bn: &str, p: Conv2dParams, relu: bool| -> Result<ConvBn> {
            let weight = index_of(&names, &format!("{conv}.weight"))?;
            let s = &net.params.specs()[weight].shape;
            Ok(ConvBn {
                weight,
                gamma: index_of(&names, &format!("{bn}.gamma"))?,
                beta: index_of(&names, &format!("{bn}.beta"))?,
                mean: index_of(&names, &format!("{bn}.moving_mean"))?,
                var: index_of(&names, &format!("{bn}.moving_variance"))?,
                w_shape: [s[0], s[1], s[2], s[3]],
                p,
                relu,
            })
        };
        let dense = |prefix: &str| -> Result<Dense> {
            let weight = index_of(&names, &format!("{prefix}.weight"))?;
            let s = &net.params.specs()[weight].shape;
            Ok(Dense {
                weight,
                bias: index_of(&names, &format!("{prefix}.bias"))?,
                out_features: s[0],
                in_features: s[1],
            })
        };
        let pad = |stride, padding, groups| Conv2dParams {
            stride,
            padding,
            groups,
        };
        let stem = conv_bn("layer0.0", "layer0.1", pad(2, 3, 1), true)?;
        let mut block_list = Vec::new();
        for s in blocks(net.arch) {
            let block = |s: &BlockSpec| -> Result<Block> {
                let p = &s.prefix;
                let c = |i: usize, params, relu| {
                    conv_bn(&format!("{p}.conv{i}"), &format!("{p}.bn{i}"), params, relu)
                };
                let convs = match s.kind {
                    BlockKind::Basic => {
                        vec![c(1, pad(s.stride, 1, 1), true)?, c(2, pad(1, 1, 1), false)?]
                    }
                    _ => vec![
                        c(1, pad(1, 0, 1), true)?,
                        c(2, pad(s.stride, 1, s.groups), true)?,
                        c(3, pad(1, 0, 1), false)?,
                    ],
                };
                let downsample = if s.downsample {
                    Some(conv_bn(
                        &format!("{p}.downsample.0"),
                        &format!("{p}.downsample.1"),
                        pad(s.stride, 0, 1),
                        false,
                    )?)
                } else {
                    None
                };
                Ok(Block {
                    convs,
                    downsample,
                    se_reduce: dense(&format!("{p}.se_module.conv_reduce"))?,
                    se_expand: dense(&format!("{p}.se_module.conv_expand"))?,
                })
            };
            block_list.push(block(&s)?);
        }
        let classifier = dense("classifier")?;
        let ema = match cfg.ema_decay {
            Some(_) => Some(
                net.params
                    .iter()
                    .map(|(_, t)| backend.upload(&t.data))
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        let cfg_scale = cfg.loss_scale;
        Ok(TrainNet {
            backend,
            arch: net.arch,
            num_classes: net.num_classes,
            names,
            params,
            stem,
            blocks: block_list,
            classifier,
            cfg,
            shapes: net.params.specs().iter().map(|s| s.shape.clone()).collect(),
            ema,
            ema_updates: 0.0,
            scaler: crate::optim::LossScaler::Fixed {
                scale: cfg_scale,
                drop_overflow_update: false,
            },
            acts: None,
            frozen_bn: false,
            graph: StepGraph::default(),
        })
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The variant.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Output classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Frozen BatchNorm (default off): every BatchNorm normalises with its moving statistics in
    /// training too and never updates them, as MindSpore's
    /// `nn.BatchNorm2d(use_batch_statistics=False)`; gamma and beta are still trained
    /// ([`Backend::batch_norm_frozen`]). The network then computes each sample independently of
    /// the others in its batch, which is what makes data-parallel training comparable with one
    /// process exactly (and fine-tuning with tiny batches stable).
    pub fn set_frozen_batch_norm(&mut self, frozen: bool) {
        self.frozen_bn = frozen;
    }

    /// Whether BatchNorm is frozen ([`TrainNet::set_frozen_batch_norm`]).
    pub fn frozen_batch_norm(&self) -> bool {
        self.frozen_bn
    }

    /// Allocates the activations for input shape `xs` (kept while the shape stays the same).
    fn ensure_acts(&mut self, xs: Shape4) -> Result<()> {
        if self.acts.as_ref().is_some_and(|a| a.input_shape == xs) {
            return Ok(());
        }
        // A captured graph uses these buffers: it goes before they do.
        self.drop_graph()?;
        let be = &self.backend;
        let n = xs.n;
        let mut max_len = xs.numel();
        let mut conv_acts = |c: &ConvBn, in_shape: Shape4| -> Result<ConvBnActs<B>> {
            let [cout, _, kh, kw] = c.w_shape;
            let (oh, ow) = c.p.out_hw(in_shape.h, in_shape.w, kh, kw);
            let out_shape = Shape4::new(n, cout, oh, ow);
            max_len = max_len.max(out_shape.numel()).max(in_shape.numel());
            Ok(ConvBnActs {
                conv_out: be.alloc(out_shape.numel())?,
                bn_out: be.alloc(out_shape.numel())?,
                saved_mean: be.alloc(cout)?,
                saved_invstd: be.alloc(cout)?,
                in_shape,
                out_shape,
            })
        };
        let stem = conv_acts(&self.stem, xs)?;
        let s = stem.out_shape;
        let pooled_shape = MaxPool2dParams::same(3, 2).geometry(s)?.ys;
        let pooled = be.alloc(pooled_shape.numel())?;
        let mut cur = pooled_shape;
        let mut block_acts = Vec::with_capacity(self.blocks.len());
        let mut max_c = 0;
        for b in &self.blocks {
            let mut convs = Vec::new();
            let mut shape = cur;
            for c in &b.convs {
                let a = conv_acts(c, shape)?;
                shape = a.out_shape;
                convs.push(a);
            }
            let downsample = match &b.downsample {
                Some(d) => Some(conv_acts(d, cur)?),
                None => None,
            };
            max_c = max_c.max(shape.c);
            block_acts.push(BlockActs {
                convs,
                downsample,
                squeeze: be.alloc(n * shape.c)?,
                hidden: be.alloc(n * b.se_reduce.out_features)?,
                gate: be.alloc(n * shape.c)?,
                out: be.alloc(shape.numel())?,
            });
            cur = shape;
        }
        let small = n * max_c.max(self.num_classes);
        let head = CrossEntropyParams {
            n,
            classes: self.num_classes,
            label_smoothing: 0.0,
            scale: 1.0,
        };
        self.acts = Some(Acts {
            input_shape: xs,
            input: be.alloc(targets_at(xs) + n * self.num_classes)?,
            readback: be.alloc(head.on_device_layout().1)?,
            stem,
            pooled,
            blocks: block_acts,
            features: be.alloc(n * cur.c)?,
            logits: be.alloc(n * self.num_classes)?,
            g: [
                be.alloc(max_len)?,
                be.alloc(max_len)?,
                be.alloc(max_len)?,
                be.alloc(max_len)?,
                be.alloc(max_len)?,
                be.alloc(max_len)?,
            ],
            g_small: [be.alloc(small)?, be.alloc(small)?, be.alloc(small)?],
        });
        Ok(())
    }

    /// Forward (train mode) and backward on a batch: `x` (N, 3, H, W) f32 NCHW, `labels` (N)
    /// class indices. Leaves every trainable parameter's gradient (of the mean loss, times the
    /// loss scale) on the device and updates the BN moving statistics, as one MindSpore training
    /// step does before the optimizer. Returns the mean loss and the top-1 hits.
    /// Errors: a shape that is not (N, 3, H >= 32, W >= 32), a label out of range.
    pub fn forward_backward(&mut self, x: &Tensor, labels: &[usize]) -> Result<StepStats> {
        self.forward_backward_with(x, labels, None)
    }

    /// [`TrainNet::forward_backward`], then the gradients averaged over the ranks by
    /// `reducer`: the backward hands it each gradient as soon as it is final
    /// ([`GradientReducer::gradients_ready`], so a reducer may overlap its communication with
    /// the rest of the backward) and [`GradientReducer::all_reduce_mean`] completes the
    /// average (see [`TrainNet::reduce_gradients`] for what the average is).
    /// Errors: as [`TrainNet::forward_backward`], the reducer's.
    pub fn forward_backward_reduced(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        reducer: &mut dyn GradientReducer<B>,
    ) -> Result<StepStats> {
        let stats = self.forward_backward_with(x, labels, Some(&mut *reducer))?;
        self.reduce_gradients(reducer)?;
        Ok(stats)
    }

    fn forward_backward_with(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        reducer: Option<&mut dyn GradientReducer<B>>,
    ) -> Result<StepStats> {
        let xs = self.check_batch(x, labels)?;
        self.ensure_acts(xs)?;
        self.forward(Some(x))?;
        let stats = self.head_loss(labels)?;
        self.backward(reducer)?;
        Ok(stats)
    }

    /// The input shape of a batch `x` with `labels`. Errors: as
    /// [`TrainNet::forward_backward`].
    fn check_batch(&self, x: &Tensor, labels: &[usize]) -> Result<Shape4> {
        let xs = crate::model::input_shape("training input", x)?;
        if labels.len() != x.shape[0] {
            return Err(Error::Shape(format!(
                "{} labels for a batch of {}",
                labels.len(),
                x.shape[0]
            )));
        }
        if let Some(&l) = labels.iter().find(|&&l| l >= self.num_classes) {
            return Err(Error::Invalid(format!(
                "label {l} is outside the model's {} classes",
                self.num_classes
            )));
        }
        Ok(xs)
    }

    /// The forward pass from the input buffer, after writing `x` into it when given.
    fn forward(&mut self, x: Option<&Tensor>) -> Result<()> {
        let be = &self.backend;
        let frozen = self.frozen_bn;
        let a = self.acts.as_mut().expect("allocated");
        let p = &mut self.params;
        if let Some(x) = x {
            be.write(&mut a.input, &x.data)?;
        }
        conv_bn_forward(be, p, &self.stem, &a.input, &mut a.stem, frozen)?;
        let stem_pool = MaxPool2dParams::same(3, 2);
        be.max_pool2d(stem_pool, &a.stem.bn_out, a.stem.out_shape, &mut a.pooled)?;
        let n = a.input_shape.n;
        for (i, b) in self.blocks.iter().enumerate() {
            let (done, rest) = a.blocks.split_at_mut(i);
            let input = if i == 0 { &a.pooled } else { &done[i - 1].out };
            let ba = &mut rest[0];
            for (j, c) in b.convs.iter().enumerate() {
                let (prev, cur) = ba.convs.split_at_mut(j);
                let src = if j == 0 { input } else { &prev[j - 1].bn_out };
                conv_bn_forward(be, p, c, src, &mut cur[0], frozen)?;
            }
            if let (Some(d), Some(da)) = (&b.downsample, ba.downsample.as_mut()) {
                conv_bn_forward(be, p, d, input, da, frozen)?;
            }
            let last = ba.convs.last().expect("blocks have convs");
            let shape = last.out_shape;
            be.global_avg_pool(&last.bn_out, shape, &mut ba.squeeze)?;
            dense_forward(
                be,
                p,
                &b.se_reduce,
                &ba.squeeze,
                n,
                Activation::Relu,
                &mut ba.hidden,
            )?;
            dense_forward(
                be,
                p,
                &b.se_expand,
                &ba.hidden,
                n,
                Activation::Sigmoid,
                &mut ba.gate,
            )?;
            // out = relu(bn_out * gate + shortcut).
            let shortcut = match &ba.downsample {
                Some(da) => &da.bn_out,
                None => input,
            };
            be.se_scale_add_relu_into(&last.bn_out, shape, &ba.gate, shortcut, &mut ba.out)?;
        }
        let last = a.blocks.last().expect("at least one block");
        let shape = last.convs.last().expect("blocks have convs").out_shape;
        be.global_avg_pool(&last.out, shape, &mut a.features)?;
        dense_forward(
            be,
            p,
            &self.classifier,
            &a.features,
            n,
            Activation::None,
            &mut a.logits,
        )
    }
}

impl<B: Backend> TrainNet<B> {
    /// Loss and its gradient at the logits (scaled by the loss scale), and the top-1 hits.
    fn head_loss(&mut self, labels: &[usize]) -> Result<StepStats> {
        let be = &self.backend;
        let a = self.acts.as_mut().expect("allocated");
        let n = labels.len();
        let classes = self.num_classes;
        let [dlogits, _, _] = &mut a.g_small;
        let p = CrossEntropyParams {
            n,
            classes,
            label_smoothing: self.cfg.label_smoothing,
            scale: self.scaler.scale(),
        };
        let mut logits = vec![0.0f32; n * classes];
        let loss =
            be.softmax_cross_entropy_and_logits(p, &a.logits, labels, dlogits, &mut logits)?;
        let correct = logits
            .chunks(classes)
            .zip(labels)
            .filter(|(row, &l)| crate::model::metrics::in_topk(row, l, 1))
            .count();
        Ok(StepStats {
            loss,
            correct,
            overflow: false,
        })
    }
}
