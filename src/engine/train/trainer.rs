//! The training loop: epochs of shuffled batches, one `TrainNet::step` per batch at the
//! schedule's learning rate, validation and checkpoints at epoch ends, a checkpoint when stopped.
use super::data::{EpochPlan, SampleTransform, Shard};
use super::log::{self, EpochRecord, MetricsLog};
use super::state::{self, best_ckpt_name, prune_checkpoints, save_state, step_ckpt_name};
use super::{check_supported, StopReason, TrainEvent, TrainOptions, TrainReport};
use crate::checkpoint::{self, LoadOptions};
use crate::config::{AmpLevel, CkptSavePolicy, Recipe};
use crate::data::{EvalTransform, ImageFolder};
use crate::dist::{self, Communicator};
use crate::engine::device::{self, BackendFactory, Device, DeviceJob};
use crate::engine::validate::evaluate;
use crate::model::{Arch, SeNet};
use crate::train::metrics::Accumulator;
use crate::train::{decays, lr_schedule, LossScaler, TrainConfig, TrainNet};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The validation split, opened once.
struct ValSet {
    /// This rank's share of the images ([`Shard::of_items`]; all of them in one process).
    samples: Vec<(PathBuf, usize)>,
    /// Images of the whole split.
    total: usize,
    transform: EvalTransform,
}

/// Exit status of a data-parallel rank that failed and aborted the job.
const EXIT_RANK_FAILED: i32 = 1;

/// A fault the tests inject into one rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Die at once (SIGABRT, no cleanup).
    Abort,
    /// Stop making progress (sleep forever), alive.
    Hang,
}

/// Fault injection for the tests of a failing rank: `SENET_TEST_ABORT_AT_STEP=k` makes rank
/// `SENET_TEST_FAULT_RANK` (default 1) abort right after its step `k`;
/// `SENET_TEST_HANG_AT_STEP=k` makes it hang there instead. Returns `(k, rank, fault)`.
/// Errors: values that are not integers, named.
fn fault_injection() -> Result<Option<(u64, usize, Fault)>> {
    let get =
        |key: &str| -> Result<Option<u64>> {
            match std::env::var(key) {
                Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| {
                    Error::Config(format!("{key}='{v}' is not a non-negative integer"))
                }),
                _ => Ok(None),
            }
        };
    let fault = match (
        get("SENET_TEST_ABORT_AT_STEP")?,
        get("SENET_TEST_HANG_AT_STEP")?,
    ) {
        (Some(k), _) => (k, Fault::Abort),
        (None, Some(k)) => (k, Fault::Hang),
        (None, None) => return Ok(None),
    };
    let rank = get("SENET_TEST_FAULT_RANK")?.unwrap_or(1) as usize;
    Ok(Some((fault.0, rank, fault.1)))
}

/// Checks that every label fits the model.
fn check_labels(samples: &[(PathBuf, usize)], num_classes: usize) -> Result<()> {
    match samples.iter().find(|(_, l)| *l >= num_classes) {
        Some((path, label)) => Err(Error::Config(format!(
            "{}: class index {label} is outside the model's {num_classes} classes",
            path.display()
        ))),
        None => Ok(()),
    }
}

/// Training BatchNorm needs 2 values per channel; the last stage's maps are
/// `ceil(image_resize / 32)` pixels square, so a batch of one image at `image_resize` <= 32
/// cannot train. Checks every batch size an epoch will see (`batch_size`, and the last,
/// partial batch unless `drop_remainder`) before any work. Errors: [`Error::Config`] naming the
/// keys to change.
fn check_batch_norm_batches(
    samples: usize,
    batch_size: usize,
    drop_remainder: bool,
    image_resize: usize,
) -> Result<()> {
    let side = image_resize.div_ceil(32).max(1);
    let last = if drop_remainder {
        0
    } else {
        samples % batch_size
    };
    for (what, n) in [
        ("batch_size", batch_size),
        ("the last batch of each epoch", last),
    ] {
        if n > 0 && n * side * side < 2 {
            return Err(Error::Config(format!(
                "{what} has {n} image(s) of {image_resize}x{image_resize}: the last stage's \
                 BatchNorm sees {side}x{side} maps, and training BatchNorm needs at least 2 \
                 values per channel ({samples} images per rank, batch_size {batch_size}); set \
                 drop_remainder: True, change batch_size, or train larger images"
            )));
        }
    }
    Ok(())
}

