//! MindCV recipes (`configs/senet/*.yaml`) and the arguments of MindCV's `config.py`.
//!
//! A [`Recipe`] holds one typed field per `config.py` argument, each defaulting to `config.py`'s
//! default. Loading follows MindCV's two-stage parse: the YAML file replaces defaults (an unknown
//! key is an error), then command-line overrides ([`Recipe::set`]) replace file values.
//!
//! ```
//! use senet::config::Recipe;
//! let mut r = Recipe::from_yaml_str("model: seresnet50\nlr: 0.075\ncrop_pct: 0.875").unwrap();
//! r.set("batch_size", "32").unwrap();
//! assert_eq!((r.batch_size, r.eval_resize()), (32, 256));
//! ```

mod arg;
mod choices;
mod validate;
pub use validate::{MAX_BATCH_SIZE, MAX_EPOCHS};
mod yaml;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use arg::str2bool;
pub use choices::{
    AmpLevel, CkptSavePolicy, ColorJitter, DeviceTarget, EraseValue, Interpolation, Loss,
    LossScaleType, Optimizer, Reduction, Scheduler, WeightDecayFilter,
};

use crate::error::{Error, Result};
use arg::ArgValue;

/// serde's `skip_serializing_if` for a bool that is false.
fn is_false(b: &bool) -> bool {
    !b
}

/// The five SENet recipes (`configs/senet/*_ascend.yaml`), by model name.
const BUILTIN: [(&str, &str); 5] = [
    (
        "seresnet18",
        include_str!("../../configs/senet/seresnet18_ascend.yaml"),
    ),
    (
        "seresnet34",
        include_str!("../../configs/senet/seresnet34_ascend.yaml"),
    ),
    (
        "seresnet50",
        include_str!("../../configs/senet/seresnet50_ascend.yaml"),
    ),
    (
        "seresnext26_32x4d",
        include_str!("../../configs/senet/seresnext26_32x4d_ascend.yaml"),
    ),
    (
        "seresnext50_32x4d",
        include_str!("../../configs/senet/seresnext50_32x4d_ascend.yaml"),
    ),
];

/// The `config.py` argument group a key belongs to (MindCV's `add_argument_group` sections), so
/// `--help` lists the flags as MindCV's `train.py --help` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyGroup {
    /// "System parameters": mode, distribute, validation and log intervals, seed.
    System,
    /// "Dataset parameters": data set, folders, workers, batch size.
    Dataset,
    /// "Augmentation parameters": train and eval transforms.
    Augmentation,
    /// "Model parameters": model, checkpoints, epochs, EMA, clipping.
    Model,
    /// "Optimizer parameters".
    Optimizer,
    /// "Scheduler parameters": the learning-rate schedule.
    Scheduler,
    /// "Loss parameters".
    Loss,
    /// "Auto mixing precision parameters": AMP levels and loss scaling.
    Amp,
}

impl KeyGroup {
    /// MindCV's title of the group (config.py's `add_argument_group` argument).
    pub fn title(self) -> &'static str {
        match self {
            KeyGroup::System => "System parameters",
            KeyGroup::Dataset => "Dataset parameters",
            KeyGroup::Augmentation => "Augmentation parameters",
            KeyGroup::Model => "Model parameters",
            KeyGroup::Optimizer => "Optimizer parameters",
            KeyGroup::Scheduler => "Scheduler parameters",
            KeyGroup::Loss => "Loss parameters",
            KeyGroup::Amp => "Auto mixing precision parameters",
        }
    }
}

