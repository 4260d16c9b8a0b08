//! timm's SE-ResNet / SE-ResNeXt state dicts (PyTorch `model.state_dict()` saved as
//! safetensors), mapped to and from MindCV's parameter names: a renaming layer above the
//! readers, used by every load ([`super::load_params`]) and by `senet convert`.
//!
//! Two timm model files name these networks (timm 1.0, `huggingface/pytorch-image-models`):
//!
//! | MindCV | timm `models/resnet.py` | timm `models/senet.py` (legacy) |
//! |---|---|---|
//! | `layer0.0.weight` | `conv1.weight` | `layer0.conv1.weight` |
//! | `layer0.1.{gamma,beta,moving_mean,moving_variance}` | `bn1.{weight,bias,running_mean,running_var}` | `layer0.bn1.*` |
//! | `layerL.B.{conv,bn}N.*`, `layerL.B.downsample.{0,1}.*` | the same (BN leaves as above) | the same |
//! | `layerL.B.se_module.conv_reduce.weight` (rd, C) | `layerL.B.se.fc1.weight` (rd, C, 1, 1) | `layerL.B.se_module.fc1.weight` |
//! | `layerL.B.se_module.conv_expand.*` | `layerL.B.se.fc2.*` | `layerL.B.se_module.fc2.*` |
//! | `classifier.{weight,bias}` | `fc.*` | `last_linear.*` |
//!
//! BatchNorm's `num_batches_tracked` (an int64 counter eval mode never reads) is dropped on the
//! way in and written as 0 on the way out. The SE layers are 1x1 convolutions with bias in timm
//! and Dense layers in MindCV: the same numbers, reshaped (rd, C, 1, 1) <-> (rd, C).
//!
//! What else differs (read from timm 1.0's `resnet.py`, `senet.py`, `layers/squeeze_excite.py`
//! against MindCV's `senet.py`):
//! - resnet.py (`seresnet18/34/50`, `seresnext50_32x4d`, and `ResNet(Bottleneck, (2, 2, 2, 2),
//!   cardinality=32, base_width=4, block_args=dict(attn_layer='se'))` for SE-ResNeXt-26): only
//!   the stem max pool, `padding=1` on every side ([`StemPool::Pad1`]) where MindCV pads
//!   bottom/right ([`StemPool::Same`]). SE placement (on the residual branch before the add, no
//!   ReLU before it in basic blocks), the SE width (`make_divisible(C / 16, 8)`; timm's
//!   `round_limit=0` gives MindCV's values for every width these networks have), the stride on
//!   the 3x3 conv, the 1x1 strided downsample with BN, the 7x7 stem, BN eps 1e-5 and the
//!   average-pool + Linear head are the same. Its `d`/`t` variants (deep stem `conv1.0`,
//!   average-pool downsample) are other networks and are refused by name.
//! - senet.py: the stem pool has `ceil_mode=True` and no padding ([`StemPool::CeilMode`]),
//!   which windows an even stem output (112 for a 224 input) as MindCV does, an odd one not.
//!   Loading either layout sets the model's stem pool to timm's
//!   ([`SeNet::stem_pool`](crate::model::SeNet::stem_pool)). Its
//!   SE-ResNeXt (`legacy_seresnext26_32x4d`, `legacy_seresnext50_32x4d`) is otherwise MindCV's.
//!   Its SE-ResNet-18/34 (`SEResNetBlock`) applies a ReLU before the SE module and rounds the SE
//!   width down (`C // 16`: 4 for 64 channels, MindCV 8); its SE-ResNet-50/101/152
//!   (`SEResNetBottleneck`) strides the first 1x1 conv instead of the 3x3 (Caffe's layout):
//!   both refused, as the same tensors would compute another function.
use super::{is_training_state, Checkpoint, SkippedEntry};
use crate::model::StemPool;
use crate::tensor::{DType, RawTensor};
use crate::{Error, Result};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Which timm model file named a state dict's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimmLayout {
    /// `timm/models/resnet.py` (`seresnet18`, `seresnet50`, `seresnext50_32x4d`, ...):
    /// `conv1`, `bn1`, `layerL.B.se.fc1`, `fc`.
    ResNet,
    /// `timm/models/senet.py` (`legacy_seresnext26_32x4d`, ...): `layer0.conv1`,
    /// `layer0.bn1`, `layerL.B.se_module.fc1`, `last_linear`.
    Legacy,
}