/// The loss and optimizer settings of the recipe.
fn train_config(r: &Recipe) -> TrainConfig {
    TrainConfig {
        label_smoothing: r.label_smoothing as f32,
        momentum: r.momentum as f32,
        weight_decay: r.weight_decay as f32,
        nesterov: r.use_nesterov,
        loss_scale: r.loss_scale as f32,
        clip_value: r.clip_grad.then_some(r.clip_value as f32),
        ema_decay: r.ema.then_some(r.ema_decay as f32),
    }
}

/// Runs a training job (see [`TrainOptions`]): checks the recipe ([`check_supported`],
/// [`Recipe::validate`]), opens `data_dir/train_split` (and `val_split` when `val_while_train`),
/// builds the model (MindCV's initialisation from `seed`, or `ckpt_path`'s weights, or the
/// `resume` checkpoint's full state), then trains:
///
/// - epoch `e` (0-based) visits the training images in [`super::data::epoch_order`]`(seed, e)`
///   (dataset order without `shuffle`), cut into `steps_per_epoch` batches of `batch_size`
///   (`drop_remainder` drops the incomplete last one);
/// - step `s` (global, 0-based) uses `lr_schedule(recipe, steps_per_epoch, epoch_size)[s]`;
/// - after epoch `e+1` divisible by `val_interval` (and the last), with `val_while_train`,
///   the current weights are evaluated on `val_split` (eval transform) and `<model>_best.ckpt`
///   is written when Top-1 improves;
/// - after epoch `e+1` divisible by `ckpt_save_interval` (and the last),
///   `<model>-<e+1>_<steps_per_epoch>.ckpt` is written (see [`super::state`]) and, with
///   `ckpt_save_policy: latest_k`, only the newest `keep_checkpoint_max` step checkpoints stay;
/// - at `max_steps` or when `stop` is set, `<model>-<epoch>_<batch>.ckpt` is written at the
///   current position (unless the epoch end just wrote it) and the run returns.
///
/// Also writes `<ckpt_save_dir>/<model>.yaml` (the recipe, MindCV's args dump) and appends one
/// [`EpochRecord`] per finished epoch to `<ckpt_save_dir>/metrics.jsonl`.
///
/// **Data parallel** (`distribute: True`, N processes started by `mpirun`; see
/// [`crate::dist`]), as MindCV's `train.py` with `parallel_mode="data_parallel",
/// gradients_mean=True`:
/// - every rank builds the model from the same `seed`, then takes rank 0's parameters and
///   optimizer state (a broadcast), and checks that all ranks agree on the run's layout
///   (steps per epoch, start step, model, ...);
/// - every rank shuffles each epoch with the same seed and trains on its shard of it
///   ([`Shard::of_order`], MindSpore's `DistributedSampler`: interleaved, padded to
///   `ceil(images/N)` per rank so that all ranks run the same steps); `batch_size` is per rank
///   and `steps_per_epoch` counts one shard's batches;
/// - each sample's augmentation is drawn from `(seed, epoch, dataset index)`, whichever rank
///   takes it (MindCV seeds Python/NumPy with `seed + rank` instead; ours makes the N-rank run
///   see the very inputs of one process with batch `N*batch_size`);
/// - after each backward the gradients are averaged over the ranks in fused buckets
///   ([`BackendFactory::gradient_reducer`]) before the Momentum update; BatchNorm statistics
///   stay per rank, as in MindCV;
/// - the logged loss and training accuracy are those of the global batch (a small all-reduce
///   per step), and a stop request on any rank stops all of them after the same step;
/// - validation runs on every rank over its share of `val_split` ([`Shard::of_items`]) with its
///   own BatchNorm statistics; the Top-1/Top-5 hits, sample counts and loss sums are summed over
///   the ranks, so the figures cover every validation image exactly once;
/// - only rank 0 reports events, writes the args dump, `metrics.jsonl` and checkpoints (its
///   own BatchNorm statistics);
/// - an error on any rank after MPI is set up is printed with the rank and ends the whole job
///   through [`Communicator::abort`] (exit status 1): returning it would leave the other ranks
///   waiting forever.
///
/// Errors: unsupported or invalid recipe values (naming the key); `distribute` without a
/// launcher (with the `mpirun` command to use) or a launch problem ([`crate::dist::init`]);
/// unreadable data folders or images (named); labels outside `num_classes`; `ckpt_path` /
/// `resume` files that are missing, do not match the model, or (resume) hold no optimizer
/// state; both `ckpt_path` and `resume` given; a non-finite loss (naming the step); I/O errors
/// writing checkpoints or logs.
pub fn run(opts: &TrainOptions, on_event: impl FnMut(&TrainEvent)) -> Result<TrainReport> {
    let r = &opts.recipe;
    check_supported(r)?;
    r.validate()?;
    let comm = match &opts.comm {
        Some(c) if !r.distribute && c.size() > 1 => {
            return Err(Error::Config(format!(
                "distribute is False but the communicator given spans {} ranks: set \
                 distribute: True (--distribute) for data-parallel training",
                c.size()
            )))
        }
        Some(c) => Arc::clone(c),
        None => dist::init(r.distribute)?,
    };
    let job = || {
        let (dev, device_note) = device::resolve(&opts.device, r.device_target, r.amp_level)?;
        device::run_on(
            dev,
            TrainJob {
                opts,
                dev,
                device_note,
                on_event,
                comm: Arc::clone(&comm),
            },
        )
    };
    match job() {
        Err(e) if comm.size() > 1 => {
            eprintln!(
                "senet rank {} of {}: error: {e}\nsenet rank {}: aborting the job (the other \
                 ranks would wait for this one forever)",
                comm.rank(),
                comm.size(),
                comm.rank()
            );
            comm.abort(EXIT_RANK_FAILED)
        }
        result => result,
    }
}

