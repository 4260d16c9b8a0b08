//! The fixed-choice recipe values (MindCV `config.py` `choices=` lists and the names its
//! factories accept), as enums spelled exactly as MindCV spells them in YAML and on the command
//! line.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Defines a fixed-choice enum with its MindCV spellings: serde (de)serialises the spelling,
/// [`FromStr`] parses it (an error names the bad value and the accepted ones), [`fmt::Display`]
/// prints it.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $var:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $var, )+
        }

        impl $name {
            /// Every accepted spelling, in MindCV's order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The spelling MindCV uses for this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$var => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $( $text => Ok(Self::$var), )+
                    _ => Err(Error::Config(format!(
                        "'{}' is not one of {}",
                        s,
                        Self::NAMES.join(", ")
                    ))),
                }
            }
        }
    };
}

choice! {
    /// Resize interpolation (`interpolation`), MindSpore's `vision.Inter` names. config.py
    /// default `bilinear`; the SENet recipes use `bicubic` (MindSpore bicubic = OpenCV
    /// `INTER_CUBIC`, a = -0.75, no antialiasing).
    Interpolation {
        /// Nearest neighbour.
        Nearest = "nearest",
        /// Bilinear (config.py default).
        Bilinear = "bilinear",
        /// Bicubic, OpenCV `INTER_CUBIC` (the SENet recipes).
        Bicubic = "bicubic",
        /// Pixel-area averaging (OpenCV `INTER_AREA`).
        Area = "area",
        /// PIL's bicubic filter.
        Pilcubic = "pilcubic",
        /// PIL's antialiasing filter.
        Antialias = "antialias",
    }
}

choice! {
    /// Learning-rate schedule (`scheduler`). config.py default `cosine_decay`; the SENet recipes
    /// use `warmup_cosine_decay` (accepted from YAML although not in config.py's CLI `choices`:
    /// linear warmup over `warmup_epochs`, then cosine from `lr` to `min_lr`).
    Scheduler {
        /// Constant `lr`.
        Constant = "constant",
        /// Cosine decay from `lr` to `min_lr` over `decay_epochs` (after warmup), `num_cycles`
        /// cycles scaled by `cycle_decay` (config.py default).
        CosineDecay = "cosine_decay",
        /// Warmup then cosine decay (the SENet recipes).
        WarmupCosineDecay = "warmup_cosine_decay",
        /// `lr * decay_rate^(epoch / decay_epochs)`, smooth.
        ExponentialDecay = "exponential_decay",
        /// Polynomial decay to `min_lr` with power `decay_rate`.
        PolynomialDecay = "polynomial_decay",
        /// `lr * decay_rate^floor(epoch / decay_epochs)`.
        StepDecay = "step_decay",
        /// Multiply by `decay_rate` at each of `multi_step_decay_milestones`.
        MultiStepDecay = "multi_step_decay",
        /// One-cycle policy.
        OneCycle = "one_cycle",
        /// Cyclic learning rate.
        Cyclic = "cyclic",
    }
}

choice! {
    /// Optimizer (`opt`), config.py `choices`. config.py default `adam`; the SENet recipes use
    /// `momentum` (MindSpore `nn.Momentum`: `v = momentum * v + g + wd * p; p -= lr * v`).
    Optimizer {
        /// Plain SGD.
        Sgd = "sgd",
        /// SGD with momentum (the SENet recipes).
        Momentum = "momentum",
        /// Adam (config.py default).
        Adam = "adam",
        /// Adam with decoupled weight decay.
        Adamw = "adamw",
        /// Lion.
        Lion = "lion",
        /// RMSProp.
        Rmsprop = "rmsprop",
        /// Adagrad.
        Adagrad = "adagrad",
        /// LAMB.
        Lamb = "lamb",
        /// Nesterov Adam.
        Nadam = "nadam",
    }
}

choice! {
    /// Loss (`loss`), config.py `choices` `CE`/`BCE`; default and SENet recipes `CE`.
    Loss {
        /// Softmax cross entropy (with `label_smoothing`).
        Ce = "CE",
        /// Binary cross entropy.
        Bce = "BCE",
    }
}

choice! {
    /// Loss reduction (`reduction`); config.py default `mean`.
    Reduction {
        /// Mean over the batch (default).
        Mean = "mean",
        /// Sum over the batch.
        Sum = "sum",
        /// No reduction (one loss per sample).
        Unreduced = "none",
    }
}

