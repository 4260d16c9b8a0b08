//! The five SENet variants of MindCV (`mindcv/models/senet.py`): block type, stage depths,
//! groups and widths, and the block-by-block description every backend builds from.
use crate::backend::MaxPool2dParams;
use crate::{Error, Result};

/// The residual block kind of a variant (MindCV `SEResNetBlock`, `SEResNetBottleneck`,
/// `SEResNeXtBottleneck`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convs, expansion 1 (SE-ResNet-18/34).
    Basic,
    /// 1x1 -> 3x3 (stride here) -> 1x1, expansion 4 (SE-ResNet-50).
    Bottleneck,
    /// Bottleneck with a grouped 3x3: width = floor(planes * base_width / 64) * groups.
    ResNeXt {
        /// Groups of the 3x3 conv (cardinality).
        groups: usize,
        /// Channels per group at planes = 64.
        base_width: usize,
    },
}

impl BlockKind {
    /// Output channels / planes (MindCV `expansion`).
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            _ => 4,
        }
    }
}

/// One of the five MindCV SENet variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `seresnet18`: basic blocks [2, 2, 2, 2].
    SeResNet18,
    /// `seresnet34`: basic blocks [3, 4, 6, 3].
    SeResNet34,
    /// `seresnet50`: bottlenecks [3, 4, 6, 3].
    SeResNet50,
    /// `seresnext26_32x4d`: ResNeXt bottlenecks [2, 2, 2, 2], 32 groups of width 4.
    SeResNeXt26_32x4d,
    /// `seresnext50_32x4d`: ResNeXt bottlenecks [3, 4, 6, 3], 32 groups of width 4.
    SeResNeXt50_32x4d,
}

impl Arch {
    /// All variants, in MindCV's README order.
    pub const ALL: [Arch; 5] = [
        Arch::SeResNet18,
        Arch::SeResNet34,
        Arch::SeResNet50,
        Arch::SeResNeXt26_32x4d,
        Arch::SeResNeXt50_32x4d,
    ];

    /// MindCV's registered name (`create_model(name)`), e.g. "seresnet50".
    pub fn name(self) -> &'static str {
        match self {
            Arch::SeResNet18 => "seresnet18",
            Arch::SeResNet34 => "seresnet34",
            Arch::SeResNet50 => "seresnet50",
            Arch::SeResNeXt26_32x4d => "seresnext26_32x4d",
            Arch::SeResNeXt50_32x4d => "seresnext50_32x4d",
        }
    }

    /// Parses a MindCV model name. Errors with [`Error::UnknownModel`].
    pub fn from_name(name: &str) -> Result<Arch> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| Error::UnknownModel(name.to_string()))
    }

    /// The block kind.
    pub fn block(self) -> BlockKind {
        match self {
            Arch::SeResNet18 | Arch::SeResNet34 => BlockKind::Basic,
            Arch::SeResNet50 => BlockKind::Bottleneck,
            Arch::SeResNeXt26_32x4d | Arch::SeResNeXt50_32x4d => BlockKind::ResNeXt {
                groups: 32,
                base_width: 4,
            },
        }
    }

    /// Blocks per stage (`layers` in MindCV).
    pub fn layers(self) -> [usize; 4] {
        match self {
            Arch::SeResNet18 | Arch::SeResNeXt26_32x4d => [2, 2, 2, 2],
            Arch::SeResNet34 | Arch::SeResNet50 | Arch::SeResNeXt50_32x4d => [3, 4, 6, 3],
        }
    }

    /// Channels entering the classifier (512 for basic blocks, 2048 otherwise).
    pub fn num_features(self) -> usize {
        512 * self.block().expansion()
    }
}

/// MindCV's `make_divisible(v, divisor=8)`: round to the nearest multiple, at least `divisor`,
/// and never more than 10% below `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (divisor).max(((v + d / 2.0) as usize) / divisor * divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// SE bottleneck width for `channels` (reduction 16): `make_divisible(C / 16, 8)`.
pub fn se_channels(channels: usize) -> usize {
    make_divisible(channels as f64 / 16.0, 8)
}

/// The stem's 3x3 stride-2 max pool: how its windows meet the border. The network runs the
/// one of the weights it holds ([`SeNet::stem_pool`](super::SeNet::stem_pool)): MindCV's for
/// MindCV weights, timm's for timm's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StemPool {
    /// MindCV's `nn.MaxPool2d(3, 2, pad_mode="same")` (TF 'SAME'): `ceil(n / 2)` outputs,
    /// padding `max(0, 2 * (out - 1) + 3 - n)` split with the odd pixel after (bottom/right).
    #[default]
    Same,
    /// timm `models/resnet.py`: `nn.MaxPool2d(3, 2, padding=1)`, one pixel of -inf before and
    /// after: `(n - 1) div 2 + 1` outputs (as many as 'same', windows one pixel earlier on an
    /// even side).
    Pad1,
    /// timm `models/senet.py` (legacy): `nn.MaxPool2d(3, 2, ceil_mode=True)`, no padding:
    /// `ceil((n - 3) / 2) + 1` outputs (MindCV's windows on an even side; on an odd side one
    /// output fewer, the windows one pixel later).
    CeilMode,
}

