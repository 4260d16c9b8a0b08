//! The set-up step of a training run: the data (training shard, validation split), the
//! learning-rate list, the start model (MindCV's initialisation, `ckpt_path` or `--resume`) and
//! the training network on its backend, with every check that must pass before any work.
use super::super::data::{EpochPlan, SampleTransform, Shard};
use super::super::state::{self, ResumeState};
use super::super::TrainOptions;
use crate::checkpoint::{self, LoadOptions, CLASSIFIER_PREFIX};
use crate::config::{AmpLevel, Recipe};
use crate::data::{EvalTransform, ImageFolder};
use crate::engine::device::{BackendFactory, Device};
use crate::model::{Arch, SeNet, StemPool};
use crate::optim::{decays, lr_schedule, LossScaler, TrainConfig, TrainNet};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The validation split, opened once.
pub(super) struct ValSet {
    /// This rank's share of the images ([`Shard::of_items`]; all of them in one process).
    pub samples: Vec<(PathBuf, usize)>,
    /// Images of the whole split.
    pub total: usize,
    pub transform: EvalTransform,
}

/// The data of a run.
pub(super) struct TrainData {
    /// This rank's shard of the training split, cut into batches.
    pub plan: EpochPlan,
    /// The per-sample training transform.
    pub transform: SampleTransform,
    /// The validation split, with `val_while_train`.
    pub val: Option<ValSet>,
    /// Images of the whole training split (every rank's).
    pub train_samples: usize,
    /// Classifier outputs: the recipe's `num_classes`, else the training split's classes.
    pub num_classes: usize,
}

impl TrainData {
    /// Opens `data_dir/train_split` (and `val_split` when `val_while_train`) with the class map,
    /// checks every label against the model's classes, and cuts rank `rank`'s shard of `size`
    /// into batches. Unless BatchNorm is frozen, checks that every batch can train BatchNorm
    /// ([`check_batch_norm_batches`]). Errors: unreadable folders or images (named), labels
    /// outside `num_classes`, invalid transform or batch keys.
    pub(super) fn open(opts: &TrainOptions, rank: usize, size: usize) -> Result<TrainData> {
        let r = &opts.recipe;
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
        let plan = EpochPlan::new(
            train.samples,
            r.batch_size,
            r.drop_remainder,
            r.shuffle,
            r.seed,
            r.num_parallel_workers,
            Shard::new(rank, size)?,
        )?;
        if !opts.frozen_batch_norm {
            check_batch_norm_batches(
                plan.shard.samples_per_shard(train_samples),
                r.batch_size,
                r.drop_remainder,
                r.image_resize,
            )?;
        }
        Ok(TrainData {
            plan,
            transform,
            val,
            train_samples,
            num_classes,
        })
    }

    /// Optimizer steps per epoch (batches of this rank's shard).
    pub(super) fn steps_per_epoch(&self) -> usize {
        self.plan.steps_per_epoch
    }
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

/// The learning rate of every global step ([`lr_schedule`]).
pub(super) struct LrList {
    per_step: Vec<f32>,
    /// The recipe's `lr`, for an empty list.
    fallback: f32,
}

impl LrList {
    /// The recipe's schedule over `epoch_size` epochs of `steps_per_epoch` steps.
    /// Errors: as [`lr_schedule`].
    pub(super) fn new(r: &Recipe, steps_per_epoch: usize) -> Result<LrList> {
        Ok(LrList {
            per_step: lr_schedule(r, steps_per_epoch, r.epoch_size as usize)?,
            fallback: r.lr as f32,
        })
    }

    /// The learning rate of global step `step` (0-based); past the end, the last one.
    pub(super) fn at(&self, step: u64) -> f32 {
        let i = (step as usize).min(self.per_step.len().saturating_sub(1));
        self.per_step.get(i).copied().unwrap_or(self.fallback)
    }