/// One recipe key as a command-line flag needs it: everything comes from the [`Recipe`]
/// declaration, so the recipe, its YAML reader and the flags share one list of keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// The key (= the flag `--<name>`; `--<name with hyphens>` is accepted too).
    pub name: &'static str,
    /// Its `config.py` group.
    pub group: KeyGroup,
    /// The field's documentation, one line per doc-comment line (each with its leading space).
    pub doc: &'static str,
    /// What a bare `--<name>` (no value) means: `Some("True")` for booleans, as `config.py`'s
    /// `type=str2bool, nargs='?', const=True`; `None` when the flag needs a value.
    pub bare: Option<&'static str>,
    /// The kind of value, for help texts: `BOOL`, `INT`, `FLOAT`, `STR`, `LIST`, `PAIR`, ...
    pub value_name: &'static str,
    /// The accepted spellings of a fixed-choice key (empty otherwise).
    pub choices: &'static [&'static str],
}

/// Declares [`Recipe`] from one list of `name: type = default` entries grouped by `config.py`
/// section, so the struct, its `Default`, [`Recipe::KEYS`], [`Recipe::SPECS`] (the flags) and
/// [`Recipe::set`] can never disagree.
macro_rules! recipe {
    ($(
        $group:ident {
            $(
                $(#[doc = $doc:literal])*
                $(#[serde($($serde:tt)*)])?
                $name:ident : $ty:ty = $default:expr
            ),+ $(,)?
        }
    )+) => {
        /// Every argument of MindCV's `config.py` (train.py / validate.py), typed, with
        /// `config.py`'s defaults. Deserialised from a recipe with unknown keys rejected
        /// (`deny_unknown_fields`) and absent keys left at their defaults; serialised back in the
        /// same shape (MindCV's `<ckpt_save_dir>/<model>.yaml` args dump).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Recipe {
            $($(
                $(#[doc = $doc])*
                $(#[serde($($serde)*)])?
                pub $name: $ty,
            )+)+
        }

        impl Default for Recipe {
            /// `config.py`'s defaults (no recipe loaded, no flags).
            fn default() -> Self {
                Recipe { $($( $name: $default, )+)+ }
            }
        }

        /// The largest recipe file [`Recipe::from_yaml_file`] reads (1 MiB; MindCV's recipes are a few
/// KB): a larger file, e.g. a sparse one of gigabytes, is refused from its size instead of being
/// allocated, read and parsed.
pub const MAX_RECIPE_BYTES: u64 = 1 << 20;

impl Recipe {
            /// Every key a recipe may contain (= `config.py`'s argument names), in `config.py`'s
            /// order.
            pub const KEYS: &'static [&'static str] = &[$($( stringify!($name) ),+),+];

            /// Every key with its group, documentation and value kind, in [`Recipe::KEYS`]
            /// order: what the command line turns into flags.
            pub const SPECS: &'static [KeySpec] = &[$($(
                KeySpec {
                    name: stringify!($name),
                    group: KeyGroup::$group,
                    doc: concat!($($doc, "\n"),*),
                    bare: <$ty as ArgValue>::BARE,
                    value_name: <$ty as ArgValue>::VALUE_NAME,
                    choices: <$ty as ArgValue>::CHOICES,
                },
            )+)+];

            /// Whether `value` parses as `key`'s type (as [`Recipe::set`] would parse it).
            /// Errors: the reason (what was expected), or `unknown key` for a key that is
            /// not one of [`Recipe::KEYS`].
            pub fn check_value(key: &str, value: &str) -> std::result::Result<(), String> {
                match key {
                    $($( stringify!($name) => <$ty as ArgValue>::parse_arg(value).map(drop), )+)+
                    _ => Err(format!("unknown key '{key}'")),
                }
            }

            /// Overrides one value from the command line: `value` is parsed as the field's type
            /// (bools through MindCV's `str2bool`: yes/true/1, no/false/0; lists as `a,b` or
            /// `[a, b]`; `None` unsets an optional value; choices by their MindCV spelling).
            /// An unknown key or an unparsable value is an [`Error::Config`] naming the key (and
            /// the value).
            pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
                match key {
                    $($( stringify!($name) => {
                        self.$name = <$ty as ArgValue>::parse_arg(value).map_err(|e| {
                            Error::Config(format!("key '{key}': invalid value '{value}': {e}"))
                        })?;
                    } )+)+
                    _ => return Err(Error::Config(format!("unknown key '{key}'"))),
                }
                Ok(())
            }
        }
    };
}

