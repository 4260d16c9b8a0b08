//! The command line's arguments (clap): one struct per command, MindCV's flag spellings
//! (`--data_dir`, `--ckpt_path`, ...) with hyphenated aliases. The recipe keys are not listed
//! here: [`RecipeFlags`] makes one flag per key of [`Recipe::SPECS`].
use anyhow::Result;
use clap::{Arg, ArgMatches, Args, FromArgMatches, Parser, Subcommand};
use senet::backend::ascend::CubeMath;
use senet::config::{KeySpec, Recipe};
use senet::data::Preprocess;
use senet::engine::device::{DeviceChoice, DeviceRequest};
use std::marker::PhantomData;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "senet",
    version,
    about = "SE-ResNet / SE-ResNeXt exactly as MindCV defines them"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Trains a model on data_dir/train_split from a MindCV recipe (MindCV train.py).
    Train(Box<TrainArgs>),
    /// Top-1/Top-5 accuracy and loss of a checkpoint on data_dir/val (MindCV validate.py).
    Validate(ValidateArgs),
    /// Top-K classes of image files or folders.
    Predict(PredictArgs),
    /// The eval transform's output for images, as an (N,3,H,W) f32 .npy.
    Preprocess(PreprocessArgs),
    /// The model variants, with parameter counts and GFLOPs at 224.
    Models,
    /// The devices senet can run on: the CPU, and the Ascend NPUs CANN reports (or why CANN
    /// could not be loaded).
    Devices(DevicesArgs),
    /// Throughput (images/s) and peak memory on random input: forward passes, or training
    /// steps with --train.
    Bench(BenchArgs),
    /// Writes a checkpoint with MindCV's random initialisation (or the golden formula weights).
    Init(InitArgs),
    /// Draws training curves (loss, learning rate, Top-1/Top-5) from metrics.jsonl logs.
    Plot(PlotArgs),
    /// What a checkpoint holds: its tensors (name, dtype, shape), the variant and class count
    /// they are, and its training state.
    Inspect(InspectArgs),
    /// Converts a checkpoint between MindSpore .ckpt and .safetensors (by extension), and
    /// between MindCV's and timm's tensor names.
    Convert(ConvertArgs),
}

/// `senet train`: MindCV's `train.py`. Every key of the recipe is a flag overriding it.
#[derive(Args)]
#[command(args_override_self = true)]
pub struct TrainArgs {
    /// MindCV recipe (YAML), e.g. configs/senet/seresnet18_cifar10_cpu.yaml.
    #[arg(short = 'c', long)]
    pub config: PathBuf,
    /// A step checkpoint of `senet train` or MindCV to continue from exactly (weights, moments,
    /// step); MindCV's spelling: --ckpt_path X --resume_opt True.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Class map: one class folder per line, or the TSV index<TAB>folder<TAB>name.
    #[arg(long = "class_map", alias = "class-map")]
    pub class_map: Option<PathBuf>,
    /// Frozen BatchNorm: normalise with the moving statistics while training, never update
    /// them (MindSpore use_batch_statistics=False); gamma and beta still train.
    #[arg(long = "freeze_bn", alias = "freeze-bn")]
    pub freeze_bn: bool,
    /// Stop when the global step reaches N, saving a checkpoint there (counts from the start of
    /// training, so a resumed run with the same N stops at the same step).
    #[arg(long = "max_steps", alias = "max-steps")]
    pub max_steps: Option<u64>,
    /// Print the final report as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: RecipeFlags<AllKeys>,
}

impl TrainArgs {
    /// The recipe file with the flags applied.
    pub fn recipe(&self) -> Result<Recipe> {
        self.keys.over(Recipe::from_yaml_file(&self.config)?)
    }
}

/// `senet validate`: MindCV's `validate.py`, which parses every `config.py` key (those that do
/// not concern validation are accepted and have no effect, as there).
#[derive(Args)]
#[command(args_override_self = true)]
pub struct ValidateArgs {
    /// MindCV recipe (YAML), e.g. configs/senet/seresnet50_ascend.yaml.
    #[arg(short = 'c', long)]
    pub config: Option<PathBuf>,
    /// Class map: one class folder per line, or the TSV index<TAB>folder<TAB>name.
    #[arg(long = "class_map", alias = "class-map")]
    pub class_map: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub preprocess: PreprocessArg,
    /// Print one JSON object (model, num_samples, top1, top5, loss, images_per_second).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: RecipeFlags<AllKeys>,
}