    /// Every step's learning rate.
    pub(super) fn per_step(&self) -> &[f32] {
        &self.per_step
    }
}

/// The model a run starts from, and what the set-up tells the user about it.
pub(super) struct StartModel {
    /// MindCV's initialisation from `seed`, or the loaded weights.
    pub net: SeNet,
    /// The optimizer state of `--resume`'s checkpoint.
    pub resume: Option<ResumeState>,
    /// Notes for the user (resume, start weights, device, precision).
    pub notes: Vec<String>,
}

impl StartModel {
    /// The model: MindCV's initialisation from `seed`, then
    /// - with `--resume X`: X's weights and its optimizer state;
    /// - with `ckpt_path: X` and `resume_opt: True` (MindCV's resume): X's weights and the
    ///   optimizer state of `optim_<model>.ckpt` ([`optimizer_file`]), or X's own when there is
    ///   no such file;
    /// - with `ckpt_path: X` alone: X's weights (an exact load); with `pretrained: True` too
    ///   (fine-tuning), all but a classifier of another class count, which keeps MindCV's
    ///   initialisation.
    ///
    /// Errors: a missing file; a checkpoint that does not match the model (a classifier of
    /// another class count names the flags that fine-tune); no optimizer state to resume.
    pub(super) fn load(
        opts: &TrainOptions,
        arch: Arch,
        num_classes: usize,
        lrs: &LrList,
    ) -> Result<StartModel> {
        let r = &opts.recipe;
        let mut start = StartModel {
            net: SeNet::new(arch, num_classes, r.seed)?,
            resume: None,
            notes: Vec::new(),
        };
        if let Some(path) = &opts.resume {
            start.resume(path, None, r, lrs)?;
        } else if r.resume_opt {
            let path = Path::new(&r.ckpt_path);
            let optim = optimizer_file(r, arch.name(), path);
            start.resume(path, optim.as_deref(), r, lrs)?;
        } else if !r.ckpt_path.is_empty() {
            start.start_weights(Path::new(&r.ckpt_path), r)?;
        }
        Ok(start)
    }

    /// Loads the weights of `path` and the optimizer state of `optim` (MindCV's split resume)
    /// or, without it, of `path` itself; notes what came from where and how the stored
    /// learning-rate list and momentum compare with the recipe's.
    fn resume(
        &mut self,
        path: &Path,
        optim: Option<&Path>,
        r: &Recipe,
        lrs: &LrList,
    ) -> Result<()> {
        require_file(path)?;
        let report = checkpoint::load_model(&mut self.net, path, &LoadOptions::default())?;
        let (st, source) = match optim {
            Some(o) => (state::read_split_state(path, o, &self.net.params)?, o),
            None => {
                let st = state::read_state(path, &self.net.params).map_err(|e| {
                    if r.resume_opt {
                        Error::Config(format!(
                            "resume_opt: True but there is no optimizer state to resume: no {} \
                             in ckpt_save_dir '{}' nor beside '{}', and {e}",
                            state::optim_ckpt_name(&r.model),
                            r.ckpt_save_dir,
                            path.display()
                        ))
                    } else {
                        e
                    }
                })?;
                (st, path)
            }
        };
        let mut extras = String::new();
        if r.ema && !st.ema.is_empty() {
            extras += &format!(", EMA weights ({} updates)", st.ema_updates);
        }
        if let Some(s) = st.scale_sense {
            extras += &format!(", loss scale {s}");
        }
        self.notes.push(format!(
            "resumed from {}: {} parameters; optimizer state from {}: global_step {}, {} Momentum \
             moments{extras}; next learning rate {} (this recipe's schedule)",
            path.display(),
            report.loaded,
            source.display(),
            st.global_step,
            st.moments.len(),
            lrs.at(st.global_step)
        ));
        self.notes.extend(learning_rate_note(&st, lrs));
        if let Some(m) = st.momentum.filter(|m| *m != r.momentum as f32) {
            self.notes.push(format!(
                "note: the checkpoint's momentum {m} differs from this recipe's {}: using the \
                 recipe's",
                r.momentum
            ));
        }
        self.resume = Some(st);
        Ok(())
    }