recipe! {
    System {
        /// Recipe file this recipe came from (`-c/--config`; MindCV writes it into the args dump).
        /// Default `""`.
        config: String = String::new(),
        /// MindSpore execution mode: 0 = GRAPH_MODE, 1 = PYNATIVE_MODE. Default 0.
        mode: u8 = 0,
        /// Data-parallel training over every device of the job. Default false; recipes: true.
        distribute: bool = false,
        /// Validate after training epochs. Default false; recipes: true.
        val_while_train: bool = false,
        /// Validation interval while training, in epochs. Default 1.
        val_interval: u32 = 1,
        /// Training log interval, in steps. Default 100.
        log_interval: u32 = 100,
        /// Seed of every random generator (plus the device rank when distributed). Default 42.
        seed: u64 = 42,
        /// Device to run on: `Ascend` or `CPU` (`GPU` is refused). Not a key of MindCV 0.3's
        /// config.py (which rejects it in a recipe; MindSpore then runs on the device its
        /// installed package targets); MindCV 0.4 added it with default `Ascend`. Default unset:
        /// Ascend when CANN loads, else the CPU without a word. Set (or `--device`, or
        /// `DEVICE_ID`), an Ascend that cannot be used is reported.
        #[serde(skip_serializing_if = "Option::is_none")]
        device_target: Option<DeviceTarget> = None,
    }

    Dataset {
        /// Dataset type (`imagenet` = ImageFolder layout; `mnist`, `cifar10`, `cifar100`, ...).
        /// Default `imagenet`.
        dataset: String = "imagenet".to_string(),
        /// Dataset root: `<data_dir>/<train_split>` and `<data_dir>/<val_split>`. Default `./`.
        data_dir: String = "./".to_string(),
        /// Training split folder name. Default `train`.
        train_split: String = "train".to_string(),
        /// Validation split folder name. Default `val`.
        val_split: String = "val".to_string(),
        /// Download the dataset (mnist/cifar10/cifar100 only). Default false.
        dataset_download: bool = false,
        /// Data-pipeline worker threads. Default 8.
        num_parallel_workers: usize = 8,
        /// Shuffle the training set. Default true.
        shuffle: bool = true,
        /// Number of samples to use (`None` = all). Default None.
        num_samples: Option<u64> = None,
        /// Images per batch, per device. Default 128; recipes: 64.
        batch_size: usize = 128,
        /// Drop the last incomplete training batch. Default true.
        drop_remainder: bool = true,
    }

    Augmentation {
        /// Network input size (train crop and eval centre crop), pixels. Default 224.
        image_resize: usize = 224,
        /// Random-resized-crop area fraction range. Default [0.08, 1.0].
        scale: [f64; 2] = [0.08, 1.0],
        /// Random-resized-crop aspect-ratio range (w/h). Default [0.75, 1.333].
        ratio: [f64; 2] = [0.75, 1.333],
        /// Horizontal-flip probability. Default 0.5.
        hflip: f64 = 0.5,
        /// Vertical-flip probability. Default 0.0.
        vflip: f64 = 0.0,
        /// Colour jitter: a factor `j` for brightness, contrast and saturation alike, or a
        /// list `[brightness, contrast, saturation]` (optionally `, hue]`) as MindCV's ViT-style
        /// recipes write it; `None` (YAML `null`) or 0 = off. Default 0.4 (active in the SENet
        /// recipes, which do not set it).
        color_jitter: Option<ColorJitter> = Some(ColorJitter::Factor(0.4)),
        /// Resize interpolation. Default `bilinear`; recipes: `bicubic`.
        interpolation: Interpolation = Interpolation::Bilinear,
        /// AutoAugment policy string (e.g. `randaug-m7-mstd0.5`); `None` = off. Default None.
        auto_augment: Option<String> = None,
        /// Number of augmentation splits (AugMix-style; 0 = off). Default 0.
        aug_splits: u32 = 0,
        /// Random-erasing probability. Default 0.0.
        re_prob: f64 = 0.0,
        /// Random-erasing area fraction range. Default [0.02, 0.33].
        re_scale: [f64; 2] = [0.02, 0.33],
        /// Random-erasing aspect-ratio range. Default [0.3, 3.3].
        re_ratio: [f64; 2] = [0.3, 3.3],
        /// Random-erasing fill value. Default 0.
        re_value: EraseValue = EraseValue::Constant(0.0),
        /// Random-erasing attempts before giving up. Default 10.
        re_max_attempts: u32 = 10,
        /// Per-channel (RGB) normalisation mean on the 0-255 scale. Default ImageNet x 255
        /// = [123.675, 116.28, 103.53].
        mean: Vec<f64> = vec![0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0],
        /// Per-channel (RGB) normalisation std on the 0-255 scale. Default ImageNet x 255
        /// = [58.395, 57.12, 57.375].
        std: Vec<f64> = vec![0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0],
        /// Eval centre-crop fraction: resize the short side to `image_resize / crop_pct`, then crop
        /// `image_resize`: 224 / 0.875 = 256. Default 0.875.
        crop_pct: f64 = 0.875,
        /// Mixup beta-distribution alpha (0 = off). Default 0.0.
        mixup: f64 = 0.0,
        /// CutMix beta-distribution alpha (0 = off). Default 0.0.
        cutmix: f64 = 0.0,
        /// Probability of applying mixup/cutmix to a batch. Default 1.0.
        cutmix_prob: f64 = 1.0,
        /// Repeated-augmentation count (0 or 1 = off). Default 0.
        aug_repeats: u32 = 0,
    }

    Model {
        /// Model name (`seresnet18`, `seresnet34`, `seresnet50`, `seresnext26_32x4d`,
        /// `seresnext50_32x4d` here). Default `mobilenet_v2_035_224` (config.py's).
        model: String = "mobilenet_v2_035_224".to_string(),
        /// Number of classes (`None` = read from the dataset). Default None; recipes: 1000.
        num_classes: Option<usize> = None,
        /// Input image channels. Default 3.
        in_channels: usize = 3,
        /// Dropout rate before the classifier (`None` = the model's default). Default None.
        drop_rate: Option<f64> = None,
        /// Stochastic-depth rate (`None` = the model's default). Default None.
        drop_path_rate: Option<f64> = None,
        /// Start from released weights, fine-tuning. MindCV downloads its zoo's (and refuses
        /// `ckpt_path` with it); senet train takes them from `ckpt_path`: every weight but a
        /// classifier of another class count, which starts as MindCV initialises it. Default
        /// false.
        pretrained: bool = false,
        /// Checkpoint to initialise from / resume (empty = none). Default `""`.
        ckpt_path: String = String::new(),
        /// Resume `ckpt_path` with its optimizer state. It is read from
        /// `<ckpt_save_dir>/optim_<model>.ckpt` (MindCV's place), else beside `ckpt_path`, else
        /// from `ckpt_path` itself. Default false.
        resume_opt: bool = false,
        /// Checkpoints kept by `ckpt_save_policy`. Default 10; recipes: 30.
        keep_checkpoint_max: u32 = 10,
        /// Checkpoint, log and args-dump directory. Default `./ckpt`.
        ckpt_save_dir: String = "./ckpt".to_string(),
        /// Checkpoint interval, in epochs. Default 1.
        ckpt_save_interval: u32 = 1,
        /// Checkpoint retention (`None` keeps all). Default `latest_k`.
        ckpt_save_policy: Option<CkptSavePolicy> = Some(CkptSavePolicy::LatestK),
        /// Training epochs. Default 90; recipes: 150.
        epoch_size: u32 = 90,
        /// MindSpore dataset sink mode. Default true.
        dataset_sink_mode: bool = true,
        /// Keep an exponential moving average of the weights. Default false.
        ema: bool = false,
        /// EMA decay (warmed up as `ema_decay * (1 - exp(-step / 2000))`). Default 0.9999.
        ema_decay: f64 = 0.9999,
        /// Clip gradients by global norm. Default false.
        clip_grad: bool = false,
        /// Global-norm clipping threshold. Default 15.0.
        clip_value: f64 = 15.0,
        /// Layer-wise learning-rate decay (`None` = off). Default None.
        layer_decay: Option<f64> = None,
        /// Batches whose gradients are accumulated per optimizer step. Default 1.
        gradient_accumulation_steps: u32 = 1,
    }

    Optimizer {
        /// Optimizer. Default `adam`; recipes: `momentum`.
        opt: Optimizer = Optimizer::Adam,
        /// Momentum coefficient. Default 0.9.
        momentum: f64 = 0.9,
        /// L2 weight decay, added to the gradient. Default 1e-6; recipes: 1e-4.
        weight_decay: f64 = 1e-6,
        /// Nesterov momentum. Default false.
        use_nesterov: bool = false,
        /// Parameters excluded from weight decay. Default `disable` (none excluded).
        weight_decay_filter: WeightDecayFilter = WeightDecayFilter::Disable,
        /// Legacy (MindCV before PR #752, 2024): exclude BN and bias from weight decay; the original
        /// SENet recipes set it true. Unset (`None`) by default and not written to the args
        /// dump when unset.
        #[serde(skip_serializing_if = "Option::is_none")]
        filter_bias_and_bn: Option<bool> = None,
        /// Optimizer epsilon (Adam-family denominators). Default 1e-10.
        eps: f64 = 1e-10,
    }

    Scheduler {
        /// Learning-rate schedule. Default `cosine_decay`; recipes: `warmup_cosine_decay`.
        scheduler: Scheduler = Scheduler::CosineDecay,
        /// Peak learning rate (for the per-device batch; not scaled by device count). Default 0.001;
        /// recipes: 0.075.
        lr: f64 = 0.001,
        /// Final learning rate of decaying schedules. Default 1e-6; recipes: 0.0.
        min_lr: f64 = 1e-6,
        /// Linear-warmup epochs. Default 3; recipes: 0.
        warmup_epochs: u32 = 3,
        /// Warmup starts at `lr * warmup_factor`. Default 0.0.
        warmup_factor: f64 = 0.0,
        /// Decay length in epochs (cosine/polynomial) or decay period (step/exponential).
        /// Default 100; recipes: 150.
        decay_epochs: u32 = 100,
        /// Decay factor (step/exponential/multi-step) or power (polynomial). Default 0.9.
        decay_rate: f64 = 0.9,
        /// Epochs at which `multi_step_decay` multiplies the rate by `decay_rate`.
        /// Default [30, 60, 90].
        multi_step_decay_milestones: Vec<u32> = vec![30, 60, 90],
        /// Change the rate once per epoch instead of every step. Default false.
        lr_epoch_stair: bool = false,
        /// Number of cosine cycles. Default 1.
        num_cycles: u32 = 1,
        /// Peak-rate factor applied at each new cosine cycle. Default 1.0.
        cycle_decay: f64 = 1.0,
    }

    Loss {
        /// Loss function. Default `CE`.
        loss: Loss = Loss::Ce,
        /// Label smoothing epsilon. Default 0.0; recipes: 0.1.
        label_smoothing: f64 = 0.0,
        /// Weight of auxiliary-head losses. Default 0.0.
        aux_factor: f64 = 0.0,
        /// Loss reduction. Default `mean`.
        reduction: Reduction = Reduction::Mean,
    }

    Amp {
        /// Training mixed-precision level. Default `O0`; recipes: `O2`.
        amp_level: AmpLevel = AmpLevel::O0,
        /// Validation mixed-precision level. Default `O0`.
        val_amp_level: AmpLevel = AmpLevel::O0,
        /// Custom fp16 white/black list of cell types (`None` = MindSpore's). Default None.
        amp_cast_list: Option<String> = None,
        /// Loss-scale manager. Default `fixed`.
        loss_scale_type: LossScaleType = LossScaleType::Fixed,
        /// Loss scale (initial scale when dynamic). Default 1.0; recipes: 1024.
        loss_scale: f64 = 1.0,
        /// Skip the optimizer step when gradients overflow. Default false. (config.py parses this
        /// flag with Python's `bool`, so any non-empty string is true there; here it is `str2bool`.)
        drop_overflow_update: bool = false,
        /// Shuffle the validation set (MindCV 0.4; not in 0.3's config.py). Default false (same
        /// `bool` caveat as above), not written to the args dump when false, so that MindCV 0.3
        /// reads the dump back.
        #[serde(skip_serializing_if = "is_false")]
        eval_shuffle: bool = false,
    }
}

