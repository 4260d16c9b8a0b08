//! The SENet forward pass in eval mode on any [`Backend`]: BatchNorm folded into the preceding
//! conv (`w' = w*gamma/sqrt(var+eps)`, `b' = beta - mean*gamma/sqrt(var+eps)`, eps 1e-5 as
//! MindSpore `BatchNorm2d`), SE scale + residual add + ReLU fused, the stem max pool and each SE
//! squeeze asked of the backend together with the conv producing their input
//! ([`Backend::conv2d_max_pool`], [`Backend::conv2d_avg_pool`]: the CPU pools each image while it
//! is in cache), activation buffers allocated once per batch size and reused layer after layer.
//!
//! Network (MindCV `senet.py`): `layer0` (7x7/2 conv, BN, ReLU) -> `pool0` (3x3/2 max pool,
//! pad_mode "same"; timm's padding or ceil mode for timm's weights, [`SeNet::stem_pool`]) ->
//! `layer1..4` -> global average pool -> `classifier`. Each block:
//! convs -> `se_module` (GAP, Dense, ReLU, Dense, sigmoid, scale) -> + shortcut -> ReLU.
use super::arch::{blocks, Arch, BlockKind, BlockSpec, StemPool};
use super::SeNet;
use crate::backend::{
    Activation, Backend, Conv2dForward, Conv2dParams, Conv2dShape, LinearForward, LinearShape,
    Shape4,
};
use crate::{Error, Result, Tensor};

/// BatchNorm epsilon of MindSpore `nn.BatchNorm2d` (default 1e-5).
pub const BN_EPS: f64 = 1e-5;

/// A conv with its BatchNorm folded in, on the device.
struct FoldedConv<B: Backend> {
    w: B::Buffer,
    b: B::Buffer,
    shape: [usize; 4],
    p: Conv2dParams,
    /// `w` as the backend prepared it for single images ([`Backend::prepare_conv2d`]).
    prepared: Option<B::Buffer>,
}

impl<B: Backend> FoldedConv<B> {
    /// Folds `<bn>.{gamma,beta,moving_mean,moving_variance}` into `<conv>` and uploads both.
    fn new(be: &B, net: &SeNet, conv: &str, bn: &str, p: Conv2dParams) -> Result<Self> {
        let w = net.params.require(&format!("{conv}.weight"))?;
        let get = |leaf: &str| net.params.require(&format!("{bn}.{leaf}"));
        let (gamma, beta, mean, var) = (
            get("gamma")?,
            get("beta")?,
            get("moving_mean")?,
            get("moving_variance")?,
        );
        let cout = w.shape[0];
        let per_out = w.numel() / cout;
        let mut wf = Vec::with_capacity(w.numel());
        let mut bf = Vec::with_capacity(cout);
        for o in 0..cout {
            let scale = gamma.data[o] as f64 / (var.data[o] as f64 + BN_EPS).sqrt();
            wf.extend(
                w.data[o * per_out..(o + 1) * per_out]
                    .iter()
                    .map(|&v| (v as f64 * scale) as f32),
            );
            bf.push((beta.data[o] as f64 - mean.data[o] as f64 * scale) as f32);
        }
        let shape = [w.shape[0], w.shape[1], w.shape[2], w.shape[3]];
        Ok(FoldedConv {
            w: be.upload(&wf)?,
            b: be.upload(&bf)?,
            shape,
            p,
            prepared: None,
        })
    }

    /// Asks the backend for its prepared form of the weight for inputs of shape `xs`
    /// ([`Backend::prepare_conv2d`]); returns the output shape.
    fn prepare(&mut self, be: &B, xs: Shape4) -> Result<Shape4> {
        let op = self.op(xs, Activation::None);
        let ys = op.shape.out_shape()?;
        let prepared = be.prepare_conv2d(Conv2dForward {
            prepared: None,
            ..op
        })?;
        self.prepared = prepared;
        Ok(ys)
    }