    /// Loads the start weights of `path` (`ckpt_path`): all of them, or with `pretrained`
    /// (fine-tuning) all but a classifier of another class count.
    fn start_weights(&mut self, path: &Path, r: &Recipe) -> Result<()> {
        require_file(path)?;
        let load = LoadOptions {
            new_classifier: r.pretrained,
            ..LoadOptions::default()
        };
        let report = match checkpoint::load_model(&mut self.net, path, &load) {
            Err(Error::Mismatch {
                path,
                model,
                details,
            }) if !r.pretrained && only_the_classifier_misfits(&details) => {
                return Err(Error::Mismatch {
                    details: format!(
                        "{details}\nto fine-tune from it (every weight but the classifier, which \
                         starts as MindCV initialises it), pass --pretrained True --ckpt_path {}",
                        path.display()
                    ),
                    path,
                    model,
                })
            }
            other => other?,
        };
        self.notes
            .push(format!("start weights from {} ({report})", path.display()));
        if self.net.stem_pool != StemPool::Same {
            // The run trains, validates and saves MindCV's network (its checkpoints load as
            // MindCV's): timm's weights start it, with MindCV's stem pool.
            self.net.stem_pool = StemPool::Same;
            self.notes.push(
                "note: training runs MindCV's network (stem max pool pad_mode 'same'), not \
                 timm's, from these timm weights"
                    .into(),
            );
        }
        if !report.new_classifier.is_empty() {
            let found: Vec<String> = report
                .new_classifier
                .iter()
                .map(|m| format!("{} {:?}", m.name, m.found))
                .collect();
            self.notes.push(format!(
                "fine-tuning: {} of {} do not fit {} classes: a new classifier, initialised as \
                 MindCV initialises one (HeUniform weight, zero bias; seed {}), as MindCV's \
                 pretrained loading drops a classifier of another class count",
                found.join(" and "),
                path.display(),
                self.net.num_classes,
                r.seed
            ));
        }
        Ok(())
    }

    /// Adds the notes on the device: how it was chosen (`device_note`), which Ascend device,
    /// and what `amp_level: O2` means on the CPU.
    pub(super) fn note_device(&mut self, dev: Device, device_note: Option<String>, amp: AmpLevel) {
        self.notes.extend(device_note);
        if let Device::Ascend { .. } = dev {
            self.notes.push(format!("device: {}", dev.describe()));
        }
        if amp == AmpLevel::O2 && matches!(dev, Device::Cpu { .. }) {
            self.notes.push(
                "amp_level O2: computed in float32 on the CPU (MindCV's O2 casts all but \
                 BatchNorm to float16; only rounding differs)"
                    .into(),
            );
        }
    }

    /// The training network on a new backend from `factory`: the recipe's loss and optimizer
    /// settings and weight-decay filter, its loss-scale manager (restored from the resume
    /// state), frozen BatchNorm when asked; the resumed Momentum accumulators and EMA. Returns
    /// it with the global step to start at (the resume state is used up).
    /// Errors: the backend cannot start; resume state that does not fit the network.
    pub(super) fn train_net<F: BackendFactory>(
        &mut self,
        factory: &F,
        opts: &TrainOptions,
    ) -> Result<(TrainNet<F::Backend>, u64)> {
        let r = &opts.recipe;
        let filter = (r.weight_decay_filter, r.filter_bias_and_bn);
        let mut tn = TrainNet::new(&self.net, factory.create()?, train_config(r), |name| {
            decays(name, filter.0, filter.1)
        })?;
        let scaler = LossScaler::from_recipe(
            r.loss_scale_type,
            r.loss_scale,
            r.drop_overflow_update,
            r.amp_level,
        )?;
        tn.set_loss_scaler(match &self.resume {
            Some(st) => state::restore_scaler(scaler, st),
            None => scaler,
        });
        if opts.frozen_batch_norm {
            tn.set_frozen_batch_norm(true);
            self.notes.push(
                "BatchNorm frozen: normalising with the moving statistics, which stay as loaded \
                 (MindSpore use_batch_statistics=False); gamma and beta are trained"
                    .into(),
            );
        }
        let mut step = 0;
        if let Some(st) = self.resume.take() {
            for (name, m) in &st.moments {
                tn.set_moment(name, m)?;
            }
            if r.ema {
                tn.set_ema(&st.ema, st.ema_updates)?;
            }
            step = st.global_step;
        }
        Ok((tn, step))
    }
}

/// MindCV's optimizer file for resuming `ckpt_path` with `resume_opt`: `optim_<model>.ckpt` in
/// `ckpt_save_dir` (where MindCV 0.3's `train.py` looks), else beside `ckpt_path`; None when
/// neither exists.
fn optimizer_file(r: &Recipe, model: &str, ckpt_path: &Path) -> Option<PathBuf> {
    let name = state::optim_ckpt_name(model);
    let beside = ckpt_path.parent().map(|d| d.join(&name));
    std::iter::once(Path::new(&r.ckpt_save_dir).join(&name))
        .chain(beside)
        .find(|p| p.is_file())
}

/// A note when the checkpoint's stored learning rates differ from this recipe's schedule
/// (senet continues with the recipe's): the whole list as MindCV stores it, or the one value
/// (the next step's) of senet's earlier layout.
fn learning_rate_note(st: &ResumeState, lrs: &LrList) -> Option<String> {
    let stored = st.learning_rate.as_ref()?;
    let (step, ours) = (st.global_step, lrs.per_step());
    let differs = if stored.len() == 1 && ours.len() != 1 {
        (stored[0] != lrs.at(step)).then(|| format!("its next-step value {}", stored[0]))
    } else {
        let first = stored.iter().zip(ours).position(|(a, b)| a != b);
        (first.is_some() || stored.len() != ours.len()).then(|| {
            let at = first
                .map(|i| format!(", first at step {i}: {} vs {}", stored[i], ours[i]))
                .unwrap_or_default();
            format!(
                "its {}-step list (this recipe's has {}{at}; MindCV 0.3 loads the list only into \
                 a run of the same length)",
                stored.len(),
                ours.len()
            )
        })
    }?;
    Some(format!(
        "note: the checkpoint's learning rate differs from this recipe's schedule ({differs}): \
         continuing with the recipe's (epoch_size, lr, scheduler, ... changed)"
    ))
}

/// Whether every line of a load mismatch is about a mis-shaped classifier parameter (another
/// class count, which fine-tuning replaces), not a missing or foreign one.
fn only_the_classifier_misfits(details: &str) -> bool {
    let prefix = format!("mis-shaped parameter '{CLASSIFIER_PREFIX}");
    details.lines().all(|l| l.starts_with(&prefix))
}

/// Errors with [`Error::Io`] naming `path` unless it is a file.
fn require_file(path: &Path) -> Result<()> {
    if path.is_file() {
        return Ok(());
    }
    Err(Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::NotFound, "checkpoint file not found"),
    ))
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