impl ValidateArgs {
    /// The recipe (file, else `config.py`'s defaults) with the flags applied, validated.
    /// Errors: no model named (neither `-c` nor `--model`), a bad recipe or value.
    pub fn recipe(&self) -> Result<Recipe> {
        if self.config.is_none() && self.keys.get("model").is_none() {
            anyhow::bail!("no model given: pass -c RECIPE or --model NAME (see `senet models`)");
        }
        eval_recipe(self.config.as_deref(), &self.keys, &self.preprocess)
    }
}

/// The recipe file, or `config.py`'s defaults (MindCV's `create_transforms` eval defaults:
/// 224, crop 0.875, bilinear, ImageNet mean/std) without one.
fn recipe_or_default(config: Option<&std::path::Path>) -> Result<Recipe> {
    Ok(match config {
        Some(p) => Recipe::from_yaml_file(p)?,
        None => Recipe::default(),
    })
}

/// The recipe of an eval command: `-c` (else `config.py`'s defaults) with the flags applied.
/// Without `-c` and `--interpolation`, `--preprocess timm` resizes bicubic, the interpolation
/// of timm's pretrained configs for these networks (MindCV's `create_transforms` default is
/// bilinear).
fn eval_recipe<S: KeySet + Send + Sync + 'static>(
    config: Option<&std::path::Path>,
    keys: &RecipeFlags<S>,
    preprocess: &PreprocessArg,
) -> Result<Recipe> {
    let mut base = recipe_or_default(config)?;
    if config.is_none() && preprocess.get()? == Preprocess::Timm {
        base.set("interpolation", "bicubic")?;
    }
    let r = keys.over(base)?;
    r.validate()?;
    Ok(r)
}

/// The transform flags shared by predict and preprocess: `-c` and the recipe keys of `S`.
#[derive(Args)]
pub struct TransformArgs<S: KeySet + Send + Sync + 'static> {
    /// MindCV recipe (YAML) giving image_resize, crop_pct, interpolation, mean, std.
    #[arg(short = 'c', long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub keys: RecipeFlags<S>,
    #[command(flatten)]
    pub preprocess: PreprocessArg,
}

/// `--preprocess mindcv|timm` (predict, preprocess, validate).
#[derive(Args)]
pub struct PreprocessArg {
    /// Whose eval transform: mindcv (OpenCV resize, MindSpore's crop) or timm (Pillow's
    /// antialiased resize, torchvision's crop, ToTensor + Normalize: for timm weights).
    #[arg(long, default_value = "mindcv")]
    pub preprocess: String,
}

impl PreprocessArg {
    pub fn get(&self) -> Result<Preprocess> {
        Ok(self.preprocess.parse()?)
    }
}

impl<S: KeySet + Send + Sync + 'static> TransformArgs<S> {
    /// The recipe (file, else `config.py`'s defaults, as MindCV's `create_transforms`) with these
    /// flags applied, validated.
    pub fn recipe(&self) -> Result<Recipe> {
        eval_recipe(self.config.as_deref(), &self.keys, &self.preprocess)
    }
}

#[derive(Args)]
#[command(args_override_self = true)]
pub struct PredictArgs {
    /// Model name (default: the recipe's `model` when -c is given).
    #[arg(long)]
    pub model: Option<String>,
    /// Checkpoint (.ckpt or .safetensors).
    #[arg(long = "ckpt_path", alias = "ckpt-path")]
    pub ckpt_path: PathBuf,
    /// Class names: one class folder per line, or the TSV index<TAB>folder<TAB>name (default
    /// with -c: the class folders of <data_dir>/<val_split>, else of <data_dir>/<train_split>,
    /// when there; else classes are numbered).
    #[arg(long = "class_map", alias = "class-map")]
    pub class_map: Option<PathBuf>,
    /// Classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub topk: usize,
    /// Write the logits, (N, num_classes) f32, in the printed order.
    #[arg(long = "save_logits", alias = "save-logits")]
    pub save_logits: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long = "batch_size", alias = "batch-size", default_value_t = 16)]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub transform: TransformArgs<PredictKeys>,
    /// Image files or folders (searched recursively, sorted).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Which recipe keys a command takes as flags.
pub trait KeySet {
    /// Whether `key` is a flag of the command.
    fn includes(key: &str) -> bool;
}

/// Every key but `config` (that is `-c`): train and validate, as MindCV's `train.py` and
/// `validate.py` parse all of `config.py`.
pub struct AllKeys;

impl KeySet for AllKeys {
    fn includes(key: &str) -> bool {
        key != "config"
    }
}