    /// The conv applied to an input of shape `xs`, followed by `act`.
    fn op(&self, xs: Shape4, act: Activation) -> Conv2dForward<'_, B::Buffer> {
        Conv2dForward {
            shape: Conv2dShape {
                xs,
                w_shape: self.shape,
                p: self.p,
            },
            w: &self.w,
            bias: Some(&self.b),
            act,
            prepared: self.prepared.as_ref(),
        }
    }
}

/// A Dense layer (`nn.Dense`): weight (out, in), bias (out).
struct Dense<B: Backend> {
    w: B::Buffer,
    b: B::Buffer,
    out_features: usize,
    in_features: usize,
}

impl<B: Backend> Dense<B> {
    fn new(be: &B, net: &SeNet, prefix: &str) -> Result<Self> {
        let w = net.params.require(&format!("{prefix}.weight"))?;
        let b = net.params.require(&format!("{prefix}.bias"))?;
        Ok(Dense {
            w: be.upload(&w.data)?,
            b: be.upload(&b.data)?,
            out_features: w.shape[0],
            in_features: w.shape[1],
        })
    }

    fn forward(
        &self,
        be: &B,
        x: &B::Buffer,
        n: usize,
        act: Activation,
        y: &mut B::Buffer,
    ) -> Result<()> {
        let f = LinearForward {
            shape: LinearShape {
                n,
                in_features: self.in_features,
                out_features: self.out_features,
            },
            w: &self.w,
            b: &self.b,
            act,
        };
        be.linear(f, x, y)
    }
}

/// One residual block: its convs (BN folded), the optional downsample, the SE module.
struct Block<B: Backend> {
    convs: Vec<FoldedConv<B>>,
    downsample: Option<FoldedConv<B>>,
    se_reduce: Dense<B>,
    se_expand: Dense<B>,
}

impl<B: Backend> Block<B> {
    fn new(be: &B, net: &SeNet, s: &BlockSpec) -> Result<Self> {
        let p = &s.prefix;
        let c3 = |stride, groups| Conv2dParams {
            stride,
            padding: 1,
            groups,
        };
        let c1 = |stride| Conv2dParams {
            stride,
            padding: 0,
            groups: 1,
        };
        let conv = |i: usize, params| {
            FoldedConv::new(
                be,
                net,
                &format!("{p}.conv{i}"),
                &format!("{p}.bn{i}"),
                params,
            )
        };
        let convs = match s.kind {
            BlockKind::Basic => vec![conv(1, c3(s.stride, 1))?, conv(2, c3(1, 1))?],
            BlockKind::Bottleneck | BlockKind::ResNeXt { .. } => {
                vec![
                    conv(1, c1(1))?,
                    conv(2, c3(s.stride, s.groups))?,
                    conv(3, c1(1))?,
                ]
            }
        };
        let downsample = if s.downsample {
            Some(FoldedConv::new(
                be,
                net,
                &format!("{p}.downsample.0"),
                &format!("{p}.downsample.1"),
                c1(s.stride),
            )?)
        } else {
            None
        };
        Ok(Block {
            convs,
            downsample,
            se_reduce: Dense::new(be, net, &format!("{p}.se_module.conv_reduce"))?,
            se_expand: Dense::new(be, net, &format!("{p}.se_module.conv_expand"))?,
        })
    }
}

/// Activation buffers for one batch size, reused across forward passes.
struct Workspace<B: Backend> {
    batch: usize,
    image_len: usize,
    /// Five activation buffers sized for the largest activation of the network.
    act: Vec<B::Buffer>,
    /// (N, C) buffers for the SE squeeze, its reduced hidden layer and its gate.
    squeeze: B::Buffer,
    hidden: B::Buffer,
    gate: B::Buffer,
    logits: B::Buffer,
}

/// A SENet ready for eval-mode inference on backend `B` (weights folded and uploaded).
pub struct InferenceNet<B: Backend> {
    backend: B,
    arch: Arch,
    num_classes: usize,
    stem: FoldedConv<B>,
    /// The stem's max pool ([`SeNet::stem_pool`]).
    stem_pool: StemPool,
    blocks: Vec<Block<B>>,
    classifier: Dense<B>,
    ws: Option<Workspace<B>>,
    /// The image size the convs' prepared weights are for (single images; [`Self::prepare`]).
    prepared_hw: Option<(usize, usize)>,
}