/// The training run on one kind of backend (see [`run`]).
struct TrainJob<'a, E> {
    opts: &'a TrainOptions,
    dev: Device,
    device_note: Option<String>,
    on_event: E,
    comm: Arc<dyn Communicator>,
}

impl<E: FnMut(&TrainEvent)> DeviceJob for TrainJob<'_, E> {
    type Output = TrainReport;
    fn run<F: BackendFactory>(self, factory: F) -> Result<TrainReport> {
        train_with(self, factory)
    }
}

fn train_with<F: BackendFactory>(
    job: TrainJob<'_, impl FnMut(&TrainEvent)>,
    factory: F,
) -> Result<TrainReport> {
    let TrainJob {
        opts,
        dev,
        device_note,
        on_event: mut user_event,
        comm,
    } = job;
    let (rank, size) = (comm.rank(), comm.size());
    let root = rank == 0;
    // Only rank 0 reports.
    let mut on_event = |ev: &TrainEvent| {
        if root {
            user_event(ev)
        }
    };
    let fault_at = fault_injection()?;
    let r = &opts.recipe;
    let arch = Arch::from_name(&r.model)?;
    let model = arch.name();
    if opts.resume.is_some() && !r.ckpt_path.is_empty() {
        return Err(Error::Config(format!(
            "ckpt_path '{}' and --resume both given: --resume restores the weights itself \
             (drop ckpt_path)",
            r.ckpt_path
        )));
    }
    let data_dir = PathBuf::from(&r.data_dir);
    let train = ImageFolder::open(&data_dir, &r.train_split, opts.class_map.as_deref())?;
    let num_classes = r.num_classes.unwrap_or(train.num_classes());
    check_labels(&train.samples, num_classes)?;
    let val = if r.val_while_train {
        let folder = ImageFolder::open(&data_dir, &r.val_split, opts.class_map.as_deref())?;
        check_labels(&folder.samples, num_classes)?;
        Some(ValSet {
            samples: Shard::new(rank, size)?.of_items(&folder.samples),
            total: folder.samples.len(),
            transform: crate::engine::eval_transform(r)?,
        })
    } else {
        None
    };
    let transform = SampleTransform::from_recipe(r)?;
    let train_samples = train.samples.len();
    let plan = EpochPlan::new_sharded(
        train.samples,
        r.batch_size,
        r.drop_remainder,
        r.shuffle,
        r.seed,
        r.num_parallel_workers,
        Shard::new(rank, size)?,
    )?;
    let spe = plan.steps_per_epoch;
    if !opts.frozen_batch_norm {
        check_batch_norm_batches(
            plan.shard.samples_per_shard(train_samples),
            r.batch_size,
            r.drop_remainder,
            r.image_resize,
        )?;
    }
    let num_epochs = r.epoch_size as u64;
    let total_steps = num_epochs * spe as u64;
    let lrs = lr_schedule(r, spe, r.epoch_size as usize)?;
    let lr_at = |step: u64| -> f32 {
        let i = (step as usize).min(lrs.len().saturating_sub(1));
        lrs.get(i).copied().unwrap_or(r.lr as f32)
    };

    // The model: MindCV's init, start weights, or the resumed state.
    let mut net = SeNet::new(arch, num_classes, r.seed)?;
    let mut notes = Vec::new();
    let mut resume_state = None;
    if let Some(path) = &opts.resume {
        let report = checkpoint::load_model(&mut net, path, &LoadOptions::default())?;
        let st = state::read_state(path, &net.params)?;
        notes.push(format!(
            "resumed from {} ({}): global_step {}",
            path.display(),
            report,
            st.global_step
        ));
        if let Some(lr) = st.learning_rate {
            let want = lr_at(st.global_step);
            if lr != want {
                notes.push(format!(
                    "note: the checkpoint's learning_rate {lr} differs from this recipe's \
                     schedule at step {} ({want}): the schedule (epoch_size, lr, ...) changed",
                    st.global_step
                ));
            }
        }
        resume_state = Some(st);
    } else if !r.ckpt_path.is_empty() {
        let path = Path::new(&r.ckpt_path);
        if !path.is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "checkpoint file not found"),
            ));
        }
        let report = checkpoint::load_model(&mut net, path, &LoadOptions::default())?;
        notes.push(format!("start weights from {} ({report})", path.display()));
    }
    notes.extend(device_note);
    if let Device::Ascend { .. } = dev {
        notes.push(format!("device: {}", dev.describe()));
    }
    if r.amp_level == AmpLevel::O2 && matches!(dev, Device::Cpu { .. }) {
        notes.push(
            "amp_level O2: computed in float32 on the CPU (MindCV's O2 casts all but BatchNorm \
             to float16; only rounding differs)"
                .into(),
        );
    }
    let filter = (r.weight_decay_filter, r.filter_bias_and_bn);
    let mut tn = TrainNet::new(&net, factory.create()?, train_config(r), |name| {
        decays(name, filter.0, filter.1)
    })?;
    let scaler = LossScaler::from_recipe(
        r.loss_scale_type,
        r.loss_scale,
        r.drop_overflow_update,
        r.amp_level,
    )?;
    tn.set_loss_scaler(match &resume_state {
        Some(st) => state::restore_scaler(scaler, st),
        None => scaler,
    });
    if opts.frozen_batch_norm {
        tn.set_frozen_batch_norm(true);
        notes.push(
            "BatchNorm frozen: normalising with the moving statistics, which stay as loaded \
             (MindSpore use_batch_statistics=False); gamma and beta are trained"
                .into(),
        );
    }
    let mut step: u64 = 0;
    if let Some(st) = resume_state {
        for (name, m) in &st.moments {
            tn.set_moment(name, m)?;
        }
        if r.ema {
            tn.set_ema(&st.ema, st.ema_updates)?;
        }
        step = st.global_step;
    }
    let start_step = step;

    // Data parallel: the same layout everywhere, rank 0's state everywhere.
    let mut reducer = None;
    if size > 1 {
        let layout = format!(
            "{model} ({num_classes} classes), {train_samples} training images, {spe} steps per \
             epoch, {num_epochs} epochs, start step {start_step}, {}, max_steps {}, ema {}, \
             frozen BatchNorm {}",
            val.as_ref()
                .map_or("no validation".to_string(), |v| format!(
                    "validation of {} images every {} epoch(s)",
                    v.total, r.val_interval
                )),
            opts.max_steps.map_or("none".to_string(), |m| m.to_string()),
            r.ema,
            opts.frozen_batch_norm
        );
        dist::agree_on(&*comm, "the run", &layout)?;
        // What changes the update or the data order without changing the layout.
        let lr_bits: String = lrs.iter().map(|v| format!("{:08x}", v.to_bits())).collect();
        let recipe = format!(
            "seed {}, shuffle {}, image_resize {}, lr schedule {:016x}, momentum {},              weight_decay {} ({:?}), nesterov {}, label_smoothing {}, loss_scale {} ({},              drop_overflow_update {}), amp_level {}, clip {:?}, ema_decay {}, device {}",
            r.seed,
            r.shuffle,
            r.image_resize,
            dist::fingerprint(&lr_bits),
            r.momentum,
            r.weight_decay,
            r.weight_decay_filter,
            r.use_nesterov,
            r.label_smoothing,
            r.loss_scale,
            r.loss_scale_type.as_str(),
            r.drop_overflow_update,
            r.amp_level.as_str(),
            r.clip_grad.then_some(r.clip_value),
            r.ema_decay,
            match dev {
                Device::Cpu { .. } => "cpu",
                Device::Ascend { .. } => "ascend",
            }
        );
        dist::agree_on(&*comm, "the recipe", &recipe)?;
        if let Device::Ascend { id, .. } = dev {
            dist::check_distinct_devices(&*comm, id)?;
        }
        tn.broadcast_state(&*comm, 0)?;
        reducer = Some(factory.gradient_reducer(Arc::clone(&comm))?);
        let per_rank = plan.shard.samples_per_shard(train_samples);
        notes.push(format!(
            "data parallel over {size} ranks ({}): each rank trains on {per_rank} of the \
             {train_samples} images per epoch{}, batch {} per rank = global batch {}; gradients \
             averaged over the ranks before each update; BatchNorm statistics per rank; rank 0 \
             logs and saves",
            match dev {
                Device::Ascend { .. } if comm.name() != "hccl" => {
                    format!("{}; gradients over hccl", comm.name())
                }
                _ => comm.name().to_string(),
            },
            if per_rank * size > train_samples {
                format!(
                    " (padded with {} repeated images, as MindSpore's DistributedSampler)",
                    per_rank * size - train_samples
                )
            } else {
                String::new()
            },
            r.batch_size,
            r.batch_size * size
        ));
    }

    let save_dir = PathBuf::from(&r.ckpt_save_dir);
    let mut metrics = None;
    let mut best = None;
    if root {
        std::fs::create_dir_all(&save_dir).map_err(|e| Error::io(&save_dir, e))?;
        let args_dump = save_dir.join(format!("{model}.yaml"));
        std::fs::write(&args_dump, r.to_yaml()).map_err(|e| Error::io(&args_dump, e))?;
        metrics = Some(MetricsLog::open(&save_dir)?);
        if start_step > 0 {
            best = log::best_val_top1(&save_dir, start_step);
        }
    }

    on_event(&TrainEvent::Started {
        model,
        num_classes,
        train_samples,
        val_samples: val.as_ref().map(|v| v.total),
        steps_per_epoch: spe,
        num_epochs,
        start_step,
    });
    for n in notes {
        on_event(&TrainEvent::Note(n));
    }

    let stop_flag = opts.stop.clone();
    let interrupted = || stop_flag.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
    let keep = match r.ckpt_save_policy {
        Some(CkptSavePolicy::LatestK) => Some(r.keep_checkpoint_max as usize),
        _ => None,
    };
    let mut report = TrainReport {
        model: model.to_string(),
        global_step: step,
        steps_per_epoch: spe,
        stop: StopReason::Finished,
        last_checkpoint: None,
        best_val_top1: best,
        epochs: Vec::new(),
        rank,
        world_size: size,
    };
    // Writes a step checkpoint and applies the retention policy.
    let mut scratch = net; // parameter scratch for saving and validation
    let save_step_ckpt = |tn: &TrainNet<F::Backend>,
                          scratch: &mut SeNet,
                          epoch_no: u64,
                          batch: usize,
                          step: u64,
                          on_event: &mut dyn FnMut(&TrainEvent)|
     -> Result<PathBuf> {
        let path = save_dir.join(step_ckpt_name(model, epoch_no, batch));
        save_state(&path, tn, &mut scratch.params, step, lr_at(step))?;
        on_event(&TrainEvent::Saved(&path));
        if let Some(k) = keep {
            prune_checkpoints(&save_dir, model, k)?;
        }
        Ok(path)
    };

    if opts.max_steps.is_some_and(|m| step >= m) {
        report.stop = StopReason::MaxSteps;
        return Ok(report);
    }
    let first_epoch = step / spe as u64;
    'epochs: for epoch in first_epoch..num_epochs {
        let epoch_no = epoch + 1;
        let first_batch = if epoch == first_epoch {
            (step % spe as u64) as usize
        } else {
            0
        };
        on_event(&TrainEvent::EpochStart {
            epoch: epoch_no,
            first_batch,
            steps_per_epoch: spe,
        });
        let loader = plan.loader(epoch, first_batch, &transform)?;
        let t0 = Instant::now();
        let mut acc_loss = 0.0f64;
        let mut acc_steps = 0usize;
        let mut acc_correct = 0usize;
        let mut acc_images = 0usize;
        let mut last_lr = lr_at(step);
        let mut last_log = Instant::now();
        let mut batch_no = first_batch;
        let mut stop = None;
        for batch in loader {
            let batch = batch?;
            let lr = lr_at(step);
            let local = match reducer.as_mut() {
                Some(red) => tn.step_reduced(&batch.images, &batch.labels, lr, red.as_mut())?,
                None => tn.step(&batch.images, &batch.labels, lr)?,
            };
            if let Some((at, who, fault)) = fault_at {
                if step + 1 == at && rank == who {
                    eprintln!(
                        "senet rank {rank}: fault injection at step {at}: {}",
                        match fault {
                            Fault::Abort => "aborting this process (SENET_TEST_ABORT_AT_STEP)",
                            Fault::Hang => "hanging (SENET_TEST_HANG_AT_STEP)",
                        }
                    );
                    match fault {
                        Fault::Abort => std::process::abort(),
                        Fault::Hang => loop {
                            std::thread::sleep(std::time::Duration::from_secs(3600));
                        },
                    }
                }
            }
            // The global batch's loss and hits, and whether any rank was asked to stop.
            let mut stop_requested = interrupted();
            let (loss, correct, images) = if size > 1 {
                let n = batch.len() as f64;
                let mut v = [
                    local.loss * n,
                    local.correct as f64,
                    n,
                    stop_requested as u8 as f64,
                ];
                comm.all_reduce_sum_f64(&mut v)?;
                stop_requested = v[3] > 0.0;
                (v[0] / v[2], v[1] as usize, v[2] as usize)
            } else {
                (local.loss, local.correct, batch.len())
            };
            if !loss.is_finite() {
                return Err(Error::Invalid(format!(
                    "the loss became {loss} at global step {} (epoch {epoch_no}, batch {}): \
                     lower lr",
                    step + 1,
                    batch_no + 1
                )));
            }
            step += 1;
            batch_no += 1;
            last_lr = lr;
            acc_loss += loss;
            acc_steps += 1;
            acc_correct += correct;
            acc_images += images;
            let secs = t0.elapsed().as_secs_f64();
            on_event(&TrainEvent::Step {
                epoch: epoch_no,
                batch: batch_no,
                global_step: step,
                loss,
                lr,
                images_per_second: acc_images as f64 / secs.max(1e-9),
            });
            if r.log_interval > 0 && batch_no % r.log_interval as usize == 0 {
                on_event(&TrainEvent::Log(log::step_line(
                    epoch_no,
                    num_epochs,
                    batch_no,
                    spe,
                    loss,
                    lr as f64,
                    last_log.elapsed().as_secs_f64(),
                )));
                last_log = Instant::now();
            }
            if stop_requested {
                stop = Some(StopReason::Interrupted);
            } else if opts.max_steps.is_some_and(|m| step >= m) {
                stop = Some(StopReason::MaxSteps);
            }
            if stop.is_some() {
                break;
            }
        }
        report.global_step = step;
        let mut saved_here = false;
        if batch_no == spe {
            // Epoch end.
            let seconds = t0.elapsed().as_secs_f64();
            let mut rec = EpochRecord {
                epoch: epoch_no,
                step,
                loss: acc_loss / acc_steps.max(1) as f64,
                lr: last_lr as f64,
                train_top1: 100.0 * acc_correct as f64 / acc_images.max(1) as f64,
                val_top1: None,
                val_top5: None,
                val_loss: None,
                seconds,
                images_per_second: acc_images as f64 / seconds.max(1e-9),
            };
            let last_epoch = epoch_no == num_epochs;
            if let Some(v) = &val {
                if epoch_no % r.val_interval as u64 == 0 || last_epoch {
                    let (acc, secs) =
                        validate(&tn, &mut scratch, v, r, &factory, &*comm, &mut on_event)?;
                    on_event(&TrainEvent::Validated(log::validation_line(
                        acc.top1(),
                        acc.top5(),
                        secs,
                    )));
                    rec.val_top1 = Some(acc.top1());
                    rec.val_top5 = Some(acc.top5());
                    rec.val_loss = Some(acc.loss());
                    if root && best.is_none_or(|b| acc.top1() > b) {
                        best = Some(acc.top1());
                        let path = save_dir.join(best_ckpt_name(model));
                        save_state(&path, &tn, &mut scratch.params, step, lr_at(step))?;
                        on_event(&TrainEvent::Saved(&path));
                    }
                }
            }
            if epoch_no % r.ckpt_save_interval as u64 == 0 || last_epoch {
                if root {
                    let path =
                        save_step_ckpt(&tn, &mut scratch, epoch_no, spe, step, &mut on_event)?;
                    report.last_checkpoint = Some(path);
                }
                saved_here = true;
            }
            if let Some(m) = metrics.as_mut() {
                m.append(&rec)?;
                crate::engine::curves::redraw_run(&save_dir)?;
            }
            on_event(&TrainEvent::Epoch(&rec));
            report.epochs.push(rec);
            report.best_val_top1 = best;
        }
        if let Some(reason) = stop {
            if !saved_here && root {
                let path =
                    save_step_ckpt(&tn, &mut scratch, epoch_no, batch_no, step, &mut on_event)?;
                report.last_checkpoint = Some(path);
            }
            report.stop = if step >= total_steps {
                StopReason::Finished
            } else {
                reason
            };
            break 'epochs;
        }
        if batch_no != spe {
            return Err(Error::Invalid(format!(
                "epoch {epoch_no} ended after {batch_no} of {spe} batches"
            )));
        }
    }
    report.best_val_top1 = best;
    Ok(report)
}

