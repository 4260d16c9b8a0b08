//! The `senet` command line: train, validate, predict, preprocess, models, bench, init, convert.
//! Flags use MindCV's spelling (`--data_dir`, `--ckpt_path`, ...); a recipe (`-c`) sets the
//! defaults and flags override it, as in MindCV's `config.py`.
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use senet::config::AmpLevel;
use senet::config::Recipe;
use senet::engine;
use senet::engine::device::{DeviceChoice, DeviceRequest};
use senet::model::{Arch, SeNet};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "senet",
    version,
    about = "SE-ResNet / SE-ResNeXt exactly as MindCV defines them"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// Forward throughput (images/s) and peak memory on random input.
    Bench(BenchArgs),
    /// Writes a checkpoint with MindCV's random initialisation (or the golden formula weights).
    Init(InitArgs),
    /// Converts a checkpoint between MindSpore .ckpt and .safetensors (by extension).
    Convert(ConvertArgs),
}

/// `senet train`: every flag overrides the recipe key of the same name, as in MindCV.
#[derive(Args)]
struct TrainArgs {
    /// MindCV recipe (YAML), e.g. configs/senet/seresnet18_cifar10_cpu.yaml.
    #[arg(short = 'c', long)]
    config: PathBuf,
    /// Dataset root holding <train_split>/<class>/<image> (and <val_split>/...).
    #[arg(long = "data_dir", alias = "data-dir")]
    data_dir: Option<String>,
    /// Model name.
    #[arg(long)]
    model: Option<String>,
    /// Number of classes (default: from the data set / class map).
    #[arg(long = "num_classes", alias = "num-classes")]
    num_classes: Option<String>,
    /// Images per batch.
    #[arg(long = "batch_size", alias = "batch-size")]
    batch_size: Option<String>,
    /// Network input side in pixels (train crop and eval centre crop).
    #[arg(long = "image_resize", alias = "image-resize")]
    image_resize: Option<String>,
    /// Epochs.
    #[arg(long = "epoch_size", alias = "epoch-size")]
    epoch_size: Option<String>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<String>,
    /// Where checkpoints, metrics.jsonl and the args dump go.
    #[arg(long = "ckpt_save_dir", alias = "ckpt-save-dir")]
    ckpt_save_dir: Option<String>,
    /// Start weights (.ckpt or .safetensors; exact load, optimizer from zero).
    #[arg(long = "ckpt_path", alias = "ckpt-path")]
    ckpt_path: Option<String>,
    /// A step checkpoint of `senet train` to continue from exactly (weights, moments, step).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Seed of the initialisation, the shuffle and the augmentations.
    #[arg(long)]
    seed: Option<String>,
    #[command(flatten)]
    device: DeviceArgs,
    /// Decoding threads.
    #[arg(long = "num_parallel_workers", alias = "num-parallel-workers")]
    num_parallel_workers: Option<String>,
    /// Class map: one class folder per line, or the TSV index<TAB>folder<TAB>name.
    #[arg(long = "class_map", alias = "class-map")]
    class_map: Option<PathBuf>,
    /// Validate on val_split while training (bare flag = True, or True/False).
    #[arg(long = "val_while_train", alias = "val-while-train", num_args = 0..=1,
          default_missing_value = "True")]
    val_while_train: Option<String>,
    /// Validate every this many epochs.
    #[arg(long = "val_interval", alias = "val-interval")]
    val_interval: Option<String>,
    /// Step checkpoints kept (latest_k).
    #[arg(long = "keep_checkpoint_max", alias = "keep-checkpoint-max")]
    keep_checkpoint_max: Option<String>,
    /// Data-parallel training over the processes of the job (bare flag = True): launch with
    /// `mpirun -n N senet train ... --distribute` (needs a build with `--features mpi`).
    #[arg(long, num_args = 0..=1, default_missing_value = "True")]
    distribute: Option<String>,
    /// Frozen BatchNorm: normalise with the moving statistics while training, never update
    /// them (MindSpore use_batch_statistics=False); gamma and beta still train.
    #[arg(long = "freeze_bn", alias = "freeze-bn")]
    freeze_bn: bool,
    /// Training split folder (default "train").
    #[arg(long = "train_split", alias = "train-split")]
    train_split: Option<String>,
    /// Validation split folder (default "val").
    #[arg(long = "val_split", alias = "val-split")]
    val_split: Option<String>,
    /// Stop when the global step reaches N, saving a checkpoint there (counts from the start of
    /// training, so a resumed run with the same N stops at the same step).
    #[arg(long = "max_steps", alias = "max-steps")]
    max_steps: Option<u64>,
    /// Print the final report as one JSON object.
    #[arg(long)]
    json: bool,
}