impl StemPool {
    /// The backend's parameters of this pool.
    pub const fn params(self) -> MaxPool2dParams {
        match self {
            StemPool::Same => MaxPool2dParams::same(3, 2),
            StemPool::Pad1 => MaxPool2dParams::symmetric(3, 2, 1, false),
            StemPool::CeilMode => MaxPool2dParams::symmetric(3, 2, 0, true),
        }
    }
}

/// One residual block, fully resolved (names, channels, stride).
#[derive(Debug, Clone, PartialEq)]
pub struct BlockSpec {
    /// Parameter-name prefix, e.g. "layer2.0".
    pub prefix: String,
    /// Block type.
    pub kind: BlockKind,
    /// Input channels.
    pub in_channels: usize,
    /// Channels of the inner convs (`planes`, or the ResNeXt `width`).
    pub width: usize,
    /// Output channels (`planes * expansion`).
    pub out_channels: usize,
    /// Stride of the block (on conv1 for basic blocks, on the 3x3 conv2 for bottlenecks).
    pub stride: usize,
    /// Groups of the 3x3 conv (1, or 32 for ResNeXt).
    pub groups: usize,
    /// Whether the shortcut is `downsample` (1x1 conv stride `stride` + BN).
    pub downsample: bool,
    /// SE reduced channels (`rd_channels`).
    pub se_channels: usize,
}

/// The blocks of `arch`, stage by stage (`layer1.0`, `layer1.1`, ..., `layer4.N`), as MindCV's
/// `SENet._make_layer` builds them.
pub fn blocks(arch: Arch) -> Vec<BlockSpec> {
    let kind = arch.block();
    let exp = kind.expansion();
    let mut inplanes = 64;
    let mut out = Vec::new();
    for (stage, &depth) in arch.layers().iter().enumerate() {
        let planes = 64 << stage;
        let stride = if stage == 0 { 1 } else { 2 };
        let (width, groups) = match kind {
            BlockKind::Basic | BlockKind::Bottleneck => (planes, 1),
            BlockKind::ResNeXt { groups, base_width } => {
                (planes * base_width / 64 * groups, groups)
            }
        };
        for b in 0..depth {
            let s = if b == 0 { stride } else { 1 };
            out.push(BlockSpec {
                prefix: format!("layer{}.{}", stage + 1, b),
                kind,
                in_channels: inplanes,
                width,
                out_channels: planes * exp,
                stride: s,
                groups,
                downsample: b == 0 && (s != 1 || inplanes != planes * exp),
                se_channels: se_channels(planes * exp),
            });
            inplanes = planes * exp;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Shape4;

    #[test]
    fn se_channels_match_mindcv() {
        let got: Vec<usize> = [64, 128, 256, 512, 1024, 2048]
            .iter()
            .map(|&c| se_channels(c))
            .collect();
        assert_eq!(got, vec![8, 8, 16, 32, 64, 128]);
    }

    #[test]
    fn stem_pools_place_their_windows_as_their_frameworks() {
        // (output side, padding before) on the stem conv's output, 112 (224 input) and 113.
        let at = |p: StemPool, n: usize| {
            let g = p.params().geometry(Shape4::new(1, 64, n, n)).unwrap();
            (g.ys.h, g.pad_top)
        };
        // 112: MindCV and timm's legacy pool start at 0, resnet.py at -1; 56 outputs each.
        assert_eq!(at(StemPool::Same, 112), (56, 0));
        assert_eq!(at(StemPool::CeilMode, 112), (56, 0));
        assert_eq!(at(StemPool::Pad1, 112), (56, 1));
        // 113: 'same' pads one pixel each side, as padding=1 does; ceil mode has one fewer.
        assert_eq!(at(StemPool::Same, 113), (57, 1));
        assert_eq!(at(StemPool::Pad1, 113), (57, 1));
        assert_eq!(at(StemPool::CeilMode, 113), (56, 0));
    }

    #[test]
    fn resnext_widths() {
        let b = blocks(Arch::SeResNeXt50_32x4d);
        let widths: Vec<usize> = b.iter().map(|b| b.width).collect();
        assert_eq!(widths[0], 128);
        assert_eq!(*widths.last().unwrap(), 1024);
        assert_eq!(b.len(), 16);
        assert!(b[0].downsample && !b[1].downsample);
        let b18 = blocks(Arch::SeResNet18);
        assert!(!b18[0].downsample && b18[2].downsample);
    }

    #[test]
    fn an_unknown_name_lists_every_model() {
        let e = Arch::from_name("resnet50").unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown model 'resnet50' (known: seresnet18, seresnet34, seresnet50, \
             seresnext26_32x4d, seresnext50_32x4d)"
        );
        for a in Arch::ALL {
            assert_eq!(Arch::from_name(a.name()).unwrap(), a);
        }
    }
}