/// The keys of MindCV's eval transform and its decoding workers (preprocess).
pub struct TransformKeys;

/// The recipe keys of the eval transform (`create_transforms(is_training=False)`) and loader.
const TRANSFORM_KEYS: [&str; 6] = [
    "image_resize",
    "crop_pct",
    "interpolation",
    "mean",
    "std",
    "num_parallel_workers",
];

impl KeySet for TransformKeys {
    fn includes(key: &str) -> bool {
        TRANSFORM_KEYS.contains(&key)
    }
}

/// [`TransformKeys`] and where the class folders are (predict).
pub struct PredictKeys;

impl KeySet for PredictKeys {
    fn includes(key: &str) -> bool {
        TransformKeys::includes(key) || ["data_dir", "train_split", "val_split"].contains(&key)
    }
}

/// The recipe keys of `S` as flags, generated from [`Recipe::SPECS`] (the same table the YAML
/// reader checks keys against): `--<key> VALUE` and `--<key-with-hyphens> VALUE`, grouped in
/// `--help` by MindCV's `config.py` sections; booleans as `config.py` takes them (`--ema`,
/// `--ema True`, `--ema false`). A value is checked against the key's type when parsed; values
/// the command does not implement are refused by the same checks as recipe values.
pub struct RecipeFlags<S> {
    /// `(key, value)` of every flag given, in [`Recipe::KEYS`] order.
    values: Vec<(&'static str, String)>,
    set: PhantomData<S>,
}

impl<S> RecipeFlags<S> {
    /// The value given for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `recipe` with the flags given applied over it (MindCV: flags over the file's values).
    pub fn over(&self, mut recipe: Recipe) -> Result<Recipe> {
        for (key, value) in &self.values {
            recipe.set(key, value)?;
        }
        Ok(recipe)
    }
}

/// The help of a key: its doc comment's lines joined; the short help is the first sentence.
fn key_help(spec: &KeySpec) -> (String, String) {
    let long = spec.doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let short = first_sentence(&long).to_string();
    let long = if spec.choices.is_empty() {
        long
    } else {
        format!("{long} [one of: {}]", spec.choices.join(", "))
    };
    (short, long)
}

/// `text` up to its first full stop followed by a space outside parentheses (`(e.g. x)` does not
/// end a sentence), or all of it.
fn first_sentence(text: &str) -> &str {
    let mut depth = 0i32;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '.' if depth == 0 && text[i + 1..].starts_with(' ') => return &text[..=i],
            _ => {}
        }
    }
    text
}

/// The flag of one recipe key.
fn key_flag(spec: &'static KeySpec) -> Arg {
    let (short, long) = key_help(spec);
    let name = spec.name;
    let mut arg = Arg::new(name)
        .long(name)
        .value_name(spec.value_name)
        .help(short)
        .long_help(long)
        .help_heading(spec.group.title())
        .allow_negative_numbers(true)
        .value_parser(move |v: &str| Recipe::check_value(name, v).map(|()| v.to_string()));
    let hyphens = name.replace('_', "-");
    if hyphens != name {
        arg = arg.alias(hyphens);
    }
    if let Some(bare) = spec.bare {
        arg = arg.num_args(0..=1).default_missing_value(bare);
    }
    arg
}

impl<S: KeySet> FromArgMatches for RecipeFlags<S> {
    fn from_arg_matches(m: &ArgMatches) -> std::result::Result<Self, clap::Error> {
        let values = Recipe::SPECS
            .iter()
            .filter(|spec| S::includes(spec.name))
            .filter_map(|spec| {
                m.get_one::<String>(spec.name)
                    .map(|v| (spec.name, v.clone()))
            })
            .collect();
        Ok(RecipeFlags {
            values,
            set: PhantomData,
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl<S: KeySet> Args for RecipeFlags<S> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        Recipe::SPECS
            .iter()
            .filter(|spec| S::includes(spec.name))
            .fold(cmd, |cmd, spec| cmd.arg(key_flag(spec)))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// Where the network runs (train, validate, predict, bench).
#[derive(Args)]
pub struct DeviceArgs {
    /// auto, cpu or ascend. auto: an Ascend NPU when CANN loads, else the CPU (with a note only
    /// when the recipe's device_target or DEVICE_ID asked for the NPU; predict and bench: the
    /// CPU). ascend: an error if CANN cannot be loaded.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Ascend device number (default: DEVICE_ID, else 0).
    #[arg(long = "device_id", alias = "device-id",
          value_parser = clap::value_parser!(i32).range(0..))]
    pub device_id: Option<i32>,
    /// CPU threads for the network (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Ascend, float32 (amp O0): convolutions in HFLOAT32 (torch_npu's torch.npu.conv.allow_hf32).
    /// false asks for KEEP_DTYPE (true fp32), which the vendor documents as
    /// unsupported for the forward convolution on A2/A3 (refused there); on the
    /// first-generation 910 both compute in FLOAT16.
    #[arg(long = "conv_allow_hf32", alias = "conv-allow-hf32", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "BOOL", value_parser = mindcv_bool)]
    pub conv_allow_hf32: bool,
    /// Ascend, float32 (amp O0): Dense layers in HFLOAT32 instead of fp32 (torch_npu's
    /// torch.npu.matmul.allow_hf32); on the first-generation 910 both compute in FLOAT16.
    #[arg(long = "matmul_allow_hf32", alias = "matmul-allow-hf32", default_value_t = false,
          action = clap::ArgAction::Set, value_name = "BOOL", value_parser = mindcv_bool)]
    pub matmul_allow_hf32: bool,
}

