//! The parameter tree of a SENet: names and shapes exactly MindCV's
//! (`shared/reference/mindcv_senet_params.txt`), in `cell.parameters_and_names()` order.
use super::arch::{blocks, Arch, BlockKind};
use crate::{Error, Result, Tensor};
use std::collections::HashMap;

/// What a parameter is; decides its initialisation, whether it is trained, and how it is folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Conv weight (out, in/groups, kh, kw).
    ConvWeight,
    /// Dense weight (out, in).
    DenseWeight,
    /// Dense bias (out,).
    Bias,
    /// BatchNorm scale (C,).
    Gamma,
    /// BatchNorm shift (C,).
    Beta,
    /// BatchNorm running mean (C,), not trainable.
    MovingMean,
    /// BatchNorm running variance (C,), not trainable.
    MovingVariance,
}

impl ParamKind {
    /// Whether the optimizer updates it (MindSpore `requires_grad`): all but the moving stats.
    pub fn trainable(self) -> bool {
        !matches!(self, ParamKind::MovingMean | ParamKind::MovingVariance)
    }
}

/// Name, shape and kind of one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// MindCV parameter name, e.g. `layer1.0.bn1.gamma`.
    pub name: String,
    /// MindSpore shape.
    pub shape: Vec<usize>,
    /// What it is.
    pub kind: ParamKind,
}

fn conv(specs: &mut Vec<ParamSpec>, name: String, shape: [usize; 4]) {
    specs.push(ParamSpec {
        name,
        shape: shape.to_vec(),
        kind: ParamKind::ConvWeight,
    });
}

fn bn(specs: &mut Vec<ParamSpec>, prefix: &str, c: usize) {
    // MindSpore's `_BatchNorm.__init__` creates the moving statistics first; this is the order
    // of `parameters_and_names()` and of every .ckpt MindSpore writes.
    for (leaf, kind) in [
        ("moving_mean", ParamKind::MovingMean),
        ("moving_variance", ParamKind::MovingVariance),
        ("gamma", ParamKind::Gamma),
        ("beta", ParamKind::Beta),
    ] {
        specs.push(ParamSpec {
            name: format!("{prefix}.{leaf}"),
            shape: vec![c],
            kind,
        });
    }
}

fn dense(specs: &mut Vec<ParamSpec>, prefix: &str, out: usize, inp: usize) {
    specs.push(ParamSpec {
        name: format!("{prefix}.weight"),
        shape: vec![out, inp],
        kind: ParamKind::DenseWeight,
    });
    specs.push(ParamSpec {
        name: format!("{prefix}.bias"),
        shape: vec![out],
        kind: ParamKind::Bias,
    });
}

/// Every parameter of `arch` with `num_classes` outputs, in MindSpore's `parameters_and_names()`
/// order (stem `layer0`, blocks `layerL.B.{conv1,bn1,conv2,bn2[,conv3,bn3],se_module,downsample}`,
/// `classifier`; within a BatchNorm `moving_mean, moving_variance, gamma, beta`), which is the
/// order of the tensors in a MindSpore-written `.ckpt`.
pub fn param_specs(arch: Arch, num_classes: usize) -> Vec<ParamSpec> {
    let mut s = Vec::new();
    conv(&mut s, "layer0.0.weight".into(), [64, 3, 7, 7]);
    bn(&mut s, "layer0.1", 64);
    for b in blocks(arch) {
        let p = &b.prefix;
        match b.kind {
            BlockKind::Basic => {
                conv(
                    &mut s,
                    format!("{p}.conv1.weight"),
                    [b.width, b.in_channels, 3, 3],
                );
                bn(&mut s, &format!("{p}.bn1"), b.width);
                conv(
                    &mut s,
                    format!("{p}.conv2.weight"),
                    [b.out_channels, b.width, 3, 3],
                );
                bn(&mut s, &format!("{p}.bn2"), b.out_channels);
            }
            BlockKind::Bottleneck | BlockKind::ResNeXt { .. } => {
                conv(
                    &mut s,
                    format!("{p}.conv1.weight"),
                    [b.width, b.in_channels, 1, 1],
                );
                bn(&mut s, &format!("{p}.bn1"), b.width);
                conv(
                    &mut s,
                    format!("{p}.conv2.weight"),
                    [b.width, b.width / b.groups, 3, 3],
                );
                bn(&mut s, &format!("{p}.bn2"), b.width);
                conv(
                    &mut s,
                    format!("{p}.conv3.weight"),
                    [b.out_channels, b.width, 1, 1],
                );
                bn(&mut s, &format!("{p}.bn3"), b.out_channels);
            }
        }
        dense(
            &mut s,
            &format!("{p}.se_module.conv_reduce"),
            b.se_channels,
            b.out_channels,
        );
        dense(
            &mut s,
            &format!("{p}.se_module.conv_expand"),
            b.out_channels,
            b.se_channels,
        );
        if b.downsample {
            conv(
                &mut s,
                format!("{p}.downsample.0.weight"),
                [b.out_channels, b.in_channels, 1, 1],
            );
            bn(&mut s, &format!("{p}.downsample.1"), b.out_channels);
        }
    }
    dense(&mut s, "classifier", num_classes, arch.num_features());
    s
}

/// An ordered set of named f32 parameters (the model's state, BN moving stats included).
#[derive(Debug, Clone, Default)]
pub struct Params {
    specs: Vec<ParamSpec>,
    tensors: Vec<Tensor>,
    index: HashMap<String, usize>,
}

impl Params {
    /// Parameters for `specs`, every value produced by `init(spec)`. Errors: those of `init`
    /// (e.g. [`crate::Error::OutOfMemory`]); [`Error::Shape`] if it returns a tensor of the
    /// wrong shape.
    pub fn new(
        specs: Vec<ParamSpec>,
        mut init: impl FnMut(&ParamSpec) -> Result<Tensor>,
    ) -> Result<Params> {
        let mut tensors = Vec::with_capacity(specs.len());
        let mut index = HashMap::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            let t = init(s)?;
            if t.shape != s.shape {
                return Err(Error::Shape(format!(
                    "{}: initialiser gave {:?}, expected {:?}",
                    s.name, t.shape, s.shape
                )));
            }
            tensors.push(t);
            index.insert(s.name.clone(), i);
        }
        Ok(Params {
            specs,
            tensors,
            index,
        })
    }

    /// The parameter specs, in order.
    pub fn specs(&self) -> &[ParamSpec] {
        &self.specs
    }

    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Total number of elements (MindCV's "params" count, BN moving stats included).
    pub fn numel(&self) -> usize {
        self.tensors.iter().map(|t| t.numel()).sum()
    }

    /// The tensor named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor named `name`; errors naming it when absent.
    pub fn require(&self, name: &str) -> Result<&Tensor> {
        self.get(name)
            .ok_or_else(|| Error::Invalid(format!("model has no parameter '{name}'")))
    }

    /// Mutable access to the tensor named `name`, if any.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        self.index.get(name).map(|&i| &mut self.tensors[i])
    }

    /// (spec, tensor) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&ParamSpec, &Tensor)> {
        self.specs.iter().zip(self.tensors.iter())
    }
}