/// Two distinct elements of a slice, one shared and one mutable.
fn split2<T>(v: &mut [T], i: usize, j: usize) -> (&T, &mut T) {
    assert_ne!(i, j);
    if i < j {
        let (a, b) = v.split_at_mut(j);
        (&a[i], &mut b[0])
    } else {
        let (a, b) = v.split_at_mut(i);
        (&b[0], &mut a[j])
    }
}

impl<B: Backend> InferenceNet<B> {
    /// Folds and uploads the weights of `net` to `backend`. Errors if a parameter is missing.
    pub fn new(net: &SeNet, backend: B) -> Result<Self> {
        let stem = FoldedConv::new(
            &backend,
            net,
            "layer0.0",
            "layer0.1",
            Conv2dParams {
                stride: 2,
                padding: 3,
                groups: 1,
            },
        )?;
        let blocks = blocks(net.arch)
            .iter()
            .map(|s| Block::new(&backend, net, s))
            .collect::<Result<Vec<_>>>()?;
        let classifier = Dense::new(&backend, net, "classifier")?;
        Ok(InferenceNet {
            backend,
            arch: net.arch,
            num_classes: net.num_classes,
            stem,
            stem_pool: net.stem_pool,
            blocks,
            classifier,
            ws: None,
            prepared_hw: None,
        })
    }

