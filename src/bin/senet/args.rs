//! The command line's arguments (clap): one struct per command, MindCV's flag spellings
//! (`--data_dir`, `--ckpt_path`, ...) with hyphenated aliases.
use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use senet::backend::ascend::CubeMath;
use senet::config::Recipe;
use senet::data::Preprocess;
use senet::engine::device::{DeviceChoice, DeviceRequest};
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
    /// Converts a checkpoint between MindSpore .ckpt and .safetensors (by extension), and
    /// between MindCV's and timm's tensor names.
    Convert(ConvertArgs),
}

/// `senet train`: every flag overrides the recipe key of the same name, as in MindCV.
#[derive(Args)]
pub struct TrainArgs {
    /// MindCV recipe (YAML), e.g. configs/senet/seresnet18_cifar10_cpu.yaml.
    #[arg(short = 'c', long)]
    pub config: PathBuf,
    /// Dataset root holding <train_split>/<class>/<image> (and <val_split>/...).
    #[arg(long = "data_dir", alias = "data-dir")]
    pub data_dir: Option<String>,
    /// Model name.
    #[arg(long)]
    pub model: Option<String>,
    /// Number of classes (default: from the data set / class map).
    #[arg(long = "num_classes", alias = "num-classes")]
    pub num_classes: Option<String>,
    /// Images per batch.
    #[arg(long = "batch_size", alias = "batch-size")]
    pub batch_size: Option<String>,
    /// Network input side in pixels (train crop and eval centre crop).
    #[arg(long = "image_resize", alias = "image-resize")]
    pub image_resize: Option<String>,
    /// Epochs.
    #[arg(long = "epoch_size", alias = "epoch-size")]
    pub epoch_size: Option<String>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<String>,
    /// Where checkpoints, metrics.jsonl and the args dump go.
    #[arg(long = "ckpt_save_dir", alias = "ckpt-save-dir")]
    pub ckpt_save_dir: Option<String>,
    /// Start weights (.ckpt or .safetensors; exact load, optimizer from zero).
    #[arg(long = "ckpt_path", alias = "ckpt-path")]
    pub ckpt_path: Option<String>,
    /// A step checkpoint of `senet train` to continue from exactly (weights, moments, step).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Seed of the initialisation, the shuffle and the augmentations.
    #[arg(long)]
    pub seed: Option<String>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Decoding threads.
    #[arg(long = "num_parallel_workers", alias = "num-parallel-workers")]
    pub num_parallel_workers: Option<String>,
    /// Class map: one class folder per line, or the TSV index<TAB>folder<TAB>name.
    #[arg(long = "class_map", alias = "class-map")]
    pub class_map: Option<PathBuf>,
    /// Validate on val_split while training (bare flag = True, or True/False).
    #[arg(long = "val_while_train", alias = "val-while-train", num_args = 0..=1,
          default_missing_value = "True")]
    pub val_while_train: Option<String>,
    /// Validate every this many epochs.
    #[arg(long = "val_interval", alias = "val-interval")]
    pub val_interval: Option<String>,
    /// Step checkpoints kept (latest_k).
    #[arg(long = "keep_checkpoint_max", alias = "keep-checkpoint-max")]
    pub keep_checkpoint_max: Option<String>,
    /// Data-parallel training over the processes of the job (bare flag = True): launch with
    /// `mpirun -n N senet train ... --distribute` (needs a build with `--features mpi`).
    #[arg(long, num_args = 0..=1, default_missing_value = "True")]
    pub distribute: Option<String>,
    /// Frozen BatchNorm: normalise with the moving statistics while training, never update
    /// them (MindSpore use_batch_statistics=False); gamma and beta still train.
    #[arg(long = "freeze_bn", alias = "freeze-bn")]
    pub freeze_bn: bool,
    /// Training split folder (default "train").
    #[arg(long = "train_split", alias = "train-split")]
    pub train_split: Option<String>,
    /// Validation split folder (default "val").
    #[arg(long = "val_split", alias = "val-split")]
    pub val_split: Option<String>,
    /// Stop when the global step reaches N, saving a checkpoint there (counts from the start of
    /// training, so a resumed run with the same N stops at the same step).
    #[arg(long = "max_steps", alias = "max-steps")]
    pub max_steps: Option<u64>,
    /// Print the final report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl TrainArgs {
    /// The recipe file with the flags applied (parsed as the recipe's types, errors naming the
    /// key).
    pub fn recipe(&self) -> Result<Recipe> {
        let mut r = Recipe::from_yaml_file(&self.config)?;
        let overrides = [
            ("data_dir", &self.data_dir),
            ("model", &self.model),
            ("num_classes", &self.num_classes),
            ("batch_size", &self.batch_size),
            ("image_resize", &self.image_resize),
            ("epoch_size", &self.epoch_size),
            ("lr", &self.lr),
            ("ckpt_save_dir", &self.ckpt_save_dir),
            ("ckpt_path", &self.ckpt_path),
            ("seed", &self.seed),
            ("num_parallel_workers", &self.num_parallel_workers),
            ("val_while_train", &self.val_while_train),
            ("val_interval", &self.val_interval),
            ("keep_checkpoint_max", &self.keep_checkpoint_max),
            ("distribute", &self.distribute),
            ("train_split", &self.train_split),
            ("val_split", &self.val_split),
        ];
        for (key, value) in overrides {
            if let Some(v) = value {
                r.set(key, v)?;
            }
        }
        Ok(r)
    }
}