#[cfg(test)]
mod tests {
    use super::{
        check_batch_norm_batches, learning_rate_note, only_the_classifier_misfits, LrList,
        ResumeState,
    };

    fn stored(global_step: u64, learning_rate: Option<Vec<f32>>) -> ResumeState {
        ResumeState {
            global_step,
            momentum: Some(0.9),
            learning_rate,
            moments: Vec::new(),
            ema: Vec::new(),
            ema_updates: 0.0,
            scale_sense: None,
            scaler_iters: None,
            epoch_sums: None,
        }
    }

    #[test]
    fn the_fine_tuning_hint_is_for_classifier_misfits_alone() {
        let classifier = "mis-shaped parameter 'classifier.weight': expected [10, 512], found \
                          [1000, 512]\nmis-shaped parameter 'classifier.bias': expected [10], \
                          found [1000]";
        assert!(only_the_classifier_misfits(classifier));
        let other = format!("{classifier}\nmis-shaped parameter 'layer0.0.weight': ...");
        assert!(!only_the_classifier_misfits(&other));
        assert!(!only_the_classifier_misfits(
            "missing parameter 'classifier.bias': expected shape [10]"
        ));
    }

    #[test]
    fn the_stored_learning_rates_are_compared_whole_not_by_their_first_value() {
        let lrs = LrList {
            per_step: vec![0.1, 0.05, 0.0],
            fallback: 0.1,
        };
        // MindCV's whole list, equal: nothing to say (element 0 is not step 1's rate).
        assert_eq!(
            learning_rate_note(&stored(1, Some(vec![0.1, 0.05, 0.0])), &lrs),
            None
        );
        assert_eq!(learning_rate_note(&stored(1, None), &lrs), None);
        let note = learning_rate_note(&stored(1, Some(vec![0.1, 0.07, 0.0])), &lrs).unwrap();
        assert!(
            note.contains("its 3-step list (this recipe's has 3, first at step 1: 0.07 vs 0.05"),
            "{note}"
        );
        let note = learning_rate_note(&stored(1, Some(vec![0.1, 0.05])), &lrs).unwrap();
        assert!(
            note.contains("its 2-step list (this recipe's has 3;"),
            "{note}"
        );
        // senet's earlier one-value layout: the next step's rate.
        assert_eq!(learning_rate_note(&stored(1, Some(vec![0.05])), &lrs), None);
        let note = learning_rate_note(&stored(2, Some(vec![0.05])), &lrs).unwrap();
        assert!(note.contains("its next-step value 0.05"), "{note}");
    }

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
