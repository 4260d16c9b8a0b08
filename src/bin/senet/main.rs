//! The `senet` command line: train, validate, predict, preprocess, models, bench, init, plot,
//! convert.
//! Flags use MindCV's spelling (`--data_dir`, `--ckpt_path`, ...); a recipe (`-c`) sets the
//! defaults and flags override it, as in MindCV's `config.py`.
use anyhow::{Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use senet::config::AmpLevel;
use senet::engine;
use senet::model::{Arch, SeNet};

#[macro_use]
mod out;
mod args;
use args::*;

/// Fails early (before any work) when `path` cannot be an output file: a directory, in a
/// folder that does not exist, or the same file as one of `inputs` (by device and inode, so a
/// link or another spelling of an input counts too): writing it would replace that input.
fn check_output<'a>(
    path: &std::path::Path,
    inputs: impl IntoIterator<Item = &'a std::path::Path>,
) -> Result<()> {
    senet::fsutil::refuse_overwriting(path, inputs)?;
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
    use engine::train::{StopReason, TrainOptions};
    let recipe = a.recipe()?;
    let stop = stop_on_ctrl_c()?;
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
    let mut console = TrainConsole::default();
    let report = engine::train::run(&opts, |ev| console.show(ev))?;
    console.finish();
    if report.rank != 0 {
        // Data parallel: rank 0 reports for the job.
        if report.stop == StopReason::Interrupted {
            std::process::exit(EXIT_INTERRUPTED);
        }
        return Ok(());
    }
    print_train_report(&report, a.json)
}

/// Installs `senet train`'s Ctrl-C handler: the first Ctrl-C sets the returned flag (the run
/// stops after its current step and saves a checkpoint), a second one exits at once.
fn stop_on_ctrl_c() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            errln!("\nsecond Ctrl-C: exiting without saving");
            std::process::exit(EXIT_INTERRUPTED);
        }
        errln!("\nCtrl-C: stopping after this step and saving a checkpoint (again to quit now)");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}

/// What `senet train` shows while it runs: the header, a progress bar per epoch (reused for
/// validation), log and note lines above it, and each epoch's summary line.
#[derive(Default)]
struct TrainConsole {
    pb: Option<ProgressBar>,
    num_epochs: u64,
}

impl TrainConsole {
    /// Prints `line` above the progress bar.
    fn say(&self, line: &str) {
        match &self.pb {
            Some(pb) => pb.suspend(|| outln!("{line}")),
            None => outln!("{line}"),
        }
    }