    /// The backend the network runs on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The variant.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    fn workspace(&mut self, n: usize, h: usize, w: usize) -> Result<()> {
        let image_len = 3 * h * w;
        if let Some(ws) = &self.ws {
            if ws.batch >= n && ws.image_len == image_len {
                return Ok(());
            }
        }
        let sizes = walk_shapes(self.arch, self.stem_pool, h, w)?;
        let be = &self.backend;
        let act_len = n * sizes.max_activation.max(image_len);
        let c_max = sizes.max_channels;
        self.ws = Some(Workspace {
            batch: n,
            image_len,
            act: (0..5).map(|_| be.alloc(act_len)).collect::<Result<_>>()?,
            squeeze: be.alloc(n * c_max)?,
            hidden: be.alloc(n * c_max)?,
            gate: be.alloc(n * c_max)?,
            logits: be.alloc(n * self.num_classes)?,
        });
        Ok(())
    }

    /// The backend's prepared weights of every block conv for single `h`x`w` images
    /// ([`Backend::prepare_conv2d`]: on the CPU the 7x7 stage of a 224x224 image,
    /// about as much memory again as their weights), once per image size: batch 1 asks for them
    /// at its first forward pass, larger batches never.
    fn prepare(&mut self, h: usize, w: usize) -> Result<()> {
        if self.prepared_hw == Some((h, w)) {
            return Ok(());
        }
        let be = &self.backend;
        let stem = self.stem.op(Shape4::new(1, 3, h, w), Activation::Relu);
        let mut cur = self
            .stem_pool
            .params()
            .geometry(stem.shape.out_shape()?)?
            .ys;
        for block in &mut self.blocks {
            let mut shape = cur;
            for conv in &mut block.convs {
                shape = conv.prepare(be, shape)?;
            }
            if let Some(ds) = &mut block.downsample {
                ds.prepare(be, cur)?;
            }
            cur = shape;
        }
        self.prepared_hw = Some((h, w));
        Ok(())
    }

    /// Eval-mode logits (N, num_classes) for images `x` (N, 3, H, W) f32 NCHW, normalised as
    /// MindCV's transforms do. Errors if `x` is not (N, 3, H, W) with H, W >= 32.
    pub fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let xs = super::input_shape("input", x)?;
        let (n, h, w) = (xs.n, xs.h, xs.w);
        self.workspace(n, h, w)?;
        if n == 1 {
            self.prepare(h, w)?;
        }
        let mut ws = self.ws.take().expect("workspace allocated above");
        // The whole pass in one call of the backend ([`Backend::run_ops`]: on the CPU, when
        // asked, one hand-over to its thread pool instead of one per op).
        let net = &*self;
        let logits = net.backend.run_ops(|| net.run(&mut ws, x, xs));
        self.ws = Some(ws);
        logits
    }

    /// The forward pass of [`Self::forward`] on images `x` of shape `xs` in the workspace `ws`
    /// (allocated for at least `xs.n` images of this size).
    fn run(&self, ws: &mut Workspace<B>, x: &Tensor, xs: Shape4) -> Result<Tensor> {
        let n = xs.n;
        let be = &self.backend;
        be.write(&mut ws.act[0], &x.data)?;
        // Stem conv (act[0] -> act[1]) and its max pool (-> act[2]), fused.
        let [a0, a1, a2, ..] = &mut ws.act[..] else {
            unreachable!("five activation buffers")
        };
        let relu = Activation::Relu;
        let stem_pool = self.stem_pool.params();
        let mut cur_shape = be.conv2d_max_pool(self.stem.op(xs, relu), a0, a1, stem_pool, a2)?;
        let mut cur = 2usize;
        for block in &self.blocks {
            // The four buffers other than the block input, in index order.
            let mut others = [0usize; 4];
            for (slot, i) in others.iter_mut().zip((0..5).filter(|&i| i != cur)) {
                *slot = i;
            }
            let [t_a, t_b, t_out, t_ds] = others;
            // Residual branch.
            let mut shape = cur_shape;
            let mut src = cur;
            let last = block.convs.len() - 1;
            for (i, conv) in block.convs.iter().enumerate() {
                let dst = if i == last {
                    t_out
                } else if src == t_a {
                    t_b
                } else {
                    t_a
                };
                let act = if i == last {
                    Activation::None
                } else {
                    Activation::Relu
                };
                let (x_buf, y_buf) = split2(&mut ws.act, src, dst);
                shape = if i == last {
                    // The SE squeeze of the branch output, fused with the conv producing it.
                    be.conv2d_avg_pool(conv.op(shape, act), x_buf, y_buf, &mut ws.squeeze)?
                } else {
                    be.conv2d(conv.op(shape, act), x_buf, y_buf)?
                };
                src = dst;
            }
            // Shortcut.
            let shortcut = match &block.downsample {
                Some(ds) => {
                    let (x_buf, y_buf) = split2(&mut ws.act, cur, t_ds);
                    be.conv2d(ds.op(cur_shape, Activation::None), x_buf, y_buf)?;
                    t_ds
                }
                None => cur,
            };
            // Squeeze-and-excitation (squeeze pooled above), then scale + add + ReLU in place.
            block
                .se_reduce
                .forward(be, &ws.squeeze, n, Activation::Relu, &mut ws.hidden)?;
            block
                .se_expand
                .forward(be, &ws.hidden, n, Activation::Sigmoid, &mut ws.gate)?;
            let (sc, out) = split2(&mut ws.act, shortcut, t_out);
            be.se_scale_add_relu(out, shape, &ws.gate, sc)?;
            cur = t_out;
            cur_shape = shape;
        }
        be.global_avg_pool(&ws.act[cur], cur_shape, &mut ws.squeeze)?;
        self.classifier
            .forward(be, &ws.squeeze, n, Activation::None, &mut ws.logits)?;
        let mut out = Tensor::zeros(&[n, self.num_classes]);
        be.download(&ws.logits, &mut out.data)?;
        Ok(out)
    }
}

/// Largest per-image activation and channel count met in a forward pass.
struct ShapeWalk {
    max_activation: usize,
    max_channels: usize,
    macs: u64,
}

fn conv_out(h: usize, k: usize, s: usize, p: usize) -> usize {
    (h + 2 * p - k) / s + 1
}