impl TrainArgs {
    /// The recipe file with the flags applied (parsed as the recipe's types, errors naming the
    /// key).
    fn recipe(&self) -> Result<Recipe> {
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
struct TransformArgs {
    /// MindCV recipe (YAML) giving image_resize, crop_pct, interpolation, mean, std.
    #[arg(short = 'c', long)]
    config: Option<PathBuf>,
    /// Output side in pixels (recipe key image_resize; default 224).
    #[arg(long = "image_resize", alias = "image-resize")]
    image_resize: Option<usize>,
    /// Centre-crop fraction: images are resized to floor(image_resize / crop_pct) first.
    #[arg(long = "crop_pct", alias = "crop-pct")]
    crop_pct: Option<f64>,
    /// bicubic (OpenCV INTER_CUBIC, MindCV's SENet recipes) or bilinear.
    #[arg(long)]
    interpolation: Option<String>,
    /// Decoding threads.
    #[arg(long = "num_parallel_workers", alias = "num-parallel-workers")]
    num_parallel_workers: Option<usize>,
}

impl TransformArgs {
    /// The recipe (file, else MindCV's SENet eval defaults) with these flags applied.
    fn recipe(&self) -> Result<Recipe> {
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
struct ValidateArgs {
    /// MindCV recipe (YAML), e.g. configs/senet/seresnet50_ascend.yaml.
    #[arg(short = 'c', long)]
    config: Option<PathBuf>,
    /// Dataset root holding <val_split>/<class>/<image>.
    #[arg(long = "data_dir", alias = "data-dir")]
    data_dir: Option<String>,
    /// Checkpoint (.ckpt or .safetensors) to evaluate. Required: never random weights.
    #[arg(long = "ckpt_path", alias = "ckpt-path")]
    ckpt_path: Option<String>,
    /// Model name (overrides the recipe's `model`).
    #[arg(long)]
    model: Option<String>,
    #[arg(long = "batch_size", alias = "batch-size")]
    batch_size: Option<usize>,
    /// Decoding threads.
    #[arg(long = "num_parallel_workers", alias = "num-parallel-workers")]
    num_parallel_workers: Option<usize>,
    /// Sub-folder of data_dir to evaluate (default "val").
    #[arg(long = "val_split", alias = "val-split")]
    val_split: Option<String>,
    /// Class map: one class folder per line, or the TSV index<TAB>folder<TAB>name.
    #[arg(long = "class_map", alias = "class-map")]
    class_map: Option<PathBuf>,
    /// Number of classes of the model (default: from the data set / class map).
    #[arg(long = "num_classes", alias = "num-classes")]
    num_classes: Option<usize>,
    #[command(flatten)]
    device: DeviceArgs,
    /// Print one JSON object (model, num_samples, top1, top5, loss, images_per_second).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PredictArgs {
    /// Model name (default: the recipe's `model` when -c is given).
    #[arg(long)]
    model: Option<String>,
    /// Checkpoint (.ckpt or .safetensors).
    #[arg(long = "ckpt_path", alias = "ckpt-path")]
    ckpt_path: PathBuf,
    /// Class names: one class folder per line, or the TSV index<TAB>folder<TAB>name.
    #[arg(long = "class_map", alias = "class-map")]
    class_map: Option<PathBuf>,
    /// Classes to print per image.
    #[arg(long, default_value_t = 5)]
    topk: usize,
    /// Write the logits, (N, num_classes) f32, in the printed order.
    #[arg(long = "save_logits", alias = "save-logits")]
    save_logits: Option<PathBuf>,
    #[arg(long = "batch_size", alias = "batch-size", default_value_t = 16)]
    batch_size: usize,
    #[command(flatten)]
    device: DeviceArgs,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    transform: TransformArgs,
    /// Image files or folders (searched recursively, sorted).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Where the network runs (train, validate, predict, bench).
#[derive(Args)]
struct DeviceArgs {
    /// auto, cpu or ascend. auto: the recipe's device_target when CANN loads, else the CPU
    /// (predict and bench: the CPU). ascend: an error if CANN cannot be loaded.
    #[arg(long, alias = "device_target", default_value = "auto")]
    device: String,
    /// Ascend device number (default: DEVICE_ID, else 0).
    #[arg(long = "device_id", alias = "device-id",
          value_parser = clap::value_parser!(i32).range(0..))]
    device_id: Option<i32>,
    /// CPU threads for the network (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

impl DeviceArgs {
    fn request(&self) -> Result<DeviceRequest> {
        Ok(DeviceRequest {
            choice: DeviceChoice::parse(&self.device)?,
            device_id: self.device_id,
            threads: self.threads,
        })
    }
}

#[derive(Args)]
struct DevicesArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PreprocessArgs {
    #[command(flatten)]
    transform: TransformArgs,
    /// Output .npy, (N, 3, H, W) f32.
    #[arg(short = 'o', long)]
    output: PathBuf,
    /// Image files or folders (searched recursively, sorted).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(long, default_value = "seresnet50")]
    model: String,
    #[arg(long = "batch_size", alias = "batch-size", default_value_t = 1)]
    batch_size: usize,
    #[command(flatten)]
    device: DeviceArgs,
    #[arg(long = "image_size", alias = "image-size", default_value_t = 224)]
    image_size: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    iters: u32,
    /// Time training steps (forward, backward, Momentum update) instead of inference.
    #[arg(long)]
    train: bool,
    /// Precision on Ascend: O0 (float32) or O2 (float16 compute, MindCV's training AMP).
    #[arg(long = "amp_level", alias = "amp-level", default_value = "O0")]
    amp_level: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InitArgs {
    #[arg(long)]
    model: String,
    #[arg(long = "num_classes", alias = "num-classes", default_value_t = 1000)]
    num_classes: usize,
    /// Seed of the random initialisation.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The golden formula weights of shared/golden/README.md instead of a random init.
    #[arg(long, conflicts_with = "seed")]
    formula: bool,
    /// Output file (.ckpt or .safetensors).
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
}

#[derive(Args)]
struct ConvertArgs {
    input: PathBuf,
    output: PathBuf,
}

/// Fails early (before any work) when `path` cannot be an output file: a directory, or in a
/// folder that does not exist.
fn check_output(path: &std::path::Path) -> Result<()> {
    if path.is_dir() {
        anyhow::bail!("{}: is a directory, not an output file", path.display());
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        anyhow::bail!(
            "{}: folder {} does not exist",
            path.display(),
            parent.display()
        );
    }
    Ok(())
}

fn bar(total: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Exit code of a run stopped by Ctrl-C (after saving its checkpoint): 128 + SIGINT.
const EXIT_INTERRUPTED: i32 = 130;

fn train(a: TrainArgs) -> Result<()> {
    use engine::train::{StopReason, TrainEvent, TrainOptions};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let recipe = a.recipe()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond Ctrl-C: exiting without saving");
                std::process::exit(EXIT_INTERRUPTED);
            }
            eprintln!(
                "\nCtrl-C: stopping after this step and saving a checkpoint (again to quit now)"
            );
        })
        .context("installing the Ctrl-C handler")?;
    }
    let opts = TrainOptions {
        recipe,
        class_map: a.class_map.clone(),
        device: a.device.request()?,
        resume: a.resume.clone(),
        max_steps: a.max_steps,
        stop: Some(stop),
        comm: None,
        frozen_batch_norm: a.freeze_bn,
    };
    let mut pb: Option<ProgressBar> = None;
    let mut num_epochs = 0;
    let say = |pb: &Option<ProgressBar>, line: &str| match pb {
        Some(pb) => pb.suspend(|| println!("{line}")),
        None => println!("{line}"),
    };
    let report = engine::train::run(&opts, |ev| match ev {
        TrainEvent::Started {
            model,
            num_classes,
            train_samples,
            val_samples,
            steps_per_epoch,
            num_epochs: e,
            start_step,
        } => {
            num_epochs = *e;
            println!("Model: {model} ({num_classes} classes)");
            println!(
                "Train: {train_samples} images, {steps_per_epoch} steps per epoch, {e} epochs{}",
                val_samples.map_or(String::new(), |v| format!("; validation: {v} images"))
            );
            if *start_step > 0 {
                println!("Resuming at global step {start_step}");
            }
        }
        TrainEvent::Note(n) => say(&pb, n),
        TrainEvent::EpochStart {
            epoch,
            first_batch,
            steps_per_epoch,
        } => {
            let p = bar(*steps_per_epoch, &format!("epoch {epoch}/{num_epochs}"));
            p.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            p.set_prefix(format!("epoch {epoch}/{num_epochs}"));
            p.set_position(*first_batch as u64);
            p.reset_eta();
            pb = Some(p);
        }
        TrainEvent::Step {
            batch,
            loss,
            lr,
            images_per_second,
            ..
        } => {
            if let Some(p) = &pb {
                p.set_position(*batch as u64);
                p.set_message(format!(
                    "loss {loss:.4} lr {lr:.6} {images_per_second:.1} img/s"
                ));
            }
        }
        TrainEvent::Log(line) | TrainEvent::Validated(line) => say(&pb, line),
        TrainEvent::Validating { done, total } => {
            if let Some(p) = &pb {
                if p.length() != Some(*total as u64) {
                    p.set_length(*total as u64);
                    p.set_prefix("validate");
                    p.set_message("");
                    p.reset_eta();
                }
                p.set_position(*done as u64);
            }
        }
        TrainEvent::Epoch(rec) => {
            if let Some(p) = pb.take() {
                p.finish_and_clear();
            }
            println!("{}", rec.summary_line(num_epochs));
        }
        TrainEvent::Saved(path) => say(&pb, &format!("saved {}", path.display())),
    })?;
    if let Some(p) = pb.take() {
        p.finish_and_clear();
    }
    if report.rank != 0 {
        // Data parallel: rank 0 reports for the job.
        if report.stop == StopReason::Interrupted {
            std::process::exit(EXIT_INTERRUPTED);
        }
        return Ok(());
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    let last = report
        .last_checkpoint
        .as_ref()
        .map_or("none".to_string(), |p| p.display().to_string());
    match report.stop {
        StopReason::Finished => println!(
            "Finished at global step {}; last checkpoint {last}{}",
            report.global_step,
            report
                .best_val_top1
                .map_or(String::new(), |b| format!("; best val Top-1 {b:.4}%"))
        ),
        StopReason::MaxSteps => println!(
            "Stopped at --max_steps (global step {}); checkpoint {last}",
            report.global_step
        ),
        StopReason::Interrupted => {
            println!(
                "Interrupted at global step {}; saved {last}; continue with --resume {last}",
                report.global_step
            );
            std::process::exit(EXIT_INTERRUPTED);
        }
    }
    Ok(())
}

fn validate(a: ValidateArgs) -> Result<()> {
    if a.config.is_none() && a.model.is_none() {
        anyhow::bail!("no model given: pass -c RECIPE or --model NAME (see `senet models`)");
    }
    let mut r = match &a.config {
        Some(p) => Recipe::from_yaml_file(p)?,
        None => Recipe::default(),
    };
    if let Some(v) = a.data_dir {
        r.data_dir = v;
    }
    if let Some(v) = a.ckpt_path {
        r.ckpt_path = v;
    }
    if let Some(v) = a.model {
        r.model = v;
    }
    if let Some(v) = a.batch_size {
        r.batch_size = v;
    }
    if let Some(v) = a.num_parallel_workers {
        r.num_parallel_workers = v;
    }
    if let Some(v) = a.val_split {
        r.val_split = v;
    }
    if let Some(v) = a.num_classes {
        r.num_classes = Some(v);
    }
    r.validate()?;
    let opts = engine::validate::ValidateOptions {
        recipe: r,
        class_map: a.class_map,
        device: a.device.request()?,
    };
    let mut pb: Option<ProgressBar> = None;
    let report = engine::validate::run(&opts, |done, total| {
        let pb = pb.get_or_insert_with(|| bar(total, "validate"));
        pb.set_position(done as u64);
    })?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if let Some(note) = &report.device_note {
        eprintln!("note: {note}");
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("Model: {} on {}", report.model, report.device);
        println!("Samples: {}", report.num_samples);
        println!(
            "Top-1: {:.3}%  Top-5: {:.3}%  loss: {:.6}",
            report.top1, report.top5, report.loss
        );
        println!("Throughput: {:.2} images/s", report.images_per_second);
    }
    Ok(())
}

fn predict(a: PredictArgs) -> Result<()> {
    let r = a.transform.recipe()?;
    let model = match (&a.model, &a.transform.config) {
        (Some(m), _) => m.clone(),
        (None, Some(_)) => r.model.clone(),
        (None, None) => {
            anyhow::bail!("no model given: pass --model NAME (see `senet models`) or -c RECIPE")
        }
    };
    if a.topk == 0 {
        anyhow::bail!("--topk must be at least 1");
    }
    if let Some(out) = &a.save_logits {
        check_output(out)?;
    }
    let opts = engine::predict::PredictOptions {
        arch: Arch::from_name(&model)?,
        ckpt_path: a.ckpt_path,
        class_map: a.class_map,
        topk: a.topk,
        batch_size: a.batch_size,
        num_workers: r.num_parallel_workers,
        device: a.device.request()?,
        transform: engine::eval_transform(&r)?,
    };
    let mut pb: Option<ProgressBar> = None;
    let (preds, logits) = engine::predict::run(&opts, &a.paths, |done, total| {
        if total > 16 {
            pb.get_or_insert_with(|| bar(total, "predict"))
                .set_position(done as u64);
        }
    })?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    for p in &preds {
        if a.json {
            println!("{}", serde_json::to_string(p)?);
            continue;
        }
        println!("{}", p.path.display());
        for t in &p.top {
            println!(
                "  {:>6.2}%  {:>4}  {}",
                100.0 * t.probability,
                t.index,
                t.name
            );
        }
    }
    if let Some(out) = a.save_logits {
        senet::npy::write_f32(&out, &logits)?;
        eprintln!("wrote logits {:?} to {}", logits.shape, out.display());
    }
    Ok(())
}

fn preprocess(a: PreprocessArgs) -> Result<()> {
    check_output(&a.output)?;
    let r = a.transform.recipe()?;
    let t = engine::eval_transform(&r)?;
    let (files, x) = engine::preprocess::run(&a.paths, &t, r.num_parallel_workers)?;
    senet::npy::write_f32(&a.output, &x)?;
    eprintln!(
        "wrote {} images {:?} to {}",
        files.len(),
        x.shape,
        a.output.display()
    );
    Ok(())
}

fn models() -> Result<()> {
    println!(
        "{:<20} {:>12} {:>12} {:>10}",
        "model", "params", "trainable", "GFLOPs@224"
    );
    for m in engine::models::list()? {
        println!(
            "{:<20} {:>12} {:>12} {:>10.2}",
            m.name, m.params, m.trainable_params, m.gflops_224
        );
    }
    Ok(())
}

fn devices(a: DevicesArgs) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ascend = senet::backend::ascend::devices();
    if a.json {
        let ascend = match &ascend {
            Ok(r) => serde_json::json!({
                "available": true,
                "libraries": r.libraries,
                "version": r.version.map(|(a, b, c)| format!("{a}.{b}.{c}")),
                "device_count": r.device_count,
                "soc_name": r.soc_name,
                "first_gen_910": r.first_gen_910,
            }),
            Err(e) => serde_json::json!({ "available": false, "reason": e.to_string() }),
        };
        println!(
            "{}",
            serde_json::json!({ "cpu": { "threads": cpus }, "ascend": ascend })
        );
        return Ok(());
    }
    println!("cpu: {cpus} threads");
    match ascend {
        Ok(r) => {
            println!(
                "ascend: {} device(s), SoC {}{}, ACL {}",
                r.device_count,
                r.soc_name,
                if r.first_gen_910 {
                    " (first-generation 910: MaxPool2dWithMask, fp16 cubes)"
                } else {
                    ""
                },
                r.version
                    .map_or("version unknown".into(), |(a, b, c)| format!("{a}.{b}.{c}"))
            );
            for lib in r.libraries {
                println!("  {}", lib.display());
            }
        }
        Err(e) => println!(
            "ascend: unavailable\n  {}",
            e.to_string().replace('\n', "\n  ")
        ),
    }
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    let opts = engine::bench::BenchOptions {
        arch: Arch::from_name(&a.model)?,
        batch_size: a.batch_size,
        image_size: a.image_size,
        device: a.device.request()?,
        amp_level: match a.amp_level.as_str() {
            "O0" => AmpLevel::O0,
            "O2" => AmpLevel::O2,
            other => anyhow::bail!("--amp_level must be O0 or O2, got '{other}'"),
        },
        warmup: a.warmup,
        iters: a.iters as usize,
        train: a.train,
    };
    let pb = bar(a.iters as usize, "bench");
    let r = engine::bench::run(&opts, |i| pb.set_position(i as u64))?;
    pb.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} {} batch {} on {} threads {} {}x{}: {:.2} images/s (median of {}, best {:.2}), peak RSS {} MiB",
            r.model,
            r.mode,
            r.batch_size,
            r.device,
            r.threads,
            r.image_size,
            r.image_size,
            r.images_per_second,
            r.iters,
            r.images_per_second_best,
            r.peak_rss_mib.map_or("?".into(), |m| format!("{m:.0}"))
        );
    }
    Ok(())
}