    /// Shows one event of the run.
    fn show(&mut self, ev: &engine::train::TrainEvent) {
        use engine::train::TrainEvent;
        match ev {
            TrainEvent::Started {
                model,
                num_classes,
                train_samples,
                val_samples,
                steps_per_epoch,
                num_epochs: e,
                start_step,
            } => {
                self.num_epochs = *e;
                outln!("Model: {model} ({num_classes} classes)");
                outln!(
                    "Train: {train_samples} images, {steps_per_epoch} steps per epoch, {e} \
                     epochs{}",
                    val_samples.map_or(String::new(), |v| format!("; validation: {v} images"))
                );
                if *start_step > 0 {
                    outln!("Resuming at global step {start_step}");
                }
            }
            TrainEvent::Note(n) => self.say(n),
            TrainEvent::EpochStart {
                epoch,
                first_batch,
                steps_per_epoch,
            } => self.start_epoch(*epoch, *first_batch, *steps_per_epoch),
            TrainEvent::Step {
                batch,
                loss,
                lr,
                images_per_second,
                ..
            } => {
                if let Some(p) = &self.pb {
                    p.set_position(*batch as u64);
                    p.set_message(format!(
                        "loss {loss:.4} lr {lr:.6} {images_per_second:.1} img/s"
                    ));
                }
            }
            TrainEvent::Log(line) | TrainEvent::Validated(line) => self.say(line),
            TrainEvent::Validating { done, total } => {
                if let Some(p) = &self.pb {
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
                self.finish();
                outln!("{}", rec.summary_line(self.num_epochs));
            }
            TrainEvent::Saved(path) => self.say(&format!("saved {}", path.display())),
        }
    }

    /// A new progress bar for epoch `epoch` (1-based), at `first_batch` when resuming.
    fn start_epoch(&mut self, epoch: u64, first_batch: usize, steps_per_epoch: usize) {
        let num_epochs = self.num_epochs;
        let p = bar(steps_per_epoch, &format!("epoch {epoch}/{num_epochs}"));
        p.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        p.set_prefix(format!("epoch {epoch}/{num_epochs}"));
        p.set_position(first_batch as u64);
        p.reset_eta();
        self.pb = Some(p);
    }

    /// Clears the progress bar.
    fn finish(&mut self) {
        if let Some(p) = self.pb.take() {
            p.finish_and_clear();
        }
    }
}

/// Prints how a run ended (and, with `--json`, its report); exits with [`EXIT_INTERRUPTED`]
/// after a Ctrl-C.
fn print_train_report(report: &engine::train::TrainReport, json: bool) -> Result<()> {
    use engine::train::StopReason;
    if json {
        outln!("{}", serde_json::to_string(report)?);
    }
    let last = report
        .last_checkpoint
        .as_ref()
        .map_or("none".to_string(), |p| p.display().to_string());
    match report.stop {
        StopReason::Finished => outln!(
            "Finished at global step {}; last checkpoint {last}{}",
            report.global_step,
            report
                .best_val_top1
                .map_or(String::new(), |b| format!("; best val Top-1 {b:.4}%"))
        ),
        StopReason::MaxSteps => outln!(
            "Stopped at --max_steps (global step {}); checkpoint {last}",
            report.global_step
        ),
        StopReason::Interrupted => {
            outln!(
                "Interrupted at global step {}; saved {last}; continue with --resume {last}",
                report.global_step
            );
            std::process::exit(EXIT_INTERRUPTED);
        }
    }
    Ok(())
}

fn validate(a: ValidateArgs) -> Result<()> {
    let r = a.recipe()?;
    let opts = engine::validate::ValidateOptions {
        recipe: r,
        class_map: a.class_map,
        device: a.device.request()?,
        preprocess: a.preprocess.get()?,
    };
    let mut pb: Option<ProgressBar> = None;
    let report = engine::validate::run(&opts, |done, total| {
        let pb = pb.get_or_insert_with(|| bar(total, "validate"));
        pb.set_position(done as u64);
    })?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    for note in report.device_note.iter().chain(&report.class_note) {
        errln!("note: {note}");
    }
    if a.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        outln!("Model: {} on {}", report.model, report.device);
        outln!("Samples: {}", report.num_samples);
        outln!(
            "Top-1: {:.3}%  Top-5: {:.3}%  loss: {:.6}",
            report.top1,
            report.top5,
            report.loss
        );
        outln!("Throughput: {:.2} images/s", report.images_per_second);
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
        let images = senet::data::list_images(&a.paths)?;
        let inputs = images
            .iter()
            .chain([&a.ckpt_path])
            .chain(&a.class_map)
            .chain(&a.transform.config);
        check_output(out, inputs.map(|p| p.as_path()))?;
    }
    // With a recipe, the data set's class folders name the classes (MindCV's ImageFolder order).
    let class_folders = match (&a.transform.config, &a.class_map) {
        (Some(_), None) => [&r.val_split, &r.train_split]
            .into_iter()
            .map(|split| std::path::Path::new(&r.data_dir).join(split))
            .find(|dir| dir.is_dir()),
        _ => None,
    };
    if class_folders.is_none() && a.transform.config.is_some() && a.class_map.is_none() {
        errln!(
            "note: no class names: neither {}/{} nor {}/{} is a folder (the recipe's data_dir and \
             splits); pass --data_dir, or --class_map FILE; printing class indices",
            r.data_dir,
            r.val_split,
            r.data_dir,
            r.train_split
        );
    }
    let opts = engine::predict::PredictOptions {
        arch: Arch::from_name(&model)?,
        ckpt_path: a.ckpt_path,
        class_map: a.class_map,
        class_folders,
        topk: a.topk,
        batch_size: a.batch_size,
        num_workers: r.num_parallel_workers,
        device: a.device.request()?,
        transform: engine::eval_transform(&r)?.with_preprocess(a.transform.preprocess.get()?),
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
    let classes = logits.shape.get(1).copied().unwrap_or(0);
    if a.transform.config.is_none() && classes != 1000 {
        errln!(
            "note: no recipe (-c): the photos were prepared with MindCV's ImageNet eval defaults \
             ({}x{}, ImageNet mean/std), but this {classes}-class model was trained on other \
             data: pass the recipe it was trained with, -c RECIPE",
            r.image_resize,
            r.image_resize
        );
    }
    for p in &preds {
        if a.json {
            outln!("{}", serde_json::to_string(p)?);
            continue;
        }
        outln!("{}", p.path.display());
        for t in &p.top {
            outln!(
                "  {:>6.2}%  {:>4}  {}",
                100.0 * t.probability,
                t.index,
                t.name
            );
        }
    }
    if let Some(out) = a.save_logits {
        senet::npy::write_f32(&out, &logits)?;
        errln!("wrote logits {:?} to {}", logits.shape, out.display());
    }
    Ok(())
}

fn preprocess(a: PreprocessArgs) -> Result<()> {
    let images = senet::data::list_images(&a.paths)?;
    let inputs = images.iter().chain(&a.transform.config);
    check_output(&a.output, inputs.map(|p| p.as_path()))?;
    let r = a.transform.recipe()?;
    let t = engine::eval_transform(&r)?.with_preprocess(a.transform.preprocess.get()?);
    let (files, x) = engine::preprocess::run(&a.paths, &t, r.num_parallel_workers)?;
    senet::npy::write_f32(&a.output, &x)?;
    let plural = if files.len() == 1 { "" } else { "s" };
    errln!(
        "wrote {} image{plural} {:?} to {}",
        files.len(),
        x.shape,
        a.output.display()
    );
    Ok(())
}

fn models() -> Result<()> {
    outln!(
        "{:<20} {:>12} {:>12} {:>10}",
        "model",
        "params",
        "trainable",
        "GFLOPs@224"
    );
    for m in engine::models::list()? {
        outln!(
            "{:<20} {:>12} {:>12} {:>10.2}",
            m.name,
            m.params,
            m.trainable_params,
            m.gflops_224
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
        outln!(
            "{}",
            serde_json::json!({ "cpu": { "threads": cpus }, "ascend": ascend })
        );
        return Ok(());
    }
    outln!("cpu: {cpus} threads");
    match ascend {
        Ok(r) => {
            outln!(
                "ascend: {} device(s), SoC {}{}, ACL {}",
                r.device_count,
                r.soc_name,
                if r.first_gen_910 {
                    " (first-generation 910: fp16 cubes, aclnnConvolution needs CANN 8.0)"
                } else {
                    ""
                },
                r.version
                    .map_or("version unknown".into(), |(a, b, c)| format!("{a}.{b}.{c}"))
            );
            for lib in r.libraries {
                outln!("  {}", lib.display());
            }
        }
        Err(e) => outln!(
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
        npu_graph: senet::optim::npu_graph_from_env()?,
    };
    let pb = bar(a.iters as usize, "bench");
    let r = engine::bench::run(&opts, |i| pb.set_position(i as u64))?;
    pb.finish_and_clear();
    if a.json {
        outln!("{}", serde_json::to_string(&r)?);
    } else {
        outln!(
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
        if let Some(c) = r.per_step {
            outln!(
                "per step (mean of {}): {} launches, {} synchronises, {} blocking copies, {} device allocations, {} B host-to-device, {} B device-to-host",
                c.iterations,
                c.launches,
                c.synchronizes,
                c.blocking_copies,
                c.allocations,
                c.h2d_bytes,
                c.d2h_bytes
            );
            if c.replays > 0.0 {
                outln!("  of which {} replays of the captured step", c.replays);
            }
        }
        if let Some(g) = &r.npu_graph {
            outln!("steps: {g}");
        }
    }
    Ok(())
}

fn init(a: InitArgs) -> Result<()> {
    check_output(&a.out, [])?;
    let arch = Arch::from_name(&a.model)?;
    let net = if a.formula {
        SeNet::formula(arch, a.num_classes)?
    } else {
        SeNet::new(arch, a.num_classes, a.seed)?
    };
    senet::checkpoint::save_params(&net.params, &a.out)?;
    errln!(
        "wrote {} ({} tensors) to {}",
        arch.name(),
        net.params.len(),
        a.out.display()
    );
    Ok(())
}

fn plot(a: PlotArgs) -> Result<()> {
    use engine::curves;
    check_output(&a.output, a.logs.iter().map(|p| p.as_path()))?;
    let runs = a
        .logs
        .iter()
        .map(|p| curves::read_log(p))
        .collect::<senet::Result<Vec<_>>>()?;
    curves::draw(&runs, &a.output, (a.width, a.height))?;
    errln!("wrote {}", a.output.display());
    Ok(())
}

fn inspect(a: InspectArgs) -> Result<()> {
    let i = engine::inspect::inspect(&a.input)?;
    if a.json {
        outln!("{}", serde_json::to_string(&i)?);
        return Ok(());
    }
    let state = i.tensors.iter().filter(|t| t.training_state).count();
    outln!(
        "{}: {} file, {} names, {} tensors ({} training state)",
        a.input.display(),
        i.format,
        i.names,
        i.tensors.len(),
        state
    );
    match (i.model, i.num_classes) {
        (Some(m), Some(c)) => outln!(
            "model: {m} ({c} classes), {} parameter values",
            i.parameter_values
        ),
        _ => outln!(
            "model: none of senet's variants ({} parameter values; `senet validate` names what \
             differs)",
            i.parameter_values
        ),
    }
    for s in &i.skipped {
        outln!("skipped: {s}");
    }
    for t in &i.tensors {
        let mark = if t.training_state {
            "  (training state)"
        } else {
            ""
        };
        outln!("  {:<48} {:<8} {:?}{mark}", t.name, t.dtype, t.shape);
    }
    Ok(())
}

fn convert(a: ConvertArgs) -> Result<()> {
    use senet::checkpoint::{timm, FileFormat};
    let target = match a.names.as_str() {
        "mindcv" => None,
        n => Some(timm::TimmLayout::from_name(n).ok_or_else(|| {
            anyhow::anyhow!("--names: unknown '{n}' (mindcv, timm, timm_legacy)")
        })?),
    };
    if target.is_some() && senet::checkpoint::save_format(&a.output)? != FileFormat::Safetensors {
        anyhow::bail!(
            "{}: timm's names go to a .safetensors file (what timm loads)",
            a.output.display()
        );
    }
    senet::fsutil::refuse_overwriting(&a.output, [a.input.as_path()])?;
    let mut ckpt = senet::checkpoint::read_checkpoint(&a.input)?;
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
    if let Some(layout) = timm::detect(&ckpt) {
        let import = timm::to_mindcv(&ckpt, layout, &a.input)?;
        errln!(
            "read {layout} names: {} tensors ({} num_batches_tracked counters left out)",
            import.checkpoint.tensors.len(),
            import.dropped.len()
        );
        if target.is_none() {
            errln!(
                "note: the output holds MindCV's names: senet and MindCV run it as MindCV's \
                 network (stem max pool pad_mode 'same'), not timm's; the {layout} file runs as \
                 timm's"
            );
        }
        ckpt = import.checkpoint;
    }
    if let Some(layout) = target {
        let (out, left_out) = timm::to_timm(&ckpt, layout, &a.input)?;
        if !left_out.is_empty() {
            errln!(
                "note: left out {} training-state entries ({}, ...): a timm state dict holds the \
                 model only",
                left_out.len(),
                left_out[0]
            );
        }
        if layout == timm::TimmLayout::ResNet {
            errln!(
                "note: timm's resnet.py networks pad the stem max pool by 1 on every side, \
                 MindCV's pads bottom/right: timm computes other logits from these weights than \
                 MindCV does (timm's senet.py networks, --names timm_legacy, pool as MindCV at \
                 224)"
            );
        }
        ckpt = out;
    }
    senet::checkpoint::write_checkpoint(&a.output, &ckpt)
        .with_context(|| format!("converting {} to {}", a.input.display(), a.output.display()))?;
    errln!("wrote {}", a.output.display());
    Ok(())
}

fn main() {
    // Die quietly on a closed pipe (`senet predict ... | head`), as Unix tools do (the output
    // macros end the process cleanly on any other write error: see `out`).
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
        Command::Plot(a) => plot(a),
        Command::Convert(a) => convert(a),
        Command::Inspect(a) => inspect(a),
    };
    if let Err(e) = result {
        errln!("error: {e:#}");
        std::process::exit(1);
    }
}
