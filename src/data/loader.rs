//! The batched loader: decodes and transforms images on a worker pool of its own, a bounded number
//! of batches ahead of the consumer, and yields them in dataset order (MindSpore's
//! `dataset.map(transforms, num_parallel_workers).batch(batch_size, drop_remainder=False)`).
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;

use super::transforms::EvalTransform;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// One batch of transformed images.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `(n, C, H, W)` f32, NCHW, as the transform produced them (normalized for [`EvalTransform`]).
    pub images: Tensor,
    /// Class index of each image (`n` entries).
    pub labels: Vec<usize>,
    /// Source file of each image (`n` entries).
    pub paths: Vec<PathBuf>,
}

impl Batch {
    /// Number of images in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch holds no image (the loader never yields one).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A per-image transform: (position in the samples, image file) -> `C*H*W` f32 (CHW).
type TransformFn = dyn Fn(usize, &Path) -> Result<Vec<f32>> + Send + Sync;

/// An iterator of `Result<Batch>` over `(path, label)` samples, in their order: batches of
/// `batch_size`, the last one possibly smaller. Images are decoded and transformed in parallel on
/// `num_workers` threads of a pool owned by the loader, at most `prefetch` batches ahead of the
/// consumer. A file that cannot be read or decoded yields one `Err` naming it (the first such file
/// in sample order within its batch), after which the iteration ends. Dropping the loader stops
/// the workers.
pub struct Loader {
    rx: Option<Receiver<Result<Batch>>>,
    worker: Option<JoinHandle<()>>,
    num_batches: usize,
    done: bool,
}

impl Loader {
    /// Batches to keep ready ahead of the consumer by default.
    pub const DEFAULT_PREFETCH: usize = 2;

    /// A loader applying MindCV's eval `transform` to every sample. `num_workers` = 0 means one
    /// thread per core. Errors: [`Error::Config`] for `batch_size` 0 or when the pool cannot start.
    pub fn new(
        samples: Vec<(PathBuf, usize)>,
        transform: EvalTransform,
        batch_size: usize,
        num_workers: usize,
    ) -> Result<Loader> {
        let shape = transform.output_shape();
        Loader::with_transform(
            samples,
            shape,
            move |p: &Path| transform.apply_path(p),
            batch_size,
            num_workers,
            Self::DEFAULT_PREFETCH,
        )
    }

    /// A loader applying any per-image `transform` producing `shape = [C, H, W]` f32 (CHW), with
    /// `prefetch` (>= 1) batches ready ahead. A transform output of another size is an
    /// [`Error::Shape`] naming the file. (= [`Loader::with_indexed_transform`] ignoring the
    /// position.)
    pub fn with_transform<F>(
        samples: Vec<(PathBuf, usize)>,
        shape: [usize; 3],
        transform: F,
        batch_size: usize,
        num_workers: usize,
        prefetch: usize,
    ) -> Result<Loader>
    where
        F: Fn(&Path) -> Result<Vec<f32>> + Send + Sync + 'static,
    {
        Loader::with_indexed_transform(
            samples,
            shape,
            move |_: usize, p: &Path| transform(p),
            batch_size,
            num_workers,
            prefetch,
        )
    }