impl TimmLayout {
    /// The stem max pool of timm's network of this layout.
    pub fn stem_pool(self) -> StemPool {
        match self {
            TimmLayout::ResNet => StemPool::Pad1,
            TimmLayout::Legacy => StemPool::CeilMode,
        }
    }

    /// Parses `"timm"` (resnet.py names) or `"timm_legacy"` (senet.py names).
    pub fn from_name(name: &str) -> Option<TimmLayout> {
        match name {
            "timm" => Some(TimmLayout::ResNet),
            "timm_legacy" => Some(TimmLayout::Legacy),
            _ => None,
        }
    }

    /// The name [`TimmLayout::from_name`] parses: `"timm"` or `"timm_legacy"`.
    pub fn name(self) -> &'static str {
        match self {
            TimmLayout::ResNet => "timm",
            TimmLayout::Legacy => "timm_legacy",
        }
    }

    /// The stem and head module names: (stem conv, stem BN, classifier).
    fn ends(self) -> [&'static str; 3] {
        match self {
            TimmLayout::ResNet => ["conv1", "bn1", "fc"],
            TimmLayout::Legacy => ["layer0.conv1", "layer0.bn1", "last_linear"],
        }
    }

    /// The SE module's name inside a block.
    fn se(self) -> &'static str {
        match self {
            TimmLayout::ResNet => "se",
            TimmLayout::Legacy => "se_module",
        }
    }
}

impl fmt::Display for TimmLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimmLayout::ResNet => "timm resnet.py",
            TimmLayout::Legacy => "timm senet.py (legacy)",
        })
    }
}

/// BatchNorm leaves: (timm, MindCV).
const BN_LEAVES: [(&str, &str); 4] = [
    ("weight", "gamma"),
    ("bias", "beta"),
    ("running_mean", "moving_mean"),
    ("running_var", "moving_variance"),
];

/// The block-level module renames: (timm, MindCV) for `layout`.
fn block_modules(layout: TimmLayout) -> [(String, &'static str); 2] {
    let se = layout.se();
    [
        (format!("{se}.fc1"), "se_module.conv_reduce"),
        (format!("{se}.fc2"), "se_module.conv_expand"),
    ]
}

/// What a timm tensor is in MindCV's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// The MindCV parameter of that name; `se` when it is an SE 1x1-conv weight (reshaped).
    Param { name: String, se_weight: bool },
    /// BatchNorm's `num_batches_tracked`.
    Counter,
}

/// Whether `module` (a module path inside a block, e.g. `bn2`, `downsample.1`) is a BatchNorm.
fn is_bn_module(module: &str) -> bool {
    matches!(module, "bn1" | "bn2" | "bn3" | "downsample.1")
}

/// `layerL.B.` with L in 1..=4 and B a number: (prefix, rest).
fn split_block(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("layer")?;
    let (stage, rest) = rest.split_once('.')?;
    let (block, rest) = rest.split_once('.')?;
    let ok = matches!(stage, "1" | "2" | "3" | "4")
        && !block.is_empty()
        && block.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| name.split_at(name.len() - rest.len()))
}

/// What kind of module a timm module is, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A convolution without bias: weight only.
    Conv,
    /// A BatchNorm.
    Bn,
    /// An SE 1x1 convolution with bias (a Dense layer in MindCV).
    Se,
    /// The classifier (Linear).
    Linear,
}

/// The MindCV module and kind of timm module `module` in `layout`.
fn timm_module(layout: TimmLayout, module: &str) -> Option<(String, Kind)> {
    let [stem_conv, stem_bn, head] = layout.ends();
    if module == stem_conv {
        return Some(("layer0.0".into(), Kind::Conv));
    }
    if module == stem_bn {
        return Some(("layer0.1".into(), Kind::Bn));
    }
    if module == head {
        return Some(("classifier".into(), Kind::Linear));
    }
    let (prefix, inner) = split_block(module)?;
    if let Some((_, m)) = block_modules(layout).into_iter().find(|(t, _)| t == inner) {
        return Some((format!("{prefix}{m}"), Kind::Se));
    }
    let kind = match inner {
        "conv1" | "conv2" | "conv3" | "downsample.0" => Kind::Conv,
        _ if is_bn_module(inner) => Kind::Bn,
        _ => return None,
    };
    Some((module.to_string(), kind))
}