/// Evaluates the current weights on this rank's share of the validation split with the
/// validate engine, then sums the counts and loss over the ranks. Returns the whole split's
/// accumulator and the wall time (until every rank is done).
fn validate<F: BackendFactory>(
    tn: &TrainNet<F::Backend>,
    scratch: &mut SeNet,
    val: &ValSet,
    r: &Recipe,
    factory: &F,
    comm: &dyn Communicator,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<(Accumulator, f64)> {
    let t0 = Instant::now();
    let mut acc = if val.samples.is_empty() {
        Accumulator::default()
    } else {
        validate_local(tn, scratch, val, r, factory, on_event)?.0
    };
    if comm.size() > 1 {
        let mut v = [
            acc.samples as f64,
            acc.top1_hits as f64,
            acc.top5_hits as f64,
            acc.loss_sum,
        ];
        comm.all_reduce_sum_f64(&mut v)?;
        acc = Accumulator {
            samples: v[0] as usize,
            top1_hits: v[1] as usize,
            top5_hits: v[2] as usize,
            loss_sum: v[3],
        };
    }
    Ok((acc, t0.elapsed().as_secs_f64()))
}

/// Evaluates the current weights on `val.samples` (this rank's share).
fn validate_local<F: BackendFactory>(
    tn: &TrainNet<F::Backend>,
    scratch: &mut SeNet,
    val: &ValSet,
    r: &Recipe,
    factory: &F,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> Result<(Accumulator, f64)> {
    // With EMA on, the averaged weights are the ones validated (and kept as the best).
    if r.ema {
        tn.read_ema_params(&mut scratch.params)?;
    } else {
        tn.read_params(&mut scratch.params)?;
    }
    let mut inf = crate::model::inference::InferenceNet::new(scratch, factory.create()?)?;
    evaluate(
        &mut inf,
        val.samples.clone(),
        val.transform.clone(),
        r.batch_size,
        r.num_parallel_workers,
        r.label_smoothing,
        &mut |done, total| on_event(&TrainEvent::Validating { done, total }),
    )
}

#[cfg(test)]
mod tests {
    use super::check_batch_norm_batches;

    #[test]
    fn a_batch_norm_batch_of_one_1x1_map_is_refused_before_training() {
        // 30 images, batch 29, 32x32: the last batch has 1 image of 1x1 maps at the end.
        let e = check_batch_norm_batches(30, 29, false, 32)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("last batch") && e.contains("drop_remainder"),
            "{e}"
        );
        assert!(check_batch_norm_batches(30, 29, true, 32).is_ok());
        // 64x64: 2x2 maps, one image is enough.
        assert!(check_batch_norm_batches(30, 29, false, 64).is_ok());
        assert!(check_batch_norm_batches(30, 1, true, 32).is_err());
    }
}