/// A boolean flag value spelled as MindCV's `str2bool` accepts it (`True`, `false`, `yes`, `0`,
/// ...), like the recipe's boolean keys.
fn mindcv_bool(s: &str) -> std::result::Result<bool, String> {
    senet::config::str2bool(s)
        .ok_or_else(|| format!("{s:?} is not a boolean (yes/true/1 or no/false/0, any case)"))
}

impl DeviceArgs {
    pub fn request(&self) -> Result<DeviceRequest> {
        Ok(DeviceRequest {
            choice: DeviceChoice::parse(&self.device)?,
            device_id: self.device_id,
            threads: self.threads,
            cube_math: CubeMath {
                conv_allow_hf32: self.conv_allow_hf32,
                matmul_allow_hf32: self.matmul_allow_hf32,
            },
        })
    }
}

#[derive(Args)]
pub struct DevicesArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
#[command(args_override_self = true)]
pub struct PreprocessArgs {
    #[command(flatten)]
    pub transform: TransformArgs<TransformKeys>,
    /// Output .npy, (N, 3, H, W) f32.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Image files or folders (searched recursively, sorted).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, default_value = "seresnet50")]
    pub model: String,
    #[arg(long = "batch_size", alias = "batch-size", default_value_t = 1)]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[arg(long = "image_size", alias = "image-size", default_value_t = 224)]
    pub image_size: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub iters: u32,
    /// Time training steps (forward, backward, Momentum update) instead of inference.
    #[arg(long)]
    pub train: bool,
    /// Precision on Ascend: O0 (float32) or O2 (float16 compute, MindCV's training AMP).
    #[arg(long = "amp_level", alias = "amp-level", default_value = "O0")]
    pub amp_level: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct InitArgs {
    #[arg(long)]
    pub model: String,
    #[arg(long = "num_classes", alias = "num-classes", default_value_t = 1000)]
    pub num_classes: usize,
    /// Seed of the random initialisation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The golden formula weights of shared/golden/README.md instead of a random init.
    #[arg(long, conflicts_with = "seed")]
    pub formula: bool,
    /// Output file (.ckpt or .safetensors).
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct ConvertArgs {
    /// A MindSpore .ckpt, or a .safetensors file with MindCV's or timm's names.
    pub input: PathBuf,
    /// The .ckpt or .safetensors file to write.
    pub output: PathBuf,
    /// Tensor names to write: mindcv (MindCV's), timm (timm resnet.py's: seresnet18/34/50,
    /// seresnext50_32x4d) or timm_legacy (timm senet.py's: legacy_seresnext26/50_32x4d); the
    /// timm names need a .safetensors output.
    #[arg(long, default_value = "mindcv")]
    pub names: String,
}

#[derive(Args)]
pub struct InspectArgs {
    /// A MindSpore .ckpt, or a .safetensors file with MindCV's or timm's names.
    pub input: PathBuf,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PlotArgs {
    /// metrics.jsonl logs of `senet train` (several: one curve each, to compare runs).
    #[arg(required = true)]
    pub logs: Vec<PathBuf>,
    /// The picture to write: .png or .svg.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Width in pixels.
    #[arg(long, default_value_t = senet::engine::curves::DEFAULT_SIZE.0)]
    pub width: u32,
    /// Height in pixels.
    #[arg(long, default_value_t = senet::engine::curves::DEFAULT_SIZE.1)]
    pub height: u32,
}