/// The role of timm tensor `name` in `layout`, or None when it is no part of the networks senet
/// runs.
fn timm_role(layout: TimmLayout, name: &str) -> Option<Role> {
    let (module, leaf) = name.rsplit_once('.')?;
    let (m, kind) = timm_module(layout, module)?;
    let mindcv_leaf = match (kind, leaf) {
        (Kind::Bn, "num_batches_tracked") => return Some(Role::Counter),
        (Kind::Bn, _) => BN_LEAVES.iter().find(|(t, _)| *t == leaf)?.1,
        (_, "weight") => "weight",
        (Kind::Se | Kind::Linear, "bias") => "bias",
        _ => return None,
    };
    Some(Role::Param {
        name: format!("{m}.{mindcv_leaf}"),
        se_weight: kind == Kind::Se && leaf == "weight",
    })
}

/// timm's name (in `layout`) of MindCV parameter `name`, or None for a name that is not a
/// SENet parameter.
fn timm_name(layout: TimmLayout, name: &str) -> Option<String> {
    let (module, leaf) = name.rsplit_once('.')?;
    let [stem_conv, stem_bn, head] = layout.ends();
    let timm_module = match module {
        "layer0.0" => stem_conv.to_string(),
        "layer0.1" => stem_bn.to_string(),
        "classifier" => head.to_string(),
        _ => {
            let (prefix, inner) = split_block(module)?;
            match block_modules(layout).into_iter().find(|(_, m)| *m == inner) {
                Some((t, _)) => format!("{prefix}{t}"),
                None => module.to_string(),
            }
        }
    };
    let timm_leaf = BN_LEAVES
        .iter()
        .find(|(_, m)| *m == leaf)
        .map_or(leaf, |(t, _)| *t);
    let out = format!("{timm_module}.{timm_leaf}");
    // Only names the forward map takes back to `name` (this also rejects unknown modules).
    match timm_role(layout, &out)? {
        Role::Param { name: back, .. } if back == name => Some(out),
        _ => None,
    }
}

/// Recognises a timm state dict by its names: Some when it holds timm's stem or head
/// (`conv1.weight`, `bn1.running_mean`, `fc.weight` for resnet.py; `layer0.conv1.weight`,
/// `last_linear.weight` for senet.py), None otherwise (e.g. MindCV names).
pub fn detect(ck: &Checkpoint) -> Option<TimmLayout> {
    let has = |n: &str| ck.get(n).is_some();
    if has("layer0.conv1.weight") || has("last_linear.weight") {
        Some(TimmLayout::Legacy)
    } else if has("conv1.weight") || has("bn1.running_mean") || has("fc.weight") {
        Some(TimmLayout::ResNet)
    } else {
        None
    }
}

/// A timm state dict renamed to MindCV's names.
#[derive(Debug, Clone, PartialEq)]
pub struct TimmImport {
    /// The file's layout.
    pub layout: TimmLayout,
    /// Its tensors under MindCV's names and shapes (SE weights 2-D), in the file's order;
    /// `num_batches_tracked` dropped; entries the reader skipped kept as skipped.
    pub checkpoint: Checkpoint,
    /// MindCV name -> the timm name and shape it came from, for messages.
    pub origin: HashMap<String, (String, Vec<usize>)>,
    /// The `num_batches_tracked` counters dropped.
    pub dropped: Vec<String>,
}

impl TimmImport {
    /// `'<mindcv>' (timm '<name>' <shape>)` for a MindCV name that came from the file, else
    /// `'<mindcv>' (timm '<name>')` with the timm name it would have had.
    pub fn describe(&self, mindcv: &str) -> String {
        match self.origin.get(mindcv) {
            Some((t, shape)) => format!("'{mindcv}' (timm '{t}' {shape:?})"),
            None => match timm_name(self.layout, mindcv) {
                Some(t) => format!("'{mindcv}' (timm '{t}')"),
                None => format!("'{mindcv}'"),
            },
        }
    }
}