impl Recipe {
    /// Parses a recipe from YAML text (no file name in errors). See [`Recipe::from_yaml_file`].
    pub fn from_yaml_str(text: &str) -> Result<Recipe> {
        yaml::parse(text, None)
    }

    /// Reads and parses a MindCV recipe. Keys absent from the file keep `config.py`'s defaults;
    /// floats may be written as integers (`lr: 1`), booleans as `True`/`yes`, pairs as
    /// `[a, b]`. The file is read with [`crate::fsutil::read_text_at_most`] (a regular file,
    /// UTF-8, at most [`MAX_RECIPE_BYTES`]: a larger one is [`Error::Format`] from its size).
    /// Errors name the file: a missing or non-regular file is [`Error::Io`], text that is not
    /// UTF-8 [`Error::Format`]; an unknown key is
    /// [`Error::Config`] `"<file>: unknown key 'k'"`; a value of the wrong type or an unknown
    /// choice is [`Error::Config`] naming the key, the value and the file. Does not call
    /// [`Recipe::validate`] (MindCV does not either). Like MindCV, records the file in
    /// [`Recipe::config`] (unless the file sets `config` itself, as an args dump does).
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Recipe> {
        let path = path.as_ref();
        let text = crate::fsutil::read_text_at_most(path, MAX_RECIPE_BYTES, "a recipe")?;
        let mut recipe = yaml::parse(&text, Some(path))?;
        if recipe.config.is_empty() {
            recipe.config = path.display().to_string();
        }
        Ok(recipe)
    }