/// The transform flags shared by predict and preprocess.
#[derive(Args)]
pub struct TransformArgs {
    /// MindCV recipe (YAML) giving image_resize, crop_pct, interpolation, mean, std.
    #[arg(short = 'c', long)]
    pub config: Option<PathBuf>,
    /// Output side in pixels (recipe key image_resize; default 224).
    #[arg(long = "image_resize", alias = "image-resize")]
    pub image_resize: Option<usize>,
    /// Centre-crop fraction: images are resized to floor(image_resize / crop_pct) first.
    #[arg(long = "crop_pct", alias = "crop-pct")]
    pub crop_pct: Option<f64>,
    /// bicubic (MindCV's SENet recipes; OpenCV INTER_CUBIC, or Pillow's with --preprocess timm)
    /// or bilinear.
    #[arg(long)]
    pub interpolation: Option<String>,
    /// Decoding threads.
    #[arg(long = "num_parallel_workers", alias = "num-parallel-workers")]
    pub num_parallel_workers: Option<usize>,
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

impl TransformArgs {
    /// The recipe (file, else MindCV's SENet eval defaults) with these flags applied.
    pub fn recipe(&self) -> Result<Recipe> {
        let mut r = match &self.config {
            Some(p) => Recipe::from_yaml_file(p)?,
            None => {
                let mut r = Recipe::default();
                r.set("interpolation", "bicubic")?;
                r
            }
        };
        if let Some(v) = self.image_resize {
            r.image_resize = v;
        }
        if let Some(v) = self.crop_pct {
            r.crop_pct = v;
        }
        if let Some(v) = &self.interpolation {
            r.set("interpolation", v)?;
        }
        if let Some(v) = self.num_parallel_workers {
            r.num_parallel_workers = v;
        }
        r.validate()?;
        Ok(r)
    }
}

#[derive(Args)]
pub struct ValidateArgs {
    /// MindCV recipe (YAML), e.g. configs/senet/seresnet50_ascend.yaml.
    #[arg(short = 'c', long)]
    pub config: Option<PathBuf>,
    /// Dataset root holding <val_split>/<class>/<image>.
    #[arg(long = "data_dir", alias = "data-dir")]
    pub data_dir: Option<String>,
    /// Checkpoint (.ckpt or .safetensors) to evaluate. Required: never random weights.
    #[arg(long = "ckpt_path", alias = "ckpt-path")]
    pub ckpt_path: Option<String>,
    /// Model name (overrides the recipe's `model`).
    #[arg(long)]
    pub model: Option<String>,
    /// Images per batch (default: the recipe's `batch_size`); the last partial batch counts too.
    #[arg(long = "batch_size", alias = "batch-size")]
    pub batch_size: Option<usize>,
    /// Decoding threads.
    #[arg(long = "num_parallel_workers", alias = "num-parallel-workers")]
    pub num_parallel_workers: Option<usize>,
    /// Sub-folder of data_dir to evaluate (default "val").
    #[arg(long = "val_split", alias = "val-split")]
    pub val_split: Option<String>,
    /// Class map: one class folder per line, or the TSV index<TAB>folder<TAB>name.
    #[arg(long = "class_map", alias = "class-map")]
    pub class_map: Option<PathBuf>,
    /// Number of classes of the model (default: from the data set / class map).
    #[arg(long = "num_classes", alias = "num-classes")]
    pub num_classes: Option<usize>,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub preprocess: PreprocessArg,
    /// Print one JSON object (model, num_samples, top1, top5, loss, images_per_second).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PredictArgs {
    /// Model name (default: the recipe's `model` when -c is given).
    #[arg(long)]
    pub model: Option<String>,
    /// Checkpoint (.ckpt or .safetensors).
    #[arg(long = "ckpt_path", alias = "ckpt-path")]
    pub ckpt_path: PathBuf,
    /// Class names: one class folder per line, or the TSV index<TAB>folder<TAB>name.
    #[arg(long = "class_map", alias = "class-map")]
    pub class_map: Option<PathBuf>,
    /// Classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub topk: usize,
    /// Write the logits, (N, num_classes) f32, in the printed order.
    #[arg(long = "save_logits", alias = "save-logits")]
    pub save_logits: Option<PathBuf>,
    #[arg(long = "batch_size", alias = "batch-size", default_value_t = 16)]
    pub batch_size: usize,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub transform: TransformArgs,
    /// Image files or folders (searched recursively, sorted).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Where the network runs (train, validate, predict, bench).
#[derive(Args)]
pub struct DeviceArgs {
    /// auto, cpu or ascend. auto: the recipe's device_target when CANN loads, else the CPU
    /// (predict and bench: the CPU). ascend: an error if CANN cannot be loaded.
    #[arg(long, alias = "device_target", default_value = "auto")]
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
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub conv_allow_hf32: bool,
    /// Ascend, float32 (amp O0): Dense layers in HFLOAT32 instead of fp32 (torch_npu's
    /// torch.npu.matmul.allow_hf32); on the first-generation 910 both compute in FLOAT16.
    #[arg(long = "matmul_allow_hf32", alias = "matmul-allow-hf32", default_value_t = false,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub matmul_allow_hf32: bool,
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
pub struct PreprocessArgs {
    #[command(flatten)]
    pub transform: TransformArgs,
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