choice! {
    /// MindSpore automatic mixed precision level (`amp_level`, `val_amp_level`). config.py default
    /// `O0`; the SENet recipes train with `O2` and validate with the default `O0`.
    AmpLevel {
        /// Everything in fp32.
        O0 = "O0",
        /// White-listed cells (Conv, Dense) in fp16.
        O1 = "O1",
        /// Network in fp16 except BatchNorm/LayerNorm and the loss (the SENet recipes).
        O2 = "O2",
        /// Everything in fp16.
        O3 = "O3",
    }
}

choice! {
    /// Loss-scale manager (`loss_scale_type`), config.py `choices`; default `fixed`.
    LossScaleType {
        /// `FixedLossScaleManager(loss_scale, drop_overflow_update)` (default, SENet recipes).
        Fixed = "fixed",
        /// `DynamicLossScaleManager(loss_scale, 2, 2000)`.
        Dynamic = "dynamic",
        /// Fixed for O0/O1, dynamic otherwise (MindSpore's choice per level).
        Auto = "auto",
    }
}

choice! {
    /// Which parameters are excluded from weight decay (`weight_decay_filter`), config.py
    /// `choices`; default (and SENet) `disable` = decay every trainable parameter.
    WeightDecayFilter {
        /// Decay every trainable parameter (default).
        Disable = "disable",
        /// Let MindSpore decide (currently it filters normalisation parameters).
        Auto = "auto",
        /// Exclude parameters whose name contains `beta`, `gamma` or `bias`.
        NormAndBias = "norm_and_bias",
    }
}

choice! {
    /// Checkpoint retention (`ckpt_save_policy`; `None`/`null` keeps every checkpoint). config.py
    /// default `latest_k`.
    CkptSavePolicy {
        /// Keep the `keep_checkpoint_max` checkpoints with the best validation accuracy.
        TopK = "top_k",
        /// Keep the `keep_checkpoint_max` most recent checkpoints (default).
        LatestK = "latest_k",
    }
}

choice! {
    /// Device to run on (`device_target`, a key of MindCV 0.4's config.py with default
    /// `Ascend`; MindCV 0.3 has no such key).
    DeviceTarget {
        /// Huawei Ascend NPU.
        Ascend = "Ascend",
        /// CUDA GPU.
        Gpu = "GPU",
        /// CPU.
        Cpu = "CPU",
    }
}

/// Colour jitter (`color_jitter`). MindCV's `transforms_imagenet_train` passes a number `j` as
/// `RandomColorAdjust(j, j, j)` (brightness, contrast, saturation) and a list of 3 or 4 values as
/// `RandomColorAdjust(*list)` (the 4th is hue); ViT-style recipes write `[0.4, 0.4, 0.4]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ColorJitter {
    /// One factor for brightness, contrast and saturation.
    Factor(f64),
    /// `[brightness, contrast, saturation]` or `[brightness, contrast, saturation, hue]`.
    PerOp(Vec<f64>),
}

impl ColorJitter {
    /// `[brightness, contrast, saturation, hue]`, hue 0 when not given. Each of the first three
    /// draws its factor from `[max(0, 1 - j), 1 + j]`, hue from `[-h, h]`. Errors (the reason,
    /// for the caller to name the key): a list not of 3 or 4 values, a negative or non-finite
    /// value, hue above 0.5 (MindSpore's range).
    pub fn factors(&self) -> std::result::Result<[f64; 4], String> {
        let f = match self {
            ColorJitter::Factor(j) => [*j, *j, *j, 0.0],
            ColorJitter::PerOp(v) => match v.as_slice() {
                [b, c, s] => [*b, *c, *s, 0.0],
                [b, c, s, h] => [*b, *c, *s, *h],
                _ => {
                    return Err(format!(
                        "a list needs 3 values (brightness, contrast, saturation) or 4 (and hue), \
                         got {}",
                        v.len()
                    ))
                }
            },
        };
        if f.iter().any(|x| !(x.is_finite() && *x >= 0.0)) {
            return Err("values must be finite numbers >= 0".into());
        }
        if f[3] > 0.5 {
            return Err("hue must be in [0, 0.5]".into());
        }
        Ok(f)
    }
}

impl fmt::Display for ColorJitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColorJitter::Factor(j) => write!(f, "{j}"),
            ColorJitter::PerOp(v) => write!(f, "{v:?}"),
        }
    }
}

/// Fill value of random erasing (`re_value`): config.py default `0`; MindSpore's `RandomErasing`
/// also accepts one value per channel or the string `random` (per-pixel normal noise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EraseValue {
    /// One value for every channel (0-255 scale); default `0`.
    Constant(f64),
    /// One value per channel (0-255 scale).
    PerChannel(Vec<f64>),
    /// A named mode; only `random` is valid (checked by `Recipe::validate`).
    Named(String),
}

impl Default for EraseValue {
    fn default() -> Self {
        EraseValue::Constant(0.0)
    }
}