fn init(a: InitArgs) -> Result<()> {
    let arch = Arch::from_name(&a.model)?;
    let net = if a.formula {
        SeNet::formula(arch, a.num_classes)?
    } else {
        SeNet::new(arch, a.num_classes, a.seed)?
    };
    senet::checkpoint::save_params(&net.params, &a.out)?;
    eprintln!(
        "wrote {} ({} tensors) to {}",
        arch.name(),
        net.params.len(),
        a.out.display()
    );
    Ok(())
}

fn convert(a: ConvertArgs) -> Result<()> {
    let ckpt = senet::checkpoint::read_checkpoint(&a.input)?;
    if !ckpt.skipped.is_empty() {
        let list: Vec<String> = ckpt
            .skipped
            .iter()
            .map(|s| format!("  {}: {}", s.name, s.reason))
            .collect();
        anyhow::bail!(
            "{}: {} entries cannot be converted (they would be lost):\n{}",
            a.input.display(),
            list.len(),
            list.join("\n")
        );
    }
    senet::checkpoint::write_checkpoint(&a.output, &ckpt)
        .with_context(|| format!("converting {} to {}", a.input.display(), a.output.display()))?;
    eprintln!("wrote {}", a.output.display());
    Ok(())
}

fn main() {
    // Die quietly on a closed pipe (`senet predict ... | head`), as Unix tools do, instead of
    // panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.cmd {
        Command::Train(a) => train(*a),
        Command::Validate(a) => validate(a),
        Command::Predict(a) => predict(a),
        Command::Preprocess(a) => preprocess(a),
        Command::Models => models(),
        Command::Devices(a) => devices(a),
        Command::Bench(a) => bench(a),
        Command::Init(a) => init(a),
        Command::Convert(a) => convert(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
