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

/// Which part of the data this process works on: shard `rank` of `count` (MindSpore's
/// `DistributedSampler(num_shards=count, shard_id=rank)`, which MindCV's `create_dataset` uses
/// with the job's rank and size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This process's shard, `0..count`.
    pub rank: usize,
    /// Number of shards (processes).
    pub count: usize,
}

impl Shard {
    /// All of the data (one process).
    #[cfg(test)]
    pub fn whole() -> Shard {
        Shard { rank: 0, count: 1 }
    }

    /// Shard `rank` of `count`. Errors: [`Error::Invalid`] for `count` 0 or `rank >= count`.
    pub fn new(rank: usize, count: usize) -> Result<Shard> {
        if count == 0 || rank >= count {
            return Err(Error::Invalid(format!(
                "shard {rank} of {count}: the rank must be below the number of shards"
            )));
        }
        Ok(Shard { rank, count })
    }

    /// Samples per shard and epoch for a data set of `num_samples`: `ceil(num_samples /
    /// count)`, every shard the same size (MindSpore's `even_dist`).
    pub fn samples_per_shard(&self, num_samples: usize) -> usize {
        num_samples.div_ceil(self.count)
    }

    /// This shard's part of an epoch's `order`, as MindSpore's `DistributedSampler` takes it:
    /// position `i` of the shard is `order[(count*i + rank) % order.len()]` for
    /// `i < ceil(len/count)`. The shards interleave (rank `r` takes positions `r`, `r+count`,
    /// ...), so batch `k` of `b` images on every rank together are positions
    /// `count*b*k .. count*b*(k+1)` of the order: exactly batch `k` of one process with batch
    /// `count*b`. When `count` does not divide the length, the last shards are padded from the
    /// start of the order (a few samples are seen twice per epoch) so that every rank runs the
    /// same number of steps.
    pub fn of_order(&self, order: &[usize]) -> Vec<usize> {
        if order.is_empty() {
            return Vec::new();
        }
        (0..self.samples_per_shard(order.len()))
            .map(|i| order[(self.count * i + self.rank) % order.len()])
            .collect()
    }

    /// This shard's items without padding: `items[rank]`, `items[rank + count]`, ... (the
    /// shards differ in size by at most one and together hold every item exactly once). Used
    /// for validation, whose sums are then reduced over the ranks: the result is the one of a
    /// single process over the whole split (MindSpore pads the validation shards too and
    /// averages the per-device accuracies, counting a few images twice).
    pub fn of_items<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items
            .iter()
            .skip(self.rank)
            .step_by(self.count)
            .cloned()
            .collect()
    }
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
    /// The part of every epoch this process trains on.
    pub shard: Shard,
}

impl EpochPlan {
    /// A plan over `shard` of `samples` (dataset order): `steps_per_epoch` counts the batches
    /// of one shard ([`Shard::samples_per_shard`] images), the same on every rank. Errors as
    /// [`steps_per_epoch`] (naming the shard size when sharded).
    pub fn new(
        samples: Vec<(PathBuf, usize)>,
        batch_size: usize,
        drop_remainder: bool,
        shuffle: bool,
        seed: u64,
        num_workers: usize,
        shard: Shard,
    ) -> Result<EpochPlan> {
        let per_shard = shard.samples_per_shard(samples.len());
        let steps_per_epoch = match steps_per_epoch(per_shard, batch_size, drop_remainder) {
            Err(_) if shard.count > 1 && batch_size > 0 => {
                return Err(Error::Config(format!(
                    "the training split has {} images: {per_shard} per rank over {} ranks, \
                     fewer than one batch of {batch_size} (drop_remainder: true): lower \
                     batch_size",
                    samples.len(),
                    shard.count
                )))
            }
            r => r?,
        };
        Ok(EpochPlan {
            samples,
            batch_size,
            steps_per_epoch,
            shuffle,
            seed,
            num_workers,
            shard,
        })
    }

    /// The loader over batches `first_batch..steps_per_epoch` of epoch `epoch` (0-based): the
    /// epoch's order ([`epoch_order`], the same on every rank), this plan's shard of it
    /// ([`Shard::of_order`]), cut to `steps_per_epoch` batches, the first `first_batch` batches
    /// skipped (a resumed run), each image through `transform`.
    /// Errors: [`Error::Config`] when the loader cannot start.
    pub fn loader(
        &self,
        epoch: u64,
        first_batch: usize,
        transform: &SampleTransform,
    ) -> Result<Loader> {
        let order = self.shard.of_order(&epoch_order(
            self.samples.len(),
            self.seed,
            epoch,
            self.shuffle,
        ));
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

    #[test]
    fn shards_interleave_and_pad_as_mindspore() {
        let order = [7usize, 3, 9, 1, 0, 5, 2];
        let s0 = Shard::new(0, 3).unwrap();
        let s2 = Shard::new(2, 3).unwrap();
        assert_eq!(s0.samples_per_shard(7), 3);
        assert_eq!(s0.of_order(&order), vec![7, 1, 2]);
        assert_eq!(Shard::new(1, 3).unwrap().of_order(&order), vec![3, 0, 7]);
        assert_eq!(s2.of_order(&order), vec![9, 5, 3]);
        assert_eq!(Shard::whole().of_order(&order), order.to_vec());
        // Batch k of b on each of 2 ranks = batch k of 2b on one.
        let order: Vec<usize> = (0..16).rev().collect();
        let (a, b) = (
            Shard::new(0, 2).unwrap().of_order(&order),
            Shard::new(1, 2).unwrap().of_order(&order),
        );
        for k in 0..2 {
            let mut two: Vec<usize> = a[4 * k..4 * k + 4].to_vec();
            two.extend_from_slice(&b[4 * k..4 * k + 4]);
            two.sort_unstable();
            let mut one = order[8 * k..8 * k + 8].to_vec();
            one.sort_unstable();
            assert_eq!(two, one);
        }
        // Validation shards: no padding, every item once.
        assert_eq!(s2.of_items(&[0, 1, 2, 3, 4, 5, 6]), vec![2, 5]);
        assert_eq!(s0.of_items(&[0, 1, 2, 3, 4, 5, 6]), vec![0, 3, 6]);
        assert!(Shard::new(3, 3).is_err() && Shard::new(0, 0).is_err());
        let plan = |n: usize, shard| {
            let samples = (0..n).map(|i| (PathBuf::from(format!("{i}")), 0)).collect();
            EpochPlan::new(samples, 4, true, true, 1, 1, shard)
        };
        assert_eq!(plan(17, s0).unwrap().steps_per_epoch, 1);
        let e = plan(7, s0).err().unwrap().to_string();
        assert!(e.contains("3 per rank over 3 ranks"), "{e}");
    }
}