/// Walks the network for one `h`x`w` image: activation sizes and multiply-accumulates.
fn walk_shapes(arch: Arch, stem_pool: StemPool, h: usize, w: usize) -> Result<ShapeWalk> {
    let min = super::MIN_INPUT_SIDE;
    if h < min || w < min {
        return Err(Error::Shape(format!(
            "image {h}x{w} is smaller than {min}x{min}"
        )));
    }
    let mut walk = ShapeWalk {
        max_activation: 0,
        max_channels: 0,
        macs: 0,
    };
    let conv = |walk: &mut ShapeWalk,
                c_in: usize,
                c_out: usize,
                groups: usize,
                k: usize,
                s: usize,
                p: usize,
                hw: (usize, usize)| {
        let (oh, ow) = (conv_out(hw.0, k, s, p), conv_out(hw.1, k, s, p));
        walk.macs += (c_out * (c_in / groups) * k * k * oh * ow) as u64;
        walk.max_activation = walk.max_activation.max(c_out * oh * ow);
        walk.max_channels = walk.max_channels.max(c_out);
        (oh, ow)
    };
    let stem_hw = conv(&mut walk, 3, 64, 1, 7, 2, 3, (h, w));
    let pooled = stem_pool
        .params()
        .geometry(Shape4::new(1, 64, stem_hw.0, stem_hw.1))?
        .ys;
    let mut hw = (pooled.h, pooled.w);
    for b in blocks(arch) {
        let out_hw = match b.kind {
            BlockKind::Basic => {
                let t = conv(&mut walk, b.in_channels, b.width, 1, 3, b.stride, 1, hw);
                conv(&mut walk, b.width, b.out_channels, 1, 3, 1, 1, t)
            }
            _ => {
                let t = conv(&mut walk, b.in_channels, b.width, 1, 1, 1, 0, hw);
                let t = conv(&mut walk, b.width, b.width, b.groups, 3, b.stride, 1, t);
                conv(&mut walk, b.width, b.out_channels, 1, 1, 1, 0, t)
            }
        };
        if b.downsample {
            conv(
                &mut walk,
                b.in_channels,
                b.out_channels,
                1,
                1,
                b.stride,
                0,
                hw,
            );
        }
        walk.macs += 2 * (b.out_channels * b.se_channels) as u64;
        hw = out_hw;
    }
    Ok(walk)
}

/// Multiply-accumulates of one forward pass of `arch` with `stem_pool` on a `size`x`size`
/// image (convs, SE and classifier Dense layers).
pub fn count_macs(arch: Arch, stem_pool: StemPool, num_classes: usize, size: usize) -> u64 {
    walk_shapes(arch, stem_pool, size, size).map_or(0, |w| w.macs)
        + (arch.num_features() * num_classes) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::model::init::formula_input;

    /// [`InferenceNet::forward`] runs the pass inside one [`Backend::run_ops`] (here on a thread
    /// of the CPU backend's pool, [`CpuBackend::set_ops_in_pool`]); the same pass issued op by op
    /// from the calling thread must give the same bits: the batch-1 paths (prepared 7x7 products, the 14x14 Winograd,
    /// the Dense on the calling thread) at 224x224, and the batch split with grouped convs.
    #[test]
    fn one_pool_hand_over_is_the_op_by_op_pass_bit_for_bit() {
        for (arch, n, size) in [(Arch::SeResNet50, 1, 224), (Arch::SeResNeXt26_32x4d, 2, 96)] {
            let net = SeNet::formula(arch, 10).unwrap();
            let mut be = CpuBackend::new(2).unwrap();
            be.set_ops_in_pool(true);
            let mut inf = InferenceNet::new(&net, be).unwrap();
            let x = formula_input("x", &[n, 3, size, size]);
            let pooled = inf.forward(&x).unwrap();
            let xs = Shape4::new(n, 3, size, size);
            let mut ws = inf.ws.take().unwrap();
            let direct = inf.run(&mut ws, &x, xs).unwrap();
            assert_eq!(pooled.shape, [n, 10]);
            assert!(pooled.data.iter().all(|v| v.is_finite()), "{arch:?}");
            let bits = |t: &Tensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&pooled), bits(&direct), "{arch:?} batch {n}");
        }
    }
}
