//! senet: Squeeze-and-Excitation networks (Hu, Shen, Sun, CVPR 2018) exactly as MindCV defines
//! them: SE-ResNet-18/34/50 and SE-ResNeXt-26/50 (32x4d), MindSpore `.ckpt` checkpoints, MindCV
//! YAML recipes and eval transforms, on a fast CPU backend.
//!
//! Layers (imports point down only; see `ARCHITECTURE.md`):
//! - [`engine`]: the jobs (train, validate, predict, preprocess, bench) the CLI and the C ABI
//!   call;
//! - [`model`]: the network description (parameter names and shapes = MindCV's), the inference
//!   network and the classification metrics over its logits;
//! - [`backend`]: the [`backend::Backend`] op trait and its CPU implementation;
//! - [`checkpoint`]: MindSpore `.ckpt` and safetensors;
//! - [`dist`]: data-parallel training: launch detection, the [`dist::Communicator`] (MPI on the
//!   CPU with the `mpi` feature) and the gradient all-reduce;
//! - [`data`]: ImageFolder, JPEG/PNG decoding, MindCV's transforms, the batched loader;
//! - [`optim`]: the training math: the network in training mode and its update
//!   ([`optim::TrainNet`]), MindCV's learning-rate schedules, weight-decay filter and loss
//!   scaling (the training ops are on the backend trait);
//! - [`config`]: MindCV recipes; [`tensor`]: host tensors and dtypes; [`Error`]: the error type.

#![warn(missing_docs)]

pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod dist;
pub mod engine;
mod error;
pub mod ffi;
pub mod fsutil;
pub mod model;
pub mod npy;
pub mod optim;
pub mod tensor;

pub use error::{Error, Result};

/// The most threads senet starts for one pool (`--threads`, `--num_parallel_workers`).
pub const MAX_THREADS: usize = 1024;
pub use tensor::Tensor;
