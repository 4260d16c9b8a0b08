//! The training data of one epoch: which samples in which order (MindSpore's per-epoch shuffle
//! and `drop_remainder`, made deterministic from `(seed, epoch)`), the per-sample training
//! transform, and the batched loader over the batches still to run.
//!
//! Each sample goes through MindCV's train transform with randomness keyed by
//! `(seed, epoch, dataset index)`: see [`SampleTransform::from_recipe`].
use crate::config::Recipe;
use crate::data::{Loader, SampleRng, TrainTransform};
use crate::model::init::{splitmix64, Rng};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Optimizer steps in one epoch of `num_samples` samples: `floor(num_samples / batch_size)`
/// with `drop_remainder` (the last incomplete batch is dropped, as MindSpore's
/// `batch(drop_remainder=True)`), else `ceil(num_samples / batch_size)`.
/// Errors: [`Error::Config`] for `batch_size` 0, or when not one batch fits (naming the sizes).
pub fn steps_per_epoch(
    num_samples: usize,
    batch_size: usize,
    drop_remainder: bool,
) -> Result<usize> {
    if batch_size == 0 {
        return Err(Error::Config("batch_size must be at least 1".into()));
    }
    let steps = if drop_remainder {
        num_samples / batch_size
    } else {
        num_samples.div_ceil(batch_size)
    };
    if steps == 0 {
        return Err(Error::Config(format!(
            "the training split has {num_samples} images, fewer than one batch of {batch_size} \
             (drop_remainder: true): lower batch_size"
        )));
    }
    Ok(steps)
}

/// The sample order of epoch `epoch` (0-based) over `num_samples` samples: a permutation of
/// `0..num_samples` that depends only on `(seed, epoch)` (Fisher-Yates driven by a splitmix64
/// stream), or the dataset order when `shuffle` is false. MindSpore's own shuffle cannot be
/// reproduced bit for bit; what matters here is that a resumed run sees the same order.
pub fn epoch_order(num_samples: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..num_samples).collect();
    if shuffle {
        let mut rng = Rng::new(splitmix64(seed ^ splitmix64(epoch.wrapping_add(0x5eed))));
        for i in (1..num_samples).rev() {
            let j = ((rng.uniform() * (i + 1) as f64) as usize).min(i);
            order.swap(i, j);
        }
    }
    order
}

/// The transform of one training sample: `(epoch, dataset index, image file)` -> `C*H*W` f32
/// (CHW, normalised). Randomness must come only from `(seed, epoch, dataset index)` so that a
/// resumed run reproduces the same inputs.
pub type SampleFn = dyn Fn(u64, usize, &Path) -> Result<Vec<f32>> + Send + Sync;

/// The per-sample training transform and the shape it produces.
#[derive(Clone)]
pub struct SampleTransform {
    /// Output shape `[3, image_resize, image_resize]`.
    pub shape: [usize; 3],
    /// The transform.
    pub apply: Arc<SampleFn>,
}

impl SampleTransform {
    /// MindCV's training transform of a recipe ([`TrainTransform`]: random resized crop, flips,
    /// colour jitter, normalize), its randomness drawn from `(seed, epoch, dataset index)`.
    /// Errors: as [`TrainTransform::from_recipe`] (naming the key).
    pub fn from_recipe(r: &Recipe) -> Result<SampleTransform> {
        let t = TrainTransform::from_recipe(r)?;
        let seed = r.seed;
        let shape = t.output_shape();
        let f = move |epoch: u64, index: usize, path: &Path| {
            t.apply_path(path, &mut SampleRng::for_sample(seed, epoch, index as u64))
        };
        Ok(SampleTransform {
            shape,
            apply: Arc::new(f),
        })
    }
}

/// The training set and how an epoch is cut into batches.
pub struct EpochPlan {
    /// `(image, class index)` in dataset order.
    pub samples: Vec<(PathBuf, usize)>,
    /// Images per batch.
    pub batch_size: usize,
    /// Batches per epoch ([`steps_per_epoch`]).
    pub steps_per_epoch: usize,
    /// Shuffle each epoch.
    pub shuffle: bool,
    /// Seed of the shuffle.
    pub seed: u64,
    /// Decoding threads (0 = one per core).
    pub num_workers: usize,
}

impl EpochPlan {
    /// A plan over `samples` (dataset order). Errors as [`steps_per_epoch`].
    pub fn new(
        samples: Vec<(PathBuf, usize)>,
        batch_size: usize,
        drop_remainder: bool,
        shuffle: bool,
        seed: u64,
        num_workers: usize,
    ) -> Result<EpochPlan> {
        let steps_per_epoch = steps_per_epoch(samples.len(), batch_size, drop_remainder)?;
        Ok(EpochPlan {
            samples,
            batch_size,
            steps_per_epoch,
            shuffle,
            seed,
            num_workers,
        })
    }

    /// The loader over batches `first_batch..steps_per_epoch` of epoch `epoch` (0-based): the
    /// epoch's order ([`epoch_order`]), cut to `steps_per_epoch` batches, the first
    /// `first_batch` batches skipped (a resumed run), each image through `transform`.
    /// Errors: [`Error::Config`] when the loader cannot start.
    pub fn loader(
        &self,
        epoch: u64,
        first_batch: usize,
        transform: &SampleTransform,
    ) -> Result<Loader> {
        let order = epoch_order(self.samples.len(), self.seed, epoch, self.shuffle);
        let end = (self.steps_per_epoch * self.batch_size).min(order.len());
        let start = (first_batch * self.batch_size).min(end);
        let batch_order: Vec<usize> = order[start..end].to_vec();
        let samples: Vec<(PathBuf, usize)> = batch_order
            .iter()
            .map(|&i| self.samples[i].clone())
            .collect();
        let apply = Arc::clone(&transform.apply);
        Loader::with_indexed_transform(
            samples,
            transform.shape,
            // The loader gives the position in `samples`; the randomness is keyed by the
            // dataset index, so it does not depend on the order or the batch.
            move |position: usize, path: &Path| apply(epoch, batch_order[position], path),
            self.batch_size,
            self.num_workers,
            Loader::DEFAULT_PREFETCH,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_orders() {
        assert_eq!(steps_per_epoch(10, 4, true).unwrap(), 2);
        assert_eq!(steps_per_epoch(10, 4, false).unwrap(), 3);
        assert!(steps_per_epoch(3, 4, true).is_err());
        let a = epoch_order(100, 42, 3, true);
        assert_eq!(a, epoch_order(100, 42, 3, true));
        assert_ne!(a, epoch_order(100, 42, 4, true));
        assert_ne!(a, epoch_order(100, 43, 3, true));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(epoch_order(5, 1, 0, false), vec![0, 1, 2, 3, 4]);
    }
}