    /// Like [`Loader::with_transform`], but the transform also receives the sample's position
    /// in `samples` (0-based), e.g. to key a per-sample random stream
    /// ([`super::SampleRng::for_sample`]) for training augmentation. Each sample is transformed
    /// exactly once, by whichever worker picks it up, so a transform that depends only on
    /// `(position, path)` gives the same batches whatever `num_workers` is.
    ///
    /// ```no_run
    /// # use std::path::{Path, PathBuf};
    /// # use senet::data::{Loader, SampleRng, TrainTransform};
    /// # let (samples, seed, epoch): (Vec<(PathBuf, usize)>, u64, u64) = (vec![], 42, 0);
    /// // `order[i]` = dataset index of the i-th sample of this epoch's shuffled list.
    /// let order: Vec<u64> = (0..samples.len() as u64).collect();
    /// let t = TrainTransform::default();
    /// let shape = t.output_shape();
    /// let loader = Loader::with_indexed_transform(
    ///     samples,
    ///     shape,
    ///     move |i: usize, p: &Path| {
    ///         t.apply_path(p, &mut SampleRng::for_sample(seed, epoch, order[i]))
    ///     },
    ///     64,
    ///     8,
    ///     Loader::DEFAULT_PREFETCH,
    /// )?;
    /// # Ok::<(), senet::Error>(())
    /// ```
    pub fn with_indexed_transform<F>(
        samples: Vec<(PathBuf, usize)>,
        shape: [usize; 3],
        transform: F,
        batch_size: usize,
        num_workers: usize,
        prefetch: usize,
    ) -> Result<Loader>
    where
        F: Fn(usize, &Path) -> Result<Vec<f32>> + Send + Sync + 'static,
    {
        if num_workers > crate::MAX_THREADS {
            return Err(Error::Config(format!(
                "num_parallel_workers {num_workers} is more than {} threads",
                crate::MAX_THREADS
            )));
        }
        if batch_size == 0 {
            return Err(Error::Config("batch_size must be positive".into()));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(num_workers)
            .thread_name(|i| format!("senet-data-{i}"))
            .build()
            .map_err(|e| Error::Config(format!("cannot start {num_workers} data workers: {e}")))?;
        let num_batches = samples.len().div_ceil(batch_size);
        let (tx, rx) = sync_channel(prefetch.max(1));
        let transform: Arc<TransformFn> = Arc::new(transform);
        let worker = std::thread::Builder::new()
            .name("senet-loader".into())
            .spawn(move || produce(pool, samples, shape, transform, batch_size, tx))
            .map_err(|e| Error::Config(format!("cannot start the loader thread: {e}")))?;
        Ok(Loader {
            rx: Some(rx),
            worker: Some(worker),
            num_batches,
            done: false,
        })
    }

    /// Number of batches the loader yields when no file fails: `ceil(samples / batch_size)`.
    pub fn num_batches(&self) -> usize {
        self.num_batches
    }
}

fn produce(
    pool: rayon::ThreadPool,
    samples: Vec<(PathBuf, usize)>,
    shape: [usize; 3],
    transform: Arc<TransformFn>,
    batch_size: usize,
    tx: SyncSender<Result<Batch>>,
) {
    let per_image: usize = shape.iter().product();
    for (b, chunk) in samples.chunks(batch_size).enumerate() {
        let first = b * batch_size;
        let outputs: Vec<Result<Vec<f32>>> = pool.install(|| {
            chunk
                .par_iter()
                .enumerate()
                .map(|(i, (p, _))| transform(first + i, p))
                .collect()
        });
        let mut failure = None;
        let mut data =
            match crate::mem::with_capacity(chunk.len().saturating_mul(per_image), || {
                format!("a batch of {} images", chunk.len())
            }) {
                Ok(d) => d,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
        for (out, (path, _)) in outputs.into_iter().zip(chunk) {
            match out {
                Ok(v) if v.len() == per_image => data.extend_from_slice(&v),
                Ok(v) => {
                    failure = Some(Error::Shape(format!(
                        "{}: transform produced {} values, expected {shape:?}",
                        path.display(),
                        v.len()
                    )));
                    break;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            let _ = tx.send(Err(e));
            return;
        }
        let batch = Batch {
            images: Tensor {
                shape: vec![chunk.len(), shape[0], shape[1], shape[2]],
                data,
            },
            labels: chunk.iter().map(|s| s.1).collect(),
            paths: chunk.iter().map(|s| s.0.clone()).collect(),
        };
        if tx.send(Ok(batch)).is_err() {
            return; // the consumer is gone
        }
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.done {
            return None;
        }
        match self.rx.as_ref()?.recv() {
            Ok(item) => {
                self.done = item.is_err();
                Some(item)
            }
            Err(_) => {
                self.done = true;
                None
            }
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        drop(self.rx.take()); // unblocks a producer waiting to send
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