    /// The MindCV recipe `configs/senet/<model>_ascend.yaml` for one of the five SENet models,
    /// compiled into the library (so jobs need no file); [`Recipe::config`] names that path.
    /// Any other name is [`Error::UnknownModel`].
    pub fn builtin(model: &str) -> Result<Recipe> {
        let text = BUILTIN
            .iter()
            .find(|(name, _)| *name == model)
            .map(|(_, text)| *text)
            .ok_or_else(|| Error::UnknownModel(model.to_string()))?;
        let path = format!("configs/senet/{model}_ascend.yaml");
        let mut recipe = yaml::parse(text, Some(Path::new(&path)))?;
        recipe.config = path;
        Ok(recipe)
    }

    /// The recipe as YAML, one `key: value` line per argument (MindCV's args dump
    /// `<ckpt_save_dir>/<model>.yaml`); [`Recipe::from_yaml_str`] reads it back unchanged.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("a Recipe always serialises")
    }

    /// Applies `(key, value)` overrides in order with [`Recipe::set`] (CLI flags over the file).
    pub fn apply_overrides<'a>(
        &mut self,
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<()> {
        overrides.into_iter().try_for_each(|(k, v)| self.set(k, v))
    }

    /// Short side of the eval resize, pixels: `floor(image_resize / crop_pct)` (MindCV's
    /// `transforms_imagenet_eval`; 224 / 0.875 = 256).
    pub fn eval_resize(&self) -> usize {
        (self.image_resize as f64 / self.crop_pct).floor() as usize
    }
}