/// Checks that MindCV-named `ck` is a network timm's legacy senet.py computes as MindCV does:
/// SE-ResNeXt only (see the module documentation). `what` names the file in the error.
fn check_legacy(ck: &Checkpoint, path: &Path, what: &str) -> Result<()> {
    let bottleneck = ck.get("layer1.0.conv3.weight").is_some();
    let groups = ck
        .get("layer1.0.conv2.weight")
        .filter(|t| t.shape.len() == 4 && t.shape[1] > 0)
        .map(|t| t.shape[0] / t.shape[1]);
    let why = match (bottleneck, groups) {
        (false, _) => {
            "a legacy SE-ResNet-18/34 (senet.py SEResNetBlock: ReLU before the SE module, SE \
             width C // 16): not MindCV's network; timm's seresnet18/34 (resnet.py) are"
        }
        (true, Some(1)) => {
            "a legacy SE-ResNet-50/101/152 (senet.py SEResNetBottleneck strides the first 1x1 \
             conv, Caffe's layout; MindCV strides the 3x3): not MindCV's network; timm's \
             seresnet50 (resnet.py) is"
        }
        _ => return Ok(()),
    };
    Err(Error::format(path, format!("{what} {why}")))
}

/// Renames the timm state dict `ck` (read from `path`, named in errors) in `layout` to MindCV's
/// names: see the module documentation for the table and what is refused.
///
/// Errors: [`Error::Format`] naming `path` and listing every tensor that is no part of a timm
/// SE-ResNet/SE-ResNeXt senet runs (deep stems, average-pool downsamples, attention layers of
/// other models), every SE weight that is not (rd, C, 1, 1), and a legacy network that is not
/// MindCV's (SE-ResNet from senet.py).
pub fn to_mindcv(ck: &Checkpoint, layout: TimmLayout, path: &Path) -> Result<TimmImport> {
    let mut out = TimmImport {
        layout,
        checkpoint: Checkpoint {
            skipped: ck.skipped.clone(),
            crc: ck.crc,
            metadata: ck.metadata.clone(),
            ..Checkpoint::default()
        },
        origin: HashMap::new(),
        dropped: Vec::new(),
    };
    let mut bad = Vec::new();
    for (name, t) in &ck.tensors {
        match timm_role(layout, name) {
            Some(Role::Counter) => out.dropped.push(name.clone()),
            Some(Role::Param { name: m, se_weight }) => {
                out.origin
                    .insert(m.clone(), (name.clone(), t.shape.clone()));
                let mut t = t.clone();
                if se_weight {
                    match t.shape[..] {
                        [o, i, 1, 1] => t.shape = vec![o, i],
                        _ => {
                            bad.push(format!(
                                "'{name}' {:?}: an SE 1x1 conv weight must be (rd, C, 1, 1)",
                                t.shape
                            ));
                            continue;
                        }
                    }
                }
                out.checkpoint.tensors.push((m, t));
            }
            None => bad.push(format!(
                "'{name}' {:?}: not a tensor of a timm SE-ResNet/SE-ResNeXt senet runs",
                t.shape
            )),
        }
    }
    if !bad.is_empty() {
        return Err(Error::format(
            path,
            format!(
                "{layout} state dict with {} tensor(s) senet cannot map to MindCV's SENet \
                 (timm's deep-stem 'd'/'t' variants and other models are other networks):\n  {}",
                bad.len(),
                bad.join("\n  ")
            ),
        ));
    }
    if layout == TimmLayout::Legacy {
        check_legacy(&out.checkpoint, path, "holds")?;
    }
    Ok(out)
}

