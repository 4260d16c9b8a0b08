//! The set-up step of a training run: the data (training shard, validation split), the
//! learning-rate list, the start model (MindCV's initialisation, `ckpt_path` or `--resume`) and
//! the training network on its backend, with every check that must pass before any work.
use super::super::data::{EpochPlan, SampleTransform, Shard};
use super::super::state::{self, ResumeState};
use super::super::TrainOptions;
use crate::checkpoint::{self, LoadOptions};
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
    /// The model: MindCV's initialisation from `seed`, then the `--resume` checkpoint's weights
    /// and optimizer state, or `ckpt_path`'s weights (an exact load). Errors: both given;
    /// a missing file; a checkpoint that does not match the model or (resume) holds no
    /// optimizer state.
    pub(super) fn load(
        opts: &TrainOptions,
        arch: Arch,
        num_classes: usize,
        lrs: &LrList,
    ) -> Result<StartModel> {
        let r = &opts.recipe;
        let mut net = SeNet::new(arch, num_classes, r.seed)?;
        let mut notes = Vec::new();
        let mut resume = None;
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
                let want = lrs.at(st.global_step);
                if lr != want {
                    notes.push(format!(
                        "note: the checkpoint's learning_rate {lr} differs from this recipe's \
                         schedule at step {} ({want}): the schedule (epoch_size, lr, ...) changed",
                        st.global_step
                    ));
                }
            }
            resume = Some(st);
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
            if net.stem_pool != StemPool::Same {
                // The run trains, validates and saves MindCV's network (its checkpoints load
                // as MindCV's): timm's weights start it, with MindCV's stem pool.
                net.stem_pool = StemPool::Same;
                notes.push(
                    "note: training runs MindCV's network (stem max pool pad_mode 'same'), not \
                     timm's, from these timm weights"
                        .into(),
                );
            }
        }
        Ok(StartModel { net, resume, notes })
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