/// The model tensors of MindCV-named `ck` renamed to timm's names in `layout` (SE weights
/// reshaped to (rd, C, 1, 1), a zero int64 `num_batches_tracked` per BatchNorm), and the
/// training-state entries left out (`moments.*`, `global_step`, ...: a timm state dict holds
/// the model only). Reads from `path`, named in errors.
///
/// Errors: [`Error::Format`] naming `path` listing every entry that is neither a SENet
/// parameter nor training state, and every skipped (non-tensor) entry; for
/// [`TimmLayout::Legacy`], a network senet.py does not compute as MindCV does.
pub fn to_timm(
    ck: &Checkpoint,
    layout: TimmLayout,
    path: &Path,
) -> Result<(Checkpoint, Vec<String>)> {
    let mut out = Checkpoint::default();
    let mut left_out = Vec::new();
    let mut bad: Vec<String> = ck
        .skipped
        .iter()
        .map(|SkippedEntry { name, reason }| format!("'{name}': {reason}"))
        .collect();
    for (name, t) in &ck.tensors {
        if is_training_state(name) {
            left_out.push(name.clone());
            continue;
        }
        let Some(timm) = timm_name(layout, name) else {
            bad.push(format!("'{name}' {:?}: not a SENet parameter", t.shape));
            continue;
        };
        let mut t = t.clone();
        if name.contains(".se_module.") && name.ends_with(".weight") {
            if t.shape.len() != 2 {
                bad.push(format!("'{name}' {:?}: an SE weight must be 2-D", t.shape));
                continue;
            }
            t.shape.extend([1, 1]);
        }
        if let Some(bn) = name.strip_suffix(".moving_variance") {
            let counter = timm_name(layout, &format!("{bn}.gamma"))
                .and_then(|w| w.strip_suffix(".weight").map(str::to_string));
            if let Some(module) = counter {
                out.tensors.push((
                    format!("{module}.num_batches_tracked"),
                    RawTensor {
                        dtype: DType::I64,
                        shape: vec![],
                        bytes: 0i64.to_le_bytes().to_vec(),
                    },
                ));
            }
        }
        out.tensors.push((timm, t));
    }
    if !bad.is_empty() {
        return Err(Error::format(
            path,
            format!(
                "{} entr(y/ies) cannot be written with {layout} names:\n  {}",
                bad.len(),
                bad.join("\n  ")
            ),
        ));
    }
    if layout == TimmLayout::Legacy {
        check_legacy(ck, path, "would be")?;
    }
    Ok((out, left_out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{params::param_specs, Arch};

    #[test]
    fn resnet_names_map_both_ways() {
        let r = TimmLayout::ResNet;
        let cases = [
            ("conv1.weight", "layer0.0.weight"),
            ("bn1.running_var", "layer0.1.moving_variance"),
            (
                "layer1.0.se.fc1.weight",
                "layer1.0.se_module.conv_reduce.weight",
            ),
            (
                "layer4.2.se.fc2.bias",
                "layer4.2.se_module.conv_expand.bias",
            ),
            (
                "layer2.0.downsample.1.weight",
                "layer2.0.downsample.1.gamma",
            ),
            (
                "layer2.0.downsample.0.weight",
                "layer2.0.downsample.0.weight",
            ),
            ("layer3.1.bn3.bias", "layer3.1.bn3.beta"),
            ("fc.weight", "classifier.weight"),
        ];
        for (t, m) in cases {
            let role = timm_role(r, t).unwrap();
            let se = t.contains(".se.") && t.ends_with("weight");
            assert_eq!(
                role,
                Role::Param {
                    name: m.into(),
                    se_weight: se
                },
                "{t}"
            );
            assert_eq!(timm_name(r, m).as_deref(), Some(t), "{m}");
        }
        assert_eq!(timm_role(r, "bn1.num_batches_tracked"), Some(Role::Counter));
        for t in [
            "conv1.0.weight",
            "layer1.0.conv1.bias",
            "layer5.0.conv1.weight",
            "layer1.0.se.bn.weight",
            "layer2.0.downsample.2.weight",
            "layer1.x.conv1.weight",
            "head.fc.weight",
        ] {
            assert_eq!(timm_role(r, t), None, "{t}");
        }
    }

    #[test]
    fn legacy_names_map_both_ways() {
        let l = TimmLayout::Legacy;
        for (t, m) in [
            ("layer0.conv1.weight", "layer0.0.weight"),
            ("layer0.bn1.weight", "layer0.1.gamma"),
            (
                "layer3.0.se_module.fc1.bias",
                "layer3.0.se_module.conv_reduce.bias",
            ),
            ("last_linear.bias", "classifier.bias"),
        ] {
            assert!(matches!(timm_role(l, t), Some(Role::Param { name, .. }) if name == m));
            assert_eq!(timm_name(l, m).as_deref(), Some(t));
        }
        assert_eq!(timm_role(l, "layer0.conv2.weight"), None); // senet154's 3x3 stem
    }

    #[test]
    fn every_mindcv_parameter_has_a_timm_name() {
        for arch in Arch::ALL {
            for layout in [TimmLayout::ResNet, TimmLayout::Legacy] {
                for s in param_specs(arch, 10) {
                    assert!(timm_name(layout, &s.name).is_some(), "{layout} {}", s.name);
                }
            }
        }
        assert_eq!(
            timm_name(TimmLayout::ResNet, "moments.layer0.0.weight"),
            None
        );
    }
}
